// Chat rooms: the person's rooms, and the open room's messages followed on its `room:<id>`
// channel while it is open.

import { api, listAll } from "./api.js";
import { $, byId, el, notice, shortId } from "./dom.js";
import { unwatch, watch } from "./realtime.js";
import { state } from "./state.js";

export async function reloadRooms() {
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

export function selectRoom(id) {
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
export function closeRoom() {
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

export function addMessage(room, message) {
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
