//! A mock SMS provider for tests and benchmarks: it serves the gateway contract of the provider
//! channel, counts what it receives by message id, and misbehaves exactly as a test programs it to.
//!
//! # The contract
//!
//! `POST {base}/v1/send/{msgId}` with `Authorization: Bearer <token>`, `Content-Type: application/json`
//! and the body `{"id": <msgId>, "phone": <digits>, "text": "..."}` (both numbers are JSON integers,
//! no other field is allowed, the text is not empty). A valid request is answered 200 with
//! `{"id": <msgId>, "status": "sent"}`. Validation is strict, in this order: an unknown path is 404,
//! another method 405, a missing or wrong token 401, another content type 415, a bad body or a path
//! id that differs from the body's 400.
//!
//! # Programming it
//!
//! Every control is a method on [`MockProvider`] and takes effect for the next request to arrive.
//! Each request is decided on arrival, in this order:
//!
//! 1. it waits the latency plus a uniform jitter (every answer below waits it);
//! 2. a reply queued with [`MockProvider::then`] / [`MockProvider::then_answer`] is taken, whatever
//!    the request;
//! 3. during an outage ([`MockProvider::outage`], [`MockProvider::outage_for`]) it gets the
//!    [`OutageMode`]'s answer: 503 (default), the connection closed without an answer, or held for a
//!    while and then 503;
//! 4. a request that breaks the contract gets its 4xx;
//! 5. a valid one is throttled (429 with `Retry-After`) while [`MockProvider::throttle_next`] lasts;
//! 6. otherwise one seeded roll picks 429, 500 or a [`Malformed`] answer by their rates, or 200.
//!
//! Faults are drawn from a seeded RNG ([`DEFAULT_SEED`] unless [`MockProvider::set_seed`] is
//! called), and every request draws the same amount, so a run that sends its requests one by one
//! sees the same faults every time; with concurrent requests the totals are still honoured but which
//! request gets which fault follows the arrival order.
//!
//! An answer with status 200 to a valid request counts as accepted, including a malformed 200: by
//! the contract the status decides, and the provider did send the message.
//!
//! # Counting and waiting
//!
//! [`MockProvider::received`], [`MockProvider::accepted_ids`], [`MockProvider::accepted`] and
//! [`MockProvider::stats`] tell what arrived; [`MockProvider::wait_accepted`] and
//! [`MockProvider::wait_requests`] wait, bounded by a timeout, until enough has, so tests never poll
//! on a sleep.
//!
//! # Its own ceiling
//!
//! With no latency and no faults programmed, a client loop against the mock (for example the
//! `mock-provider` binary in a separate process, driven by a pool of keep-alive connections)
//! measures the mock's own maximum rate. A benchmark of Herald's sender is only meaningful well below
//! that ceiling; measure it on the same machine first.

mod control;
mod record;
mod server;

use std::{
    fmt, io,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub use control::{DEFAULT_SEED, Malformed, OutageMode, Reply};
pub use record::{Accepted, Stats};

use control::Control;
use record::{Progress, Record};

/// How long [`MockProvider::stop`] waits for in-flight answers before it abandons them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running mock provider. Dropping it stops the server too, without waiting; [`MockProvider::stop`]
/// waits for in-flight requests (sleeping ones are cut short and answered 503).
#[derive(Debug)]
pub struct MockProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
}

/// What the handle and the handlers share.
struct Shared {
    token: String,
    control: Mutex<Control>,
    record: Mutex<Record>,
    progress: watch::Sender<Progress>,
    stop: CancellationToken,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token stays out of logs.
        f.debug_struct("Shared").field("control", &self.control).field("record", &self.record).finish_non_exhaustive()
    }
}

impl Shared {
    /// Changes the record and tells waiters.
    fn update(&self, change: impl FnOnce(&mut Record)) {
        let mut record = lock(&self.record);
        change(&mut record);
        self.progress.send_replace(record.progress());
    }

