//! The HTTP/1.1 server loop: accepts connections up to a cap, serves each with hyper under a
//! header-read timeout and an idle timeout, tells handlers the peer's address, and drains on
//! shutdown (the shape of tokio's mini-redis `run(listener, shutdown)`).
//!
//! - **Connections**: a semaphore around accept; at the cap, new clients wait in the listen
//!   backlog. A connection upgraded to a WebSocket leaves the count (sessions have their own
//!   limits) once hyper hands its socket over.
//! - **Header timeout**: hyper's; its clock runs whenever the server waits for a request head, so
//!   it bounds a half-sent head and the quiet between two keep-alive requests alike.
//! - **Idle timeout**: a connection on which nothing is read or written for this long is shut
//!   dropped (a stalled body upload, a client that stopped reading its answer).
//! - **Bodies**: every request body is held to a deadline or a minimum rate ([`crate::pace`]).
//! - **Per address**: each client address holds at most so many connections
//!   ([`crate::per_address`]); one over it is closed at accept.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{Router, body::Body, extract::ConnectInfo, response::IntoResponse as _};
use herald_core::{error::ErrorCode, net::Networks};
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt as _;

use crate::{
    pace::{BodyLimits, Paced},
    peer::forwarded_client,
    per_address::{AddressSlot, PerAddress},
    problem::HttpError,
};

/// Limits of the HTTP server; from the configuration.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Longest wait for a whole request head (also the keep-alive wait between requests).
    pub header_timeout: Duration,
    /// A connection silent both ways for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Most connections (or, through a trusted proxy, requests) one client address holds.
    pub max_connections_per_address: usize,
    /// The deadline and least rate of request bodies.
    pub body: BodyLimits,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Networks,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            max_connections_per_address: 2000,
            body: BodyLimits::default(),
            trusted_proxies: Networks::default(),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops accepting, lets every
/// connection finish its request in flight and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let addresses = PerAddress::new(limits.max_connections_per_address);
    let limits = Arc::new(limits);
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => permit.map_err(io::Error::other)?,
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // the listener is fine; pause so a persistent error does not spin.
                    tracing::warn!(error = %err, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // A trusted proxy's clients are counted per request, once its head names them.
        let slot = if limits.trusted_proxies.contains(peer.ip()) {
            None
        } else if let Some(slot) = addresses.take(peer.ip()) {
            Some(slot)
        } else {
            tracing::debug!(%peer, "closed a connection over the per-address cap");
            drop(stream);
            continue;
        };
        let (app, shutdown, addresses, limits) = (app.clone(), shutdown.clone(), addresses.clone(), limits.clone());
        connections.spawn(async move {
            // Returns when the connection closes, or when it upgrades: its slots are free then.
            serve_connection(stream, peer, app, &limits, addresses, shutdown).await;
            drop((permit, slot));
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: &Arc<ServerLimits>,
    addresses: PerAddress,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let started = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let io = Watched { inner: stream, activity: activity.clone(), started };
    let request_limits = limits.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let (app, limits, addresses) = (app.clone(), request_limits.clone(), addresses.clone());
        async move {
            let slot = match proxied_slot(&request, peer, &limits.trusted_proxies, &addresses) {
                Ok(slot) => slot,
                Err(()) => {
                    let detail = "too many connections from this address";
                    return Ok(HttpError::new(ErrorCode::TooManyRequests, detail).into_response());
                }
            };
            let (parts, body) = request.into_parts();
            let (body, pace) = Paced::new(body, limits.body);
            let mut request = hyper::Request::from_parts(parts, Body::new(body));
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(pace);
            let response = app.oneshot(request).await?;
            // A proxied client's slot is held until the last byte of its answer has gone.
            Ok::<_, std::convert::Infallible>(match slot {
                Some(slot) => response.map(|body| Body::new(body.map_frame(move |frame| (&slot, frame).1))),
                None => response,
            })
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::pin!(connection);
    let mut shutting_down = false;
    loop {
        let idle_deadline = {
            let last = Duration::from_millis(activity.load(Ordering::Relaxed));
            tokio::time::Instant::from_std(started + last + limits.idle_timeout)
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(idle_deadline), if !shutting_down => {
                let last = Duration::from_millis(activity.load(Ordering::Relaxed));
                if started.elapsed() >= last + limits.idle_timeout {
                    // Silent both ways: whatever request it carries has stalled. Drop it.
                    tracing::debug!(%peer, "closing a connection idle for the idle timeout");
                    return;
                }
            }
        }
    }
}

/// A slot for the client a trusted proxy forwards `request` for (`None` when `peer` is no trusted
/// proxy: its connection holds the slot); `Err` when that client has none left (429).
fn proxied_slot<B>(
    request: &hyper::Request<B>,
    peer: SocketAddr,
    trusted: &Networks,
    addresses: &PerAddress,
) -> Result<Option<AddressSlot>, ()> {
    if !trusted.contains(peer.ip()) {
        return Ok(None);
    }
    let client = forwarded_client(peer.ip(), request.headers(), trusted);
    addresses.take(client).map(Some).ok_or_else(|| {
        tracing::debug!(%peer, %client, "refused a proxied request over the per-address cap");
    })
}

pin_project_lite::pin_project! {
    /// A socket that notes, in milliseconds since `started`, when it last read or wrote.
    struct Watched {
        #[pin]
        inner: TcpStream,
        activity: Arc<AtomicU64>,
        started: Instant,
    }
}

impl Watched {
    fn touch(activity: &AtomicU64, started: Instant) {
        let now = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.store(now, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.inner.poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            Self::touch(this.activity, *this.started);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            Self::touch(this.activity, *this.started);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            Self::touch(this.activity, *this.started);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
