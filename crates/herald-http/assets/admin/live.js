// A channel of the /ws real-time protocol, followed for a view.

import { state } from "./state.js";

// One stream followed over /ws: hello, subscribe, every event handed to `onEvent` and
// acknowledged; reconnects with back-off until closed.
export function liveStream(channel, onEvent, onState) {
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
