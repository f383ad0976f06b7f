// A person's session on the page: logging in, starting (who am I, follow the user channel,
// connect), and logging out, which forgets everything the page held.

import { api } from "./api.js";
import { $, notice } from "./dom.js";
import { reloadInbox, upsertNotice } from "./inbox.js";
import { connect, disconnect, unwatchAll, watch } from "./realtime.js";
import { closeRoom, reloadRooms } from "./rooms.js";
import { state } from "./state.js";
import { reloadTasks, removeTask, upsertTask } from "./tasks.js";

export async function start() {
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

export function logout(message = "") {
  state.token = null;
  sessionStorage.removeItem("herald.token");
  disconnect();
  unwatchAll();
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

export async function logIn(email, password) {
  const answer = await api("POST", "/auth/login", { email, password });
  state.token = answer.access_token;
  sessionStorage.setItem("herald.token", state.token);
  await start();
}

/** One event of the person's own `user:<id>` channel. */
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
