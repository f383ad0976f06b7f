// Chart drawing (uPlot, vendor/, loaded before the modules as a classic script).

import { el } from "./dom.js";

// The four charts of a mailing, redrawn from its timeline.
export function makeCharts(container) {
  const specs = [
    { id: "status", title: "Messages by status", series: [["sent", "#1e8e4e"], ["failed", "#c0392b"], ["expired", "#b7791f"], ["cancelled", "#6b7385"], ["pending", "#2f6fde"]] },
    { id: "rate", title: "Sends per second", series: [["sends/s", "#2f6fde"]] },
    { id: "retries", title: "Retries and failures", series: [["retried", "#b7791f"], ["failed", "#c0392b"]] },
    { id: "latency", title: "Provider latency (ms, upper bound)", series: [["p50", "#1e8e4e"], ["p95", "#b7791f"], ["p99", "#c0392b"]] },
  ];
  const boxes = specs.map((s) => {
    const target = el("div", { "data-testid": `chart-${s.id}` });
    container.append(el("div", { class: "card chart" }, el("h3", {}, s.title), target));
    return target;
  });
  let plots = [];
  // The box is as wide as its card (it hides what overflows), so a chart follows the layout.
  const width = (box) => Math.max(box.clientWidth || 300, 200);
  const resize = () => plots.forEach((p, i) => p.setSize({ width: width(boxes[i]), height: 200 }));
  const observer = new ResizeObserver(resize);
  boxes.forEach((box) => observer.observe(box));
  return {
    update(t) {
      const xs = t.buckets.map((b) => Date.parse(b.at) / 1000);
      let cum = { sent: 0, failed: 0, expired: 0, cancelled: 0, created: 0 };
      const byStatus = { sent: [], failed: [], expired: [], cancelled: [], pending: [] };
      for (const b of t.buckets) {
        for (const k of ["sent", "failed", "expired", "cancelled", "created"]) cum[k] += b[k];
        for (const k of ["sent", "failed", "expired", "cancelled"]) byStatus[k].push(cum[k]);
        byStatus.pending.push(cum.created - cum.sent - cum.failed - cum.expired - cum.cancelled);
      }
      const lat = (q) => t.buckets.map((b) => b.provider_latency_ms?.[q] ?? null);
      const data = [
        [xs, ...specs[0].series.map(([k]) => byStatus[k])],
        [xs, t.buckets.map((b) => b.sends_per_second)],
        [xs, t.buckets.map((b) => b.retried), t.buckets.map((b) => b.failed)],
        [xs, lat("p50"), lat("p95"), lat("p99")],
      ];
      if (plots.length === 0) {
        plots = specs.map((s, i) => new uPlot({
          width: width(boxes[i]), height: 200,
          series: [{}, ...s.series.map(([label, stroke]) => ({ label, stroke, width: 2, spanGaps: true }))],
          scales: { x: { time: true, auto: false } },
          axes: [{}, { size: 60 }],
        }, data[i], boxes[i]));
      } else {
        plots.forEach((p, i) => p.setData(data[i], false));
      }
      // A new mailing has a bucket or two: show at least two minutes around them.
      const [lo, hi] = xs.length ? [xs[0], xs[xs.length - 1]] : [Date.now() / 1000, Date.now() / 1000];
      const pad = Math.max(0, 120 - (hi - lo)) / 2;
      plots.forEach((p) => p.setScale("x", { min: lo - pad, max: hi + pad }));
    },
    destroy() {
      observer.disconnect();
      plots.forEach((p) => p.destroy());
      plots = [];
    },
  };
}
