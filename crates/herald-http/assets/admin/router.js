// The views, chosen by the location's fragment (`#/mailings/<id>`, `#/clients`, …).

import { ApiError, problemText } from "./api.js";
import { clientsView } from "./clients.js";
import { $, notice } from "./dom.js";
import { mailingView, mailingsView } from "./mailings.js";
import { providerView, realtimeView } from "./metrics.js";
import { notificationsView } from "./notifications.js";
import { closeView, state } from "./state.js";

export function route() {
  if (!state.me || state.me.role !== "admin") return;
  closeView();
  const hash = location.hash.replace(/^#\/?/, "");
  const [page, id] = hash.split("/");
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("current", a.getAttribute("href") === `#/${page || "mailings"}`);
  }
  const view = $("view");
  view.replaceChildren();
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  const render = {
    mailings: () => (id && uuid.test(id) ? mailingView(view, id) : mailingsView(view)),
    clients: () => clientsView(view),
    provider: () => providerView(view),
    realtime: () => realtimeView(view),
    notifications: () => notificationsView(view),
  }[page || "mailings"];
  (render || (() => mailingsView(view)))().catch((err) => notice(err instanceof ApiError ? problemText(err) : String(err)));
}
