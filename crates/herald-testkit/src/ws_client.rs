//! A plain WebSocket client of Herald's `/ws` protocol (tokio-tungstenite), for tests and the
//! realtime benchmark: JSON frames, replies matched by id, events kept in arrival order.

use std::{collections::VecDeque, time::Duration};

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

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
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(frame) = self.read(left).await else { panic!("no reply to request {id}") };
            if frame["op"] == "reply" && frame["id"] == id {
                return frame;
            }
            self.backlog.push_back(frame);
        }
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

    /// The next `event` frame, or `None` after `wait`; other frames are dropped.
    pub async fn next_event(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next_frame(left).await?;
            if frame["op"] == "event" {
                return Some(frame);
            }
        }
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
