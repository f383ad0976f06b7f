// Clients: search, page through, edit, delete and add them, and import a file of them.

import { api, problemText } from "./api.js";
import { importPanel } from "./client-import.js";
import { el, notice } from "./dom.js";

export async function clientsView(view) {
  const rows = el("tbody");
  const more = el("button", { class: "quiet", hidden: true, "data-testid": "clients-more" }, "More");
  let query = "";
  let cursor = null;
  const row = (c) => {
    const tr = el("tr", { "data-testid": "client-row", "data-phone": c.phone });
    const plain = () => tr.replaceChildren(
      el("td", {}, c.phone), el("td", {}, c.operator_code), el("td", {}, c.tag || "—"), el("td", {}, c.timezone),
      el("td", {}, el("button", { class: "quiet", "data-testid": "client-edit", onclick: editing }, "Edit"), " ",
        el("button", { class: "danger", "data-testid": "client-delete", onclick: remove }, "Delete")));
    const editing = () => {
      const input = (name, value) => el("input", { name, value, "data-testid": `edit-${name}` });
      const fields = { phone: input("phone", c.phone), operator_code: input("operator_code", c.operator_code), tag: input("tag", c.tag), timezone: input("timezone", c.timezone) };
      tr.replaceChildren(...Object.values(fields).map((f) => el("td", {}, f)), el("td", {},
        el("button", { "data-testid": "client-save", onclick: async () => {
          const change = {};
          for (const [k, f] of Object.entries(fields)) if (f.value !== (c[k] ?? "")) change[k] = f.value;
          try {
            c = await api("PATCH", `clients/${c.id}`, change);
            plain();
          } catch (err) { notice(problemText(err)); }
        } }, "Save"), " ", el("button", { class: "quiet", onclick: plain }, "Cancel")));
    };
    const remove = async () => {
      if (!confirm(`Delete ${c.phone}? Its pending messages are cancelled.`)) return;
      try { await api("DELETE", `clients/${c.id}`); tr.remove(); } catch (err) { notice(problemText(err)); }
    };
    plain();
    return tr;
  };
  const load = async (append) => {
    const page = await api("GET", `clients?limit=50${query}${append && cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    if (!append) rows.replaceChildren();
    rows.append(...page.items.map(row));
    cursor = page.next_cursor || null;
    more.hidden = !cursor;
  };
  more.addEventListener("click", () => load(true).catch((err) => notice(problemText(err))));
  const search = el("form", { class: "row", "data-testid": "clients-search", onsubmit: (e) => {
    e.preventDefault();
    const f = e.target.elements;
    const q = new URLSearchParams();
    if (f.phone.value) q.set("phone", f.phone.value);
    if (f.code.value) q.set("operator_code", f.code.value);
    if (f.tag.value) q.set("tag", f.tag.value);
    query = q.toString() ? `&${q}` : "";
    load(false).catch((err) => notice(problemText(err)));
  } },
  el("label", {}, "Phone starts with", el("input", { name: "phone", inputmode: "numeric", "data-testid": "search-phone" })),
  el("label", {}, "Operator code", el("input", { name: "code", "data-testid": "search-code" })),
  el("label", {}, "Tag", el("input", { name: "tag", "data-testid": "search-tag" })),
  el("button", { type: "submit", "data-testid": "search-submit" }, "Search"));
  const create = el("form", { class: "row", "data-testid": "client-form", onsubmit: async (e) => {
    e.preventDefault();
    const f = e.target.elements;
    const body = { phone: f.phone.value };
    if (f.code.value) body.operator_code = f.code.value;
    if (f.tag.value) body.tag = f.tag.value;
    if (f.zone.value) body.timezone = f.zone.value;
    try {
      const c = await api("POST", "clients", body);
      rows.prepend(row(c));
      e.target.reset();
    } catch (err) { notice(problemText(err)); }
  } },
  el("label", {}, "Phone", el("input", { name: "phone", required: true, placeholder: "79161234567", "data-testid": "client-phone" })),
  el("label", {}, "Operator code", el("input", { name: "code", placeholder: "from the phone" })),
  el("label", {}, "Tag", el("input", { name: "tag" })),
  el("label", {}, "Time zone", el("input", { name: "zone", placeholder: "UTC" })),
  el("button", { type: "submit", "data-testid": "client-create" }, "Add"));
  view.append(
    el("section", {}, el("h2", {}, "Clients"), search, el("div", { class: "table" }, el("table", { "data-testid": "clients" },
      el("thead", {}, el("tr", {}, ...["Phone", "Code", "Tag", "Time zone", ""].map((h) => el("th", {}, h)))), rows)), more),
    el("section", {}, el("h3", {}, "Add a client"), create),
    importPanel(() => load(false)));
  await load(false);
}
