// A Socket.io client for Herald's Rust tests (crates/herald-testkit/src/node.rs drives it).
//
// Reads one JSON command a line on stdin and writes one JSON object a line on stdout:
//
//   {"cmd":"connect","url":…,"token":…,"session":…}    -> {"kind":"connected"} | {"kind":"connect_error","data":…,"message":…}
//   {"cmd":"subscribe","channel":…,"since"?:n,"epoch"?:…} -> {"kind":"reply","to":"subscribe","body":<ack body>}
//   {"cmd":"unsubscribe","channel":…}                   -> {"kind":"reply","to":"unsubscribe","body":<ack body>}
//   {"cmd":"call","command":…,"input":…,"body_base64"?:…} -> {"kind":"reply","to":"call","body":<ack body>}
//        with body_base64 the call carries those bytes as the binary attachment `body`; bytes in
//        the answer (a download's `body`) are printed as `body_base64`
//   {"cmd":"upload","command":…,"input":…,"upload":id,"data_base64":…,"chunk"?:n}
//        -> {"kind":"reply","to":"upload","body":<call's ack body>,"chunks":[<chunk ack bodies>]}
//        calls with `upload: id`, then sends the bytes as `chunk {upload, seq, data, end}` events of
//        n bytes (64 KiB by default), each after the previous one's ack, stopping at a refusal
//   {"cmd":"set_auto_ack","value":bool}                 -> {"kind":"ok","to":"set_auto_ack"}  (off at start)
//   {"cmd":"ack","channel":…,"offset":n}                -> {"kind":"acked","channel":…,"offset":n,"count":k}
//        calls the kept ack callbacks of that channel's events up to offset n (k of them);
//        with "plain":true it emits the plain event `ack {channel, offset}` instead
//   {"cmd":"disconnect"}                                -> {"kind":"disconnected","reason":…,"to":"disconnect"}
//   {"cmd":"exit"}                                      ends the driver
//
// Unasked lines: every server `event` as {"kind":"event","event":<e>} (acknowledged at once when auto-ack
// is on, else its callback is kept for `ack`), the server's `close` event as {"kind":"close","data":…},
// and a disconnect the client did not ask for as {"kind":"disconnected","reason":…}.
// A command that cannot run answers {"kind":"error","to":<cmd>,"message":…}; an ack that does not
// come within `timeout_ms` (10 s by default) answers {"kind":"reply","to":…,"error":"timeout"}.
//
// Modules resolve from this folder's node_modules or from NODE_PATH (through require, which honours it).

import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const require = createRequire(import.meta.url);
const { io } = require("socket.io-client");

const DEFAULT_TIMEOUT_MS = 10_000;

let socket = null;
let autoAck = false;
let clientDisconnect = false;
/** channel -> [{offset, ack}] of events whose ack callback has not been called yet */
let kept = new Map();

