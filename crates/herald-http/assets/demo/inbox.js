// The person's in-app notifications: listed over REST, added live by `notification` events,
// marked read one by one.

import { api, listAll } from "./api.js";
import { $, byId, el, notice } from "./dom.js";
import { state } from "./state.js";

export async function reloadInbox() {
  const items = await listAll("/me/notifications");
  state.inbox = new Map(items.map((n) => [n.id, n]));
  renderInbox();
}

/** A notice from the inbox list, a read answer, or a `notification` event's data. */
export function upsertNotice(n) {
  if (!n || !n.id) return;
  const current = state.inbox.get(n.id);
  state.inbox.set(n.id, { ...current, ...n, read_at: n.read_at ?? current?.read_at ?? null });
  renderInbox();
}

function renderInbox() {
  const items = [...state.inbox.values()].sort(byId).reverse();
  $("inbox").replaceChildren(
    ...items.map((n) =>
      el(
        "li",
        { "data-testid": "inbox-item", "data-notice-id": n.id, "data-read": String(Boolean(n.read_at)) },
        el("span", { class: "title", "data-testid": "inbox-title" }, n.title),
        n.read_at
          ? el("small", { class: "hint" }, "read")
          : el("button", { type: "button", class: "quiet", "data-testid": "inbox-read", onclick: () => markRead(n.id) }, "Mark read"),
        el("span", { class: "body" }, n.body || ""),
      ),
    ),
  );
  $("inbox-empty").hidden = items.length > 0;
}

async function markRead(id) {
  try {
    upsertNotice(await api("POST", `/me/notifications/${id}/read`, {}));
  } catch (err) {
    notice(err.message);
  }
}
