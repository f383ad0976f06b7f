// Socket.io session churn for Herald's Rust tests and benches: opens `total` sessions, `concurrency` at a
// time, spread over the given tokens; each connects, subscribes to its user channel, waits for the answer
// and disconnects. Prints one JSON summary line on stdout:
//
//   {"opened":n,"answered":n,"unanswered":n,"connect_errors":n,"errors":[…first few…],"ms":n}
//
// Usage: node sio-churn.mjs '{"url":…,"users":[{"token":…,"id":…}],"total":n,"concurrency":n,
//                             "timeout_ms":n,"prefix":"…"}'
//
// Modules resolve from this folder's node_modules or from NODE_PATH (through require, which honours it).

import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { io } = require("socket.io-client");

const opts = JSON.parse(process.argv[2]);
const timeoutMs = opts.timeout_ms ?? 10_000;
const summary = { opened: 0, answered: 0, unanswered: 0, connect_errors: 0, errors: [] };

function note(error) {
  if (summary.errors.length < 5) summary.errors.push(String(error));
}

function once(n) {
  const user = opts.users[n % opts.users.length];
  return new Promise((resolve) => {
    const socket = io(opts.url, {
      auth: { token: user.token, session: `${opts.prefix ?? "churn"}-${n}` },
      transports: ["websocket"],
      reconnection: false,
      forceNew: true,
    });
    const done = () => {
      socket.disconnect();
      resolve();
    };
    socket.on("connect_error", (err) => {
      summary.connect_errors += 1;
      note(`connect_error: ${err.message}`);
      done();
    });
    socket.on("connect", () => {
      summary.opened += 1;
      socket.timeout(timeoutMs).emit("subscribe", { channel: `user:${user.id}` }, (err, answer) => {
        if (err) {
          summary.unanswered += 1;
          note(`no answer to subscribe within ${timeoutMs} ms`);
        } else if (answer && answer.ok) {
          summary.answered += 1;
        } else {
          summary.unanswered += 1;
          note(`subscribe refused: ${JSON.stringify(answer)}`);
        }
        done();
      });
    });
  });
}

const started = Date.now();
let next = 0;
async function worker() {
  while (next < opts.total) {
    const n = next;
    next += 1;
    await once(n);
  }
}
await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.total) }, worker));
summary.ms = Date.now() - started;
process.stdout.write(`${JSON.stringify(summary)}\n`);
process.exit(0);
