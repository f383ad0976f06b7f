// Real time over /ws (docs/realtime.md): one socket per tab, reconnecting with back-off; each
// followed channel is subscribed again after a reconnect and reloaded over REST when the server
// cannot replay what this session missed. Events met during a reload wait for it, and every
// event is acknowledged once applied.

import { problemText } from "./api.js";
import { $, el, notice } from "./dom.js";
import { sessionRefused, state } from "./state.js";

const AUTH_CLOSE_CODES = new Set(["invalid_token", "token_expired", "unauthorized"]);
const REQUEST_TIMEOUT_MS = 15_000;
const LOG_SIZE = 30;

const rt = {
  ws: null,
  live: false,
  attempt: 0,
  timer: null,
  nextId: 1,
  pending: new Map(),
  // channel -> {epoch, last, fresh, buffer, gen, reload, apply}
  channels: new Map(),
};

/** This tab's session id: kept in sessionStorage, so a reload resumes and another tab does not. */
function sessionId() {
  let id = sessionStorage.getItem("herald.session");
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(8));
    id = `tab-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
    sessionStorage.setItem("herald.session", id);
  }
  return id;
}

function setStatus(status, text = status) {
  const node = $("conn-status");
  node.dataset.state = status;
  node.textContent = text;
}

function wsUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

function send(frame) {
  if (rt.ws && rt.ws.readyState === WebSocket.OPEN) rt.ws.send(JSON.stringify(frame));
}

function request(frame) {
  return new Promise((resolve, reject) => {
    const id = rt.nextId++;
    const timer = setTimeout(() => {
      rt.pending.delete(id);
      reject(new Error(`no answer to ${frame.op}`));
    }, REQUEST_TIMEOUT_MS);
    rt.pending.set(id, { resolve, reject, timer });
    send({ ...frame, id });
  });
}

function failPending() {
  for (const { reject, timer } of rt.pending.values()) {
    clearTimeout(timer);
    reject(new Error("connection closed"));
  }
  rt.pending.clear();
}

export function connect() {
  clearTimeout(rt.timer);
  if (!state.token || rt.ws) return;
  setStatus("connecting");
  const ws = new WebSocket(wsUrl());
  rt.ws = ws;
  ws.onopen = () => ws.send(JSON.stringify({ op: "hello", token: state.token, session: sessionId() }));
  ws.onmessage = (message) => {
    if (rt.ws !== ws) return;
    let frame;
    try {
      frame = JSON.parse(message.data);
    } catch {
      return;
    }
    onFrame(ws, frame);
  };
  ws.onclose = (event) => {
    if (rt.ws !== ws) return;
    rt.ws = null;
    rt.live = false;
    failPending();
    for (const ch of rt.channels.values()) ch.buffer = null;
    setStatus("offline");
    if (event.code === 4001) sessionRefused("The server refused this login: log in again.");
    else if (state.token) reconnectLater();
  };
}

/** The browser is back online: connect now rather than when the back-off says. */
export function reconnectNow() {
  if (state.token && !rt.ws) connect();
}

function reconnectLater() {
  clearTimeout(rt.timer);
  const delay = Math.min(30_000, 500 * 2 ** rt.attempt) * (0.5 + Math.random() / 2);
  rt.attempt = Math.min(rt.attempt + 1, 10);
  setStatus("offline", `offline, retrying in ${Math.ceil(delay / 1000)} s`);
  rt.timer = setTimeout(connect, delay);
}

export function disconnect() {
  clearTimeout(rt.timer);
  const ws = rt.ws;
  rt.ws = null;
  rt.live = false;
  failPending();
  if (ws) ws.close(1000, "bye");
  setStatus("offline");
}

function onFrame(ws, frame) {
  switch (frame.op) {
    case "welcome":
      rt.attempt = 0;
      rt.live = true;
      Promise.all([...rt.channels.keys()].map(subscribe)).then(() => {
        if (rt.ws === ws && rt.live) setStatus("live");
      });
      break;
    case "reply": {
      const waiting = rt.pending.get(frame.id);
      if (!waiting) break;
      rt.pending.delete(frame.id);
      clearTimeout(waiting.timer);
      waiting.resolve(frame);
      break;
    }
    case "event":
      onEvent(frame);
      break;
    case "close":
      if (AUTH_CLOSE_CODES.has(frame.code)) sessionRefused(`Logged out: ${frame.message || frame.code}`);
      else notice(`Disconnected (${frame.code}); catching up when back.`, "info");
      break;
    case "error":
      console.warn("herald:", frame.code, frame.message);
      break;
    default:
      break;
  }
}

/** Follows `channel`: `reload()` fetches its state over REST, `apply(event)` applies one event. */
export function watch(channel, reload, apply) {
  rt.channels.set(channel, { epoch: null, last: 0, fresh: true, buffer: null, gen: 0, reload, apply });
  return rt.live ? subscribe(channel) : Promise.resolve(false);
}

export function unwatch(channel) {
  if (rt.channels.delete(channel) && rt.live) request({ op: "unsubscribe", channel }).catch(() => {});
}

/** Forgets every channel (at logout, once disconnected). */
export function unwatchAll() {
  rt.channels.clear();
}

/** Subscribes (again) and reloads when the server cannot fill the gap; true when followed. */
async function subscribe(name) {
  const ch = rt.channels.get(name);
  if (!ch) return false;
  // A newer subscription (after a reconnect) takes over from this one wherever it waits.
  const gen = ++ch.gen;
  const current = () => rt.channels.get(name) === ch && ch.gen === gen;
  ch.buffer = [];
  const frame = { op: "subscribe", channel: name };
  if (ch.epoch) frame.epoch = ch.epoch;
  let answer;
  try {
    answer = await request(frame);
  } catch {
    return false; // the connection went away: the next welcome subscribes again
  }
  if (!current()) return false;
  if (!answer.ok) {
    ch.buffer = null;
    notice(`Cannot follow ${name}: ${problemText(answer.error, { status: "", statusText: "" })}`);
    return false;
  }
  if (ch.epoch !== answer.epoch) ch.last = 0;
  ch.epoch = answer.epoch;
  if (!answer.recovered || ch.fresh) {
    if (!answer.recovered) ch.last = answer.offset;
    try {
      await ch.reload();
    } catch (err) {
      notice(`Could not load ${name}: ${err.message}`);
    }
    if (!current()) return false;
  }
  ch.fresh = false;
  const waiting = ch.buffer || [];
  ch.buffer = null;
  for (const event of waiting) deliver(ch, event);
  return true;
}

function onEvent(event) {
  const ch = rt.channels.get(event.channel);
  if (!ch) return send({ op: "ack", channel: event.channel, offset: event.offset });
  if (ch.buffer) ch.buffer.push(event);
  else deliver(ch, event);
}

function deliver(ch, event) {
  if (event.offset > ch.last) {
    ch.last = event.offset;
    try {
      ch.apply(event);
    } catch (err) {
      console.error("herald: applying", event, err);
    }
    logEvent(event);
  }
  send({ op: "ack", channel: event.channel, offset: event.offset });
}

function logEvent(event) {
  const log = $("log");
  const time = new Date(event.ts || Date.now()).toLocaleTimeString();
  log.prepend(el("li", { "data-type": event.type }, `${time}  ${event.channel}  #${event.offset}  ${event.type}`));
  while (log.children.length > LOG_SIZE) log.lastChild.remove();
}
