// Small page helpers: finding and making elements, the notice line, ids and ordering.

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "checked") node.checked = Boolean(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children);
  return node;
}

let noticeTimer = null;
export function notice(text, kind = "error") {
  const node = $("notice");
  node.textContent = text;
  node.dataset.kind = kind;
  node.className = kind === "error" ? "error" : "hint";
  clearTimeout(noticeTimer);
  if (text && kind === "error") console.warn("herald:", text);
  if (text) noticeTimer = setTimeout(() => (node.textContent = ""), 8000);
}

export const shortId = (id) => String(id ?? "?").slice(-8);
export const byId = (a, b) => (String(a.id) < String(b.id) ? -1 : String(a.id) > String(b.id) ? 1 : 0);
