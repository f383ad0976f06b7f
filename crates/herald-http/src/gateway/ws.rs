//! Plain WebSocket sessions at `/ws`: JSON text frames with an `op` (see `docs/realtime.md`), and
//! binary frames for the byte streams of calls (an upload's chunks, a download's), each tagged
//! with its call's id.

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
use bytes::{BufMut as _, Bytes, BytesMut};
use futures::{SinkExt as _, StreamExt as _};
use herald_core::{
    body::Body,
    error::{ApiError, ErrorCode},
    stream::StreamName,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use herald_core::realtime::{Admission, Engine, EventBody, Handshake, Outlet, SendFailure, Session, error_body};

/// Largest frame a client may send.
const MAX_FRAME: usize = 256 * 1024;
/// Bytes read from the socket at a time.
const READ_BUFFER: usize = 4 * 1024;
/// Close codes (4000–4999 are the application's).
const CLOSE_AUTH: u16 = 4001;
const CLOSE_POLICY: u16 = 4008;
/// Binary frames of downloads queued for the writer, across the session's calls.
const QUEUED_BODY_FRAMES: usize = 2;
/// Longest call id a binary frame may carry.
const MAX_ID: usize = 64;

pub(super) async fn upgrade(State(gateway): State<Engine>, parts: Parts, ws: WebSocketUpgrade) -> Response {
    // Counted from before the upgrade: a gateway that is full says so with a 503, over HTTP.
    let admission = match gateway.admit() {
        Ok(admission) => admission,
        Err(err) => return axum::response::IntoResponse::into_response(crate::problem::HttpError(err)),
    };
    let peer = crate::peer::client_ip(&parts, &gateway.options().trusted_proxies);
    // Small buffers: tungstenite's defaults (128 KiB each way) would make an idle session cost
    // a quarter of a megabyte; frames here are small, and a bigger one still fits, in steps.
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| run(gateway, socket, peer, admission))
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
        /// The body follows in binary frames tagged with this call's id.
        #[serde(default)]
        body: bool,
    },
}

/// The key a call's binary frames carry: its id, as text.
fn body_key(id: Option<&Value>) -> Option<String> {
    let key = match id? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!key.is_empty() && key.len() <= MAX_ID).then_some(key)
}

/// A binary frame: one byte for the length of the call id, the id, then the bytes; a frame
/// with no bytes ends the body.
fn binary_frame(key: &str, data: &[u8]) -> Message {
    let mut frame = BytesMut::with_capacity(1 + key.len() + data.len());
    frame.put_u8(key.len() as u8);
    frame.put_slice(key.as_bytes());
    frame.put_slice(data);
    Message::Binary(frame.freeze())
}

