//! How fast a request body must come: every body the server reads is wrapped in [`Paced`].
//!
//! - **JSON and every other body** (the default): a total deadline, `HERALD_HTTP_BODY_TIMEOUT`,
//!   counted from the moment the request head arrived. A body still unfinished then fails to
//!   read; the handler answers `408 request_timeout` and the connection is closed (hyper does not
//!   keep a connection whose body was left unread).
//! - **Streamed bodies** (attachment uploads, client imports): their handlers call
//!   [`BodyPace::stream`] before reading, which trades the deadline for a minimum rate: each
//!   window of `HERALD_HTTP_BODY_TIMEOUT` spent *waiting for the client* must bring at least
//!   `HERALD_HTTP_BODY_MIN_RATE` bytes a second of it. Time the server spends not reading (the
//!   file store is slow to take a chunk) is not held against the client. A 5 GiB upload on a slow
//!   but steady line goes on; one byte every 20 s does not.
//! - **Upgraded sockets** (WebSocket, Socket.io) are not bodies: once upgraded, nothing here
//!   applies (sessions have their own idle and rate limits).

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::body::Bytes;
use herald_core::error::{ApiError, ErrorCode};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The pace every request body is held to; from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Longest a whole (non-streamed) body may take; also the window a streamed body's rate is
    /// measured over.
    pub timeout: Duration,
    /// Least bytes a second a streamed body must bring, over each window.
    pub min_rate: u64,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(30), min_rate: 1024 }
    }
}

/// The error a body too slow for its pace fails with.
#[derive(Debug, Clone, Copy)]
pub struct TooSlow;

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for TooSlow {}

/// A request's handle on the pace of its body (a request extension).
#[derive(Debug, Clone, Default)]
pub struct BodyPace(Arc<PaceState>);

#[derive(Debug, Default)]
struct PaceState {
    streamed: AtomicBool,
    too_slow: AtomicBool,
}

impl BodyPace {
    /// The handle of `request`'s body (a detached one when the server did not pace it).
    pub fn of(request: &axum::extract::Request) -> Self {
        request.extensions().get::<Self>().cloned().unwrap_or_default()
    }

    /// Holds this body to the minimum rate instead of the total deadline: for streamed bodies,
    /// called before a byte of them is read.
    pub fn stream(&self) {
        self.0.streamed.store(true, Ordering::Relaxed);
    }

    /// Whether this body was cut for being too slow.
    pub fn was_cut(&self) -> bool {
        self.0.too_slow.load(Ordering::Relaxed)
    }

    /// The error to answer a failed read of this body with: `408 request_timeout` when it was cut
    /// for being too slow, else `otherwise`.
    pub fn error(&self, otherwise: ApiError) -> ApiError {
        if self.was_cut() {
            ApiError::new(ErrorCode::RequestTimeout, "the request body came too slowly")
        } else {
            otherwise
        }
    }
}

pin_project_lite::pin_project! {
    /// A request body held to [`BodyLimits`].
    pub struct Paced<B> {
        #[pin]
        inner: B,
        pace: BodyPace,
        limits: BodyLimits,
        timer: Pin<Box<Sleep>>,
        // Streamed bodies: time waited for the client in this window, and bytes it brought.
        waited: Duration,
        since: Option<Instant>,
        bytes: u64,
    }
}

impl<B> Paced<B> {
    /// `inner`, held to `limits` from now; the handle its handlers see.
    pub fn new(inner: B, limits: BodyLimits) -> (Self, BodyPace) {
        let pace = BodyPace::default();
        let timer = Box::pin(tokio::time::sleep(limits.timeout));
        let paced = Self { inner, pace: pace.clone(), limits, timer, waited: Duration::ZERO, since: None, bytes: 0 };
        (paced, pace)
    }
}

impl<B> HttpBody for Paced<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        let streamed = this.pace.0.streamed.load(Ordering::Relaxed);
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let now = Instant::now();
                if let Some(since) = this.since.take() {
                    *this.waited += now - since;
                }
                *this.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                // A body that keeps coming is never late by the deadline: only waiting is.
                if streamed && *this.waited >= this.limits.timeout && !next_window(this.waited, this.bytes, this.limits)
                {
                    return Poll::Ready(Some(Err(cut(this.pace))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if !streamed => {
                ready!(this.timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(cut(this.pace))))
            }
            Poll::Pending => loop {
                // Wait for the client no longer than what is left of this window.
                let now = Instant::now();
                let since = *this.since.get_or_insert(now);
                this.timer.as_mut().reset(since + this.limits.timeout.saturating_sub(*this.waited));
                ready!(this.timer.as_mut().poll(cx));
                *this.waited += Instant::now() - since;
                *this.since = Some(Instant::now());
                if !next_window(this.waited, this.bytes, this.limits) {
                    return Poll::Ready(Some(Err(cut(this.pace))));
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// At the end of a window of waiting: whether the client brought enough in it; if so, the next
/// window begins.
fn next_window(waited: &mut Duration, bytes: &mut u64, limits: &BodyLimits) -> bool {
    let owed = limits.min_rate as f64 * limits.timeout.as_secs_f64();
    if (*bytes as f64) < owed {
        return false;
    }
    (*waited, *bytes) = (Duration::ZERO, 0);
    true
}

fn cut(pace: &BodyPace) -> axum::BoxError {
    pace.0.too_slow.store(true, Ordering::Relaxed);
    Box::new(TooSlow)
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt as _, StreamBody};

    use super::*;

    /// A body of `n` chunks of `size` bytes, one every `every`.
    fn dripping(n: usize, size: usize, every: Duration) -> impl HttpBody<Data = Bytes, Error = std::io::Error> {
        let chunks = futures::stream::unfold(0, move |i| async move {
            if i == n {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok(Frame::data(Bytes::from(vec![b'x'; size]))), i + 1))
        });
        StreamBody::new(chunks)
    }

    const LIMITS: BodyLimits = BodyLimits { timeout: Duration::from_secs(2), min_rate: 100 };

    #[tokio::test(start_paused = true)]
    async fn a_whole_body_has_a_deadline_and_a_streamed_one_a_rate() {
        // 10 bytes a second: under the deadline when short, cut when long, as a body or a stream.
        let (quick, _) = Paced::new(dripping(10, 1, Duration::from_millis(100)), LIMITS);
        assert_eq!(quick.collect().await.expect("in time").to_bytes().len(), 10);
        let (slow, pace) = Paced::new(dripping(30, 1, Duration::from_millis(100)), LIMITS);
        assert!(slow.collect().await.expect_err("past the deadline").is::<TooSlow>());
        assert!(pace.was_cut());
        assert_eq!(pace.error(ApiError::new(ErrorCode::MalformedRequest, "")).code(), ErrorCode::RequestTimeout);

        // 1000 bytes a second for 20 s: ten times the least rate, ten times the deadline.
        let (steady, pace) = Paced::new(dripping(200, 100, Duration::from_millis(100)), LIMITS);
        pace.stream();
        assert_eq!(steady.collect().await.expect("a steady stream").to_bytes().len(), 20_000);
        let (trickle, pace) = Paced::new(dripping(100, 1, Duration::from_millis(500)), LIMITS);
        pace.stream();
        assert!(trickle.collect().await.expect_err("below the rate").is::<TooSlow>());
        let (steady, pace) = Paced::new(dripping(5, 1, Duration::from_millis(100)), LIMITS);
        assert_eq!(steady.collect().await.expect("in time").to_bytes().len(), 5);
        assert_eq!(pace.error(ApiError::new(ErrorCode::MalformedRequest, "")).code(), ErrorCode::MalformedRequest);
    }
}
