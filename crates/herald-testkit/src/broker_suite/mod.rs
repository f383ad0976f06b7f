//! The Broker port's conformance suite, written once. `tests/it/broker.rs` runs every function
//! here against the in-process broker, RabbitMQ and NATS; an adapter passes when it behaves as the
//! port's contract says. [`TestBroker`] gives each test its own namespace, further connections to
//! the same backend, connections through a [`Proxy`], and cleans up at the end. The tests live in
//! parts by concept: `queues`, `topics`, `messages`, `connections` (closes, reconnects and
//! restarts); the `signed` part runs [`herald_broker::SignedBroker`] over each backend.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use herald_broker::{AmqpBroker, MemoryBroker, NatsBroker, RedisBroker};
use herald_core::broker::{Broker, ConsumeOptions, Message, QueueConsumer, QueueMessage, Subscription};
use uuid::Uuid;

use crate::proxy::Proxy;

mod connections;
mod messages;
mod queues;
mod signed;
mod topics;
pub use connections::{
    a_closed_broker_refuses_work_and_ends_its_streams, consumers_and_subscriptions_survive_a_dropped_connection,
    queued_work_survives_a_broker_restart,
};
pub use messages::{duplicate_ids_are_dropped_or_left_to_the_consumer, headers_and_ids_travel_unchanged};
pub use queues::{
    a_consumer_read_after_a_pause_hands_out_live_deliveries, a_consumer_sees_a_queue_in_publish_order,
    a_dropped_consumer_gives_its_messages_to_another, a_dropped_consumer_releases_everything_it_was_given,
    ack_removes_and_nack_redelivers, an_expired_delivery_frees_its_prefetch_slot,
    an_unacked_delivery_comes_back_after_the_ack_deadline, nack_with_delay_redelivers_after_the_delay,
};
pub use signed::{
    signed_messages_arrive_intact_through_a_signed_broker, unsigned_and_forged_messages_are_dropped_and_counted,
};
pub use topics::every_subscription_gets_every_broadcast_in_order;

/// The longest any single expected event may take; failures show up within it.
const WAIT: Duration = Duration::from_secs(10);
/// For events that depend on a reconnect.
const RECONNECT_WAIT: Duration = Duration::from_secs(20);

/// The broker backends under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Memory,
    Amqp,
    Nats,
    Redis,
}

/// A broker for one test, in a namespace of its own.
#[derive(Debug)]
pub struct TestBroker {
    pub broker: Arc<dyn Broker>,
    pub kind: BrokerKind,
    pub namespace: String,
    url: Option<String>,
    amqp: Mutex<Vec<Arc<AmqpBroker>>>,
    nats: Mutex<Vec<Arc<NatsBroker>>>,
    redis: Mutex<Vec<Arc<RedisBroker>>>,
}

impl TestBroker {
    /// A fresh in-process broker.
    pub fn memory() -> Self {
        Self::new(Arc::new(MemoryBroker::new()), BrokerKind::Memory, None)
    }

    /// A broker of `kind` for `test`, or `None` when that broker is not configured.
    pub async fn of(kind: BrokerKind, test: &str) -> Option<Self> {
        match kind {
            BrokerKind::Memory => Some(Self::memory()),
            BrokerKind::Amqp => Self::amqp(test).await,
            BrokerKind::Nats => Self::nats(test).await,
            BrokerKind::Redis => Self::redis(test).await,
        }
    }

    /// RabbitMQ in a fresh namespace, when `HERALD_TEST_AMQP_URL` is set.
    pub async fn amqp(test: &str) -> Option<Self> {
        let url = crate::test_env::backend_url("HERALD_TEST_AMQP_URL", test)?;
        let namespace = namespace();
        let broker = Arc::new(AmqpBroker::connect(&url, &namespace).await.expect("connect to HERALD_TEST_AMQP_URL"));
        let test_broker = Self { namespace, ..Self::new(broker.clone(), BrokerKind::Amqp, Some(url)) };
        test_broker.amqp.lock().expect("amqp list").push(broker);
        Some(test_broker)
    }

    /// NATS JetStream in a fresh namespace, when `HERALD_TEST_NATS_URL` is set.
    pub async fn nats(test: &str) -> Option<Self> {
        let url = crate::test_env::backend_url("HERALD_TEST_NATS_URL", test)?;
        let namespace = namespace();
        let broker = Arc::new(NatsBroker::connect(&url, &namespace).await.expect("connect to HERALD_TEST_NATS_URL"));
        let test_broker = Self { namespace, ..Self::new(broker.clone(), BrokerKind::Nats, Some(url)) };
        test_broker.nats.lock().expect("nats list").push(broker);
        Some(test_broker)
    }

    /// Redis in a fresh namespace, when `HERALD_TEST_REDIS_URL` is set.
    pub async fn redis(test: &str) -> Option<Self> {
        let url = crate::test_env::backend_url("HERALD_TEST_REDIS_URL", test)?;
        let namespace = namespace();
        let broker = Arc::new(RedisBroker::connect(&url, &namespace).await.expect("connect to HERALD_TEST_REDIS_URL"));
        let test_broker = Self { namespace, ..Self::new(broker.clone(), BrokerKind::Redis, Some(url)) };
        test_broker.redis.lock().expect("redis list").push(broker);
        Some(test_broker)
    }

