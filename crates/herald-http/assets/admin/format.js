// Values as the console shows them and as its forms read them.

export const fmt = {
  time: (t) => (t ? new Date(t).toLocaleString() : "—"),
  n: (n) => (n === undefined || n === null ? "—" : Number(n).toLocaleString()),
};

// A datetime-local input's value as an RFC 3339 instant, and back.
export const toInstant = (local) => new Date(local).toISOString();
export const toLocal = (date) => {
  const d = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
};
export const list = (text) => text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