fn parse_binary(frame: Bytes) -> Result<(String, Bytes), ApiError> {
    let bad = || {
        ApiError::new(
            ErrorCode::MalformedRequest,
            "a binary frame starts with the length of its call's id, then the id",
        )
    };
    let len = usize::from(*frame.first().ok_or_else(bad)?);
    if len == 0 || frame.len() < 1 + len {
        return Err(bad());
    }
    let key = std::str::from_utf8(&frame[1..=len]).map_err(|_| bad())?.to_owned();
    Ok((key, frame.slice(1 + len..)))
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

async fn run(gateway: Engine, socket: WebSocket, peer: Option<std::net::IpAddr>, admission: Admission) {
    let (mut sink, mut stream) = socket.split();
    let handshake = match hello(&gateway, &mut stream, peer).await {
        Ok(Some(hello)) => hello,
        Ok(None) => return,
        Err(err) => return refuse(&mut sink, err).await,
    };

    let (frames_tx, mut frames) = mpsc::channel::<String>(gateway.options().session_buffer.max(1));
    let (bodies_tx, mut bodies) = mpsc::channel::<Message>(QUEUED_BODY_FRAMES);
    let (closer, mut closed) = oneshot::channel::<(String, String)>();
    let outlet = WsOutlet { frames: frames_tx.clone(), closer: Mutex::new(Some(closer)) };
    let welcome =
        json!({"op": "welcome", "user": handshake.identity.user_id, "session": handshake.session}).to_string();
    let session = match gateway.open_session(handshake, Box::new(outlet), admission) {
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
                Some(frame) = bodies.recv() => if sink.send(frame).await.is_err() { return },
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
            Message::Binary(frame) => {
                // In order, inline: a body's next frame is read only once its command took this one.
                let pushed = match parse_binary(frame) {
                    Ok((key, data)) => {
                        let end = data.is_empty();
                        session.upload_chunk(&key, None, data, end).await.map_err(|err| (Some(key), err))
                    }
                    Err(err) => Err((None, err)),
                };
                if let Err((key, err)) = pushed {
                    let _ = frames_tx.send(error_frame(&err, key.as_deref())).await;
                }
                continue;
            }
            _ => continue,
        };
        match serde_json::from_str::<ClientFrame>(text.as_str()) {
            Ok(frame) => handle(&session, &frames_tx, &bodies_tx, frame).await,
            Err(e) => {
                let err = ApiError::new(ErrorCode::MalformedRequest, format!("the frame does not parse: {e}"));
                let _ = frames_tx.send(error_frame(&err, None)).await;
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
            gateway.authenticate(token.as_deref(), session.as_deref(), peer).await.map(Some)
        }
        _ => Err(ApiError::new(
            ErrorCode::Unauthorized,
            r#"the first frame must be {"op":"hello","token":…,"session":…}"#,
        )),
    }
}

async fn handle(
    session: &Arc<Session>,
    frames: &mpsc::Sender<String>,
    bodies: &mpsc::Sender<Message>,
    frame: ClientFrame,
) {
    match frame {
        ClientFrame::Ack { channel, offset } => {
            if let Ok(stream) = StreamName::parse(&channel) {
                session.ack(stream, offset);
            }
        }
        ClientFrame::Hello { .. } => {
            let err = ApiError::new(ErrorCode::MalformedRequest, "this connection said hello already");
            let _ = frames.send(error_frame(&err, None)).await;
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
                let subscribed = match StreamName::parse(&channel) {
                    Ok(stream) => session.subscribe(stream, since, epoch.as_deref()).await,
                    Err(err) => Err(err),
                };
                match subscribed {
                    Ok((answer, generation)) => {
                        let mut body = serde_json::to_value(&answer).unwrap_or_default();
                        body["ok"] = true.into();
                        if frames.send(reply(id, body)).await.is_ok() {
                            session.start_replay(answer.stream, generation);
                        }
                    }
                    Err(err) => {
                        let _ = frames.send(reply(id, error_body(&err))).await;
                    }
                }
            });
        }
        ClientFrame::Unsubscribe { id, channel } => {
            let removed = StreamName::parse(&channel).is_ok_and(|stream| session.unsubscribe(stream));
            let _ = frames.send(reply(id, json!({"ok": true, "channel": channel, "subscribed": removed}))).await;
        }
        ClientFrame::Call { id, command, input, body } => {
            let slot = match session.begin_request() {
                Ok(slot) => slot,
                Err(err) => {
                    let _ = frames.send(reply(id, error_body(&err))).await;
                    return;
                }
            };
            let key = body_key(id.as_ref());
            if body && key.is_none() {
                let err = ApiError::invalid_field(
                    "id",
                    "a call with a body needs an id: a string or number, 1 to 64 characters",
                );
                let _ = frames.send(reply(id, error_body(&err))).await;
                return;
            }
            // Opened here, before the reader takes the next frame: the body's first binary frame
            // finds it.
            let upload = match key.as_deref().filter(|_| body).map(|key| session.open_upload(key)) {
                Some(Ok(upload)) => Some(upload),
                Some(Err(err)) => {
                    let _ = frames.send(reply(id, error_body(&err))).await;
                    return;
                }
                None => None,
            };
            let (session, frames, bodies) = (session.clone(), frames.clone(), bodies.clone());
            tokio::spawn(async move {
                let uploading = upload.is_some();
                let (answer, out) = session.call(&command, input, upload).await;
                if let Some(key) = key.as_deref().filter(|_| uploading) {
                    session.close_upload(key);
                }
                match (out, key) {
                    (Some(out), Some(key)) => {
                        let mut answer = answer;
                        answer["body"] = true.into();
                        if frames.send(reply(id, answer)).await.is_ok() {
                            send_body(&bodies, &key, out).await;
                        }
                    }
                    (Some(_), None) => {
                        let err = ApiError::invalid_field(
                            "id",
                            "a call that answers with bytes needs an id: a string or number, 1 to 64 characters",
                        );
                        let _ = frames.send(reply(id, error_body(&err))).await;
                    }
                    (None, _) => {
                        let _ = frames.send(reply(id, answer)).await;
                    }
                }
                drop(slot);
            });
        }
    }
}

/// Streams a call's answer bytes as binary frames tagged with `key`, then the empty frame that
/// ends them; a read that fails midway ends them early (with fewer bytes than the answer's
/// `length`).
async fn send_body(bodies: &mpsc::Sender<Message>, key: &str, mut body: Body) {
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => {
                if bodies.send(binary_frame(key, &chunk)).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err.cause_chain(), "a streamed answer failed midway");
                break;
            }
        }
    }
    let _ = bodies.send(binary_frame(key, &[])).await;
}

fn reply(id: Option<Value>, mut body: Value) -> String {
    body["op"] = "reply".into();
    body["id"] = id.unwrap_or(Value::Null);
    body.to_string()
}

/// An error outside any request's reply; `upload` names the body a binary frame was for.
fn error_frame(err: &ApiError, upload: Option<&str>) -> String {
    let mut frame = json!({"op": "error", "code": err.code().as_str(), "message": err.public_detail()});
    if let Some(upload) = upload {
        frame["id"] = upload.into();
    }
    frame.to_string()
}
