// Herald's admin console: clients, mailings with live progress and charts, provider health,
// real-time figures and notices, over Herald's own REST API, its /ws real-time protocol (a
// mailing's `mailing:<id>` stream) and /metrics. Plain JavaScript, no framework, no build step;
// charts are uPlot (vendor/, MIT), served from the binary like everything here.
"use strict";

(() => {
  const API = "/api/v1";
  const REQUEST_TIMEOUT_MS = 30_000;
  const $ = (id) => document.getElementById(id);

  const state = {
    token: sessionStorage.getItem("herald.admin.token"),
    me: null,
    // What the current view holds open (a live stream, a timer); closed when the view changes.
    cleanup: [],
  };

  // ---------- helpers ----------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "value") node.value = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  let noticeTimer = null;
  function notice(text, kind = "error") {
    const node = $("notice");
    node.textContent = text;
    node.dataset.kind = kind;
    node.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { node.hidden = true; }, 8000);
  }

  class ApiError extends Error {
    constructor(status, problem) {
      super(problem?.detail || problem?.title || `HTTP ${status}`);
      this.status = status;
      this.problem = problem || {};
    }
  }

  async function api(method, path, body) {
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
      if (response.status === 401) signOut();
      throw new ApiError(response.status, data);
    }
    return data;
  }

  function problemText(err) {
    const p = err.problem || {};
    const fields = (p.errors || []).map((e) => `${e.field}: ${e.message}`).join("; ");
    return [err.message, fields].filter(Boolean).join(" — ");
  }

  const fmt = {
    time: (t) => (t ? new Date(t).toLocaleString() : "—"),
    n: (n) => (n === undefined || n === null ? "—" : Number(n).toLocaleString()),
  };

  // A datetime-local input's value as an RFC 3339 instant, and back.
  const toInstant = (local) => new Date(local).toISOString();
  const toLocal = (date) => {
    const d = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
    return d.toISOString().slice(0, 16);
  };
  const list = (text) => text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);

  function closeView() {
    for (const close of state.cleanup.splice(0)) close();
  }

  // ---------- sign-in ----------

  function signOut() {
    state.token = null;
    state.me = null;
    sessionStorage.removeItem("herald.admin.token");
    closeView();
    showSignin();
  }

  function showSignin() {
    $("signin").hidden = false;
    $("refused").hidden = true;
    $("nav").hidden = true;
    $("whoami").hidden = true;
    $("view").replaceChildren();
    api("GET", "auth/oidc").then((sso) => { $("sso").hidden = !sso?.enabled; }, () => {});
  }

  // A sign-in through the provider is started here with a one-time value the page keeps: the
  // token it comes back with is taken only with that value, so a link carrying someone else's
  // token cannot sign this browser in.
  function startSso(event) {
    event.preventDefault();
    const once = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
    sessionStorage.setItem("herald.admin.sso", once);
    location.assign(`/api/v1/auth/oidc/start?to=${encodeURIComponent(`/admin/?sso=${once}`)}`);
  }

  async function signIn(event) {
    event.preventDefault();
    $("signin-error").textContent = "";
    try {
      const answer = await api("POST", "auth/login", {
        email: $("signin-email").value, password: $("signin-password").value,
      });
      state.token = answer.access_token;
      sessionStorage.setItem("herald.admin.token", state.token);
      await start();
    } catch (err) {
      $("signin-error").textContent = err instanceof ApiError ? problemText(err) : String(err);
    }
  }

  async function start() {
    try {
      state.me = await api("GET", "me");
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) notice(String(err));
      return;
    }
    $("signin").hidden = true;
    $("whoami").hidden = false;
    $("me").textContent = `${state.me.email} (${state.me.role})`;
    if (state.me.role !== "admin") {
      $("refused").hidden = false;
      $("refused-who").textContent = state.me.email;
      $("view").replaceChildren();
      return;
    }
    $("refused").hidden = true;
    $("nav").hidden = false;
    route();
  }

  // ---------- routing ----------

  function route() {
    if (!state.me || state.me.role !== "admin") return;
    closeView();
    const hash = location.hash.replace(/^#\/?/, "");
    const [page, id] = hash.split("/");
    for (const a of document.querySelectorAll("nav a")) {
      a.classList.toggle("current", a.getAttribute("href") === `#/${page || "mailings"}`);
    }
    const view = $("view");
    view.replaceChildren();
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
    const render = {
      mailings: () => (id && uuid.test(id) ? mailingView(view, id) : mailingsView(view)),
      clients: () => clientsView(view),
      provider: () => providerView(view),
      realtime: () => realtimeView(view),
      notifications: () => notificationsView(view),
    }[page || "mailings"];
    (render || (() => mailingsView(view)))().catch((err) => notice(err instanceof ApiError ? problemText(err) : String(err)));
  }

  // ---------- mailings ----------

  function statusBadge(status) {
    return el("span", { class: "status", "data-status": status, "data-testid": "mailing-status" }, status);
  }

  async function mailingsView(view) {
    const table = el("tbody");
    const load = async () => {
      const page = await api("GET", "mailings/stats?limit=200");
      table.replaceChildren(...page.items.reverse().map(({ mailing: m, messages: c }) => el("tr", {
        class: "link", "data-testid": "mailing-row", "data-id": m.id, onclick: () => { location.hash = `#/mailings/${m.id}`; },
      },
      el("td", { class: "text" }, m.text), el("td", {}, statusBadge(m.status)), el("td", {}, fmt.time(m.start_at)),
      el("td", {}, fmt.time(m.end_at)), el("td", {}, fmt.n(c.total)), el("td", {}, fmt.n(c.sent)),
      el("td", {}, fmt.n(c.failed)), el("td", {}, fmt.n(c.pending + c.sending)),
      el("td", {}, ["scheduled", "running"].includes(m.status)
        ? el("button", { class: "danger", "data-testid": "mailing-cancel", onclick: async (e) => {
          e.stopPropagation();
          if (!confirm("Cancel this mailing? What is pending will not be sent.")) return;
          await api("DELETE", `mailings/${m.id}`).catch((err) => notice(problemText(err)));
          load();
        } }, "Cancel") : ""))));
    };
    const now = new Date();
    const form = el("form", { "data-testid": "mailing-form", onsubmit: async (e) => {
      e.preventDefault();
      const f = e.target.elements;
      const body = { text: f.text.value, start_at: toInstant(f.start.value), end_at: toInstant(f.end.value) };
      const filter = {};
      if (list(f.codes.value).length) filter.operator_codes = list(f.codes.value);
      if (list(f.tags.value).length) filter.tags = list(f.tags.value);
      if (Object.keys(filter).length) body.filter = filter;
      if (f.from.value && f.to.value) body.window = { from: f.from.value, to: f.to.value };
      try {
        const m = await api("POST", "mailings", body);
        location.hash = `#/mailings/${m.id}`;
      } catch (err) {
        notice(problemText(err));
      }
    } },
    el("h3", {}, "New mailing"),
    el("label", {}, "Text", el("textarea", { name: "text", rows: 2, required: true, maxlength: 1000, "data-testid": "mailing-text" })),
    el("div", { class: "row" },
      el("label", {}, "Start", el("input", { name: "start", type: "datetime-local", required: true, value: toLocal(now) })),
      el("label", {}, "End", el("input", { name: "end", type: "datetime-local", required: true, value: toLocal(new Date(now.getTime() + 86_400_000)) }))),
    el("div", { class: "row" },
      el("label", {}, "Operator codes", el("input", { name: "codes", placeholder: "916, 903 (all when empty)", "data-testid": "mailing-codes" })),
      el("label", {}, "Tags", el("input", { name: "tags", placeholder: "vip, new (all when empty)", "data-testid": "mailing-tags" }))),
    el("div", { class: "row" },
      el("label", {}, "Send from (client's local time)", el("input", { name: "from", type: "time" })),
      el("label", {}, "Send until", el("input", { name: "to", type: "time" })),
      el("button", { type: "submit", "data-testid": "mailing-create" }, "Create")));
    view.append(
      el("section", {}, el("h2", {}, "Mailings"), el("div", { class: "table" }, el("table", { "data-testid": "mailings" },
        el("thead", {}, el("tr", {}, ...["Text", "Status", "Start", "End", "Messages", "Sent", "Failed", "Pending", ""].map((h) => el("th", {}, h)))),
        table))),
      el("section", {}, form));
    await load();
  }

  const COUNTS = ["total", "pending", "sent", "failed", "expired", "cancelled"];

  async function mailingView(view, id) {
    const stats = await api("GET", `mailings/${id}/stats`);
    const m = stats.mailing;
    const counts = Object.fromEntries(COUNTS.map((k) => [k, el("b", { "data-testid": `count-${k}` }, "—")]));
    const progress = el("progress", { max: 1, value: 0, "data-testid": "mailing-progress" });
    const liveState = el("span", { class: "live", "data-testid": "live-state" }, "connecting…");
    const rate = el("span", { "data-testid": "send-rate" }, "—");
    const status = el("span", {}, statusBadge(m.status));
    const show = (c, s) => {
      for (const k of COUNTS) counts[k].textContent = fmt.n(c[k]);
      progress.max = Math.max(c.total, 1);
      progress.value = c.total - c.pending;
      if (s) status.replaceChildren(statusBadge(s));
    };
    const c = stats.messages;
    show({ ...c, pending: c.pending + c.sending }, m.status);
    const charts = el("div", { class: "charts" });
    view.append(el("section", {},
      el("h2", {}, m.text),
      el("p", { class: "chips" }, status, " ", fmt.time(m.start_at), " → ", fmt.time(m.end_at), " · ",
        m.filter.operator_codes ? `codes ${m.filter.operator_codes.join(", ")}` : "every code", " · ",
        m.filter.tags ? `tags ${m.filter.tags.join(", ")}` : "every tag",
        m.window ? ` · ${m.window.from}–${m.window.to} local` : "", " · ", liveState),
      el("div", { class: "counts" }, ...COUNTS.map((k) => el("div", { class: "count" }, counts[k], el("span", {}, k)))),
      progress, el("p", { class: "chips" }, "Sends per second now: ", rate)),
    el("section", {}, charts));

    const plots = makeCharts(charts);
    let refreshing = null;
    // About 500 points at most: a bucket wide enough for the mailing's whole span so far.
    const span = (Math.min(Date.now(), Date.parse(m.end_at)) - Date.parse(m.created_at)) / 1000;
    const bucket = ["10s", "30s", "1m", "5m", "15m", "1h", "6h", "1d"]
      .find((b) => span / ({ s: 1, m: 60, h: 3600, d: 86400 }[b.slice(-1)] * parseInt(b, 10)) <= 500) || "1d";
    const refresh = async () => {
      try {
        plots.update(await api("GET", `mailings/${id}/timeline?bucket=${bucket}`));
      } catch (err) {
        // The charts wait for the next snapshot; the counts keep moving.
        notice(`The charts could not be drawn: ${err instanceof ApiError ? problemText(err) : err}`);
      }
    };
    const scheduleRefresh = () => {
      // A snapshot comes at most once a second; the charts follow at most every two.
      if (refreshing) return;
      refreshing = setTimeout(() => { refreshing = null; refresh().catch(() => {}); }, 2000);
    };
    await refresh();
    const stream = liveStream(`mailing:${id}`, (event) => {
      const p = event.data;
      show(p.messages, p.status);
      if (p.sends_per_second !== undefined) rate.textContent = p.sends_per_second.toFixed(1);
      scheduleRefresh();
    }, (s) => { liveState.textContent = s; liveState.dataset.state = s; });
    state.cleanup.push(() => { stream.close(); clearTimeout(refreshing); plots.destroy(); });
  }

  // The four charts of a mailing, redrawn from its timeline.
  function makeCharts(container) {
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

  // One stream followed over /ws: hello, subscribe, every event handed to `onEvent` and
  // acknowledged; reconnects with back-off until closed.
  function liveStream(channel, onEvent, onState) {
    let socket = null;
    let closed = false;
    let delay = 500;
    let timer = null;
    const session = `console-${crypto.getRandomValues(new Uint32Array(2)).join("")}`;
    const connect = () => {
      onState("connecting");
      socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
      socket.onopen = () => socket.send(JSON.stringify({ op: "hello", token: state.token, session }));
      socket.onmessage = (message) => {
        const frame = JSON.parse(message.data);
        if (frame.op === "welcome") {
          socket.send(JSON.stringify({ op: "subscribe", id: 1, channel }));
        } else if (frame.op === "reply" || frame.id === 1) {
          if (frame.ok === false) onState(`refused: ${frame.error?.code || "error"}`);
          else { onState("live"); delay = 500; }
        } else if (frame.op === "event" && frame.channel === channel) {
          onEvent(frame);
          socket.send(JSON.stringify({ op: "ack", channel, offset: frame.offset }));
        }
      };
      socket.onclose = () => {
        if (closed) return;
        onState("reconnecting");
        timer = setTimeout(connect, delay);
        delay = Math.min(delay * 2, 15_000);
      };
    };
    connect();
    return { close() { closed = true; clearTimeout(timer); socket?.close(); } };
  }

  // ---------- clients ----------

  async function clientsView(view) {
    const rows = el("tbody");
    const more = el("button", { class: "quiet", hidden: true, "data-testid": "clients-more" }, "More");
    let query = "";
    let cursor = null;
    const row = (c) => {
      const tr = el("tr", { "data-testid": "client-row", "data-phone": c.phone });
      const plain = () => tr.replaceChildren(
        el("td", {}, c.phone), el("td", {}, c.operator_code), el("td", {}, c.tag || "—"), el("td", {}, c.timezone),
        el("td", {}, el("button", { class: "quiet", "data-testid": "client-edit", onclick: editing }, "Edit"), " ",
          el("button", { class: "danger", "data-testid": "client-delete", onclick: remove }, "Delete")));
      const editing = () => {
        const input = (name, value) => el("input", { name, value, "data-testid": `edit-${name}` });
        const fields = { phone: input("phone", c.phone), operator_code: input("operator_code", c.operator_code), tag: input("tag", c.tag), timezone: input("timezone", c.timezone) };
        tr.replaceChildren(...Object.values(fields).map((f) => el("td", {}, f)), el("td", {},
          el("button", { "data-testid": "client-save", onclick: async () => {
            const change = {};
            for (const [k, f] of Object.entries(fields)) if (f.value !== (c[k] ?? "")) change[k] = f.value;
            try {
              c = await api("PATCH", `clients/${c.id}`, change);
              plain();
            } catch (err) { notice(problemText(err)); }
          } }, "Save"), " ", el("button", { class: "quiet", onclick: plain }, "Cancel")));
      };
      const remove = async () => {
        if (!confirm(`Delete ${c.phone}? Its pending messages are cancelled.`)) return;
        try { await api("DELETE", `clients/${c.id}`); tr.remove(); } catch (err) { notice(problemText(err)); }
      };
      plain();
      return tr;
    };
    const load = async (append) => {
      const page = await api("GET", `clients?limit=50${query}${append && cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      if (!append) rows.replaceChildren();
      rows.append(...page.items.map(row));
      cursor = page.next_cursor || null;
      more.hidden = !cursor;
    };
    more.addEventListener("click", () => load(true).catch((err) => notice(problemText(err))));
    const search = el("form", { class: "row", "data-testid": "clients-search", onsubmit: (e) => {
      e.preventDefault();
      const f = e.target.elements;
      const q = new URLSearchParams();
      if (f.phone.value) q.set("phone", f.phone.value);
      if (f.code.value) q.set("operator_code", f.code.value);
      if (f.tag.value) q.set("tag", f.tag.value);
      query = q.toString() ? `&${q}` : "";
      load(false).catch((err) => notice(problemText(err)));
    } },
    el("label", {}, "Phone starts with", el("input", { name: "phone", inputmode: "numeric", "data-testid": "search-phone" })),
    el("label", {}, "Operator code", el("input", { name: "code", "data-testid": "search-code" })),
    el("label", {}, "Tag", el("input", { name: "tag", "data-testid": "search-tag" })),
    el("button", { type: "submit", "data-testid": "search-submit" }, "Search"));
    const create = el("form", { class: "row", "data-testid": "client-form", onsubmit: async (e) => {
      e.preventDefault();
      const f = e.target.elements;
      const body = { phone: f.phone.value };
      if (f.code.value) body.operator_code = f.code.value;
      if (f.tag.value) body.tag = f.tag.value;
      if (f.zone.value) body.timezone = f.zone.value;
      try {
        const c = await api("POST", "clients", body);
        rows.prepend(row(c));
        e.target.reset();
      } catch (err) { notice(problemText(err)); }
    } },
    el("label", {}, "Phone", el("input", { name: "phone", required: true, placeholder: "79161234567", "data-testid": "client-phone" })),
    el("label", {}, "Operator code", el("input", { name: "code", placeholder: "from the phone" })),
    el("label", {}, "Tag", el("input", { name: "tag" })),
    el("label", {}, "Time zone", el("input", { name: "zone", placeholder: "UTC" })),
    el("button", { type: "submit", "data-testid": "client-create" }, "Add"));
    view.append(
      el("section", {}, el("h2", {}, "Clients"), search, el("div", { class: "table" }, el("table", { "data-testid": "clients" },
        el("thead", {}, el("tr", {}, ...["Phone", "Code", "Tag", "Time zone", ""].map((h) => el("th", {}, h)))), rows)), more),
      el("section", {}, el("h3", {}, "Add a client"), create),
      importPanel(() => load(false)));
    await load(false);
  }

  // CSV with a header (phone, operator_code, tag, timezone in any order) as NDJSON, line for line.
  function csvToNdjson(text) {
    const lines = text.replace(/\r/g, "").split("\n");
    const cells = (line) => {
      const out = [];
      let cur = "";
      let quoted = false;
      for (let i = 0; i < line.length; i++) {
        const ch = line[i];
        if (quoted) {
          if (ch === '"' && line[i + 1] === '"') { cur += '"'; i++; } else if (ch === '"') quoted = false; else cur += ch;
        } else if (ch === '"') quoted = true;
        else if (ch === ",") { out.push(cur); cur = ""; } else cur += ch;
      }
      out.push(cur);
      return out.map((c) => c.trim());
    };
    const header = cells(lines.shift() || "");
    return lines.map((line) => {
      if (!line.trim()) return "";
      const values = cells(line);
      const obj = {};
      header.forEach((name, i) => { if (values[i]) obj[name] = values[i]; });
      return JSON.stringify(obj);
    }).join("\n");
  }

  function importPanel(reload) {
    const bar = el("progress", { max: 1, value: 0, "data-testid": "import-progress", hidden: true });
    const summary = el("p", { "data-testid": "import-summary" });
    const errors = el("tbody");
    const table = el("table", { "data-testid": "import-errors", hidden: true },
      el("thead", {}, el("tr", {}, el("th", {}, "Line"), el("th", {}, "Why it was refused"))), errors);
    const file = el("input", { type: "file", accept: ".ndjson,.jsonl,.json,.csv,.txt", "data-testid": "import-file" });
    const go = el("button", { "data-testid": "import-submit", onclick: async () => {
      const f = file.files[0];
      if (!f) return notice("Choose an NDJSON or CSV file first.");
      const csv = /\.csv$/i.test(f.name);
      const body = csv ? csvToNdjson(await f.text()) : f;
      bar.hidden = false;
      bar.value = 0;
      summary.textContent = "Uploading…";
      errors.replaceChildren();
      table.hidden = true;
      go.disabled = true;
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `${API}/clients/bulk`);
      xhr.setRequestHeader("authorization", `Bearer ${state.token}`);
      xhr.setRequestHeader("content-type", "application/x-ndjson");
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) { bar.max = e.total; bar.value = e.loaded; } };
      xhr.onloadend = () => {
        go.disabled = false;
        let answer = null;
        try { answer = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        if (xhr.status !== 200 || !answer) {
          summary.textContent = `Import failed: ${answer?.detail || answer?.title || xhr.status || "no answer"}`;
          return;
        }
        bar.max = 1;
        bar.value = 1;
        summary.textContent = `${answer.created} created, ${answer.failed} refused${answer.errors_truncated ? " (the first 1,000 listed)" : ""}.`;
        errors.replaceChildren(...answer.errors.map((e) => el("tr", { "data-testid": "import-error" },
          el("td", {}, String(csv ? e.line + 1 : e.line)), el("td", { class: "text" }, e.message))));
        table.hidden = answer.errors.length === 0;
        reload().catch(() => {});
      };
      xhr.send(body);
    } }, "Import");
    return el("section", {}, el("h3", {}, "Import clients"),
      el("p", { class: "chips" }, "NDJSON (one {\"phone\": …} per line) or CSV with a header row: phone, operator_code, tag, timezone."),
      el("div", { class: "row" }, file, go), bar, summary, el("div", { class: "table" }, table));
  }

  // ---------- provider and real-time: from /metrics ----------

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

  function providerView(view) {
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

  function realtimeView(view) {
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

  // ---------- notifications ----------

  async function notificationsView(view) {
    const page = await api("GET", "notifications?limit=50");
    const rows = page.items.map((n) => el("tr", { "data-testid": "notice-row" },
      el("td", {}, fmt.time(n.created_at)), el("td", {}, n.type), el("td", { class: "text" }, n.title),
      el("td", {}, statusBadge(n.status)),
      el("td", { class: "text" }, (n.steps || []).map((s) => `${s.channel} ${s.status}`).join(" → "))));
    view.append(el("section", {}, el("h2", {}, "Recent notices"),
      rows.length ? el("div", { class: "table" }, el("table", {},
        el("thead", {}, el("tr", {}, ...["Made", "Type", "Title", "Status", "Steps"].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...rows))) : el("p", {}, "No notices yet.")));
  }

  // ---------- start ----------

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("logout").addEventListener("click", signOut);
    window.addEventListener("hashchange", route);
    $("sso-link").addEventListener("click", startSso);
    // A single sign-on ends here with the token in the fragment, which no server sees; it is
    // taken only when this tab started that sign-in.
    const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
    if (fragment.get("access_token")) {
      const once = sessionStorage.getItem("herald.admin.sso");
      sessionStorage.removeItem("herald.admin.sso");
      if (once && new URLSearchParams(location.search).get("sso") === once) {
        state.token = fragment.get("access_token");
        sessionStorage.setItem("herald.admin.token", state.token);
      } else {
        notice("A sign-in this page did not start was ignored.");
      }
      history.replaceState(null, "", "/admin/#/mailings");
    }
    if (state.token) start(); else showSignin();
  });
})();