function print(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function keep(e, ack) {
  const channel = e && typeof e === "object" ? e.channel : undefined;
  if (!kept.has(channel)) kept.set(channel, []);
  kept.get(channel).push({ offset: e?.offset, ack });
}

function connect(cmd) {
  // A replaced socket goes quietly: its disconnect is no news to the test.
  const old = socket;
  socket = null;
  old?.disconnect();
  kept = new Map();
  const s = io(cmd.url, {
    auth: { token: cmd.token, session: cmd.session },
    transports: ["websocket"],
    reconnection: false,
    forceNew: true,
    timeout: cmd.timeout_ms ?? DEFAULT_TIMEOUT_MS,
  });
  socket = s;
  s.on("event", (e, ack) => {
    print({ kind: "event", event: e });
    if (typeof ack !== "function") return;
    if (autoAck) ack();
    else keep(e, ack);
  });
  s.on("close", (data) => print({ kind: "close", data: data ?? null }));
  s.on("disconnect", (reason) => {
    if (s !== socket) return;
    print(clientDisconnect ? { kind: "disconnected", reason, to: "disconnect" } : { kind: "disconnected", reason });
  });
  return new Promise((resolve) => {
    s.once("connect", () => {
      s.off("connect_error");
      print({ kind: "connected" });
      resolve();
    });
    s.once("connect_error", (err) => {
      s.off("connect");
      print({ kind: "connect_error", data: err?.data ?? null, message: String(err?.message ?? err) });
      resolve();
    });
  });
}

/** An ack body with its binary `body` (a Buffer or ArrayBuffer) as `body_base64`. */
function printable(body) {
  if (body && typeof body === "object" && (Buffer.isBuffer(body.body) || body.body instanceof ArrayBuffer)) {
    const { body: bytes, ...rest } = body;
    return { ...rest, body_base64: Buffer.from(bytes).toString("base64") };
  }
  return body ?? null;
}

async function upload(cmd) {
  const timeout = cmd.timeout_ms ?? DEFAULT_TIMEOUT_MS;
  const call = socket
    .timeout(timeout)
    .emitWithAck("call", { command: cmd.command, input: cmd.input ?? {}, upload: cmd.upload })
    .then((body) => ({ body }), (err) => ({ error: String(err?.message ?? err) }));
  const data = Buffer.from(cmd.data_base64 ?? "", "base64");
  const size = cmd.chunk ?? 65536;
  const chunks = [];
  for (let seq = 0, at = 0; ; seq += 1, at += size) {
    const end = at + size >= data.length;
    let ack;
    try {
      ack = await socket.timeout(timeout).emitWithAck("chunk", { upload: cmd.upload, seq, data: data.subarray(at, at + size), end });
    } catch (err) {
      ack = { error: String(err?.message ?? err) };
    }
    chunks.push(ack ?? null);
    if (!ack?.ok || end) break;
  }
  const answer = await call;
  print({ kind: "reply", to: "upload", body: printable(answer.body), error: answer.error, chunks });
}

async function request(to, event, payload, timeoutMs) {
  try {
    const body = await socket.timeout(timeoutMs ?? DEFAULT_TIMEOUT_MS).emitWithAck(event, payload);
    print({ kind: "reply", to, body: printable(body) });
  } catch (err) {
    print({ kind: "reply", to, error: String(err?.message ?? err) === "operation has timed out" ? "timeout" : String(err) });
  }
}

function ack(cmd) {
  if (cmd.plain) {
    socket.emit("ack", { channel: cmd.channel, offset: cmd.offset });
    print({ kind: "acked", channel: cmd.channel, offset: cmd.offset, count: 0, plain: true });
    return;
  }
  const waiting = kept.get(cmd.channel) ?? [];
  const due = waiting.filter((k) => typeof k.offset === "number" && k.offset <= cmd.offset);
  kept.set(
    cmd.channel,
    waiting.filter((k) => !due.includes(k)),
  );
  for (const k of due) k.ack();
  print({ kind: "acked", channel: cmd.channel, offset: cmd.offset, count: due.length });
}

function disconnect() {
  if (!socket || !socket.connected) {
    print({ kind: "disconnected", reason: "not connected", to: "disconnect" });
    return;
  }
  clientDisconnect = true;
  socket.disconnect();
  clientDisconnect = false;
}

function needSocket(cmd) {
  if (socket && socket.connected) return true;
  print({ kind: "error", to: cmd.cmd, message: "not connected" });
  return false;
}

async function run(cmd) {
  switch (cmd.cmd) {
    case "connect":
      return connect(cmd);
    case "subscribe": {
      if (!needSocket(cmd)) return;
      const payload = { channel: cmd.channel };
      if (cmd.since !== undefined && cmd.since !== null) payload.since = cmd.since;
      if (cmd.epoch !== undefined && cmd.epoch !== null) payload.epoch = cmd.epoch;
      return request("subscribe", "subscribe", payload, cmd.timeout_ms);
    }
    case "unsubscribe":
      if (!needSocket(cmd)) return;
      return request("unsubscribe", "unsubscribe", { channel: cmd.channel }, cmd.timeout_ms);
    case "call": {
      if (!needSocket(cmd)) return;
      const payload = { command: cmd.command, input: cmd.input ?? {} };
      if (typeof cmd.body_base64 === "string") payload.body = Buffer.from(cmd.body_base64, "base64");
      return request("call", "call", payload, cmd.timeout_ms);
    }
    case "upload":
      if (!needSocket(cmd)) return;
      return upload(cmd);
    case "set_auto_ack":
      autoAck = Boolean(cmd.value);
      print({ kind: "ok", to: "set_auto_ack" });
      return;
    case "ack":
      if (!needSocket(cmd)) return;
      return ack(cmd);
    case "disconnect":
      return disconnect();
    case "exit":
      return exit(0);
    default:
      print({ kind: "error", to: cmd.cmd ?? null, message: `unknown command ${JSON.stringify(cmd.cmd)}` });
  }
}

function exit(code) {
  if (socket) {
    clientDisconnect = true;
    socket.disconnect();
  }
  process.exit(code);
}

const input = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of input) {
  if (!line.trim()) continue;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    print({ kind: "error", to: null, message: `not JSON: ${err.message}` });
    continue;
  }
  try {
    await run(cmd);
  } catch (err) {
    print({ kind: "error", to: cmd?.cmd ?? null, message: String(err?.stack ?? err) });
  }
}
exit(0);
