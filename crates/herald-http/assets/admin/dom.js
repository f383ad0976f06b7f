// Small page helpers: finding and making elements, the notice line, a status badge.

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "value") node.value = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

let noticeTimer = null;
export function notice(text, kind = "error") {
  const node = $("notice");
  node.textContent = text;
  node.dataset.kind = kind;
  node.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { node.hidden = true; }, 8000);
}

/** A mailing's or a notice's status. */
export function statusBadge(status) {
  return el("span", { class: "status", "data-status": status, "data-testid": "mailing-status" }, status);
}
