// The provider's health and real-time figures, read from this process's /metrics every 5 s.

import { el } from "./dom.js";
import { fmt } from "./format.js";
import { state } from "./state.js";

function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const pair of (m[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: m[1], labels, value: Number(m[4]) });
  }
  const sum = (name, match = {}) => samples
    .filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
  return { samples, sum };
}

async function metrics() {
  const response = await fetch("/metrics");
  if (!response.ok) throw new Error(`/metrics answered ${response.status}`);
  return parseMetrics(await response.text());
}

function figures(view, title, testid, compute) {
  const box = el("div", { class: "counts", "data-testid": testid });
  const note = el("p", { class: "chips" });
  view.append(el("section", {}, el("h2", {}, title), box, note));
  let previous = null;
  const tick = async () => {
    try {
      const now = { at: performance.now(), m: await metrics() };
      const items = compute(now.m, previous && { m: previous.m, secs: (now.at - previous.at) / 1000 });
      box.replaceChildren(...items.map(([label, value, id]) => el("div", { class: "count" },
        el("b", { "data-testid": id }, value), el("span", {}, label))));
      note.textContent = `This process's figures, refreshed every 5 s (last ${new Date().toLocaleTimeString()}).`;
      previous = now;
    } catch (err) {
      note.textContent = String(err);
    }
  };
  const timer = setInterval(tick, 5000);
  state.cleanup.push(() => clearInterval(timer));
  return tick();
}

const BREAKER = ["closed", "open", "half-open"];

export function providerView(view) {
  return figures(view, "Provider health", "provider", (m, before) => {
    const outcome = (o) => m.sum("herald_deliveries_total", { channel: "provider", outcome: o });
    const attempts = m.sum("herald_delivery_attempts_total", { channel: "provider" });
    const failed = outcome("retry") + outcome("failed");
    const breaker = m.samples.find((s) => s.name === "herald_delivery_breaker_state" && s.labels.channel === "provider");
    const limit = m.samples.find((s) => s.name === "herald_delivery_rate_limit" && s.labels.channel === "provider");
    const rate = before ? (attempts - before.m.sum("herald_delivery_attempts_total", { channel: "provider" })) / before.secs : null;
    return [
      ["breaker", breaker ? BREAKER[breaker.value] || String(breaker.value) : "no sender here", "provider-breaker"],
      ["error rate", attempts ? `${((failed / attempts) * 100).toFixed(1)}%` : "—", "provider-error-rate"],
      ["calls", fmt.n(attempts), "provider-calls"],
      ["calls/s", rate === null ? "—" : rate.toFixed(1), "provider-rate"],
      ["deferred (breaker)", fmt.n(outcome("deferred")), "provider-deferred"],
      ["rate limit", limit ? `${limit.value}/s` : "unlimited", "provider-rate-limit"],
      ["in flight allowed", fmt.n(m.sum("herald_sender_concurrency")), "provider-concurrency"],
    ];
  });
}

export function realtimeView(view) {
  return figures(view, "Real-time", "realtime", (m, before) => {
    const per = (name) => (before ? ((m.sum(name) - before.m.sum(name)) / before.secs).toFixed(1) : "—");
    return [
      ["open sessions", fmt.n(m.sum("herald_realtime_sessions")), "rt-sessions"],
      ["events/s", per("herald_realtime_events_sent_total"), "rt-events-rate"],
      ["events sent", fmt.n(m.sum("herald_realtime_events_sent_total")), "rt-events"],
      ["acks", fmt.n(m.sum("herald_realtime_acks_total")), "rt-acks"],
      ["slow-consumer disconnects", fmt.n(m.sum("herald_realtime_slow_disconnects_total")), "rt-slow"],
    ];
  });
}
