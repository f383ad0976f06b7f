//! The sender: takes claimed deliveries from the work queue, calls their channel, and records the
//! outcomes.
//!
//! A queue message is a [`JobBatch`]. Its claims are checked with one store read: a job whose
//! claim is no longer current (already settled, or rescued and handed out again) is dropped, so a
//! message the broker redelivers is not sent twice. Then each current [`DeliveryJob`] takes one of
//! the sender's `concurrency` slots:
//! 1. past its deadline it expires without an attempt;
//! 2. while its guard's circuit breaker is open it is deferred to when the breaker lets a probe
//!    through, without spending an attempt;
//! 3. the guard's token bucket paces it (a wait that would outlast the claim defers it instead);
//! 4. the channel is called and the outcome becomes a report through the [`RetryPolicy`].
//!
//! Reports are written in batches: whatever finished while the previous write ran goes in the
//! next one (group commit), and a message is acked only after the reports of all its jobs are
//! durable. A sender killed mid-batch leaves its messages unacked: the broker redelivers them (or
//! their claims lapse and the scheduler requeues them), and only calls that got no recorded answer
//! are made again.
//! The `realtime` channel writes the event and the report in one transaction: exactly once.
//!
//! A guard (breaker and rate limit) is kept per channel, and for webhooks, which users aim, per
//! destination host: one user's dead webhook does not hold back another's (see [`guards`]).
//! Guards are per sender process: with N senders a provider sees up to N times the configured
//! rate.

mod guards;
mod limit;
mod realtime;
mod reports;
mod slots;
mod span;
mod verdict;
mod webhook;

use parking_lot::Mutex;
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use herald_core::{
    broker::{self, Broker, ConsumeOptions},
    clock::Clock,
    delivery::{
        BreakerConfig, BreakerState, Channel, DELIVERY_QUEUE, DeliveryId, DeliveryJob, DeliveryReport, DeliveryStatus,
        JobBatch, RetryPolicy, ZonedWindow,
    },
    metrics::{ChannelLabels, Metrics},
    quarantine::FailurePolicy,
    store::Store,
    trace,
};
use rand::{SeedableRng, rngs::StdRng};
use tokio::{
    sync::{Semaphore, mpsc},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use self::{
    guards::{Guard, GuardKey, Guards},
    reports::settle,
    slots::{AbortOnDrop, hold_back, take_slot},
    span::delivery_span,
};
use crate::{channels::Channels, failures::Failures};

/// A rate limit: per channel, and for webhooks per destination host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

/// How a sender behaves.
#[derive(Debug, Clone)]
pub struct SenderOptions {
    /// Most deliveries in flight at once (also the broker prefetch, in messages). The sender
    /// adapts how many it keeps in flight between `min_concurrency` and this, by its channels'
    /// call times and transient failures (see [`limit`]).
    pub concurrency: usize,
    /// Fewest deliveries in flight the adaptive limit goes down to; equal to `concurrency` fixes it.
    pub min_concurrency: usize,
    /// A queue message not acked within this is redelivered to another sender. Longer than the
    /// scheduler's lease, so the broker redelivers only messages whose claims have lapsed.
    pub ack_deadline: Duration,
    /// Most reports per store write.
    pub report_batch: usize,
    pub policy: RetryPolicy,
    pub breaker: BreakerConfig,
    /// Rate limits by channel; channels without one are not limited. The webhook one holds for
    /// each destination host.
    pub rates: HashMap<Channel, Rate>,
    /// Most webhook destination hosts whose breaker and rate limit are kept; the least recently
    /// used is forgotten to make room.
    pub max_hosts: usize,
    /// Time kept free at the end of a claim for the call itself: a rate-limit wait that would eat
    /// into it defers the delivery instead.
    pub call_margin: Duration,
}

impl Default for SenderOptions {
    fn default() -> Self {
        Self {
            concurrency: 64,
            min_concurrency: 64,
            ack_deadline: Duration::from_secs(60),
            report_batch: 2000,
            policy: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            rates: HashMap::new(),
            max_hosts: 10_000,
            call_margin: Duration::from_secs(15),
        }
    }
}

/// What to do with a job once handled.
#[derive(Debug)]
enum Disposition {
    /// Record this report.
    Report(DeliveryReport),
    /// Nothing to record (recorded already).
    Done,
    /// Could not finish (the store did not answer): redeliver the job's message later.
    Retry,
}

/// A queue message whose jobs are in progress: settled once the last of them is recorded, and
/// redelivered if any of them asked for it.
struct InFlight {
    delivery: Mutex<Option<broker::QueueMessage>>,
    remaining: AtomicUsize,
    retry: AtomicBool,
}

impl InFlight {
    fn new(delivery: broker::QueueMessage, jobs: usize) -> Arc<Self> {
        Arc::new(Self { delivery: Mutex::new(Some(delivery)), remaining: AtomicUsize::new(jobs), retry: false.into() })
    }

    /// Counts one job as recorded; the message once its last job is.
    fn finish_one(&self, retry: bool) -> Option<(broker::QueueMessage, bool)> {
        if retry {
            self.retry.store(true, Ordering::Relaxed);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return None;
        }
        let delivery = self.delivery.lock().take()?;
        Some((delivery, self.retry.load(Ordering::Relaxed)))
    }
}

/// A handled job on its way to the reporter, with its message and the concurrency slot it holds.
type Handled = ((DeliveryId, DateTime<Utc>), Disposition, Arc<InFlight>, tokio::sync::OwnedSemaphorePermit);

struct Inner {
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    channels: Channels,
    options: SenderOptions,
    guards: Mutex<Guards>,
    rng: Mutex<StdRng>,
    /// Claims taken and not yet recorded. A broker may hand over a second copy of a message
    /// while the first is in progress (a redelivery racing a release); its claims are still
    /// current, so only this set keeps them from being sent twice by this sender.
    taken: Mutex<HashSet<(DeliveryId, DateTime<Utc>)>>,
    /// How many deliveries are kept in flight now.
    limit: limit::Limit,
    /// Backs off deliveries whose outcome the store refuses.
    failures: Failures,
}

/// Sends claimed deliveries. Cheap to clone.
#[derive(Clone)]
pub struct Sender(Arc<Inner>);

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("options", &self.0.options).finish_non_exhaustive()
    }
}

