// What the demo page knows: the signed-in person, their tasks, rooms and inbox, the open room.
// Every other module reads and writes this one object.

export const state = {
  token: sessionStorage.getItem("herald.token"),
  me: null,
  tasks: new Map(),
  deletedTasks: new Set(),
  rooms: new Map(),
  room: null,
  messages: new Map(),
  inbox: new Map(),
};

// The server can end the session from below (a 401, a refused socket); session.js ends it. It is
// handed in here rather than imported, so that nothing below session.js imports it back.
let endSession = () => {};

/** Names what ends the session when the server refuses it (session.js, once). */
export function onSessionRefused(handler) {
  endSession = handler;
}

/** The server refused this session: log out with `message`. */
export function sessionRefused(message) {
  endSession(message);
}
