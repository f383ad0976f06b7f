//! A competing consumer of one NATS work queue: a durable pull consumer shared by every consumer
//! of the queue, with explicit acks. A task pulls and hands deliveries over; each delivery carries
//! a lease that naks it when this consumer's own ack deadline passes (the durable's `ack_wait` is
//! the backstop when a whole process dies). Dropping the consumer naks everything it still holds.

use parking_lot::{Mutex, MutexGuard};
use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    message::Acker as NatsAcker,
};
use async_trait::async_trait;
use futures::StreamExt as _;
use herald_core::broker::{Acker, BrokerError, ConsumeOptions, QueueConsumer, QueueMessage};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    error::{AdapterError, other, unavailable},
    lease::Lease,
};

/// How long one pull request waits on the server, and the idle heartbeat that proves it alive.
/// Short, because a dropped consumer's last pull request lingers on the server until it expires.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
const PULL_HEARTBEAT: Duration = Duration::from_secs(1);

/// A dropped consumer naks what it held with this delay, so the redelivery happens after its
/// abandoned pull request expired: nats-server 2.9 loses a nacked message that it tries to hand
/// to a pull request whose subscriber is gone (and delivers the stream's next message twice).
const RELEASE_DELAY: Duration = Duration::from_millis(2_500);

pub(super) struct NatsConsumer {
    rx: mpsc::Receiver<QueueMessage>,
    queue: String,
}

impl fmt::Debug for NatsConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConsumer").field("queue", &self.queue).finish_non_exhaustive()
    }
}

/// Deliveries this consumer holds and has not settled, by a local number.
#[derive(Default)]
struct Held {
    next: u64,
    leases: HashMap<u64, (Arc<Lease>, Arc<NatsAcker>)>,
}

type SharedHeld = Arc<Mutex<Held>>;

fn lock(held: &SharedHeld) -> MutexGuard<'_, Held> {
    held.lock()
}

/// A durable consumer name for `queue`: `_` becomes `__` and `.` becomes `_d`, so distinct
/// queue names never share a consumer and the name has no `.` (which NATS refuses).
pub(super) fn durable_name(queue: &str) -> String {
    let mut name = String::with_capacity(queue.len() + 4);
    for c in queue.chars() {
        match c {
            '_' => name.push_str("__"),
            '.' => name.push_str("_d"),
            c => name.push(c),
        }
    }
    name
}

impl NatsConsumer {
    /// Creates (or updates) the queue's durable consumer and starts pulling from it.
    pub(super) async fn start(
        stream: jetstream::stream::Stream,
        closed: CancellationToken,
        queue: &str,
        subject: String,
        options: ConsumeOptions,
    ) -> Result<Self, BrokerError> {
        let durable = durable_name(queue);
        let config = pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: subject,
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: options.ack_deadline,
            max_ack_pending: i64::from(options.prefetch.max(1)),
            ..pull::Config::default()
        };
        let consumer: PullConsumer = match stream.create_consumer(config).await {
            Ok(consumer) => consumer,
            Err(error) => {
                // 2.9 refuses some updates of a live durable; its settings then stay as they were
                // and the client-side deadline still applies to this consumer.
                tracing::warn!(%error, %durable, "could not update the durable consumer, using it as is");
                stream.get_consumer(&durable).await.map_err(|error| unavailable(AckError(error)))?
            }
        };
        let prefetch = usize::from(options.prefetch.max(1));
        let (tx, rx) = mpsc::channel(prefetch);
        let messages = pull_stream(&consumer, prefetch).await?;
        tokio::spawn(run(consumer, messages, prefetch, options, tx, closed));
        Ok(Self { rx, queue: queue.to_owned() })
    }
}

async fn pull_stream(consumer: &PullConsumer, prefetch: usize) -> Result<pull::Stream, BrokerError> {
    consumer
        .stream()
        .max_messages_per_batch(prefetch)
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await
        .map_err(unavailable)
}

#[async_trait]
impl QueueConsumer for NatsConsumer {
    async fn next(&mut self) -> Result<QueueMessage, BrokerError> {
        self.rx.recv().await.ok_or(BrokerError::Closed)
    }
}

