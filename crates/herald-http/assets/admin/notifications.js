// The most recent notices and the steps each went through.

import { api } from "./api.js";
import { el, statusBadge } from "./dom.js";
import { fmt } from "./format.js";

export async function notificationsView(view) {
  const page = await api("GET", "notifications?limit=50");
  const rows = page.items.map((n) => el("tr", { "data-testid": "notice-row" },
    el("td", {}, fmt.time(n.created_at)), el("td", {}, n.type), el("td", { class: "text" }, n.title),
    el("td", {}, statusBadge(n.status)),
    el("td", { class: "text" }, (n.steps || []).map((s) => `${s.channel} ${s.status}`).join(" → "))));
  view.append(el("section", {}, el("h2", {}, "Recent notices"),
    rows.length ? el("div", { class: "table" }, el("table", {},
      el("thead", {}, el("tr", {}, ...["Made", "Type", "Title", "Status", "Steps"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows))) : el("p", {}, "No notices yet.")));
}
