//! The calendar's worker: the router that turns reminders published on the `notifications`
//! queue into deliveries to their owner (the `events.retention` job is in [`crate::retention`]).

use std::{sync::Arc, time::Duration};

use herald_core::{
    broker::{self, Broker, BrokerError, ConsumeOptions},
    calendar::{CalendarEventId, REMINDERS_QUEUE, Reminder},
    clock::Clock,
    metrics::Metrics,
    quarantine::{FailurePolicy, ItemFailure, Worker},
    store::Store,
    trace,
    user::UserId,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::failures::Failures;

/// Takes each reminder published on [`REMINDERS_QUEUE`] and stores its deliveries to the
/// owner (the log, the owner's `user:` stream, and the owner's webhook when they set one), which
/// the scheduler and senders then carry out and record. A reminder whose event was deleted, or moved to another time, after the reminder left is dropped. The message is acked once they are stored; they are keyed
/// by the message, so a message taken twice is delivered once.
#[derive(Debug)]
pub struct ReminderRouter {
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// Backs off reminders whose deliveries the store refuses.
    failures: Failures,
}

impl ReminderRouter {
    pub fn new(store: Arc<dyn Store>, broker: Arc<dyn Broker>, clock: Arc<dyn Clock>, metrics: Arc<Metrics>) -> Self {
        let failures = Failures::new(store.clone(), metrics.clone(), FailurePolicy::default());
        Self { store, broker, clock, metrics, failures }
    }

    /// Consumes the queue until `shutdown`, reconnecting with back-off.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let options = ConsumeOptions { ack_deadline: Duration::from_secs(60), prefetch: 16 };
            let consumer = tokio::select! {
                () = shutdown.cancelled() => return,
                consumer = self.broker.consume(REMINDERS_QUEUE, options) => consumer,
            };
            match consumer {
                Ok(mut consumer) => {
                    backoff = Duration::from_millis(100);
                    loop {
                        let next = tokio::select! {
                            () = shutdown.cancelled() => return,
                            next = consumer.next() => next,
                        };
                        match next {
                            Ok(delivery) => self.route(delivery).await,
                            Err(BrokerError::Closed) => break,
                            Err(err) => {
                                self.metrics.sender_errors.inc();
                                tracing::warn!(error = %err, "the notifications queue failed; the broker client reconnects");
                                tokio::time::sleep(Duration::from_millis(250)).await;
                            }
                        }
                    }
                }
                Err(err) => {
                    self.metrics.sender_errors.inc();
                    tracing::warn!(error = %err, retry_in = ?backoff, "could not consume the notifications queue");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Stores one message's deliveries, then acks it; redelivers it later if the store failed.
    pub async fn route(&self, delivery: broker::QueueMessage) {
        let id = delivery.message.id;
        let reminder: Reminder = match serde_json::from_slice(&delivery.message.payload) {
            Ok(reminder) => reminder,
            Err(err) => {
                self.metrics.sender_errors.inc();
                tracing::warn!(message = %id, error = %err, "dropped an unreadable reminder");
                let _ = delivery.ack().await;
                return;
            }
        };
        // A quarantined reminder waits for an administrator's retry, put off each time it comes.
        if delivery.redelivered
            && let Ok(Some(held)) = self.store.held_record(Worker::Router, &id.to_string()).await
            && held.quarantined_at.is_some()
        {
            tracing::debug!(message = %id, "a quarantined reminder came back; putting it off");
            if let Err(err) = delivery.nack(Some(self.failures.policy().max_delay)).await {
                tracing::debug!(error = %err, "could not put off a quarantined reminder; the broker redelivers it");
            }
            return;
        }
        // A child of the queue channel's call that published it: the reminder's trace goes on.
        let span = trace::child_of(delivery.message.traceparent(), || {
            tracing::info_span!(
                "notification",
                otel.name = "notification.route",
                event_id = %reminder.event_id,
                user_id = %reminder.user_id,
            )
        });
        async move {
            let stored = async {
                // Deleted or moved after its reminder left: the reminder is stale, nobody is told.
                // Compared to the microsecond, as the store keeps times.
                let owner = UserId(reminder.user_id);
                let event = self.store.calendar_event(owner, CalendarEventId(reminder.event_id)).await?;
                let starts_at = reminder.starts_at.timestamp_micros();
                if event.is_none_or(|e| e.starts_at.timestamp_micros() != starts_at) {
                    tracing::info!("the event was deleted or moved after its reminder left; not delivered");
                    return Ok(0);
                }
                let webhook = self.store.webhook(owner).await?;
                let deliveries = reminder.deliveries(id, webhook.as_ref(), self.clock.now());
                self.store.create_deliveries(&deliveries).await
            };
            let settled = match stored.await {
                Ok(created) => {
                    tracing::debug!(created, "routed a reminder to its owner");
                    delivery.ack().await
                }
                Err(err) => match ItemFailure::of_store(Worker::Router, id.to_string(), &err) {
                    // This reminder is refused: it waits, backed off (in the broker, so nothing is
                    // lost), while the others go on; quarantined, it comes back only to be put off.
                    Some(failure) => {
                        let now = self.clock.now();
                        let wait = match self.failures.record(&failure, now).await {
                            Some(held) if held.quarantined_at.is_none() => {
                                (held.retry_at - now).to_std().unwrap_or(Duration::from_secs(1))
                            }
                            Some(_) => self.failures.policy().max_delay,
                            None => Duration::from_secs(1),
                        };
                        delivery.nack(Some(wait)).await
                    }
                    None => {
                        tracing::warn!(error = %err, "could not store a notification's deliveries; retrying");
                        delivery.nack(Some(Duration::from_secs(1))).await
                    }
                },
            };
            if let Err(err) = settled {
                tracing::debug!(error = %err, "could not settle a notification; the broker redelivers it");
            }
        }
        .instrument(span)
        .await;
    }
}
