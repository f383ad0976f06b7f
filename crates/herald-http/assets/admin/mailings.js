// Mailings: the list with a form for a new one, and one mailing's counts moving live over its
// `mailing:<id>` stream, with charts of its timeline.

import { ApiError, api, problemText } from "./api.js";
import { makeCharts } from "./charts.js";
import { el, notice, statusBadge } from "./dom.js";
import { fmt, list, toInstant, toLocal } from "./format.js";
import { liveStream } from "./live.js";
import { state } from "./state.js";

export async function mailingsView(view) {
  const table = el("tbody");
  const load = async () => {
    const page = await api("GET", "mailings/stats?limit=200");
    table.replaceChildren(...page.items.reverse().map(({ mailing: m, messages: c }) => el("tr", {
      class: "link", "data-testid": "mailing-row", "data-id": m.id, onclick: () => { location.hash = `#/mailings/${m.id}`; },
    },
    el("td", { class: "text" }, m.text), el("td", {}, statusBadge(m.status)), el("td", {}, fmt.time(m.start_at)),
    el("td", {}, fmt.time(m.end_at)), el("td", {}, fmt.n(c.total)), el("td", {}, fmt.n(c.sent)),
    el("td", {}, fmt.n(c.failed)), el("td", {}, fmt.n(c.pending + c.sending)),
    el("td", {}, ["scheduled", "running"].includes(m.status)
      ? el("button", { class: "danger", "data-testid": "mailing-cancel", onclick: async (e) => {
        e.stopPropagation();
        if (!confirm("Cancel this mailing? What is pending will not be sent.")) return;
        await api("DELETE", `mailings/${m.id}`).catch((err) => notice(problemText(err)));
        load();
      } }, "Cancel") : ""))));
  };
  const now = new Date();
  const form = el("form", { "data-testid": "mailing-form", onsubmit: async (e) => {
    e.preventDefault();
    const f = e.target.elements;
    const body = { text: f.text.value, start_at: toInstant(f.start.value), end_at: toInstant(f.end.value) };
    const filter = {};
    if (list(f.codes.value).length) filter.operator_codes = list(f.codes.value);
    if (list(f.tags.value).length) filter.tags = list(f.tags.value);
    if (Object.keys(filter).length) body.filter = filter;
    if (f.from.value && f.to.value) body.window = { from: f.from.value, to: f.to.value };
    try {
      const m = await api("POST", "mailings", body);
      location.hash = `#/mailings/${m.id}`;
    } catch (err) {
      notice(problemText(err));
    }
  } },
  el("h3", {}, "New mailing"),
  el("label", {}, "Text", el("textarea", { name: "text", rows: 2, required: true, maxlength: 1000, "data-testid": "mailing-text" })),
  el("div", { class: "row" },
    el("label", {}, "Start", el("input", { name: "start", type: "datetime-local", required: true, value: toLocal(now) })),
    el("label", {}, "End", el("input", { name: "end", type: "datetime-local", required: true, value: toLocal(new Date(now.getTime() + 86_400_000)) }))),
  el("div", { class: "row" },
    el("label", {}, "Operator codes", el("input", { name: "codes", placeholder: "916, 903 (all when empty)", "data-testid": "mailing-codes" })),
    el("label", {}, "Tags", el("input", { name: "tags", placeholder: "vip, new (all when empty)", "data-testid": "mailing-tags" }))),
  el("div", { class: "row" },
    el("label", {}, "Send from (client's local time)", el("input", { name: "from", type: "time" })),
    el("label", {}, "Send until", el("input", { name: "to", type: "time" })),
    el("button", { type: "submit", "data-testid": "mailing-create" }, "Create")));
  view.append(
    el("section", {}, el("h2", {}, "Mailings"), el("div", { class: "table" }, el("table", { "data-testid": "mailings" },
      el("thead", {}, el("tr", {}, ...["Text", "Status", "Start", "End", "Messages", "Sent", "Failed", "Pending", ""].map((h) => el("th", {}, h)))),
      table))),
    el("section", {}, form));
  await load();
}

const COUNTS = ["total", "pending", "sent", "failed", "expired", "cancelled"];

export async function mailingView(view, id) {
  const stats = await api("GET", `mailings/${id}/stats`);
  const m = stats.mailing;
  const counts = Object.fromEntries(COUNTS.map((k) => [k, el("b", { "data-testid": `count-${k}` }, "—")]));
  const progress = el("progress", { max: 1, value: 0, "data-testid": "mailing-progress" });
  const liveState = el("span", { class: "live", "data-testid": "live-state" }, "connecting…");
  const rate = el("span", { "data-testid": "send-rate" }, "—");
  const status = el("span", {}, statusBadge(m.status));
  const show = (c, s) => {
    for (const k of COUNTS) counts[k].textContent = fmt.n(c[k]);
    progress.max = Math.max(c.total, 1);
    progress.value = c.total - c.pending;
    if (s) status.replaceChildren(statusBadge(s));
  };
  const c = stats.messages;
  show({ ...c, pending: c.pending + c.sending }, m.status);
  const charts = el("div", { class: "charts" });
  view.append(el("section", {},
    el("h2", {}, m.text),
    el("p", { class: "chips" }, status, " ", fmt.time(m.start_at), " → ", fmt.time(m.end_at), " · ",
      m.filter.operator_codes ? `codes ${m.filter.operator_codes.join(", ")}` : "every code", " · ",
      m.filter.tags ? `tags ${m.filter.tags.join(", ")}` : "every tag",
      m.window ? ` · ${m.window.from}–${m.window.to} local` : "", " · ", liveState),
    el("div", { class: "counts" }, ...COUNTS.map((k) => el("div", { class: "count" }, counts[k], el("span", {}, k)))),
    progress, el("p", { class: "chips" }, "Sends per second now: ", rate)),
  el("section", {}, charts));

  const plots = makeCharts(charts);
  let refreshing = null;
  // About 500 points at most: a bucket wide enough for the mailing's whole span so far.
  const span = (Math.min(Date.now(), Date.parse(m.end_at)) - Date.parse(m.created_at)) / 1000;
  const bucket = ["10s", "30s", "1m", "5m", "15m", "1h", "6h", "1d"]
    .find((b) => span / ({ s: 1, m: 60, h: 3600, d: 86400 }[b.slice(-1)] * parseInt(b, 10)) <= 500) || "1d";
  const refresh = async () => {
    try {
      plots.update(await api("GET", `mailings/${id}/timeline?bucket=${bucket}`));
    } catch (err) {
      // The charts wait for the next snapshot; the counts keep moving.
      notice(`The charts could not be drawn: ${err instanceof ApiError ? problemText(err) : err}`);
    }
  };
  const scheduleRefresh = () => {
    // A snapshot comes at most once a second; the charts follow at most every two.
    if (refreshing) return;
    refreshing = setTimeout(() => { refreshing = null; refresh().catch(() => {}); }, 2000);
  };
  await refresh();
  const stream = liveStream(`mailing:${id}`, (event) => {
    const p = event.data;
    show(p.messages, p.status);
    if (p.sends_per_second !== undefined) rate.textContent = p.sends_per_second.toFixed(1);
    scheduleRefresh();
  }, (s) => { liveState.textContent = s; liveState.dataset.state = s; });
  state.cleanup.push(() => { stream.close(); clearTimeout(refreshing); plots.destroy(); });
}
