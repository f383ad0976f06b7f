//! [`NatsBroker`]: the Broker port on NATS JetStream through async-nats, limited to what
//! nats-server 2.9 supports. Work queues share one work-queue stream per namespace, one subject
//! and one durable pull consumer per queue; `Nats-Msg-Id` de-duplicates within the stream's
//! duplicate window. Topics are plain core NATS subjects (see `docs/brokers.md` for why).
//! async-nats reconnects by itself and re-subscribes; the consuming task re-pulls after it, and
//! every topic subscription reports `Interrupted` once its interest is back on the server.

mod auth;
pub mod commands;
mod consumer;
pub mod forward;
pub mod forwarded;
mod replay;
pub mod seal;

use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::{
    ConnectErrorKind, HeaderMap, HeaderName, HeaderValue,
    jetstream::{
        self,
        context::{PublishAckFuture, PublishErrorKind},
        stream::{Config as StreamConfig, RetentionPolicy, StorageType},
    },
};
use async_trait::async_trait;
use futures::StreamExt as _;
use herald_core::broker::{Broker, BrokerError, ConsumeOptions, Message, QueueConsumer, Subscription};
use tokio::{
    sync::{OnceCell, watch},
    time::timeout,
};
use uuid::Uuid;

use self::auth::NatsTarget;
use crate::{
    error::{AdapterError, other, unavailable},
    names::{check_name, check_namespace},
};

/// How long a message id is remembered by the queue stream (JetStream's own default).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How long a publish, flush or API call may take before it fails with `Unavailable`.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// The header that carries the message id, on queues (JetStream de-duplicates by it) and topics.
const MSG_ID: &str = "Nats-Msg-Id";

/// NATS JetStream through one client connection, which async-nats keeps re-establishing.
pub struct NatsBroker {
    shared: Arc<Shared>,
}

struct Shared {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    namespace: String,
    stream: OnceCell<jetstream::stream::Stream>,
    timeout: Duration,
    closed: tokio_util::sync::CancellationToken,
    /// Counts the times broadcasts may have been lost: reconnects after a drop, and messages
    /// async-nats dropped for a subscriber that fell behind (a slow consumer).
    interruptions: watch::Receiver<u64>,
    /// The subscription round trips come back on, made on first use and kept.
    probe: tokio::sync::Mutex<Option<Probe>>,
}

/// A private subject this connection subscribes to, and how many round trips were sent on it.
struct Probe {
    subject: async_nats::Subject,
    subscriber: async_nats::Subscriber,
    sent: u64,
}

impl fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBroker").field("namespace", &self.shared.namespace).finish_non_exhaustive()
    }
}

