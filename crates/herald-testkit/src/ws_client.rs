//! A plain WebSocket client of Herald's `/ws` protocol (tokio-tungstenite), for tests and the
//! realtime benchmark: JSON frames, replies matched by id, events kept in arrival order.

use std::{collections::VecDeque, time::Duration};

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A binary frame of `/ws`: the length of the call's id, the id, the bytes.
pub fn binary_frame(id: &str, data: &[u8]) -> Message {
    let mut frame = Vec::with_capacity(1 + id.len() + data.len());
    frame.push(u8::try_from(id.len()).expect("a short id"));
    frame.extend_from_slice(id.as_bytes());
    frame.extend_from_slice(data);
    Message::Binary(frame.into())
}

/// One `/ws` connection.
#[derive(Debug)]
pub struct WsClient {
    socket: Socket,
    next_id: u64,
    /// Frames that came while waiting for something else.
    backlog: VecDeque<Value>,
}

impl WsClient {
    /// Connects and says hello. `Err` carries the server's `close` frame (or a description).
    pub async fn connect(url: &str, token: &str, session: &str) -> Result<Self, Value> {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| json!({"connect": e.to_string()}))?;
        let mut client = Self { socket, next_id: 1, backlog: VecDeque::new() };
        client.send(json!({"op": "hello", "token": token, "session": session})).await;
        match client.read(Duration::from_secs(10)).await {
            Some(frame) if frame["op"] == "welcome" => Ok(client),
            Some(frame) => Err(frame),
            None => Err(json!({"closed": "before welcome"})),
        }
    }

    /// Sends one frame.
    pub async fn send(&mut self, frame: Value) {
        self.socket.send(Message::Text(frame.to_string().into())).await.expect("send a frame");
    }

    /// Sends raw text (for malformed-frame tests).
    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::Text(text.to_owned().into())).await.expect("send text");
    }

    /// The next frame from the socket itself, skipping control frames; `None` when closed or
    /// after `wait`.
    async fn read(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next()).await.ok()??;
            match message {
                Ok(Message::Text(text)) => return serde_json::from_str(text.as_str()).ok(),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Sends a request with a fresh `id` and waits for its reply; other frames are kept.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        frame["id"] = id.into();
        self.send(frame).await;
        self.reply_to(&id.into()).await
    }

    /// `subscribe {channel, since?}`; the reply.
    pub async fn subscribe(&mut self, channel: &str, since: Option<i64>) -> Value {
        let mut frame = json!({"op": "subscribe", "channel": channel});
        if let Some(since) = since {
            frame["since"] = since.into();
        }
        self.request(frame).await
    }

    /// `call {command, input}`; the reply.
    pub async fn call(&mut self, command: &str, input: Value) -> Value {
        self.request(json!({"op": "call", "command": command, "input": input})).await
    }

    /// `call {command, input, body: true}` with `data` sent as binary frames of `chunk` bytes
    /// tagged with the call's id, and the empty frame that ends them; the reply.
    pub async fn call_with_body(&mut self, command: &str, input: Value, data: &[u8], chunk: usize) -> Value {
        let id = format!("b{}", self.next_id);
        self.next_id += 1;
        self.send(json!({"op": "call", "id": id, "command": command, "input": input, "body": true})).await;
        for piece in data.chunks(chunk.max(1)).chain([&[][..]]) {
            // A refused body stops being read: the server says why in its reply (and an error
            // frame for each chunk it could no longer take), so stop sending once it did.
            if self.socket.send(binary_frame(&id, piece)).await.is_err() {
                break;
            }
        }
        self.reply_to(&Value::String(id)).await
    }

    /// `call {command, input}` of a command that answers with bytes: the reply and the bytes of
    /// the binary frames tagged with the call's id, up to the empty one.
    pub async fn download(&mut self, command: &str, input: Value) -> (Value, Vec<u8>) {
        let id = format!("d{}", self.next_id);
        self.next_id += 1;
        self.send(json!({"op": "call", "id": id, "command": command, "input": input})).await;
        let reply = self.reply_to(&Value::String(id.clone())).await;
        let mut bytes = Vec::new();
        if reply["body"] != true {
            return (reply, bytes);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next()).await.expect("the body in time");
            match message.expect("open").expect("a frame") {
                Message::Binary(frame) => {
                    let len = usize::from(frame[0]);
                    assert_eq!(&frame[1..=len], id.as_bytes(), "frames tagged with the call's id");
                    if frame.len() == 1 + len {
                        return (reply, bytes);
                    }
                    bytes.extend_from_slice(&frame[1 + len..]);
                }
                Message::Text(text) => self.backlog.extend(serde_json::from_str::<Value>(text.as_str()).ok()),
                _ => {}
            }
        }
    }

    /// Waits for the reply to request `id`; other frames are kept.
    async fn reply_to(&mut self, id: &Value) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(frame) = self.read(left).await else { panic!("no reply to request {id}") };
            if frame["op"] == "reply" && &frame["id"] == id {
                return frame;
            }
            self.backlog.push_back(frame);
        }
    }

    /// Acknowledges `channel` up to `offset`.
    pub async fn ack(&mut self, channel: &str, offset: i64) {
        self.send(json!({"op": "ack", "channel": channel, "offset": offset})).await;
    }

    /// The next frame of any kind (kept ones first), or `None` after `wait` or when closed.
    pub async fn next_frame(&mut self, wait: Duration) -> Option<Value> {
        if let Some(frame) = self.backlog.pop_front() {
            return Some(frame);
        }
        self.read(wait).await
    }

    /// The next frame whose `op` is `op`, or `None` after `wait` or when closed; other frames
    /// are dropped.
    pub async fn next_op(&mut self, op: &str, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next_frame(left).await?;
            if frame["op"] == op {
                return Some(frame);
            }
        }
    }

    /// The next `event` frame, or `None` after `wait`; other frames are dropped.
    pub async fn next_event(&mut self, wait: Duration) -> Option<Value> {
        self.next_op("event", wait).await
    }

    /// `n` events, in arrival order; panics naming what came when fewer arrive within `wait`.
    pub async fn events(&mut self, n: usize, wait: Duration) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        let deadline = tokio::time::Instant::now() + wait;
        while out.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(event) => out.push(event),
                None => panic!("expected {n} events, got {}: {out:?}", out.len()),
            }
        }
        out
    }

    /// Closes the connection (the session stays, with its cursors, on the server) and waits, up to
    /// 5 s, for the server to answer the close.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
        let _ =
            tokio::time::timeout(Duration::from_secs(5), async { while self.socket.next().await.is_some() {} }).await;
    }
}
