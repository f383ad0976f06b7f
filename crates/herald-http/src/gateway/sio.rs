//! Socket.io sessions at `/socket.io/` (namespace `/`), for any `socket.io-client` 4.x.

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use herald_core::{body::Body, error::ApiError, stream::StreamName};
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::{
    SocketIo,
    extract::{AckSender, Data, SocketRef, TryData},
    handler::ConnectHandler as _,
    layer::SocketIoLayer,
};
use tokio::sync::OwnedSemaphorePermit;

use herald_core::realtime::{Engine, EventBody, Outlet, SendFailure, Session, error_body};

/// How long the server waits for a client to ack one event before it stops waiting (the event
/// stays pending in the cursor and is sent again on the next subscribe).
const ACK_WAIT: Duration = Duration::from_secs(60);

/// Largest message a client may send (engine.io closes a connection that sends more); a binary
/// attachment counts as its own message, so a body up to this size fits in one `call`, and a
/// larger one goes in `chunk`s.
const MAX_PAYLOAD: u64 = 256 * 1024;

/// Largest body an answer carries (a download; ask for a byte range beyond it).
const MAX_ANSWER_BODY: usize = MAX_PAYLOAD as usize;

#[derive(Debug, Deserialize)]
struct Auth {
    token: Option<String>,
    session: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SubscribeInput {
    channel: String,
    since: Option<i64>,
    epoch: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChannelInput {
    channel: String,
}

#[derive(Debug, Deserialize)]
struct AckInput {
    channel: String,
    offset: i64,
}

#[derive(Debug, Deserialize)]
struct CallInput {
    command: String,
    #[serde(default)]
    input: Value,
    /// The command's byte stream, whole, as a binary attachment.
    #[serde(default)]
    body: Binary,
    /// Or the id under which the body comes in `chunk` events.
    upload: Option<String>,
}

/// A binary attachment that may be absent. (socketioxide finds an attachment where a field is
/// read as bytes, which `Option<Bytes>` does not do: absence is the field's default instead.)
#[derive(Debug, Default)]
struct Binary(Option<Bytes>);

impl<'de> Deserialize<'de> for Binary {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Bytes::deserialize(deserializer).map(|bytes| Self(Some(bytes)))
    }
}

#[derive(Debug, Deserialize)]
struct ChunkInput {
    upload: String,
    /// 0, 1, …: each chunk waits for the previous one's acknowledgement.
    seq: u64,
    #[serde(default)]
    data: Bytes,
    /// The last chunk.
    #[serde(default)]
    end: bool,
}

/// A refused handshake; the client's `connect_error` message is `<code>: <detail>`.
#[derive(Debug)]
struct Refused(ApiError);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.code().as_str(), self.0.public_detail())
    }
}

/// The session of a socket, kept on the socket.
#[derive(Debug, Clone)]
struct Attached(Arc<Session>);

#[derive(Debug)]
struct SioOutlet {
    socket: SocketRef,
}

#[async_trait::async_trait]
impl Outlet for SioOutlet {
    fn send_event(&self, session: &Arc<Session>, event: &Arc<EventBody>) -> Result<(), SendFailure> {
        let ack = self.socket.timeout(ACK_WAIT).emit_with_ack::<_, Value>("event", event.as_ref());
        match ack {
            Ok(ack) => {
                let (session, stream, offset) = (session.clone(), event.stream, event.offset);
                tokio::spawn(async move {
                    // Whatever the client passes to its ack callback (often nothing), it acked.
                    if matches!(ack.await, Ok(_) | Err(socketioxide::AckError::Decode(_))) {
                        session.ack(stream, offset);
                    }
                });
                Ok(())
            }
            Err(socketioxide::SendError::Socket(socketioxide::SocketError::InternalChannelFull)) => {
                Err(SendFailure::Full)
            }
            Err(_) => Err(SendFailure::Closed),
        }
    }

    /// Socket.io has no way to wait for room in a socket's buffer: retry while it is full.
    async fn send_paced(&self, session: &Arc<Session>, event: &Arc<EventBody>) -> Result<(), SendFailure> {
        loop {
            match self.send_event(session, event) {
                Err(SendFailure::Full) => tokio::time::sleep(Duration::from_millis(5)).await,
                done => return done,
            }
        }
    }

    /// The socket holds the session in its extensions and the session holds the socket: drop
    /// the socket's side, so neither outlives the connection.
    fn release(&self) {
        self.socket.extensions.remove::<Attached>();
    }

    fn close(&self, code: &str, message: &str) {
        let _ = self.socket.emit("close", &json!({"code": code, "message": message}));
        let socket = self.socket.clone();
        // Disconnecting runs the disconnect handler, which needs the session's state: not here.
        tokio::spawn(async move {
            let _ = socket.disconnect();
        });
    }
}

/// The Socket.io layer, with its handlers bound to the session engine.
pub(super) fn layer(gateway: Engine) -> SocketIoLayer {
    let options = gateway.options();
    let (layer, io) = SocketIo::builder()
        .max_buffer_size(options.session_buffer.max(1))
        .connect_timeout(options.handshake_timeout)
        .max_payload(MAX_PAYLOAD)
        .build_layer();

    // Everything happens in the middleware, which socketioxide runs before it sends the client
    // its CONNECT: a handler registered after that (in the connect handler, which it spawns)
    // would miss a `subscribe` the client sends the moment it is connected, silently.
    let authenticate = move |socket: SocketRef, TryData(auth): TryData<Auth>| {
        let gateway = gateway.clone();
        async move {
            let admission = gateway.admit().map_err(Refused)?;
            let auth = auth.unwrap_or(Auth { token: None, session: None });
            let peer = crate::peer::client_ip(socket.req_parts(), &gateway.options().trusted_proxies);
            let handshake =
                gateway.authenticate(auth.token.as_deref(), auth.session.as_deref(), peer).await.map_err(Refused)?;
            let outlet = Box::new(SioOutlet { socket: socket.clone() });
            let session = gateway.open_session(handshake, outlet, admission).map_err(Refused)?;
            socket.extensions.insert(Attached(session));
            register_handlers(&socket);
            Ok::<(), Refused>(())
        }
    };
    io.ns("/", (|_: SocketRef| async {}).with(authenticate));
    layer
}

