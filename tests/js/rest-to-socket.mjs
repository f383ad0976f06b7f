// REST write to socket, as users see it: `users` people register and log in, each opens a stock
// socket.io-client session and subscribes to `user:<id>`, acking every event; then a writer POSTs
// `/api/v1/tasks` at `rate` per second for `seconds` (at most `in_flight` requests at once), each
// task for a random person, its description carrying the time just before the request. Latency is
// from there to the person's client receiving `task.created`. The writer has a thread of its own.
// Prints one JSON line:
//
//   {"users":n,"rate":n,"written":n,"refused":n,"delivered":n,"lost":n,"seconds":s,
//    "delivered_per_s":n,"p50_ms":x,"p99_ms":x,"p999_ms":x,"max_ms":x,
//    "write_p50_ms":x,"write_p99_ms":x}
//
// (`write_*`: from the same stamp to the POST's answer, so the write's share of the latency.)
//
// Usage: node rest-to-socket.mjs '{"url":"http://127.0.0.1:8080","users":100,"rate":600,
//                                  "seconds":30,"in_flight":32}'
// The server must let one address register and log in that many people quickly
// (HERALD_AUTH_ACCOUNT_RATE=unlimited HERALD_AUTH_ADDRESS_RATE=unlimited).
//
// Modules resolve from this folder's node_modules or from NODE_PATH (through require, which honours it).

import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";

/** Wall-clock microseconds, comparable between the writer thread and the main one. */
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

const require = createRequire(import.meta.url);
const { io } = require("socket.io-client");


/** POSTs JSON to `base` + `path`; the status and the parsed answer. */
async function post(base, path, body, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${base}${path}`, { method: "POST", headers, body: JSON.stringify(body) });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** The writer thread: POSTs tasks at `rate` for `seconds`, at most `inFlight` at once. */
async function writer({ base, tokens, rate, seconds, inFlight }) {
  let written = 0;
  let refused = 0;
  let running = 0;
  const answered = [];
  const waiters = [];
  const slot = () => (running < inFlight ? Promise.resolve() : new Promise((resolve) => waiters.push(resolve)));
  async function write() {
    await slot();
    running += 1;
    const token = tokens[Math.floor(Math.random() * tokens.length)];
    try {
      const sent = nowUs();
      const answer = await post(base, "/api/v1/tasks", { title: "bench", description: String(sent) }, token);
      answered.push(nowUs() - sent);
      if (answer.status === 201) written += 1;
      else refused += 1;
    } catch {
      refused += 1;
    } finally {
      running -= 1;
      waiters.shift()?.();
    }
  }
  const started = performance.now();
  const pending = [];
  let owed = 0;
  for (let tick = 0; tick < seconds * 100; tick += 1) {
    const wait = started + tick * 10 - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    owed += rate / 100;
    for (; owed >= 1; owed -= 1) pending.push(write());
  }
  await Promise.all(pending);
  return { written, refused, answered };
}

if (!isMainThread) {
  parentPort.postMessage(await writer(workerData));
  process.exit(0);
}

const opts = JSON.parse(process.argv[2] ?? "{}");
const base = opts.url.replace(/\/$/, "");
const users = opts.users ?? 100;
const rate = opts.rate ?? 600;
const seconds = opts.seconds ?? 30;
const inFlight = opts.in_flight ?? 32;
const run = Math.random().toString(36).slice(2, 8);

async function person(n) {
  const email = `rest-${run}-${n}@bench.example`;
  const password = "bench-password";
  const registered = await post(base, "/api/v1/auth/register", { email, password, name: `Bench ${n}` });
  if (registered.status !== 201) throw new Error(`register: ${registered.status} ${JSON.stringify(registered.body)}`);
  const login = await post(base, "/api/v1/auth/login", { email, password });
  if (login.status !== 200) throw new Error(`login: ${login.status} ${JSON.stringify(login.body)}`);
  return { id: registered.body.id, token: login.body.access_token };
}

const latencies = [];
let delivered = 0;

function connect(p, n) {
  return new Promise((resolve, reject) => {
    const socket = io(base, { auth: { token: p.token, session: `rest-${run}-${n}` }, transports: ["websocket"], reconnection: false });
    socket.on("event", (e, ack) => {
      if (typeof ack === "function") ack();
      if (e?.type !== "task.created") return;
      const sent = Number(e.data?.description);
      if (Number.isFinite(sent)) latencies.push(nowUs() - sent);
      delivered += 1;
    });
    socket.once("connect_error", (err) => reject(err));
    socket.once("connect", async () => {
      const answer = await socket.timeout(10_000).emitWithAck("subscribe", { channel: `user:${p.id}` });
      if (answer?.ok) resolve(socket);
      else reject(new Error(`subscribe: ${JSON.stringify(answer)}`));
    });
  });
}

const people = [];
for (let n = 0; n < users; n += 8) {
  people.push(...(await Promise.all(Array.from({ length: Math.min(8, users - n) }, (_, i) => person(n + i)))));
}
const sockets = await Promise.all(people.map((p, n) => connect(p, n)));

// The writer runs in its own thread, so the sockets' event handling does not delay its requests
// (nor its requests the events' arrival times).
const started = performance.now();
const { written, refused, answered } = await new Promise((resolve, reject) => {
  const worker = new Worker(new URL(import.meta.url), {
    workerData: { base, tokens: people.map((p) => p.token), rate, seconds, inFlight },
  });
  worker.once("message", resolve);
  worker.once("error", reject);
});
const deadline = performance.now() + 30_000;
while (delivered < written && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
const elapsed = (performance.now() - started) / 1000;
for (const socket of sockets) socket.disconnect();

latencies.sort((a, b) => a - b);
answered.sort((a, b) => a - b);
const pctOf = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] / 1000 : null);
const pct = (p) => pctOf(latencies, p);
console.log(
  JSON.stringify({
    users,
    rate,
    written,
    refused,
    delivered,
    lost: Math.max(0, written - delivered),
    seconds: Math.round(elapsed * 10) / 10,
    delivered_per_s: Math.round(delivered / elapsed),
    p50_ms: pct(0.5),
    p99_ms: pct(0.99),
    p999_ms: pct(0.999),
    max_ms: pct(1),
    write_p50_ms: pctOf(answered, 0.5),
    write_p99_ms: pctOf(answered, 0.99),
  }),
);
process.exit(0);