async fn run(
    consumer: PullConsumer,
    mut messages: pull::Stream,
    prefetch: usize,
    options: ConsumeOptions,
    tx: mpsc::Sender<QueueMessage>,
    closed: CancellationToken,
) {
    let held = SharedHeld::default();
    let mut backoff = Duration::from_millis(100);
    loop {
        let next = tokio::select! {
            () = tx.closed() => break,
            () = closed.cancelled() => return,
            next = messages.next() => next,
        };
        match next {
            Some(Ok(message)) => {
                backoff = Duration::from_millis(100);
                if let Some(delivery) = wrap(&held, options, message).await
                    && tx.send(delivery).await.is_err()
                {
                    break;
                }
            }
            // Missed heartbeats and failed pulls while disconnected: the stream re-pulls by itself.
            Some(Err(error)) if !matches!(error.kind(), pull::MessagesErrorKind::ConsumerDeleted) => {
                tracing::debug!(%error, "NATS pull interrupted");
            }
            Some(Err(_)) | None => {
                tokio::select! {
                    () = tx.closed() => break,
                    () = closed.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                match pull_stream(&consumer, prefetch).await {
                    Ok(stream) => messages = stream,
                    Err(error) => tracing::debug!(error = %crate::error::chain(&error), "NATS pull restarting"),
                }
            }
        }
    }
    // The handle is gone: give back what it held (a dead process's share comes back by ack_wait).
    drop(messages);
    let mut leases: Vec<_> = lock(&held).leases.drain().collect();
    // In delivery order, so that they come back in it.
    leases.sort_unstable_by_key(|(key, _)| *key);
    for (_, (lease, acker)) in leases {
        if lease.settle() {
            acker.ack_with(AckKind::Nak(Some(RELEASE_DELAY))).await.ok();
        }
    }
}

/// Wraps a JetStream message with its lease; a message without an id is terminated.
async fn wrap(held: &SharedHeld, options: ConsumeOptions, message: jetstream::Message) -> Option<QueueMessage> {
    let redelivered = message.info().is_ok_and(|info| info.delivered > 1);
    let (message, acker) = message.split();
    let acker = Arc::new(acker);
    let converted = match super::message(message.headers.as_ref(), &message.payload) {
        Ok(converted) => converted,
        Err(error) => {
            tracing::warn!(%error, subject = %message.subject, "terminating a message Herald did not publish");
            acker.ack_with(AckKind::Term).await.ok();
            return None;
        }
    };
    let key = {
        let mut held = lock(held);
        held.next += 1;
        held.next
    };
    let lease = Lease::start(options.ack_deadline, {
        let acker = Arc::clone(&acker);
        let held = Arc::clone(held);
        async move {
            lock(&held).leases.remove(&key);
            acker.ack_with(AckKind::Nak(None)).await.ok();
        }
    });
    lock(held).leases.insert(key, (Arc::clone(&lease), Arc::clone(&acker)));
    let settle = NatsSettle { acker, lease, held: Arc::clone(held), key };
    Some(QueueMessage::new(converted, redelivered, Box::new(settle)))
}

struct NatsSettle {
    acker: Arc<NatsAcker>,
    lease: Arc<Lease>,
    held: SharedHeld,
    key: u64,
}

impl NatsSettle {
    fn take(&self) -> Result<(), BrokerError> {
        lock(&self.held).leases.remove(&self.key);
        if self.lease.settle() { Ok(()) } else { Err(AdapterError::LeaseLost.into()) }
    }
}

#[async_trait]
impl Acker for NatsSettle {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        self.take()?;
        // Acknowledged by the server, so Ok means the message will not come back.
        self.acker.double_ack().await.map_err(|error| {
            if error.to_string().contains("timed out") { unavailable(AckError(error)) } else { other(AckError(error)) }
        })
    }

    async fn nack(self: Box<Self>, redeliver_after: Option<Duration>) -> Result<(), BrokerError> {
        self.take()?;
        let delay = redeliver_after.filter(|d| !d.is_zero());
        self.acker.ack_with(AckKind::Nak(delay)).await.map_err(|error| unavailable(AckError(error)))
    }
}

/// An async-nats error that comes boxed (acks, consumer lookups).
#[derive(Debug, thiserror::Error)]
#[error("NATS: {0}")]
struct AckError(async_nats::Error);

#[cfg(test)]
mod tests {
    use super::durable_name;

    #[test]
    fn durable_names_never_collide_and_have_no_dots() {
        assert_eq!(durable_name("deliveries.sms"), "deliveries_dsms");
        assert_ne!(durable_name("a_d"), durable_name("a.")); // "a__d" vs "a_d"
        assert_ne!(durable_name("a.b"), durable_name("a_db"));
        assert!(!durable_name("x.y.z").contains('.'));
    }
}
