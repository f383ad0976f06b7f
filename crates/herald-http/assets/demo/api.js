// Herald's REST API as the signed-in person: JSON in and out, problem+json as errors.

import { sessionRefused, state } from "./state.js";

const API = "/api/v1";

export function problemText(body, res) {
  if (body && Array.isArray(body.errors) && body.errors.length) {
    return body.errors.map((e) => `${e.field}: ${e.message}`).join("; ");
  }
  return (body && (body.detail || body.title)) || `${res.status} ${res.statusText}`;
}

export async function api(method, path, body, headers = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (state.token) init.headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(API + path, init);
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = new Error(problemText(data, res));
    err.status = res.status;
    err.code = data && data.code;
    if (res.status === 401 && state.token) sessionRefused("Your session has ended: log in again.");
    throw err;
  }
  return data;
}

/** Every item of a paged list (`{items, next_cursor}`). */
export async function listAll(path) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < 20; page++) {
    const query = `?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const body = await api("GET", path + query);
    items.push(...(body.items || []));
    cursor = body.next_cursor;
    if (!cursor) break;
  }
  return items;
}
