//! Plain WebSocket sessions at `/ws`: JSON text frames with an `op` (see `docs/realtime.md`).

use parking_lot::Mutex;
use std::sync::Arc;

use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    http::request::Parts,
    response::Response,
};
use futures::{SinkExt as _, StreamExt as _};
use herald_core::error::{ApiError, ErrorCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use herald_core::realtime::{Engine, EventBody, Handshake, Outlet, SendFailure, Session, error_body};

/// Largest frame a client may send.
const MAX_FRAME: usize = 256 * 1024;
/// Bytes read from the socket at a time.
const READ_BUFFER: usize = 4 * 1024;
/// Close codes (4000–4999 are the application's).
const CLOSE_AUTH: u16 = 4001;
const CLOSE_POLICY: u16 = 4008;

pub(super) async fn upgrade(State(gateway): State<Engine>, parts: Parts, ws: WebSocketUpgrade) -> Response {
    let peer = crate::peer::client_ip(&parts, &gateway.options().trusted_proxies);
    // Small buffers: tungstenite's defaults (128 KiB each way) would make an idle session cost
    // a quarter of a megabyte; frames here are small, and a bigger one still fits, in steps.
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| run(gateway, socket, peer))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum ClientFrame {
    Hello {
        token: Option<String>,
        session: Option<String>,
    },
    Subscribe {
        id: Option<Value>,
        channel: String,
        since: Option<i64>,
        epoch: Option<String>,
    },
    Unsubscribe {
        id: Option<Value>,
        channel: String,
    },
    Ack {
        channel: String,
        offset: i64,
    },
    Call {
        id: Option<Value>,
        command: String,
        #[serde(default)]
        input: Value,
    },
}

/// What the writer sends: frames in order, or a last frame and the close.
#[derive(Debug)]
struct WsOutlet {
    frames: mpsc::Sender<String>,
    closer: Mutex<Option<oneshot::Sender<(String, String)>>>,
}

#[async_trait::async_trait]
impl Outlet for WsOutlet {
    fn send_event(&self, _session: &Arc<Session>, event: &Arc<EventBody>) -> Result<(), SendFailure> {
        let frame = event_frame(event);
        self.frames.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendFailure::Full,
            mpsc::error::TrySendError::Closed(_) => SendFailure::Closed,
        })
    }

    async fn send_paced(&self, _session: &Arc<Session>, event: &Arc<EventBody>) -> Result<(), SendFailure> {
        self.frames.send(event_frame(event)).await.map_err(|_| SendFailure::Closed)
    }

    fn close(&self, code: &str, message: &str) {
        if let Some(closer) = self.closer.lock().take() {
            let _ = closer.send((code.to_owned(), message.to_owned()));
        }
    }
}

fn event_frame(event: &EventBody) -> String {
    let mut value = serde_json::to_value(event).unwrap_or_default();
    if let Value::Object(map) = &mut value {
        map.insert("op".into(), "event".into());
    }
    value.to_string()
}

fn close_frame(code: &str, message: &str) -> String {
    json!({"op": "close", "code": code, "message": message}).to_string()
}

async fn run(gateway: Engine, socket: WebSocket, peer: Option<std::net::IpAddr>) {
    let (mut sink, mut stream) = socket.split();
    let handshake = match hello(&gateway, &mut stream, peer).await {
        Ok(Some(hello)) => hello,
        Ok(None) => return,
        Err(err) => return refuse(&mut sink, err).await,
    };

    let (frames_tx, mut frames) = mpsc::channel::<String>(gateway.options().session_buffer.max(1));
    let (closer, mut closed) = oneshot::channel::<(String, String)>();
    let outlet = WsOutlet { frames: frames_tx.clone(), closer: Mutex::new(Some(closer)) };
    let welcome =
        json!({"op": "welcome", "user": handshake.identity.user_id, "session": handshake.session}).to_string();
    let session = match gateway.open_session(handshake, Box::new(outlet)) {
        Ok(session) => session,
        Err(err) => return refuse(&mut sink, err).await,
    };
    let _ = frames_tx.send(welcome).await;

    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                reason = &mut closed => {
                    if let Ok((code, message)) = reason {
                        let _ = sink.send(Message::Text(close_frame(&code, &message).into())).await;
                        let frame = CloseFrame { code: CLOSE_POLICY, reason: code.into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                    }
                    return;
                }
                frame = frames.recv() => match frame {
                    Some(frame) => if sink.send(Message::Text(frame.into())).await.is_err() { return },
                    None => return,
                },
            }
        }
    });

    let mut writer = writer;
    loop {
        let message = tokio::select! {
            _ = &mut writer => break,
            m = stream.next() => m,
        };
        let Some(Ok(message)) = message else { break };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => break,
            Message::Binary(_) => {
                let err = ApiError::new(ErrorCode::MalformedRequest, "frames are JSON text");
                let _ = frames_tx.send(error_frame(&err)).await;
                continue;
            }
            _ => continue,
        };
        match serde_json::from_str::<ClientFrame>(text.as_str()) {
            Ok(frame) => handle(&session, &frames_tx, frame).await,
            Err(e) => {
                let err = ApiError::new(ErrorCode::MalformedRequest, format!("the frame does not parse: {e}"));
                let _ = frames_tx.send(error_frame(&err)).await;
            }
        }
    }
    session.ended();
    writer.abort();
}