    fn new(broker: Arc<dyn Broker>, kind: BrokerKind, url: Option<String>) -> Self {
        Self {
            broker,
            kind,
            namespace: namespace(),
            url,
            amqp: Mutex::default(),
            nats: Mutex::default(),
            redis: Mutex::default(),
        }
    }

    /// Whether the backend drops a duplicate message id by itself (RabbitMQ cannot).
    pub fn dedups_natively(&self) -> bool {
        matches!(self.kind, BrokerKind::Memory | BrokerKind::Nats | BrokerKind::Redis)
    }

    /// Another connection to the same backend and namespace (in-process: the same broker).
    pub async fn open_another(&self) -> Arc<dyn Broker> {
        match (self.kind, &self.url) {
            (BrokerKind::Amqp, Some(url)) => {
                let broker = Arc::new(AmqpBroker::connect(url, &self.namespace).await.expect("second AMQP connection"));
                self.amqp.lock().expect("amqp list").push(broker.clone());
                broker
            }
            (BrokerKind::Nats, Some(url)) => {
                let broker = Arc::new(NatsBroker::connect(url, &self.namespace).await.expect("second NATS connection"));
                self.nats.lock().expect("nats list").push(broker.clone());
                broker
            }
            (BrokerKind::Redis, Some(url)) => {
                let broker =
                    Arc::new(RedisBroker::connect(url, &self.namespace).await.expect("second Redis connection"));
                self.redis.lock().expect("redis list").push(broker.clone());
                broker
            }
            _ => Arc::clone(&self.broker),
        }
    }

    /// The backend's `host:port`, for a [`Proxy`] to forward to; `None` in-process.
    pub fn target(&self) -> Option<String> {
        Some(broker_target(self.kind, self.url.as_deref()?))
    }

    /// A connection to the same backend and namespace that goes through `proxy`; `None` in-process.
    /// The caller closes it; the namespace's cleanup does not depend on it.
    pub async fn open_through(&self, proxy: &Proxy) -> Option<Arc<dyn Broker>> {
        let proxied = proxied_url(self.url.as_deref()?, proxy);
        Some(match self.kind {
            BrokerKind::Amqp => Arc::new(AmqpBroker::connect(&proxied, &self.namespace).await.expect("AMQP via proxy")),
            BrokerKind::Nats => Arc::new(NatsBroker::connect(&proxied, &self.namespace).await.expect("NATS via proxy")),
            BrokerKind::Redis => {
                Arc::new(RedisBroker::connect(&proxied, &self.namespace).await.expect("Redis via proxy"))
            }
            BrokerKind::Memory => return None,
        })
    }

    /// Deletes what the test created and closes every connection.
    pub async fn finish(self) {
        let amqp = std::mem::take(&mut *self.amqp.lock().expect("amqp list"));
        for broker in amqp {
            broker.delete_declared().await.ok();
            broker.close().await;
        }
        let nats = std::mem::take(&mut *self.nats.lock().expect("nats list"));
        if let Some(first) = nats.first() {
            first.delete_stream().await.expect("delete the test's stream");
        }
        for broker in nats {
            broker.close().await;
        }
        let redis = std::mem::take(&mut *self.redis.lock().expect("redis list"));
        if let Some(first) = redis.first() {
            first.delete_namespace().await.expect("delete the test's keys");
        }
        for broker in redis {
            broker.close().await;
        }
        self.broker.close().await;
    }
}

/// `t_<uuid v7>`: unique per test, valid on every backend.
fn namespace() -> String {
    format!("t_{}", Uuid::now_v7().simple())
}

/// The `host:port` a broker URL (`amqp://…`, `nats://…`) points at, for a [`Proxy`] to forward to.
pub fn broker_target(kind: BrokerKind, url: &str) -> String {
    let default_port = match kind {
        BrokerKind::Amqp => 5672,
        BrokerKind::Redis => 6379,
        BrokerKind::Memory | BrokerKind::Nats => 4222,
    };
    let (_, authority, _) = split_url(url);
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if host.contains(':') { host.to_owned() } else { format!("{host}:{default_port}") }
}

/// `url` with its host and port replaced by `proxy`'s (credentials, path and query kept).
pub fn proxied_url(url: &str, proxy: &Proxy) -> String {
    let (scheme, authority, tail) = split_url(url);
    let userinfo = authority.rsplit_once('@').map(|(userinfo, _)| format!("{userinfo}@")).unwrap_or_default();
    format!("{scheme}://{userinfo}{}{tail}", proxy.addr())
}

/// `scheme://authority/tail` -> (scheme, authority, `/tail`).
fn split_url(url: &str) -> (&str, &str, &str) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    (scheme, &rest[..end], &rest[end..])
}

/// A message with a fresh id and `body` as payload.
pub fn message(body: &str) -> Message {
    Message::new(Uuid::now_v7(), body.as_bytes().to_vec())
}

/// Awaits `future`, failing the test when it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future).await.unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

async fn next_delivery(consumer: &mut dyn QueueConsumer, what: &str) -> QueueMessage {
    within(WAIT, what, consumer.next()).await.expect("a delivery")
}

async fn next_message(subscription: &mut dyn Subscription, what: &str) -> Message {
    within(WAIT, what, subscription.next()).await.expect("a broadcast")
}

fn body(message: &Message) -> String {
    String::from_utf8_lossy(&message.payload).into_owned()
}

fn options(ack_deadline: Duration, prefetch: u16) -> ConsumeOptions {
    ConsumeOptions { ack_deadline, prefetch }
}
