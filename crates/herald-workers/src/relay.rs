//! The relay: committed outbox events → the broker's `events` topic, at least once, in order.
//!
//! One pass: hold the relay lease (so that two relays do not both publish in steady state; it is
//! renewed once a third of its life has passed, not on every pass, since each renewal is a
//! durable write and a pass under load takes a few milliseconds), read
//! the next unpublished events below the store's visibility horizon, publish them in order with
//! their event id as the message id, then mark them published. A relay killed between publish and
//! mark publishes the same events again on restart: consumers drop the duplicates by id, nothing
//! is lost. Published events are pruned after the retention period.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use herald_core::{
    broker::{Broker, BrokerError},
    change::OutboxEvent,
    metrics::Metrics,
    quarantine::{FailurePolicy, FailureReason, ItemFailure, Worker, with_causes},
    store::{Store, StoreError},
    stream::StreamName,
    trace,
    wire::{EVENTS_TOPIC, EventEnvelope},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::failures::Failures;

/// The span of one event's publish: a child of the span that wrote the event.
fn publish_span(e: &OutboxEvent) -> tracing::Span {
    trace::child_of(e.event.trace_context.as_deref(), || {
        tracing::info_span!(
            target: trace::TARGET,
            "relay.publish",
            otel.kind = "producer",
            event.id = %e.event.id,
            event.kind = %e.event.kind,
            event.channel = %e.event.stream,
            outbox.seq = e.seq,
        )
    })
}

/// The name of the lease the active relay holds.
pub const LEASE: &str = "outbox-relay";

/// How a relay behaves.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Most events published per pass.
    pub batch: u32,
    /// How long the lease lasts without renewal; a standby takes over after it.
    pub lease_ttl: Duration,
    /// Longest wait between passes when no wake-up comes (the polling fallback).
    pub poll_interval: Duration,
    /// Published events are deleted after this long.
    pub retention: Duration,
    /// A stream keeps at most this many published events (the newest).
    pub channel_max_events: u32,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch: 500,
            lease_ttl: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(24 * 3600),
            channel_max_events: 1000,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Another relay holds the lease.
    Standby,
    /// Nothing to publish.
    Idle,
    /// Published this many events.
    Published(usize),
}

/// Why a pass failed. Both kinds are retried by [`Relay::run`].
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
}

/// Moves committed outbox events to the broker.
#[derive(Debug, Clone)]
pub struct Relay {
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    metrics: Arc<Metrics>,
    options: RelayOptions,
    /// Unique per relay instance: the lease holder.
    holder: String,
    /// When this relay last took or renewed the lease (`None`: it does not hold it).
    renewed: Arc<parking_lot::Mutex<Option<tokio::time::Instant>>>,
    /// Backs off streams whose events cannot be published.
    failures: Failures,
}

impl Relay {
    pub fn new(store: Arc<dyn Store>, broker: Arc<dyn Broker>, metrics: Arc<Metrics>, options: RelayOptions) -> Self {
        let failures = Failures::new(store.clone(), metrics.clone(), FailurePolicy::default());
        Self { store, broker, metrics, options, holder: Uuid::now_v7().to_string(), renewed: Arc::default(), failures }
    }

    /// Whether this relay holds the lease, renewing it when a third of its life has passed. A
    /// relay that believes it holds a lease another took over (its clock far behind the
    /// database's) only publishes some events twice, which consumers drop by id.
    async fn hold_lease(&self) -> Result<bool, StoreError> {
        let now = tokio::time::Instant::now();
        if self.renewed.lock().is_some_and(|at| now < at + self.options.lease_ttl / 3) {
            return Ok(true);
        }
        let held = self.store.acquire_lease(LEASE, &self.holder, self.options.lease_ttl).await?;
        *self.renewed.lock() = held.then_some(now);
        Ok(held)
    }

