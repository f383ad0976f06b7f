// Herald's REST API as the signed-in administrator: JSON in and out, problem+json as ApiError.

import { sessionRefused, state } from "./state.js";

export const API = "/api/v1";
const REQUEST_TIMEOUT_MS = 30_000;

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

export async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  let response;
  try {
    response = await fetch(path.startsWith("/") ? path : `${API}/${path}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: controller.signal,
    });
  } finally {
    clearTimeout(timer);
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    if (response.status === 401) sessionRefused();
    throw new ApiError(response.status, data);
  }
  return data;
}

export function problemText(err) {
  const p = err.problem || {};
  const fields = (p.errors || []).map((e) => `${e.field}: ${e.message}`).join("; ");
  return [err.message, fields].filter(Boolean).join(" — ");
}