impl NatsBroker {
    /// Connects to `url` (`nats://[user:password@|token@]host:4222`, credentials percent-encoded);
    /// streams, consumers and subjects are prefixed with `namespace`. Fails with `Unavailable`
    /// when NATS cannot be reached now, with `Other` when it refuses the credentials.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, BrokerError> {
        Self::connect_with(url, namespace, DEFAULT_OPERATION_TIMEOUT).await
    }

    /// As [`NatsBroker::connect`], with `operation_timeout` bounding every publish and API call.
    pub async fn connect_with(url: &str, namespace: &str, operation_timeout: Duration) -> Result<Self, BrokerError> {
        check_namespace(namespace)?;
        let (address, options) = connect_options(url)?;
        let (interrupted, interruptions) = watch::channel(0_u64);
        let interrupted = Arc::new(interrupted);
        let down = Arc::new(AtomicBool::new(false));
        let client = options
            .name(format!("herald {namespace}"))
            .connection_timeout(operation_timeout)
            .request_timeout(Some(operation_timeout))
            // Quick first retries: a dropped connection comes back within a second when it can.
            .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 100).min(2_000)))
            .event_callback(move |event| {
                let (interrupted, down) = (interrupted.clone(), down.clone());
                async move {
                    tracing::info!(%event, "NATS connection event");
                    match event {
                        async_nats::Event::Disconnected => down.store(true, Ordering::Release),
                        async_nats::Event::Connected if down.swap(false, Ordering::AcqRel) => {
                            interrupted.send_modify(|n| *n += 1);
                        }
                        async_nats::Event::SlowConsumer(_) => interrupted.send_modify(|n| *n += 1),
                        _ => {}
                    }
                }
            })
            .connect(address.as_str())
            .await
            .map_err(connect_error)?;
        let jetstream = jetstream::ContextBuilder::new().timeout(operation_timeout).build(client.clone());
        let shared = Shared {
            client,
            jetstream,
            namespace: namespace.to_owned(),
            stream: OnceCell::new(),
            timeout: operation_timeout,
            closed: tokio_util::sync::CancellationToken::new(),
            interruptions,
            probe: tokio::sync::Mutex::default(),
        };
        Ok(Self { shared: Arc::new(shared) })
    }

    /// Deletes the namespace's queue stream (and with it every durable consumer). Tests call it to
    /// leave nothing behind.
    pub async fn delete_stream(&self) -> Result<(), BrokerError> {
        match self.shared.jetstream.delete_stream(self.shared.stream_name()).await {
            Ok(_) => Ok(()),
            Err(error) if error.to_string().contains("not found") => Ok(()),
            Err(error) => Err(other(error)),
        }
    }

    fn ensure_open(&self) -> Result<(), BrokerError> {
        if self.shared.closed.is_cancelled() { Err(BrokerError::Closed) } else { Ok(()) }
    }

    async fn publish_to_queue(&self, queue: &str, messages: Vec<Message>) -> Result<(), BrokerError> {
        self.ensure_open()?;
        check_name(queue)?;
        self.shared.stream().await?;
        let subject = self.shared.queue_subject(queue);
        let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(messages.len());
        for message in messages {
            let headers = headers(&message)?;
            let publish = jetstream::message::PublishMessage::build()
                .payload(message.payload.into())
                .headers(headers)
                .message_id(message.id.to_string());
            let ack = self.shared.jetstream.send_publish(subject.clone(), publish).await.map_err(publish_error)?;
            acks.push(ack);
        }
        // Pipelined: every publish is on the wire before the first ack is awaited.
        for ack in acks {
            ack.await.map_err(publish_error)?;
        }
        Ok(())
    }

    async fn publish_to_topic(&self, topic: &str, messages: Vec<Message>) -> Result<(), BrokerError> {
        self.ensure_open()?;
        check_name(topic)?;
        let subject = self.shared.topic_subject(topic);
        for message in messages {
            let mut headers = headers(&message)?;
            headers.insert(MSG_ID, message.id.to_string().as_str());
            self.shared
                .client
                .publish_with_headers(subject.clone(), headers, message.payload.into())
                .await
                .map_err(unavailable)?;
        }
        // Core NATS has no publish ack: a round trip proves the server took everything sent so far.
        self.shared.flush().await
    }
}

impl Shared {
    fn stream_name(&self) -> String {
        format!("{}-queues", self.namespace)
    }

    fn queue_subject(&self, queue: &str) -> String {
        format!("{}.queue.{queue}", self.namespace)
    }

    fn topic_subject(&self, topic: &str) -> String {
        format!("{}.topic.{topic}", self.namespace)
    }

    /// The namespace's work-queue stream, created on first use.
    async fn stream(&self) -> Result<&jetstream::stream::Stream, BrokerError> {
        self.stream
            .get_or_try_init(|| async {
                let config = StreamConfig {
                    name: self.stream_name(),
                    subjects: vec![format!("{}.queue.>", self.namespace)],
                    retention: RetentionPolicy::WorkQueue,
                    storage: StorageType::File,
                    duplicate_window: DUPLICATE_WINDOW,
                    ..StreamConfig::default()
                };
                self.jetstream.get_or_create_stream(config).await.map_err(unavailable)
            })
            .await
    }

