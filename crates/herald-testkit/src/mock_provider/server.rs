//! The mock's HTTP side: a listener whose connections a handler can sever, the contract's validation,
//! and the one handler that plays each request's plan and counts it.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{ConnectInfo, State, connect_info::Connected},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    serve::{IncomingStream, Listener},
};
use serde::Deserialize;
use serde_json::json;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    time::Instant,
};

use super::{
    Shared,
    control::{Malformed, OutageMode, Plan, Reply},
    lock,
};

/// The contract's one route, up to the message id.
const SEND_PREFIX: &str = "/v1/send/";

/// The contract's body. Unknown fields are refused: Herald must send exactly the contract.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SendBody {
    pub(super) id: u64,
    pub(super) phone: u64,
    pub(super) text: String,
}

/// The router: every request, whatever its method or path, goes to [`handle`] so that it is counted.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// A TCP listener whose connections can be closed from inside a handler.
#[derive(Debug)]
pub(super) struct SeverableListener(pub(super) TcpListener);

impl Listener for SeverableListener {
    type Io = SeverableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((inner, peer)) => {
                    // Small request/answer pairs: Nagle would add delay the benchmarks would measure.
                    inner.set_nodelay(true).ok();
                    return (SeverableStream { inner, severed: Arc::new(AtomicBool::new(false)) }, peer);
                }
                // Out of descriptors, or a connection reset while queued: wait a moment, as axum's own does.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A TCP stream that, once severed, reads end-of-file and refuses writes, so hyper drops the
/// connection without writing the answer.
#[derive(Debug)]
pub(super) struct SeverableStream {
    inner: TcpStream,
    severed: Arc<AtomicBool>,
}

impl AsyncRead for SeverableStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.severed.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SeverableStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.severed.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.severed.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The handler's grip on its own connection.
#[derive(Debug, Clone)]
pub(super) struct Conn {
    severed: Arc<AtomicBool>,
}

impl Conn {
    fn sever(&self) {
        self.severed.store(true, Ordering::Release);
    }
}

impl Connected<IncomingStream<'_, SeverableListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, SeverableListener>) -> Self {
        Self { severed: Arc::clone(&stream.io().severed) }
    }
}

/// Why a request breaks the contract.
#[derive(Debug)]
struct Rejection {
    status: StatusCode,
    reason: String,
}

impl Rejection {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self { status, reason: reason.into() }
    }

    fn into_response(self) -> Response {
        let mut response = error(self.status, &self.reason);
        match self.status {
            StatusCode::UNAUTHORIZED => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::METHOD_NOT_ALLOWED => {
                response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            _ => {}
        }
        response
    }
}

/// Checks one request against the contract, in the order a gateway would: route, method, token,
/// content type, body, path id against body id.
fn check(token: &str, method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Result<SendBody, Rejection> {
    let Some(raw_id) = path.strip_prefix(SEND_PREFIX) else {
        return Err(Rejection::new(StatusCode::NOT_FOUND, "no such route; the contract has POST /v1/send/{msgId}"));
    };
    if method != Method::POST {
        return Err(Rejection::new(StatusCode::METHOD_NOT_ALLOWED, "only POST"));
    }
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(token) {
        return Err(Rejection::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Rejection::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json"));
    }
    let Ok(path_id) = raw_id.parse::<u64>() else {
        return Err(Rejection::new(StatusCode::BAD_REQUEST, "the message id in the path is not a number"));
    };
    let message: SendBody = serde_json::from_slice(body)
        .map_err(|e| Rejection::new(StatusCode::BAD_REQUEST, format!("the body breaks the contract: {e}")))?;
    if message.id != path_id {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            format!("the body's id {} differs from the path's {path_id}", message.id),
        ));
    }
    if message.text.is_empty() {
        return Err(Rejection::new(StatusCode::BAD_REQUEST, "the text is empty"));
    }
    Ok(message)
}

/// One request between its arrival and its answer; dropped unanswered, it counts as abandoned.
struct Pending {
    shared: Arc<Shared>,
    settled: bool,
}

impl Pending {
    fn answer(mut self, response: Response, message: Option<&SendBody>) -> Response {
        self.settled = true;
        let status = response.status();
        let accepted = message.filter(|_| status == StatusCode::OK);
        self.shared.update(|record| record.answer(status.as_u16(), accepted));
        response
    }

    fn close(mut self) {
        self.settled = true;
        self.shared.update(|record| record.close());
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.update(|record| record.abandon());
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path_id = uri.path().strip_prefix(SEND_PREFIX).and_then(|raw| raw.parse::<u64>().ok());
    shared.update(|record| record.receive(path_id));
    let pending = Pending { shared: Arc::clone(&shared), settled: false };
    let checked = check(&shared.token, &method, uri.path(), &headers, &body);
    let (delay, plan) = lock(&shared.control).plan(checked.is_ok(), Instant::now());
    let (message, rejection) = match checked {
        Ok(message) => (Some(message), None),
        Err(rejection) => (None, Some(rejection)),
    };
    if !shared.pause(delay).await {
        return pending.answer(unavailable(), None);
    }
    let id = message.as_ref().map_or(path_id.unwrap_or(0), |m| m.id);
    let response = match plan {
        Plan::Scripted(Reply::Answer { status, body, headers }) => scripted(status, body, &headers),
        Plan::Scripted(Reply::Malformed(kind)) | Plan::Malformed(kind) => malformed(kind, id),
        Plan::Scripted(Reply::Close) | Plan::Outage(OutageMode::Close) => {
            conn.sever();
            pending.close();
            // Never written: the severed stream refuses it and hyper drops the connection.
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        Plan::Scripted(Reply::Hang(hold)) | Plan::Outage(OutageMode::Hang(hold)) => {
            shared.pause(hold).await;
            unavailable()
        }
        Plan::Outage(OutageMode::Unavailable) => unavailable(),
        Plan::Reject => rejection.map_or_else(
            || error(StatusCode::INTERNAL_SERVER_ERROR, "mock: rejected a valid request"),
            Rejection::into_response,
        ),
        Plan::Throttle(secs) => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate limited");
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            response
        }
        Plan::Fail => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        Plan::Accept => (StatusCode::OK, Json(json!({ "id": id, "status": "sent" }))).into_response(),
    };
    pending.answer(response, message.as_ref())
}

fn error(status: StatusCode, reason: &str) -> Response {
    (status, Json(json!({ "error": reason }))).into_response()
}

fn unavailable() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "service unavailable")
}

fn malformed(kind: Malformed, id: u64) -> Response {
    let plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    match kind {
        Malformed::NotJson => (StatusCode::OK, plain, "message accepted").into_response(),
        Malformed::Truncated => {
            let mut body = format!(r#"{{"id":{id},"status":"sent"}}"#);
            body.truncate(body.len() / 2);
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Malformed::Teapot => (StatusCode::IM_A_TEAPOT, plain, "I'm a teapot").into_response(),
    }
}

fn scripted(status: u16, body: Bytes, headers: &[(String, String)]) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) else {
            continue;
        };
        // A scripted Content-Type replaces the default one rather than adding a second.
        if name == header::CONTENT_TYPE {
            response.headers_mut().insert(name, value);
        } else {
            response.headers_mut().append(name, value);
        }
    }
    response
}
