// Herald's live demo: a person's tasks and chat rooms, changed over REST and kept live over the
// plain WebSocket protocol of docs/realtime.md. Plain JavaScript ES modules: no framework, no
// build step. This entry module wires the page's forms to the modules that do the work.
//
// Real-time rules followed here: the session id lives in sessionStorage (one per tab); every event
// is acknowledged once applied; after a reconnect (with back-off) each channel is subscribed again
// and the server replays what this session has not acknowledged; when it answers
// `recovered: false` the state is reloaded over REST. Events met during a reload wait for it, and
// applying one twice changes nothing (task versions, message ids, offsets).

import { api } from "./api.js";
import { $, notice, shortId } from "./dom.js";
import { reloadInbox } from "./inbox.js";
import { reconnectNow } from "./realtime.js";
import { addMessage, closeRoom, selectRoom } from "./rooms.js";
import { logIn, logout, start } from "./session.js";
import { onSessionRefused, state } from "./state.js";
import { addTask } from "./tasks.js";

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
  window.addEventListener("online", reconnectNow);
}

onSessionRefused(logout);
wire();
if (state.token) start();
