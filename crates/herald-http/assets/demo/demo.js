// Herald's live demo: a person's tasks and chat rooms, changed over REST and kept live over the
// plain WebSocket protocol of docs/realtime.md. Plain JavaScript: no framework, no build step.
//
// Real-time rules followed here: the session id lives in sessionStorage (one per tab); every event
// is acknowledged once applied; after a reconnect (with back-off) each channel is subscribed again
// and the server replays what this session has not acknowledged; when it answers
// `recovered: false` the state is reloaded over REST. Events met during a reload wait for it, and
// applying one twice changes nothing (task versions, message ids, offsets).
"use strict";

(() => {
  const API = "/api/v1";
  const AUTH_CLOSE_CODES = new Set(["invalid_token", "token_expired", "unauthorized"]);
  const REQUEST_TIMEOUT_MS = 15_000;
  const LOG_SIZE = 30;

  const $ = (id) => document.getElementById(id);

  const state = {
    token: sessionStorage.getItem("herald.token"),
    me: null,
    tasks: new Map(),
    deletedTasks: new Set(),
    rooms: new Map(),
    room: null,
    messages: new Map(),
    inbox: new Map(),
  };

  // ---------- small helpers ----------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "checked") node.checked = Boolean(value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    node.append(...children);
    return node;
  }

  function sessionId() {
    let id = sessionStorage.getItem("herald.session");
    if (!id) {
      const bytes = crypto.getRandomValues(new Uint8Array(8));
      id = `tab-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
      sessionStorage.setItem("herald.session", id);
    }
    return id;
  }

  let noticeTimer = null;
  function notice(text, kind = "error") {
    const node = $("notice");
    node.textContent = text;
    node.dataset.kind = kind;
    node.className = kind === "error" ? "error" : "hint";
    clearTimeout(noticeTimer);
    if (text && kind === "error") console.warn("herald:", text);
    if (text) noticeTimer = setTimeout(() => (node.textContent = ""), 8000);
  }

  const shortId = (id) => String(id ?? "?").slice(-8);
  const byId = (a, b) => (String(a.id) < String(b.id) ? -1 : String(a.id) > String(b.id) ? 1 : 0);

  // ---------- REST ----------

  function problemText(body, res) {
    if (body && Array.isArray(body.errors) && body.errors.length) {
      return body.errors.map((e) => `${e.field}: ${e.message}`).join("; ");
    }
    return (body && (body.detail || body.title)) || `${res.status} ${res.statusText}`;
  }

  async function api(method, path, body, headers = {}) {
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
      if (res.status === 401 && state.token) logout("Your session has ended: log in again.");
      throw err;
    }
    return data;
  }

  /** Every item of a paged list (`{items, next_cursor}`). */
  async function listAll(path) {
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

  // ---------- real time: /ws ----------

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

  function connect() {
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
      if (event.code === 4001) logout("The server refused this login: log in again.");
      else if (state.token) reconnectLater();
    };
  }

  function reconnectLater() {
    clearTimeout(rt.timer);
    const delay = Math.min(30_000, 500 * 2 ** rt.attempt) * (0.5 + Math.random() / 2);
    rt.attempt = Math.min(rt.attempt + 1, 10);
    setStatus("offline", `offline, retrying in ${Math.ceil(delay / 1000)} s`);
    rt.timer = setTimeout(connect, delay);
  }

  function disconnect() {
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
        if (AUTH_CLOSE_CODES.has(frame.code)) logout(`Logged out: ${frame.message || frame.code}`);
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
  function watch(channel, reload, apply) {
    rt.channels.set(channel, { epoch: null, last: 0, fresh: true, buffer: null, gen: 0, reload, apply });
    return rt.live ? subscribe(channel) : Promise.resolve(false);
  }

  function unwatch(channel) {
    if (rt.channels.delete(channel) && rt.live) request({ op: "unsubscribe", channel }).catch(() => {});
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

  // ---------- tasks ----------

  async function reloadTasks() {
    const items = await listAll("/tasks");
    state.tasks = new Map(items.filter((t) => !state.deletedTasks.has(t.id)).map((t) => [t.id, t]));
    renderTasks();
  }

  function upsertTask(task) {
    if (!task || !task.id || state.deletedTasks.has(task.id)) return;
    const current = state.tasks.get(task.id);
    if (!current || (task.version ?? 0) >= (current.version ?? 0)) state.tasks.set(task.id, task);
    renderTasks();
  }

  function removeTask(id) {
    if (!id) return;
    state.deletedTasks.add(id);
    state.tasks.delete(id);
    renderTasks();
  }

  function renderTasks() {
    const tasks = [...state.tasks.values()].sort(byId);
    $("tasks").replaceChildren(
      ...tasks.map((t) =>
        el(
          "li",
          { "data-testid": "task", "data-task-id": t.id, "data-status": t.status, "data-version": t.version },
          el("input", {
            type: "checkbox",
            "data-testid": "task-done",
            "aria-label": "Done",
            checked: t.status === "done",
            onchange: () => toggleTask(t.id),
          }),
          el("span", { class: "title", "data-testid": "task-title-text" }, t.title),
          el("button", { type: "button", class: "quiet", "data-testid": "task-delete", onclick: () => deleteTask(t.id) }, "Delete"),
        ),
      ),
    );
    $("tasks-empty").hidden = tasks.length > 0;
  }

  async function addTask(title) {
    upsertTask(await api("POST", "/tasks", { title }));
  }

  async function toggleTask(id) {
    const task = state.tasks.get(id);
    if (!task) return;
    const status = task.status === "done" ? "todo" : "done";
    try {
      upsertTask(await api("PATCH", `/tasks/${id}`, { status }, { "If-Match": `"${task.version}"` }));
    } catch (err) {
      if (err.status === 412) {
        notice("That task changed elsewhere; here is its latest version.");
        upsertTask(await api("GET", `/tasks/${id}`).catch(() => null));
      } else if (err.status === 404) {
        removeTask(id);
      } else {
        notice(err.message);
      }
      renderTasks();
    }
  }

  async function deleteTask(id) {
    try {
      await api("DELETE", `/tasks/${id}`);
      removeTask(id);
    } catch (err) {
      if (err.status === 404) removeTask(id);
      else notice(err.message);
    }
  }

  function applyUserEvent(event) {
    const data = event.data;
    switch (event.type) {
      case "task.created":
      case "task.updated":
        upsertTask(data);
        break;
      case "task.deleted":
        removeTask(typeof data === "object" && data ? data.id : data);
        break;
      case "notification":
        // Acknowledged with the event (see deliver): no email or text follows it.
        upsertNotice(data);
        break;
      default:
        // room.member_added and its kin: which rooms this person is in has changed.
        if (event.type.startsWith("room.") && event.type !== "room.message") {
          // Removed from the open room: the server stopped sending it; close it here too.
          if (event.type === "room.member_removed" && data && data.room === state.room && data.user === state.me?.id) {
            closeRoom();
          }
          reloadRooms().catch((err) => notice(err.message));
        }
    }
  }

  // ---------- inbox ----------

  async function reloadInbox() {
    const items = await listAll("/me/notifications");
    state.inbox = new Map(items.map((n) => [n.id, n]));
    renderInbox();
  }

  /** A notice from the inbox list, a read answer, or a `notification` event's data. */
  function upsertNotice(n) {
    if (!n || !n.id) return;
    const current = state.inbox.get(n.id);
    state.inbox.set(n.id, { ...current, ...n, read_at: n.read_at ?? current?.read_at ?? null });
    renderInbox();
  }

  function renderInbox() {
    const items = [...state.inbox.values()].sort(byId).reverse();
    $("inbox").replaceChildren(
      ...items.map((n) =>
        el(
          "li",
          { "data-testid": "inbox-item", "data-notice-id": n.id, "data-read": String(Boolean(n.read_at)) },
          el("span", { class: "title", "data-testid": "inbox-title" }, n.title),
          n.read_at
            ? el("small", { class: "hint" }, "read")
            : el("button", { type: "button", class: "quiet", "data-testid": "inbox-read", onclick: () => markRead(n.id) }, "Mark read"),
          el("span", { class: "body" }, n.body || ""),
        ),
      ),
    );
    $("inbox-empty").hidden = items.length > 0;
  }

  async function markRead(id) {
    try {
      upsertNotice(await api("POST", `/me/notifications/${id}/read`, {}));
    } catch (err) {
      notice(err.message);
    }
  }

  // ---------- rooms ----------

  async function reloadRooms() {
    const items = await listAll("/rooms");
    state.rooms = new Map(items.map((r) => [r.id, r]));
    renderRooms();
  }

  function renderRooms() {
    const rooms = [...state.rooms.values()].sort(byId);
    $("rooms").replaceChildren(
      ...rooms.map((r) =>
        el(
          "li",
          {},
          el(
            "button",
            {
              type: "button",
              class: r.id === state.room ? "" : "quiet",
              "data-testid": "room",
              "data-room-id": r.id,
              "aria-current": r.id === state.room ? "true" : "false",
              onclick: () => selectRoom(r.id),
            },
            r.name || shortId(r.id),
          ),
        ),
      ),
    );
  }

  function selectRoom(id) {
    if (state.room === id) return;
    if (state.room) unwatch(`room:${state.room}`);
    state.room = id;
    state.messages = new Map();
    const view = $("room-view");
    view.hidden = false;
    view.dataset.roomId = id;
    view.dataset.state = "loading";
    $("room-title").textContent = state.rooms.get(id)?.name || shortId(id);
    renderRooms();
    renderMessages();
    const reload = () => reloadMessages(id);
    watch(`room:${id}`, reload, applyRoomEvent).then(async (followed) => {
      if (!followed && state.room === id) await reload().catch((err) => notice(err.message));
      if (state.room === id) view.dataset.state = followed ? "live" : "offline";
    });
  }

  /** Stops showing and following the open room. */
  function closeRoom() {
    if (!state.room) return;
    unwatch(`room:${state.room}`);
    state.room = null;
    state.messages = new Map();
    const view = $("room-view");
    view.hidden = true;
    delete view.dataset.roomId;
    renderRooms();
  }

  /** The newest messages of room `id` (the list pages backwards; older pages are not shown). */
  async function reloadMessages(id) {
    const { items } = await api("GET", `/rooms/${id}/messages?limit=200`);
    if (state.room !== id) return;
    for (const m of items || []) state.messages.set(m.id, m);
    renderMessages();
  }

  function addMessage(room, message) {
    if (!message || !message.id || room !== state.room) return;
    state.messages.set(message.id, message);
    renderMessages();
  }

  function applyRoomEvent(event) {
    if (event.type === "room.message") addMessage(event.channel.slice("room:".length), event.data);
  }

  function authorLabel(message) {
    const author = message.author;
    const id = author && typeof author === "object" ? author.id : author;
    if (state.me && id === state.me.id) return "you";
    return (author && typeof author === "object" && author.name) || message.author_name || shortId(id);
  }

  function renderMessages() {
    const list = $("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 30;
    const messages = [...state.messages.values()].sort(
      (a, b) => String(a.created_at).localeCompare(String(b.created_at)) || byId(a, b),
    );
    list.replaceChildren(
      ...messages.map((m) =>
        el(
          "li",
          { "data-testid": "message", "data-message-id": m.id, class: authorLabel(m) === "you" ? "mine" : "" },
          el("span", { class: "author", "data-testid": "message-author" }, authorLabel(m)),
          el("span", { "data-testid": "message-text" }, m.body),
        ),
      ),
    );
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  // ---------- session ----------

  async function start() {
    try {
      state.me = await api("GET", "/me");
    } catch (err) {
      if (state.token) logout(err.message);
      return;
    }
    $("auth").hidden = true;
    $("app").hidden = false;
    $("whoami").hidden = false;
    $("me-name").textContent = state.me.name || state.me.email;
    $("me-id").textContent = state.me.id;
    const reload = () => Promise.all([reloadTasks(), reloadRooms(), reloadInbox()]);
    watch(`user:${state.me.id}`, reload, applyUserEvent);
    connect();
  }

  function logout(message = "") {
    state.token = null;
    sessionStorage.removeItem("herald.token");
    disconnect();
    rt.channels.clear();
    Object.assign(state, { me: null, tasks: new Map(), rooms: new Map(), room: null, messages: new Map(), inbox: new Map() });
    $("tasks").replaceChildren();
    $("inbox").replaceChildren();
    $("rooms").replaceChildren();
    $("messages").replaceChildren();
    $("log").replaceChildren();
    $("room-view").hidden = true;
    $("app").hidden = true;
    $("whoami").hidden = true;
    $("auth").hidden = false;
    $("auth-error").textContent = message;
  }

  async function logIn(email, password) {
    const answer = await api("POST", "/auth/login", { email, password });
    state.token = answer.access_token;
    sessionStorage.setItem("herald.token", state.token);
    await start();
  }

  /** Runs `action` for a form, handing its error to `showError`; the form's buttons rest meanwhile. */
  function guarded(form, showError, action) {
    return async (event) => {
      event?.preventDefault();
      const buttons = form.querySelectorAll("button");
      buttons.forEach((b) => (b.disabled = true));
      try {
        await action();
      } catch (err) {
        showError(err.message);
      } finally {
        buttons.forEach((b) => (b.disabled = false));
      }
    };
  }

  function wire() {
    const authForm = $("auth-form");
    const authError = (text) => ($("auth-error").textContent = text);
    const credentials = () => ({ email: $("auth-email").value.trim(), password: $("auth-password").value });
    authForm.addEventListener(
      "submit",
      guarded(authForm, authError, () => {
        authError("");
        const { email, password } = credentials();
        return logIn(email, password);
      }),
    );
    $("register").addEventListener(
      "click",
      guarded(authForm, authError, async () => {
        authError("");
        if (!authForm.reportValidity()) return;
        const { email, password } = credentials();
        const name = $("auth-name").value.trim() || email.split("@")[0];
        await api("POST", "/auth/register", { email, password, name });
        await logIn(email, password);
      }),
    );
    $("logout").addEventListener("click", () => logout());
    const readAll = $("inbox-read-all");
    readAll.addEventListener(
      "click",
      guarded(readAll.parentElement, notice, async () => {
        await api("POST", "/me/notifications/read-all", {});
        await reloadInbox();
      }),
    );

    const taskForm = $("task-form");
    taskForm.addEventListener(
      "submit",
      guarded(taskForm, notice, async () => {
        await addTask($("task-title").value);
        $("task-title").value = "";
      }),
    );
    const roomForm = $("room-form");
    roomForm.addEventListener(
      "submit",
      guarded(roomForm, notice, async () => {
        const room = await api("POST", "/rooms", { name: $("room-name").value.trim() });
        $("room-name").value = "";
        state.rooms.set(room.id, room);
        selectRoom(room.id);
      }),
    );
    const memberForm = $("member-form");
    memberForm.addEventListener(
      "submit",
      guarded(memberForm, notice, async () => {
        const user = $("member-id").value.trim();
        await api("POST", `/rooms/${state.room}/members`, { user });
        $("member-id").value = "";
        notice(`Added ${shortId(user)} to the room.`, "info");
      }),
    );
    const leave = $("room-leave");
    leave.addEventListener(
      "click",
      guarded(leave.parentElement, notice, async () => {
        const room = state.room;
        if (!room) return;
        await api("DELETE", `/rooms/${room}/members/${state.me.id}`);
        state.rooms.delete(room);
        closeRoom();
        notice("You left the room.", "info");
      }),
    );
    const messageForm = $("message-form");
    messageForm.addEventListener(
      "submit",
      guarded(messageForm, notice, async () => {
        const room = state.room;
        const message = await api("POST", `/rooms/${room}/messages`, { body: $("message-body").value });
        $("message-body").value = "";
        addMessage(room, message);
      }),
    );
    window.addEventListener("online", () => {
      if (state.token && !rt.ws) connect();
    });
  }

  wire();
  if (state.token) start();
})();