    /// Sets how streams that fail are backed off and quarantined.
    pub fn with_failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failures = Failures::new(self.store.clone(), self.metrics.clone(), policy);
        self
    }

    /// One pass: publish the next batch if this relay holds the lease.
    ///
    /// An event that cannot be read, or that the broker refuses, holds back its own stream (the
    /// stream is backed off, then quarantined; none of its later events goes before it) while
    /// every other stream's events are published.
    pub async fn tick(&self) -> Result<Step, RelayError> {
        if !self.hold_lease().await? {
            return Ok(Step::Standby);
        }
        let batch = self.store.unpublished_events(self.options.batch).await?;
        let now = Utc::now();
        self.failures.record_all(&batch.unreadable, now).await;
        let events = batch.events;
        if events.is_empty() {
            return Ok(if batch.unreadable.is_empty() { Step::Idle } else { Step::Published(0) });
        }
        let published = match self.publish(&events).await {
            Ok(()) => events,
            Err(BrokerError::Other(err)) => {
                // Something in the batch is refused: publish stream by stream, holding back those
                // the broker refuses.
                tracing::debug!(error = %err, "the broker refused a batch; publishing stream by stream");
                self.publish_by_stream(events, now).await?
            }
            Err(err) => return Err(err.into()),
        };
        if published.is_empty() {
            return Ok(Step::Published(0));
        }
        let seqs: Vec<i64> = published.iter().map(|e| e.seq).collect();
        self.store.mark_published(&seqs, Utc::now()).await?;
        self.metrics.relay_published.inc_by(published.len() as u64);
        tracing::debug!(count = published.len(), first_seq = seqs[0], "relayed outbox events");
        Ok(Step::Published(published.len()))
    }

    /// Broadcasts events in order, one span each continuing the trace of the request that wrote
    /// it (the message carries the span on, so the gateway's span is its child).
    async fn publish(&self, events: &[OutboxEvent]) -> Result<(), BrokerError> {
        let spans: Vec<tracing::Span> = events.iter().map(publish_span).collect();
        let messages =
            events.iter().zip(&spans).map(|(e, span)| EventEnvelope::message(e).with_traceparent(trace::of(span)));
        self.broker.broadcast_all(EVENTS_TOPIC, messages.collect()).await
    }

    /// Publishes each stream's events on their own; a stream whose events the broker refuses is
    /// backed off. Returns the events published.
    async fn publish_by_stream(
        &self,
        events: Vec<OutboxEvent>,
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<OutboxEvent>, BrokerError> {
        let mut streams: Vec<(StreamName, Vec<OutboxEvent>)> = Vec::new();
        for event in events {
            match streams.iter_mut().find(|(name, _)| *name == event.event.stream) {
                Some((_, events)) => events.push(event),
                None => streams.push((event.event.stream, vec![event])),
            }
        }
        let mut published = Vec::new();
        let mut refused = Vec::new();
        for (stream, events) in streams {
            match self.publish(&events).await {
                Ok(()) => published.extend(events),
                Err(BrokerError::Other(err)) => {
                    let error = with_causes(err.as_ref());
                    refused.push(ItemFailure::new(Worker::Relay, stream.to_string(), FailureReason::Refused, error));
                }
                Err(err) => return Err(err),
            }
        }
        // Every stream refused: the broker refuses the relay (permissions, a full server), not
        // one stream's events; the pass fails and is retried, no stream is blamed.
        if published.is_empty()
            && let Some(first) = refused.first()
        {
            return Err(BrokerError::Other(first.error.clone().into()));
        }
        self.failures.record_all(&refused, now).await;
        Ok(published)
    }

    /// Deletes events published longer ago than the retention period, and those more than
    /// `channel_max_events` behind their stream's head; returns how many.
    pub async fn prune(&self) -> Result<u64, StoreError> {
        let retention = chrono::Duration::from_std(self.options.retention).unwrap_or(chrono::Duration::MAX);
        let before = Utc::now() - retention;
        let mut total = 0;
        loop {
            let pruned = self.store.prune_published(before, 10_000).await?;
            total += pruned;
            if pruned < 10_000 {
                break;
            }
        }
        loop {
            let trimmed = self.store.trim_streams(self.options.channel_max_events, 10_000).await?;
            total += trimmed;
            if trimmed < 10_000 {
                return Ok(total);
            }
        }
    }

    /// Updates the outbox-lag gauge: the age of the oldest unpublished event.
    pub async fn measure_lag(&self) -> Result<(), StoreError> {
        let lag = match self.store.oldest_unpublished().await? {
            Some(at) => (Utc::now() - at).to_std().unwrap_or_default().as_secs_f64(),
            None => 0.0,
        };
        self.metrics.outbox_lag_seconds.set(lag);
        Ok(())
    }

    /// Runs passes until `shutdown`: at once while batches come back full, else after a wake-up
    /// from the store or the poll interval. Failures are logged, counted and retried.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut last_prune = tokio::time::Instant::now();
        let mut last_lag = tokio::time::Instant::now() - Duration::from_secs(60);
        while !shutdown.is_cancelled() {
            let wait = match self.tick().await {
                Ok(Step::Published(n)) if n as u32 >= self.options.batch => Duration::ZERO,
                Ok(Step::Published(_) | Step::Idle) => self.options.poll_interval,
                Ok(Step::Standby) => self.options.lease_ttl / 2,
                Err(err) => {
                    self.metrics.relay_errors.inc();
                    tracing::warn!(error = %err, retry_in = ?backoff, "relay pass failed");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            if last_lag.elapsed() >= Duration::from_secs(5) {
                last_lag = tokio::time::Instant::now();
                if let Err(err) = self.measure_lag().await {
                    tracing::debug!(error = %err, "could not measure outbox lag");
                }
            }
            if last_prune.elapsed() >= Duration::from_secs(60) {
                last_prune = tokio::time::Instant::now();
                match self.prune().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(pruned = n, "pruned published outbox events"),
                    Err(err) => tracing::warn!(error = %err, "could not prune the outbox"),
                }
            }
            if wait > Duration::ZERO {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = self.store.wait_for_outbox(wait) => {}
                }
            }
        }
        // Let a standby take over at once rather than after the lease expires.
        *self.renewed.lock() = None;
        if let Err(err) = self.store.release_lease(LEASE, &self.holder).await {
            tracing::debug!(error = %err, "could not release the relay lease");
        }
    }
}