    /// A round trip through the server: everything this connection sent before it (a SUB, a PUB)
    /// has been processed by the server once it returns. `Client::flush` is not enough: it only
    /// empties the socket's write buffer. The server handles one connection's commands in order,
    /// so a message published to this connection's probe subject and received back proves the
    /// ones before it. Each round trip carries its number, so an answer left over from one that
    /// timed out is skipped.
    async fn flush(&self) -> Result<(), BrokerError> {
        let round_trip = async {
            let mut probe = self.probe.lock().await;
            if probe.is_none() {
                let subject = async_nats::Subject::from(self.client.new_inbox());
                let subscriber = self.client.subscribe(subject.clone()).await.map_err(unavailable)?;
                *probe = Some(Probe { subject, subscriber, sent: 0 });
            }
            let probe = probe.as_mut().ok_or(BrokerError::Closed)?;
            probe.sent += 1;
            let token = probe.sent.to_string();
            self.client.publish(probe.subject.clone(), token.clone().into()).await.map_err(unavailable)?;
            self.client.flush().await.map_err(unavailable)?;
            loop {
                let answer = probe.subscriber.next().await.ok_or(BrokerError::Closed)?;
                if answer.payload == token.as_bytes() {
                    return Ok(());
                }
            }
        };
        match timeout(self.timeout, round_trip).await {
            Ok(done) => done,
            Err(_) => Err(AdapterError::Timeout(self.timeout, "waiting for NATS to answer").into()),
        }
    }
}

/// Parses a NATS URL as [`NatsBroker::connect`] does, for checking it once at the edge.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    NatsTarget::parse(url).map(drop)
}

/// The server address in `url` and connect options carrying its credentials (async-nats ignores
/// them in the URL), for every NATS connection of this crate.
pub(crate) fn connect_options(url: &str) -> Result<(String, async_nats::ConnectOptions), BrokerError> {
    let target = NatsTarget::parse(url).map_err(|message| BrokerError::Other(message.into()))?;
    let options = target.options();
    Ok((target.address, options))
}

/// A connect error: refused credentials will not work on retry, the rest may.
pub(crate) fn connect_error(error: async_nats::ConnectError) -> BrokerError {
    match error.kind() {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => other(error),
        _ => unavailable(error),
    }
}

/// A JetStream publish error: a timeout or a missing responder is retryable, the rest is not.
fn publish_error(error: jetstream::context::PublishError) -> BrokerError {
    match error.kind() {
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::StreamNotFound => {
            unavailable(error)
        }
        _ => other(error),
    }
}

/// The message's headers as NATS headers, refusing what NATS cannot carry.
fn headers(message: &Message) -> Result<HeaderMap, BrokerError> {
    let mut map = HeaderMap::new();
    for (name, value) in &message.headers {
        let invalid = || BrokerError::from(AdapterError::InvalidHeader(name.clone()));
        if name.len() >= 5 && name[..5].eq_ignore_ascii_case("nats-") {
            return Err(invalid());
        }
        let header_name: HeaderName = name.parse().map_err(|_| invalid())?;
        let header_value: HeaderValue = value.parse().map_err(|_| invalid())?;
        map.insert(header_name, header_value);
    }
    Ok(map)
}