impl Sender {
    pub fn new(
        store: Arc<dyn Store>,
        broker: Arc<dyn Broker>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        channels: Channels,
        options: SenderOptions,
    ) -> Self {
        let guards = Guards::new(options.breaker.clone(), options.rates.clone(), options.max_hosts);
        let limit = limit::Limit::new(options.min_concurrency, options.concurrency);
        metrics.sender_concurrency.set(i64::try_from(limit.current()).unwrap_or(i64::MAX));
        for (channel, rate) in &options.rates {
            let labels = ChannelLabels { channel: channel.as_str().to_owned() };
            metrics.delivery_rate_limit.get_or_create(&labels).set(rate.per_second);
        }
        let failures = Failures::new(store.clone(), metrics.clone(), FailurePolicy::default());
        Self(Arc::new(Inner {
            failures,
            limit,
            store,
            broker,
            clock,
            metrics,
            channels,
            options,
            guards: Mutex::new(guards),
            rng: Mutex::new(StdRng::from_os_rng()),
            taken: Mutex::new(HashSet::new()),
        }))
    }

    /// The breaker state of `channel` in this sender. Webhooks and email have a breaker per
    /// destination instead ([`Sender::destination_breaker_state`]); for them this is always closed.
    pub fn breaker_state(&self, channel: Channel) -> BreakerState {
        let now = self.0.clock.now();
        self.with_guard(&GuardKey::Channel(channel), |g| g.breaker.state(now))
    }

    /// The breaker state of a destination: a webhook's `host:port` (as in the URL, the port always
    /// given) or a mail domain's `email:<domain>`; closed for one this sender does not keep.
    pub fn destination_breaker_state(&self, host: &str) -> BreakerState {
        let now = self.0.clock.now();
        let guards = self.0.guards.lock();
        guards.host_state(host, now).unwrap_or(BreakerState::Closed)
    }

    /// How many webhook destination hosts this sender keeps a breaker for (at most `max_hosts`).
    pub fn webhook_hosts(&self) -> usize {
        self.0.guards.lock().hosts()
    }

    fn with_guard<T>(&self, key: &GuardKey, f: impl FnOnce(&mut Guard) -> T) -> T {
        self.0.guards.lock().with(key, f)
    }

