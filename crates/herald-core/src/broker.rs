//! The Broker port: transport for events and jobs. The store is the truth; the broker carries.
//! Adapters live in `herald-broker` (in-process, RabbitMQ, NATS JetStream, Redis Streams).
//!
//! Contract, for every adapter:
//! - **At-least-once.** A message whose publish returned `Ok` has been accepted durably (publisher
//!   confirm, JetStream ack) and reaches consumers at least once. It may arrive more than once
//!   (redelivery, reconnects, a relay republishing after a crash): consumers de-duplicate by
//!   [`Message::id`]. Adapters that can drop duplicates themselves (JetStream's `Nats-Msg-Id`) do.
//! - **Work queues** ([`Broker::enqueue`], [`Broker::consume`]) are durable and shared: each message
//!   goes to one consumer at a time. One consumer sees a queue's messages in publish order, except
//!   for redeliveries. A message not acked within the consumer's `ack_deadline`, or whose consumer's
//!   connection drops, is redelivered to a consumer of the queue. `nack(Some(d))` redelivers after
//!   `d`; `nack(None)` at once.
//! - **Topics** ([`Broker::broadcast`], [`Broker::subscribe`]) fan out: every live subscription gets
//!   every message broadcast after it subscribed, in broadcast order. They are not durable: what a
//!   subscriber misses while away, the store's streams fill in. A subscription that may
//!   have missed messages (its connection dropped and came back, or the adapter had to drop some)
//!   says so: [`Subscription::next`] returns [`BrokerError::Interrupted`] once it is receiving
//!   again, so everything broadcast after that error arrives, and the subscriber reads the store
//!   for what came before.
//! - **Dropping** a [`QueueMessage`] without settling it leaves it to its ack deadline; dropping a
//!   [`QueueConsumer`] releases everything it holds for redelivery. Settling a delivery whose lease
//!   is gone (deadline passed, consumer or connection lost) fails; the message is redelivered.
//! - **Headers** travel unchanged with the message (trace context, event type). Names are ASCII
//!   tokens without `:`; values have no CR or LF (NATS cannot carry them); adapters refuse others.
//! - **Errors.** [`BrokerError::Unavailable`] is retryable; adapters reconnect by themselves and a
//!   consumer or subscription keeps working after a reconnect.
//! - **Names** of queues and topics are dot-separated tokens of `[A-Za-z0-9_-]`; adapters map them
//!   to their own naming and prefix them with the broker's namespace.

use std::{collections::BTreeMap, fmt, time::Duration};

use async_trait::async_trait;
use uuid::Uuid;

/// A message: an id for de-duplication, string headers, and an opaque payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: Uuid,
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

impl Message {
    pub fn new(id: Uuid, payload: Vec<u8>) -> Self {
        Self { id, headers: BTreeMap::new(), payload }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Carries `traceparent` (when there is one) in the W3C header, replacing any it had.
    pub fn with_traceparent(self, traceparent: Option<String>) -> Self {
        match traceparent {
            Some(traceparent) => self.with_header(crate::trace::TRACEPARENT_HEADER, traceparent),
            None => self,
        }
    }

    /// The W3C `traceparent` the message carries, if any.
    pub fn traceparent(&self) -> Option<&str> {
        self.headers.get(crate::trace::TRACEPARENT_HEADER).map(String::as_str)
    }
}

/// How a queue consumer takes messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumeOptions {
    /// An unacked message is redelivered after this long.
    pub ack_deadline: Duration,
    /// Most unacked messages held by this consumer at once.
    pub prefetch: u16,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        Self { ack_deadline: Duration::from_secs(30), prefetch: 64 }
    }
}

/// Errors a broker reports.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker is unreachable or refused for now; retrying may succeed.
    #[error("broker unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The consumer, subscription or broker was closed.
    #[error("closed")]
    Closed,
    /// A subscription was cut off and is receiving again: messages broadcast in between may be
    /// missing. The subscription keeps working.
    #[error("the subscription was interrupted; broadcasts may have been missed")]
    Interrupted,
    #[error("broker error")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Settles one queue message. Adapters implement it; callers use [`QueueMessage::ack`] and [`QueueMessage::nack`].
#[async_trait]
pub trait Acker: Send + Sync {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError>;
    async fn nack(self: Box<Self>, redeliver_after: Option<Duration>) -> Result<(), BrokerError>;
}

/// A message taken from a work queue, to be acked or nacked exactly once.
pub struct QueueMessage {
    pub message: Message,
    /// Whether the broker delivered this message before (to this or another consumer).
    pub redelivered: bool,
    acker: Box<dyn Acker>,
}

impl fmt::Debug for QueueMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueMessage").field("message", &self.message).field("redelivered", &self.redelivered).finish()
    }
}

impl QueueMessage {
    pub fn new(message: Message, redelivered: bool, acker: Box<dyn Acker>) -> Self {
        Self { message, redelivered, acker }
    }

    /// Done with it: the broker forgets the message.
    pub async fn ack(self) -> Result<(), BrokerError> {
        self.acker.ack().await
    }

    /// Not done: redeliver after `redeliver_after` (at once when `None`).
    pub async fn nack(self, redeliver_after: Option<Duration>) -> Result<(), BrokerError> {
        self.acker.nack(redeliver_after).await
    }
}

/// A consumer of one work queue.
#[async_trait]
pub trait QueueConsumer: Send {
    /// The next delivery; waits for one. `Err(Closed)` ends the stream.
    async fn next(&mut self) -> Result<QueueMessage, BrokerError>;
}

/// A subscription to one topic.
#[async_trait]
pub trait Subscription: Send {
    /// The next message broadcast on the topic; waits for one. `Err(Closed)` ends the stream;
    /// `Err(Interrupted)` says messages may have been missed, and the stream goes on.
    async fn next(&mut self) -> Result<Message, BrokerError>;
}

/// Transport for jobs (work queues) and events (topics). See the module docs for the contract.
#[async_trait]
pub trait Broker: Send + Sync + fmt::Debug + 'static {
    /// Appends to the durable work queue `queue`; returns once the broker has accepted it.
    async fn enqueue(&self, queue: &str, message: Message) -> Result<(), BrokerError>;

    /// Appends many messages, in order; returns once all are accepted. Adapters override this to
    /// pipeline confirms instead of waiting for each.
    async fn enqueue_all(&self, queue: &str, messages: Vec<Message>) -> Result<(), BrokerError> {
        for message in messages {
            self.enqueue(queue, message).await?;
        }
        Ok(())
    }

    /// Starts a competing consumer of `queue`.
    async fn consume(&self, queue: &str, options: ConsumeOptions) -> Result<Box<dyn QueueConsumer>, BrokerError>;

    /// Sends to every live subscription of `topic`; returns once the broker has accepted it.
    async fn broadcast(&self, topic: &str, message: Message) -> Result<(), BrokerError>;

    /// Broadcasts many messages, in order. Adapters override this to pipeline.
    async fn broadcast_all(&self, topic: &str, messages: Vec<Message>) -> Result<(), BrokerError> {
        for message in messages {
            self.broadcast(topic, message).await?;
        }
        Ok(())
    }

    /// Subscribes to `topic`: every message broadcast from now on.
    async fn subscribe(&self, topic: &str) -> Result<Box<dyn Subscription>, BrokerError>;

    /// A cheap round trip, for readiness probes.
    async fn ping(&self) -> Result<(), BrokerError>;

    /// Closes connections; later calls fail with `Closed`.
    async fn close(&self);
}