    /// Sleeps `delay`; false when the mock is stopping instead.
    async fn pause(&self, delay: Duration) -> bool {
        if delay.is_zero() {
            return !self.stop.is_cancelled();
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.stop.cancelled() => false,
        }
    }
}

/// Locks, shrugging off poisoning: the state stays consistent between statements, and a panicking
/// test should not turn every other assertion into a poison error.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A wait that ran out of time: what was wanted and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitTimeout {
    /// What was counted.
    pub what: &'static str,
    /// The count waited for.
    pub wanted: u64,
    /// The count reached when time ran out.
    pub reached: u64,
    /// How long it waited.
    pub waited: Duration,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { what, wanted, reached, waited } = self;
        write!(f, "waited {waited:?} for {wanted} {what}, reached {reached}")
    }
}

impl std::error::Error for WaitTimeout {}

impl MockProvider {
    /// Starts a healthy mock on `127.0.0.1:<free port>` that expects `token`. Must run inside a
    /// Tokio runtime.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound, which leaves a test nothing to do.
    pub async fn start(token: &str) -> Self {
        Self::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), token)
            .await
            .expect("binding a free port on 127.0.0.1 for the mock provider")
    }

    /// Starts a healthy mock on `addr` that expects `token`.
    pub async fn bind(addr: SocketAddr, token: &str) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            control: Mutex::new(Control::default()),
            record: Mutex::new(Record::default()),
            progress: watch::Sender::new(Progress::default()),
            stop: CancellationToken::new(),
        });
        let app = server::router(Arc::clone(&shared)).into_make_service_with_connect_info::<server::Conn>();
        let stop = shared.stop.clone();
        let server = tokio::spawn(async move {
            // axum's serve only returns once shut down; there is no error left to act on then.
            axum::serve(server::SeverableListener(listener), app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .ok();
        });
        Ok(Self { addr, shared, server: Some(server) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, the `{base}` of the contract, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The full URL for one message: `{base}/v1/send/{id}`.
    pub fn send_url(&self, id: u64) -> String {
        format!("http://{}/v1/send/{id}", self.addr)
    }

    /// Stops accepting, cuts short every programmed wait (those requests get 503) and waits a few
    /// seconds for in-flight answers to be written.
    pub async fn stop(mut self) {
        self.shared.stop.cancel();
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(STOP_GRACE, &mut server).await.is_err()
        {
            server.abort();
        }
    }

    /// Waits `latency` plus a uniform random `[0, jitter]` before every answer.
    pub fn set_latency(&self, latency: Duration, jitter: Duration) {
        lock(&self.shared.control).set_latency(latency, jitter);
    }

    /// Restarts the fault RNG from `seed`.
    pub fn set_seed(&self, seed: u64) {
        lock(&self.shared.control).set_seed(seed);
    }

    /// Answers 500 to this fraction (0 to 1) of valid requests.
    pub fn set_failure_rate(&self, rate: f64) {
        lock(&self.shared.control).set_failure_rate(rate);
    }

    /// Answers 429 with `Retry-After: <retry_after_secs>` to this fraction (0 to 1) of valid requests.
    pub fn set_throttle_rate(&self, rate: f64, retry_after_secs: u32) {
        lock(&self.shared.control).set_throttle_rate(rate, retry_after_secs);
    }

    /// Answers 429 with `Retry-After: <retry_after_secs>` to the next `n` valid requests (outside
    /// outages and scripted replies), then goes back to normal.
    pub fn throttle_next(&self, n: u32, retry_after_secs: u32) {
        lock(&self.shared.control).throttle_next(n, retry_after_secs);
    }

    /// Answers this fraction (0 to 1) of valid requests with a `kind` malformed answer.
    pub fn set_malformed_rate(&self, rate: f64, kind: Malformed) {
        lock(&self.shared.control).set_malformed_rate(rate, kind);
    }

    /// Starts (`true`) or ends (`false`) an outage that lasts until called again.
    pub fn outage(&self, on: bool) {
        lock(&self.shared.control).set_outage(on);
    }

    /// Starts an outage that ends by itself after `duration` (Tokio time, so `pause()` applies).
    pub fn outage_for(&self, duration: Duration) {
        lock(&self.shared.control).outage_for(duration);
    }

    /// Whether an outage is on now.
    pub fn in_outage(&self) -> bool {
        lock(&self.shared.control).outage_active(tokio::time::Instant::now())
    }

    /// How requests are treated during an outage (503 unless set).
    pub fn set_outage_mode(&self, mode: OutageMode) {
        lock(&self.shared.control).set_outage_mode(mode);
    }

    /// Queues `reply` for one upcoming request; queued replies are used in order, one per request.
    pub fn then(&self, reply: Reply) {
        lock(&self.shared.control).push(reply);
    }

    /// Queues an exact answer for one upcoming request (see [`Reply::Answer`]).
    pub fn then_answer(&self, status: u16, body: impl Into<Bytes>, headers: &[(&str, &str)]) {
        let headers = headers.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
        self.then(Reply::Answer { status, body: body.into(), headers });
    }

    /// Back to a healthy provider: no latency, faults, outage or queued replies. Counts are kept and
    /// the RNG goes on where it was.
    pub fn heal(&self) {
        lock(&self.shared.control).heal();
    }

    /// How many requests named message `id` in their path, whatever their answer.
    pub fn received(&self, id: u64) -> u32 {
        lock(&self.shared.record).received(id)
    }

    /// When each request arrived, in arrival order (to measure the rate a client keeps).
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        lock(&self.shared.record).arrivals()
    }

    /// The ids answered 200 at least once, ascending.
    pub fn accepted_ids(&self) -> Vec<u64> {
        lock(&self.shared.record).accepted_ids()
    }

    /// The accepted message `id`: its phone, text and how many times it was accepted.
    pub fn accepted(&self, id: u64) -> Option<Accepted> {
        lock(&self.shared.record).accepted(id)
    }

    /// Every accepted message, by ascending id.
    pub fn accepted_messages(&self) -> Vec<Accepted> {
        lock(&self.shared.record).accepted_messages()
    }

    /// The totals so far.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.record).stats()
    }

    /// Forgets everything counted so far (the behaviour stays).
    pub fn reset_counts(&self) {
        self.shared.update(|record| *record = Record::default());
    }

    /// Waits until at least `n` distinct message ids have been accepted, or `timeout` has passed.
    pub async fn wait_accepted(&self, n: usize, timeout: Duration) -> Result<(), WaitTimeout> {
        self.wait_for("distinct accepted ids", n as u64, timeout, |p| p.distinct_accepted as u64).await
    }

    /// Waits until at least `n` requests have arrived (valid or not), or `timeout` has passed.
    pub async fn wait_requests(&self, n: u64, timeout: Duration) -> Result<(), WaitTimeout> {
        self.wait_for("requests", n, timeout, |p| p.requests).await
    }

    async fn wait_for(
        &self,
        what: &'static str,
        wanted: u64,
        timeout: Duration,
        count: impl Fn(&Progress) -> u64,
    ) -> Result<(), WaitTimeout> {
        let mut progress = self.shared.progress.subscribe();
        // The sender lives in `shared`, which outlives this borrow, so `wait_for` only ends on the count.
        let done = matches!(tokio::time::timeout(timeout, progress.wait_for(|p| count(p) >= wanted)).await, Ok(Ok(_)));
        if done {
            return Ok(());
        }
        let reached = count(&progress.borrow());
        Err(WaitTimeout { what, wanted, reached, waited: timeout })
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        // The server task sees the cancellation and finishes its in-flight answers on its own.
        self.shared.stop.cancel();
    }
}