    /// Consumes the delivery queue until `shutdown`, then finishes what is in flight, records it
    /// and returns. Dropping the future instead (a crash) leaves unacked messages to the broker.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let options = ConsumeOptions {
                ack_deadline: self.0.options.ack_deadline,
                prefetch: u16::try_from(self.0.options.concurrency).unwrap_or(u16::MAX),
            };
            let consumer = tokio::select! {
                () = shutdown.cancelled() => return,
                consumer = self.0.broker.consume(DELIVERY_QUEUE, options) => consumer,
            };
            match consumer {
                Ok(consumer) => {
                    backoff = Duration::from_millis(100);
                    self.consume(consumer, &shutdown).await;
                }
                Err(err) => {
                    self.0.metrics.sender_errors.inc();
                    tracing::warn!(error = %err, retry_in = ?backoff, "could not consume the delivery queue");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn consume(&self, mut consumer: Box<dyn broker::QueueConsumer>, shutdown: &CancellationToken) {
        let (reports, received) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        let reporter = tokio::spawn(self.clone().report(received));
        // Abort the reporter if this future is dropped (the sender is killed), as the tasks are.
        let _reporter_guard = AbortOnDrop(reporter.abort_handle());
        let limit = &self.0.limit;
        let slots = Arc::new(Semaphore::new(limit.max()));
        // The slots above the adaptive limit, held back here.
        let mut reserve = Vec::new();
        'messages: loop {
            if let Some(now) = limit.decide() {
                self.0.metrics.sender_concurrency.set(i64::try_from(now).unwrap_or(i64::MAX));
                tracing::debug!(limit = now, "sender concurrency adapted");
            }
            hold_back(&slots, &mut reserve, limit.max() - limit.current());
            // Take a message only with a slot free for it, so messages wait in the broker rather
            // than here.
            let Ok(first) = take_slot(&slots, limit).await else { break };
            let next = tokio::select! {
                () = shutdown.cancelled() => break,
                next = consumer.next() => next,
            };
            let delivery = match next {
                Ok(delivery) => delivery,
                Err(broker::BrokerError::Closed) => break,
                Err(err) => {
                    self.0.metrics.sender_errors.inc();
                    tracing::warn!(error = %err, "the delivery queue failed; the broker client reconnects");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            };
            let Some(jobs) = self.current_jobs(&delivery).await else {
                tasks.spawn(settle(delivery, true));
                continue;
            };
            if jobs.is_empty() {
                tasks.spawn(settle(delivery, false));
                continue;
            }
            let message = InFlight::new(delivery, jobs.len());
            let mut slot = Some(first);
            for job in jobs {
                let slot = match slot.take() {
                    Some(slot) => slot,
                    None => {
                        // A lower limit takes back the slots that freed meanwhile, before this job.
                        hold_back(&slots, &mut reserve, limit.max() - limit.current());
                        match take_slot(&slots, limit).await {
                            Ok(slot) => slot,
                            Err(_) => break 'messages,
                        }
                    }
                };
                let (sender, reports, message) = (self.clone(), reports.clone(), message.clone());
                tasks.spawn(async move {
                    let claim = job.claim();
                    let span = delivery_span(&job);
                    let disposition = sender.handle_job(job).instrument(span).await;
                    // The slot is freed once the report is written, so at most `concurrency`
                    // deliveries are ever unrecorded. The reporter outlives every task but a
                    // killed sender's.
                    let _ = reports.send((claim, disposition, message, slot));
                });
            }
            // Reap finished tasks so the set does not grow.
            while tasks.try_join_next().is_some() {}
        }
        // Graceful stop: let in-flight deliveries finish and their reports be written.
        while tasks.join_next().await.is_some() {}
        drop(reports);
        let _ = reporter.await;
        drop(consumer);
    }

    /// The jobs of a queue message whose claims are still current; `None` when the store could
    /// not tell (redeliver the message later). An unreadable message has none.
    async fn current_jobs(&self, delivery: &broker::QueueMessage) -> Option<Vec<DeliveryJob>> {
        let inner = &self.0;
        let jobs = match JobBatch::decode(&delivery.message.payload) {
            Ok(jobs) => jobs,
            Err(err) => {
                inner.metrics.sender_errors.inc();
                tracing::warn!(message = %delivery.message.id, error = %err, "dropped an unreadable delivery message");
                return Some(Vec::new());
            }
        };
        let claims: Vec<_> = jobs.iter().map(DeliveryJob::claim).collect();
        let current = match inner.store.current_claims(&claims).await {
            Ok(current) => current,
            Err(err) => {
                tracing::warn!(message = %delivery.message.id, error = %err, "could not check claims; retrying the message");
                return None;
            }
        };
        let before = jobs.len();
        let jobs: Vec<DeliveryJob> = {
            let mut taken = inner.taken.lock();
            jobs.into_iter().filter(|job| current.contains(&DeliveryId(job.id)) && taken.insert(job.claim())).collect()
        };
        if jobs.len() < before {
            tracing::debug!(skipped = before - jobs.len(), "skipped deliveries whose claim is settled or superseded");
        }
        Some(jobs)
    }

    async fn handle_job(&self, job: DeliveryJob) -> Disposition {
        let inner = &self.0;
        let id = DeliveryId(job.id);
        let now = inner.clock.now();
        let Ok(channel) = job.channel.parse::<Channel>() else {
            let reason = format!("unknown channel {:?}", job.channel);
            return Disposition::Report(self.report_for(&job, "unknown", DeliveryStatus::Failed, now, Some(reason)));
        };
        // A job that waited for a slot until its claim nearly ran out goes back to pending
        // rather than racing the rescuer, which may hand it to another sender.
        let margin = chrono::Duration::from_std(inner.options.call_margin).unwrap_or(chrono::Duration::MAX);
        if now + margin > job.lease_until {
            let reason = Some("deferred: the claim ran out before the sender got to it".to_owned());
            return Disposition::Report(self.defer(&job, channel, now, reason));
        }
        if job.deadline.is_some_and(|deadline| deadline <= now) {
            let reason = Some("the deadline passed before an attempt".to_owned());
            return Disposition::Report(self.report_for(&job, channel.as_str(), DeliveryStatus::Expired, now, reason));
        }
        if let Some(window) = ZonedWindow::of_payload(&job.payload) {
            let open = window.next_allowed(now);
            if open > now {
                if job.deadline.is_some_and(|deadline| open >= deadline) {
                    let reason = Some("the send window does not open again before the deadline".to_owned());
                    let status = DeliveryStatus::Expired;
                    return Disposition::Report(self.report_for(&job, channel.as_str(), status, now, reason));
                }
                let reason = Some("deferred: outside the send window".to_owned());
                return Disposition::Report(self.defer(&job, channel, open, reason));
            }
        }
        let key = GuardKey::of(channel, &job.recipient);
        if let Some(until) = self.gate(&key, now) {
            let reason = match key {
                GuardKey::Host(_) => "deferred: the circuit of this webhook's host is open".to_owned(),
                GuardKey::Channel(channel) => format!("deferred: the {} circuit is open", channel.as_str()),
            };
            return Disposition::Report(self.defer(&job, channel, until, Some(reason)));
        }
        if let Err(wait) = self.pace(&key, job.lease_until).await {
            let at = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
            return Disposition::Report(self.defer(&job, channel, at, None));
        }
        let labels = ChannelLabels { channel: channel.as_str().to_owned() };
        inner.metrics.delivery_attempts.get_or_create(&labels).inc();
        let started = Instant::now();
        let call = tracing::info_span!(
            target: trace::TARGET,
            "channel.call",
            otel.kind = "client",
            channel = channel.as_str(),
            attempt = job.attempts + 1,
        );
        let outcome = match channel {
            Channel::Log => {
                call.in_scope(|| {
                    tracing::info!(
                        target: "herald::delivery",
                        delivery = %job.id,
                        kind = %job.kind,
                        recipient = %job.recipient,
                        payload = %job.payload,
                        attempt = job.attempts + 1,
                        "delivered"
                    );
                });
                Ok(())
            }
            Channel::Provider => inner.channels.provider(&job, now).instrument(call).await,
            Channel::Webhook => self.webhook(&job, now).instrument(call).await,
            Channel::Email => inner.channels.email(&job).instrument(call).await,
            Channel::Realtime => return self.realtime(&job, now).instrument(call).await,
            Channel::Queue => self.publish(&job).instrument(call).await,
        };
        let took = started.elapsed();
        inner.metrics.delivery_send_seconds.get_or_create(&labels).observe(took.as_secs_f64());
        inner.limit.record(took, outcome.as_ref().err().is_some_and(herald_core::delivery::Failure::is_transient));
        let after = inner.clock.now();
        self.record_health(&key, &outcome, after);
        if let Err(failure) = &outcome {
            tracing::debug!(delivery = %id, channel = channel.as_str(), error = %failure, "a delivery attempt failed");
        }
        Disposition::Report(self.decide(&job, channel, outcome, took, after))
    }
}