/// Tells a client why its handshake was refused, and closes.
async fn refuse(sink: &mut futures::stream::SplitSink<WebSocket, Message>, err: ApiError) {
    let _ = sink.send(Message::Text(close_frame(err.code().as_str(), err.public_detail()).into())).await;
    let reason = err.code().as_str().to_owned();
    let _ = sink.send(Message::Close(Some(CloseFrame { code: CLOSE_AUTH, reason: reason.into() }))).await;
}

/// Waits for `hello` and checks it. `Ok(None)` when the client left first.
async fn hello(
    gateway: &Engine,
    stream: &mut futures::stream::SplitStream<WebSocket>,
    peer: Option<std::net::IpAddr>,
) -> Result<Option<Handshake>, ApiError> {
    let first = tokio::time::timeout(gateway.options().handshake_timeout, stream.next())
        .await
        .map_err(|_| ApiError::new(ErrorCode::Unauthorized, "no hello frame in time"))?;
    let text = match first {
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(_)) => return Err(ApiError::new(ErrorCode::MalformedRequest, "the first frame must be a JSON hello")),
        _ => return Ok(None),
    };
    match serde_json::from_str::<ClientFrame>(text.as_str()) {
        Ok(ClientFrame::Hello { token, session }) => {
            gateway.authenticate(token.as_deref(), session.as_deref(), peer).map(Some)
        }
        _ => Err(ApiError::new(
            ErrorCode::Unauthorized,
            r#"the first frame must be {"op":"hello","token":…,"session":…}"#,
        )),
    }
}

async fn handle(session: &Arc<Session>, frames: &mpsc::Sender<String>, frame: ClientFrame) {
    match frame {
        ClientFrame::Ack { channel, offset } => session.ack(&channel, offset),
        ClientFrame::Hello { .. } => {
            let err = ApiError::new(ErrorCode::MalformedRequest, "this connection said hello already");
            let _ = frames.send(error_frame(&err)).await;
        }
        ClientFrame::Subscribe { id, channel, since, epoch } => {
            let slot = match session.begin_request() {
                Ok(slot) => slot,
                Err(err) => {
                    let _ = frames.send(reply(id, error_body(&err))).await;
                    return;
                }
            };
            // Requests run beside the reader, so acks keep flowing while one waits on the store.
            let (session, frames) = (session.clone(), frames.clone());
            tokio::spawn(async move {
                let _slot = slot;
                match session.subscribe(&channel, since, epoch.as_deref()).await {
                    Ok((answer, generation)) => {
                        let mut body = serde_json::to_value(&answer).unwrap_or_default();
                        body["ok"] = true.into();
                        if frames.send(reply(id, body)).await.is_ok() {
                            session.start_replay(channel, generation);
                        }
                    }
                    Err(err) => {
                        let _ = frames.send(reply(id, error_body(&err))).await;
                    }
                }
            });
        }
        ClientFrame::Unsubscribe { id, channel } => {
            let removed = session.unsubscribe(&channel);
            let _ = frames.send(reply(id, json!({"ok": true, "channel": channel, "subscribed": removed}))).await;
        }
        ClientFrame::Call { id, command, input } => {
            let slot = match session.begin_request() {
                Ok(slot) => slot,
                Err(err) => {
                    let _ = frames.send(reply(id, error_body(&err))).await;
                    return;
                }
            };
            let (session, frames) = (session.clone(), frames.clone());
            tokio::spawn(async move {
                let body = session.call(&command, input).await;
                drop(slot);
                let _ = frames.send(reply(id, body)).await;
            });
        }
    }
}

fn reply(id: Option<Value>, mut body: Value) -> String {
    body["op"] = "reply".into();
    body["id"] = id.unwrap_or(Value::Null);
    body.to_string()
}

fn error_frame(err: &ApiError) -> String {
    json!({"op": "error", "code": err.code().as_str(), "message": err.public_detail()}).to_string()
}