/// A received NATS message as a port message: the id from `Nats-Msg-Id`, the other headers as is.
fn message(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Message, AdapterError> {
    let mut id = None;
    let mut fields = BTreeMap::new();
    for (name, values) in headers.into_iter().flat_map(HeaderMap::iter) {
        let name: &str = name.as_ref();
        if name.eq_ignore_ascii_case(MSG_ID) {
            id = values.last().and_then(|v| Uuid::parse_str(v.as_str()).ok());
        } else if !(name.len() >= 5 && name[..5].eq_ignore_ascii_case("nats-"))
            && let Some(value) = values.last()
        {
            fields.insert(name.to_owned(), value.as_str().to_owned());
        }
    }
    let id = id.ok_or_else(|| AdapterError::MissingId("no Nats-Msg-Id header".into()))?;
    Ok(Message { id, headers: fields, payload: payload.to_vec() })
}

#[async_trait]
impl Broker for NatsBroker {
    async fn enqueue(&self, queue: &str, message: Message) -> Result<(), BrokerError> {
        self.publish_to_queue(queue, vec![message]).await
    }

    async fn enqueue_all(&self, queue: &str, messages: Vec<Message>) -> Result<(), BrokerError> {
        self.publish_to_queue(queue, messages).await
    }

    async fn consume(&self, queue: &str, options: ConsumeOptions) -> Result<Box<dyn QueueConsumer>, BrokerError> {
        self.ensure_open()?;
        check_name(queue)?;
        let stream = self.shared.stream().await?.clone();
        let consumer = consumer::NatsConsumer::start(
            stream,
            self.shared.closed.clone(),
            queue,
            self.shared.queue_subject(queue),
            options,
        )
        .await?;
        Ok(Box::new(consumer))
    }

    async fn broadcast(&self, topic: &str, message: Message) -> Result<(), BrokerError> {
        self.publish_to_topic(topic, vec![message]).await
    }

    async fn broadcast_all(&self, topic: &str, messages: Vec<Message>) -> Result<(), BrokerError> {
        self.publish_to_topic(topic, messages).await
    }

    async fn subscribe(&self, topic: &str) -> Result<Box<dyn Subscription>, BrokerError> {
        self.ensure_open()?;
        check_name(topic)?;
        let subject = self.shared.topic_subject(topic);
        let mut interruptions = self.shared.interruptions.clone();
        interruptions.mark_unchanged();
        let subscriber = self.shared.client.subscribe(subject.clone()).await.map_err(unavailable)?;
        // The server has the interest once a round trip sent after the SUB came back.
        self.shared.flush().await?;
        Ok(Box::new(NatsSubscription {
            subscriber,
            subject,
            shared: self.shared.clone(),
            interruptions,
            interrupted: false,
        }))
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        self.ensure_open()?;
        self.shared.flush().await
    }

    async fn close(&self) {
        self.shared.closed.cancel();
        self.shared.client.drain().await.ok();
    }
}

/// A core NATS subscription; async-nats re-subscribes it after every reconnect.
struct NatsSubscription {
    subscriber: async_nats::Subscriber,
    subject: String,
    shared: Arc<Shared>,
    interruptions: watch::Receiver<u64>,
    /// An interruption seen and not reported yet.
    interrupted: bool,
}

impl fmt::Debug for NatsSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSubscription").field("subject", &self.subject).finish_non_exhaustive()
    }
}

#[async_trait]
impl Subscription for NatsSubscription {
    async fn next(&mut self) -> Result<Message, BrokerError> {
        loop {
            if self.interrupted {
                // async-nats queued the SUB again on reconnecting, before anything sent after it:
                // once a round trip comes back, the interest is on the server again. When it
                // fails the connection dropped again, and its reconnect reports once more.
                if let Err(error) = self.shared.flush().await {
                    tracing::debug!(%error, subject = %self.subject, "NATS still reconnecting");
                }
                self.interrupted = false;
                return Err(BrokerError::Interrupted);
            }
            let received = tokio::select! {
                biased;
                () = self.shared.closed.cancelled() => return Err(BrokerError::Closed),
                changed = self.interruptions.changed() => {
                    changed.map_err(|_| BrokerError::Closed)?;
                    self.interruptions.mark_unchanged();
                    // Kept in a field, so that a caller dropping this future loses nothing.
                    self.interrupted = true;
                    continue;
                }
                received = self.subscriber.next() => received.ok_or(BrokerError::Closed)?,
            };
            match message(received.headers.as_ref(), &received.payload) {
                Ok(message) => return Ok(message),
                Err(error) => {
                    tracing::warn!(%error, subject = %self.subject, "dropping a broadcast Herald did not publish")
                }
            }
        }
    }
}
