// What the console knows: the signed-in administrator and what the current view holds open.

export const state = {
  token: sessionStorage.getItem("herald.admin.token"),
  me: null,
  // What the current view holds open (a live stream, a timer); closed when the view changes.
  cleanup: [],
};

export function closeView() {
  for (const close of state.cleanup.splice(0)) close();
}

// A 401 from any request signs out; session.js does that. It is handed in here rather than
// imported, so that nothing below session.js imports it back.
let endSession = () => {};

/** Names what signs out when the server refuses the token (session.js, once). */
export function onSessionRefused(handler) {
  endSession = handler;
}

/** The server refused this token: sign out. */
export function sessionRefused() {
  endSession();
}
