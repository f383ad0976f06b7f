// Importing clients from an NDJSON or CSV file, with upload progress and the refused lines.

import { API } from "./api.js";
import { el, notice } from "./dom.js";
import { state } from "./state.js";

// CSV with a header (phone, operator_code, tag, timezone in any order) as NDJSON, line for line.
function csvToNdjson(text) {
  const lines = text.replace(/\r/g, "").split("\n");
  const cells = (line) => {
    const out = [];
    let cur = "";
    let quoted = false;
    for (let i = 0; i < line.length; i++) {
      const ch = line[i];
      if (quoted) {
        if (ch === '"' && line[i + 1] === '"') { cur += '"'; i++; } else if (ch === '"') quoted = false; else cur += ch;
      } else if (ch === '"') quoted = true;
      else if (ch === ",") { out.push(cur); cur = ""; } else cur += ch;
    }
    out.push(cur);
    return out.map((c) => c.trim());
  };
  const header = cells(lines.shift() || "");
  return lines.map((line) => {
    if (!line.trim()) return "";
    const values = cells(line);
    const obj = {};
    header.forEach((name, i) => { if (values[i]) obj[name] = values[i]; });
    return JSON.stringify(obj);
  }).join("\n");
}

export function importPanel(reload) {
  const bar = el("progress", { max: 1, value: 0, "data-testid": "import-progress", hidden: true });
  const summary = el("p", { "data-testid": "import-summary" });
  const errors = el("tbody");
  const table = el("table", { "data-testid": "import-errors", hidden: true },
    el("thead", {}, el("tr", {}, el("th", {}, "Line"), el("th", {}, "Why it was refused"))), errors);
  const file = el("input", { type: "file", accept: ".ndjson,.jsonl,.json,.csv,.txt", "data-testid": "import-file" });
  const go = el("button", { "data-testid": "import-submit", onclick: async () => {
    const f = file.files[0];
    if (!f) return notice("Choose an NDJSON or CSV file first.");
    const csv = /\.csv$/i.test(f.name);
    const body = csv ? csvToNdjson(await f.text()) : f;
    bar.hidden = false;
    bar.value = 0;
    summary.textContent = "Uploading…";
    errors.replaceChildren();
    table.hidden = true;
    go.disabled = true;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${API}/clients/bulk`);
    xhr.setRequestHeader("authorization", `Bearer ${state.token}`);
    xhr.setRequestHeader("content-type", "application/x-ndjson");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) { bar.max = e.total; bar.value = e.loaded; } };
    xhr.onloadend = () => {
      go.disabled = false;
      let answer = null;
      try { answer = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status !== 200 || !answer) {
        summary.textContent = `Import failed: ${answer?.detail || answer?.title || xhr.status || "no answer"}`;
        return;
      }
      bar.max = 1;
      bar.value = 1;
      summary.textContent = `${answer.created} created, ${answer.failed} refused${answer.errors_truncated ? " (the first 1,000 listed)" : ""}.`;
      errors.replaceChildren(...answer.errors.map((e) => el("tr", { "data-testid": "import-error" },
        el("td", {}, String(csv ? e.line + 1 : e.line)), el("td", { class: "text" }, e.message))));
      table.hidden = answer.errors.length === 0;
      reload().catch(() => {});
    };
    xhr.send(body);
  } }, "Import");
  return el("section", {}, el("h3", {}, "Import clients"),
    el("p", { class: "chips" }, "NDJSON (one {\"phone\": …} per line) or CSV with a header row: phone, operator_code, tag, timezone."),
    el("div", { class: "row" }, file, go), bar, summary, el("div", { class: "table" }, table));
}