fn register_handlers(socket: &SocketRef) {
    socket.on("subscribe", |socket: SocketRef, TryData(input): TryData<SubscribeInput>, ack: AckSender| async move {
        let (session, _slot, input) = match begin(&socket, input) {
            Ok(begun) => begun,
            Err(body) => return send(ack, body),
        };
        let subscribed = match StreamName::parse(&input.channel) {
            Ok(stream) => session.subscribe(stream, input.since, input.epoch.as_deref()).await,
            Err(err) => Err(err),
        };
        match subscribed {
            Ok((answer, generation)) => {
                let mut body = serde_json::to_value(&answer).unwrap_or_default();
                body["ok"] = true.into();
                send(ack, body);
                session.start_replay(answer.stream, generation);
            }
            Err(err) => send(ack, error_body(&err)),
        }
    });
    socket.on("unsubscribe", |socket: SocketRef, TryData(input): TryData<ChannelInput>, ack: AckSender| async move {
        let Some(session) = session_of(&socket) else { return send(ack, error_body(&ended())) };
        match input {
            Ok(input) => {
                let removed = StreamName::parse(&input.channel).is_ok_and(|stream| session.unsubscribe(stream));
                send(ack, json!({"ok": true, "channel": input.channel, "subscribed": removed}));
            }
            Err(e) => send(ack, error_body(&malformed(e))),
        }
    });
    socket.on("ack", |socket: SocketRef, Data(input): Data<AckInput>| async move {
        if let (Some(session), Ok(stream)) = (session_of(&socket), StreamName::parse(&input.channel)) {
            session.ack(stream, input.offset);
        }
    });
    socket.on("call", |socket: SocketRef, TryData(input): TryData<CallInput>, ack: AckSender| async move {
        let (session, _slot, input) = match begin(&socket, input) {
            Ok(begun) => begun,
            Err(body) => return send(ack, body),
        };
        let (mut reply, body) = match (input.body.0, input.upload) {
            (Some(_), Some(_)) => return send(ack, error_body(&malformed("give either `body` or `upload`, not both"))),
            (Some(bytes), None) => session.call(&input.command, input.input, Some(Body::from_bytes(bytes))).await,
            (None, Some(upload)) => session.call_with_upload(&input.command, input.input, &upload).await,
            (None, None) => session.call(&input.command, input.input, None).await,
        };
        if let Some(body) = body {
            match body.collect(MAX_ANSWER_BODY, "a Socket.io answer (ask for a byte range)").await {
                Ok(bytes) => return send_binary(ack, reply, bytes),
                Err(err) => reply = error_body(&err),
            }
        }
        send(ack, reply);
    });
    // A chunk holds a request slot while it waits for its command to read the one before: a
    // client that does not wait for acknowledgements is refused, not queued.
    socket.on("chunk", |socket: SocketRef, TryData(input): TryData<ChunkInput>, ack: AckSender| async move {
        let (session, _slot, input) = match begin(&socket, input) {
            Ok(begun) => begun,
            Err(body) => return send(ack, body),
        };
        match session.upload_chunk(&input.upload, Some(input.seq), input.data, input.end).await {
            Ok(()) => send(ack, json!({"ok": true, "upload": input.upload, "seq": input.seq})),
            Err(err) => send(ack, error_body(&err)),
        }
    });
    socket.on_disconnect(|socket: SocketRef| async move {
        if let Some(session) = session_of(&socket) {
            session.ended();
        }
    });
}

/// The session, one of its request slots (held until the answer) and the request's input, or the
/// error body to answer with.
fn begin<T>(
    socket: &SocketRef,
    input: Result<T, impl fmt::Display>,
) -> Result<(Arc<Session>, OwnedSemaphorePermit, T), Value> {
    let session = session_of(socket).ok_or_else(|| error_body(&ended()))?;
    let slot = session.begin_request().map_err(|err| error_body(&err))?;
    let input = input.map_err(|e| error_body(&malformed(e)))?;
    Ok((session, slot, input))
}

fn session_of(socket: &SocketRef) -> Option<Arc<Session>> {
    socket.extensions.get::<Attached>().map(|a| a.0)
}

fn send(ack: AckSender, body: Value) {
    let _ = ack.send(&body);
}

/// An answer with the command's bytes as a binary attachment (`body`).
fn send_binary(ack: AckSender, reply: Value, bytes: Bytes) {
    #[derive(serde::Serialize)]
    struct WithBody {
        #[serde(flatten)]
        reply: Value,
        body: Bytes,
    }
    let _ = ack.send(&WithBody { reply, body: bytes });
}

/// The answer to a request that arrives after its session ended (the socket is closing).
fn ended() -> ApiError {
    ApiError::new(herald_core::error::ErrorCode::Unavailable, "the session has ended; reconnect to resume")
}

fn malformed(e: impl fmt::Display) -> ApiError {
    ApiError::new(herald_core::error::ErrorCode::MalformedRequest, format!("the message does not parse: {e}"))
}
