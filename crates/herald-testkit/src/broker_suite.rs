//! The Broker port's conformance suite, written once. `tests/it/broker.rs` runs every function
//! here against the in-process broker, RabbitMQ and NATS; an adapter passes when it behaves as the
//! port's contract says. [`TestBroker`] gives each test its own namespace, further connections to
//! the same backend, connections through a [`Proxy`], and cleans up at the end. The `signed` part
//! runs [`herald_broker::SignedBroker`] over each backend.

use std::{
    collections::{BTreeMap, HashSet},
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use herald_broker::{AmqpBroker, MemoryBroker, NatsBroker, RedisBroker};
use herald_core::broker::{Broker, BrokerError, ConsumeOptions, Message, QueueConsumer, QueueMessage, Subscription};
use tokio::time::Instant;
use uuid::Uuid;

use crate::proxy::Proxy;

mod signed;
pub use signed::{
    signed_messages_arrive_intact_through_a_signed_broker, unsigned_and_forged_messages_are_dropped_and_counted,
};

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
        let url = crate::backend_url("HERALD_TEST_AMQP_URL", test)?;
        let namespace = namespace();
        let broker = Arc::new(AmqpBroker::connect(&url, &namespace).await.expect("connect to HERALD_TEST_AMQP_URL"));
        let test_broker = Self { namespace, ..Self::new(broker.clone(), BrokerKind::Amqp, Some(url)) };
        test_broker.amqp.lock().expect("amqp list").push(broker);
        Some(test_broker)
    }

    /// NATS JetStream in a fresh namespace, when `HERALD_TEST_NATS_URL` is set.
    pub async fn nats(test: &str) -> Option<Self> {
        let url = crate::backend_url("HERALD_TEST_NATS_URL", test)?;
        let namespace = namespace();
        let broker = Arc::new(NatsBroker::connect(&url, &namespace).await.expect("connect to HERALD_TEST_NATS_URL"));
        let test_broker = Self { namespace, ..Self::new(broker.clone(), BrokerKind::Nats, Some(url)) };
        test_broker.nats.lock().expect("nats list").push(broker);
        Some(test_broker)
    }

    /// Redis in a fresh namespace, when `HERALD_TEST_REDIS_URL` is set.
    pub async fn redis(test: &str) -> Option<Self> {
        let url = crate::backend_url("HERALD_TEST_REDIS_URL", test)?;
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

/// Enqueues `message` once the broker takes it again: while cut off it must fail with the
/// retryable `Unavailable`, anything else fails the test.
async fn enqueue_once_back(broker: &dyn Broker, queue: &str, message: &Message) {
    within(RECONNECT_WAIT, "enqueueing to work again", async {
        loop {
            match broker.enqueue(queue, message.clone()).await {
                Ok(()) => break,
                Err(BrokerError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(other) => panic!("a broker out of reach must be Unavailable, got {other:?}"),
            }
        }
    })
    .await;
}

/// Reads `subscription` until it says `Interrupted`, broadcasting a "ping" on `topic` every
/// 200 ms meanwhile (each must be accepted when `pings_must_land`); pings are all it may see
/// before.
async fn until_interrupted(
    subscription: &mut dyn Subscription,
    broker: &dyn Broker,
    topic: &str,
    pings_must_land: bool,
) {
    within(RECONNECT_WAIT, "the subscription to report the interruption", async {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                received = subscription.next() => match received {
                    Err(BrokerError::Interrupted) => break,
                    Ok(received) => assert!(body(&received).starts_with("ping"), "{received:?}"),
                    Err(error) => panic!("the subscription keeps working, got {error:?}"),
                },
                _ = tick.tick() => {
                    let pinged = broker.broadcast(topic, message("ping")).await;
                    assert!(pinged.is_ok() || !pings_must_land, "broadcast: {pinged:?}");
                }
            }
        }
    })
    .await;
}

pub async fn a_consumer_sees_a_queue_in_publish_order(broker: &dyn Broker, _env: &TestBroker) {
    broker.ping().await.expect("ping");
    broker.enqueue("jobs.ordered", message("0")).await.expect("enqueue");
    broker.enqueue_all("jobs.ordered", (1..20).map(|i| message(&i.to_string())).collect()).await.expect("enqueue_all");
    broker.enqueue("jobs.ordered", message("20")).await.expect("enqueue");
    let mut consumer = broker.consume("jobs.ordered", options(Duration::from_secs(30), 8)).await.expect("consume");
    for expected in 0..=20 {
        let delivery = next_delivery(consumer.as_mut(), "the next message in order").await;
        assert_eq!(body(&delivery.message), expected.to_string(), "publish order");
        assert!(!delivery.redelivered);
        delivery.ack().await.expect("ack");
    }
}

pub async fn ack_removes_and_nack_redelivers(broker: &dyn Broker, _env: &TestBroker) {
    let mut consumer = broker.consume("jobs.acks", options(Duration::from_secs(30), 1)).await.expect("consume");
    let (a, b) = (message("a"), message("b"));
    broker.enqueue_all("jobs.acks", vec![a.clone(), b.clone()]).await.expect("enqueue");

    let first = next_delivery(consumer.as_mut(), "a").await;
    assert_eq!(first.message, a);
    first.nack(None).await.expect("nack");
    let again = next_delivery(consumer.as_mut(), "a, redelivered").await;
    assert_eq!(again.message, a, "a nacked message comes back before later ones");
    assert!(again.redelivered, "and says so");
    again.ack().await.expect("ack a");

    let second = next_delivery(consumer.as_mut(), "b").await;
    assert_eq!(second.message, b);
    second.ack().await.expect("ack b");

    let sentinel = message("sentinel");
    broker.enqueue("jobs.acks", sentinel.clone()).await.expect("enqueue sentinel");
    let last = next_delivery(consumer.as_mut(), "the sentinel").await;
    assert_eq!(last.message, sentinel, "acked messages never come back");
    last.ack().await.expect("ack sentinel");
}

pub async fn nack_with_delay_redelivers_after_the_delay(broker: &dyn Broker, _env: &TestBroker) {
    let delay = Duration::from_millis(800);
    let mut consumer = broker.consume("jobs.delayed", options(Duration::from_secs(30), 4)).await.expect("consume");
    let delayed = message("delayed");
    broker.enqueue("jobs.delayed", delayed.clone()).await.expect("enqueue");
    let first = next_delivery(consumer.as_mut(), "the message").await;
    let nacked_at = Instant::now();
    first.nack(Some(delay)).await.expect("nack with delay");

    let later = message("later");
    broker.enqueue("jobs.delayed", later.clone()).await.expect("enqueue later");
    let next = next_delivery(consumer.as_mut(), "the later message").await;
    assert_eq!(next.message, later, "a delayed message does not hold up the queue");
    next.ack().await.expect("ack later");

    let again = next_delivery(consumer.as_mut(), "the delayed message").await;
    let waited = nacked_at.elapsed();
    assert_eq!(again.message, delayed, "id, headers and payload survive the delay");
    assert!(again.redelivered);
    assert!(waited >= delay, "redelivered after {waited:?}, before the {delay:?} delay");
    assert!(waited < delay + WAIT, "redelivered far too late: {waited:?}");
    again.ack().await.expect("ack");
}

pub async fn a_dropped_consumer_gives_its_messages_to_another(broker: &dyn Broker, env: &TestBroker) {
    let sent: Vec<Message> = (0..3).map(|i| message(&format!("job {i}"))).collect();
    broker.enqueue_all("jobs.handover", sent.clone()).await.expect("enqueue");
    let mut first = broker.consume("jobs.handover", options(Duration::from_secs(30), 8)).await.expect("consume");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next_delivery(first.as_mut(), "a message for the first consumer").await);
    }
    drop(first);
    drop(held);

    let other = env.open_another().await;
    let mut second = other.consume("jobs.handover", options(Duration::from_secs(30), 8)).await.expect("consume");
    let started = Instant::now();
    let mut got = Vec::new();
    while got.len() < 3 {
        let delivery = next_delivery(second.as_mut(), "a message the dropped consumer held").await;
        // NATS 2.9 rolls its delivery pointer back when the last delivered message is nacked and
        // then counts its next delivery as the first: the flag is best effort there.
        assert!(delivery.redelivered || env.kind == BrokerKind::Nats, "it was delivered before");
        got.push(delivery.message.clone());
        delivery.ack().await.expect("ack");
    }
    assert!(started.elapsed() < Duration::from_secs(30), "released by the drop, not by the 30 s deadline");
    // Redeliveries may come in any order; every one of them must come.
    let ids = |messages: &[Message]| messages.iter().map(|m| m.id).collect::<HashSet<_>>();
    assert_eq!(ids(&got), ids(&sent), "all of them");
}

pub async fn an_unacked_delivery_comes_back_after_the_ack_deadline(broker: &dyn Broker, _env: &TestBroker) {
    let deadline = Duration::from_millis(600);
    let mut consumer = broker.consume("jobs.deadline", options(deadline, 4)).await.expect("consume");
    let sent = message("slow");
    broker.enqueue("jobs.deadline", sent.clone()).await.expect("enqueue");
    let held = next_delivery(consumer.as_mut(), "the message").await;
    let taken_at = Instant::now();

    let again = next_delivery(consumer.as_mut(), "the redelivery after the deadline").await;
    let waited = taken_at.elapsed();
    assert_eq!(again.message, sent);
    assert!(again.redelivered);
    assert!(
        waited >= deadline - Duration::from_millis(50),
        "came back after {waited:?}, before the {deadline:?} deadline"
    );

    assert!(held.ack().await.is_err(), "a delivery whose deadline passed can no longer be acked");
    again.ack().await.expect("ack the redelivery");
}

/// A delivery held past its ack deadline (neither settled nor dropped) no longer counts against
/// the consumer's prefetch: with a prefetch of one, the queue goes on.
pub async fn an_expired_delivery_frees_its_prefetch_slot(broker: &dyn Broker, _env: &TestBroker) {
    let mut consumer = broker.consume("jobs.expiry", options(Duration::from_millis(600), 1)).await.expect("consume");
    let sent = vec![message("a"), message("b")];
    broker.enqueue_all("jobs.expiry", sent.clone()).await.expect("enqueue");
    let held = next_delivery(consumer.as_mut(), "the first message").await;
    assert_eq!(held.message, sent[0]);
    let mut got = HashSet::new();
    while got.len() < 2 {
        let delivery = next_delivery(consumer.as_mut(), "the messages after the deadline").await;
        got.insert(delivery.message.id);
        delivery.ack().await.expect("ack");
    }
    assert_eq!(got, sent.iter().map(|m| m.id).collect::<HashSet<_>>());
    assert!(held.ack().await.is_err(), "the expired delivery can no longer be acked");
}

/// A consumer whose owner stops calling `next` for longer than the ack deadline keeps working when
/// it reads again: every message arrives and is acked. The in-process broker and Redis hand out
/// only live deliveries then; RabbitMQ and NATS may first hand out ones whose lease ran out while
/// they waited in the consumer's buffer (settling those fails, and they come again).
pub async fn a_consumer_read_after_a_pause_hands_out_live_deliveries(broker: &dyn Broker, env: &TestBroker) {
    let only_live = matches!(env.kind, BrokerKind::Memory | BrokerKind::Redis);
    let sent: Vec<Message> = (0..5).map(|i| message(&format!("paused {i}"))).collect();
    broker.enqueue_all("jobs.paused", sent.clone()).await.expect("enqueue");
    let mut consumer = broker.consume("jobs.paused", options(Duration::from_millis(600), 2)).await.expect("consume");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut got = HashSet::new();
    while got.len() < sent.len() {
        let delivery = next_delivery(consumer.as_mut(), "a message after the pause").await;
        let id = delivery.message.id;
        match delivery.ack().await {
            Ok(()) => {
                got.insert(id);
            }
            Err(error) => assert!(!only_live, "a delivery handed out after the pause is live: {error:?}"),
        }
    }
    assert_eq!(got, sent.iter().map(|m| m.id).collect::<HashSet<_>>());
}

/// A dropped consumer hands on at once what it was given (even a delivery dropped before it) and
/// what reached it while it was waiting for more.
pub async fn a_dropped_consumer_releases_everything_it_was_given(broker: &dyn Broker, env: &TestBroker) {
    let mut first = broker.consume("jobs.release", options(Duration::from_secs(30), 8)).await.expect("consume");
    let given = message("given");
    broker.enqueue("jobs.release", given.clone()).await.expect("enqueue");
    let delivery = next_delivery(first.as_mut(), "the message").await;
    drop(delivery);
    let waiting = message("arrived while the consumer waited");
    broker.enqueue("jobs.release", waiting.clone()).await.expect("enqueue");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(first);

    let other = env.open_another().await;
    let mut second = other.consume("jobs.release", options(Duration::from_secs(30), 8)).await.expect("consume");
    let started = Instant::now();
    let mut got = HashSet::new();
    while got.len() < 2 {
        let delivery = within(Duration::from_secs(20), "the dropped consumer's messages", second.next())
            .await
            .expect("a delivery");
        got.insert(delivery.message.id);
        delivery.ack().await.expect("ack");
    }
    assert_eq!(got, HashSet::from([given.id, waiting.id]));
    assert!(started.elapsed() < Duration::from_secs(30), "released by the drop, not by the 30 s deadline");
}

pub async fn every_subscription_gets_every_broadcast_in_order(broker: &dyn Broker, env: &TestBroker) {
    let other = env.open_another().await;
    let mut here = broker.subscribe("events.fanout").await.expect("subscribe");
    let mut there = other.subscribe("events.fanout").await.expect("subscribe on another connection");

    let mut sent: Vec<Message> = (0..10).map(|i| message(&i.to_string())).collect();
    broker.broadcast_all("events.fanout", sent.clone()).await.expect("broadcast_all");
    let last = message("10");
    broker.broadcast("events.fanout", last.clone()).await.expect("broadcast");
    sent.push(last);

    for subscription in [&mut here, &mut there] {
        for expected in &sent {
            assert_eq!(&next_message(subscription.as_mut(), "the next broadcast").await, expected, "broadcast order");
        }
    }

    let mut late = broker.subscribe("events.fanout").await.expect("subscribe late");
    let fresh = message("fresh");
    broker.broadcast("events.fanout", fresh.clone()).await.expect("broadcast");
    assert_eq!(next_message(late.as_mut(), "a broadcast").await, fresh, "only what was broadcast after subscribing");
    assert_eq!(next_message(here.as_mut(), "a broadcast").await, fresh);
    let unrelated = broker.broadcast("events.other", message("x")).await;
    assert!(unrelated.is_ok(), "broadcasting with no subscriber is fine");
}

/// What each adapter promises about a message id published twice: the in-process broker and NATS
/// (`Nats-Msg-Id` within the stream's duplicate window) deliver it once; RabbitMQ has no
/// de-duplication, delivers both, and consumers drop the second by [`Message::id`], as shown here.
pub async fn duplicate_ids_are_dropped_or_left_to_the_consumer(broker: &dyn Broker, env: &TestBroker) {
    let original = message("once");
    broker.enqueue("jobs.dedup", original.clone()).await.expect("enqueue");
    broker.enqueue("jobs.dedup", original.clone()).await.expect("enqueue the same id again (a relay retry)");
    broker.enqueue_all("jobs.dedup", vec![original.clone()]).await.expect("and once more in a batch");
    let sentinel = message("sentinel");
    broker.enqueue("jobs.dedup", sentinel.clone()).await.expect("enqueue sentinel");

    let mut consumer = broker.consume("jobs.dedup", options(Duration::from_secs(30), 8)).await.expect("consume");
    let mut received = Vec::new();
    let mut processed = HashSet::new();
    loop {
        let delivery = next_delivery(consumer.as_mut(), "the messages up to the sentinel").await;
        let message = delivery.message.clone();
        delivery.ack().await.expect("ack");
        received.push(message.id);
        processed.insert(message.id);
        if message.id == sentinel.id {
            break;
        }
    }
    if env.dedups_natively() {
        assert_eq!(received, vec![original.id, sentinel.id], "the broker dropped the duplicates");
    } else {
        assert_eq!(received, vec![original.id, original.id, original.id, sentinel.id], "every copy arrives");
        assert_eq!(processed.len(), 2, "and the consumer, keyed by Message::id, handles it once");
    }
}

pub async fn headers_and_ids_travel_unchanged(broker: &dyn Broker, _env: &TestBroker) {
    let payload: Vec<u8> = (0..=255u8).chain(b"\r\n\0 end".iter().copied()).collect();
    let sent = Message::new(Uuid::now_v7(), payload)
        .with_header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .with_header("event-type", "task.created")
        .with_header("Mixed-Case", "naïve ✓ value: with colon")
        .with_header("empty", "");
    let expected_headers: BTreeMap<String, String> = sent.headers.clone();

    let mut subscription = broker.subscribe("events.headers").await.expect("subscribe");
    broker.broadcast("events.headers", sent.clone()).await.expect("broadcast");
    assert_eq!(next_message(subscription.as_mut(), "the broadcast").await, sent, "broadcast carries all unchanged");

    broker.enqueue("jobs.headers", sent.clone()).await.expect("enqueue");
    let mut consumer = broker.consume("jobs.headers", options(Duration::from_secs(30), 2)).await.expect("consume");
    let delivery = next_delivery(consumer.as_mut(), "the message").await;
    assert_eq!(delivery.message, sent, "queue carries all unchanged");
    delivery.nack(Some(Duration::from_millis(100))).await.expect("nack with delay");
    let again = next_delivery(consumer.as_mut(), "the delayed redelivery").await;
    assert_eq!(again.message.headers, expected_headers, "no broker-added headers leak through a redelivery");
    assert_eq!(again.message, sent);
    again.ack().await.expect("ack");
}

pub async fn a_closed_broker_refuses_work_and_ends_its_streams(broker: &dyn Broker, env: &TestBroker) {
    let other = env.open_another().await;
    let mut consumer = other.consume("jobs.closing", options(Duration::from_secs(30), 2)).await.expect("consume");
    let mut subscription = other.subscribe("events.closing").await.expect("subscribe");
    other.close().await;
    assert!(matches!(other.enqueue("jobs.closing", message("x")).await, Err(BrokerError::Closed)));
    assert!(matches!(within(WAIT, "the consumer to end", consumer.next()).await, Err(BrokerError::Closed)));
    assert!(matches!(within(WAIT, "the subscription to end", subscription.next()).await, Err(BrokerError::Closed)));
    if env.kind == BrokerKind::Memory {
        return; // in-process, "another connection" is the broker itself
    }
    // Closing one connection leaves the backend and the other connections alone.
    broker.enqueue("jobs.closing", message("still open")).await.expect("enqueue on the open broker");
    broker.broadcast("events.closing", message("still open")).await.expect("broadcast on the open broker");
}

pub async fn consumers_and_subscriptions_survive_a_dropped_connection(broker: &dyn Broker, env: &TestBroker) {
    let Some(target) = env.target() else {
        eprintln!("{:?}: in-process, no connection to drop", env.kind);
        return;
    };
    let proxy = Proxy::start(&target).await.expect("start proxy");
    let via = env.open_through(&proxy).await.expect("a proxied connection");
    let mut consumer = via.consume("jobs.reconnect", options(Duration::from_secs(10), 4)).await.expect("consume");
    let mut subscription = via.subscribe("events.reconnect").await.expect("subscribe");

    let before = message("before");
    broker.enqueue("jobs.reconnect", before.clone()).await.expect("enqueue");
    let delivery = next_delivery(consumer.as_mut(), "a message before the drop").await;
    assert_eq!(delivery.message, before);
    delivery.ack().await.expect("ack");
    broker.broadcast("events.reconnect", before.clone()).await.expect("broadcast");
    assert_eq!(next_message(subscription.as_mut(), "a broadcast before the drop").await, before);

    proxy.sever();

    // Publishing through the dropped connection fails with a retryable error until it is back.
    let after = message("after");
    enqueue_once_back(via.as_ref(), "jobs.reconnect", &after).await;

    // The existing consumer receives on the new connection (acking anything else it sees).
    within(RECONNECT_WAIT, "the consumer to receive after the reconnect", async {
        loop {
            let delivery = consumer.next().await.expect("consumer keeps working");
            let found = delivery.message.id == after.id;
            delivery.ack().await.expect("ack on the new connection");
            if found {
                break;
            }
        }
    })
    .await;

    // The existing subscription says it was interrupted (broadcasts in the gap may be lost) while
    // others keep broadcasting; from then on, every broadcast reaches it.
    until_interrupted(subscription.as_mut(), broker, "events.reconnect", true).await;
    let resumed = message("resumed");
    broker.broadcast("events.reconnect", resumed.clone()).await.expect("broadcast after the interruption");
    within(WAIT, "the first broadcast after the interruption", async {
        loop {
            let received = subscription.next().await.expect("no second interruption");
            if received.id == resumed.id {
                break;
            }
            assert!(body(&received).starts_with("ping"), "{received:?}");
        }
    })
    .await;
    let last = message("via");
    via.broadcast("events.reconnect", last.clone()).await.expect("broadcast through the new connection");
    within(WAIT, "the broadcast through the new connection", async {
        while subscription.next().await.expect("subscription").id != last.id {}
    })
    .await;
    via.close().await;
}

/// Work queued on a broker that restarts mid-flow (`restart` stops it, keeping its data, and
/// starts it again) all arrives: what was acked before stays acked, the rest reaches the same
/// consumer on its new connection; a subscription says `Interrupted` and then hears broadcasts
/// again; publishing works again once the broker is back.
pub async fn queued_work_survives_a_broker_restart<F, R>(broker: &dyn Broker, restart: R)
where
    R: FnOnce() -> F,
    F: Future<Output = ()>,
{
    const SENT: usize = 1_000;
    let sent: Vec<Message> = (0..SENT).map(|i| message(&format!("job {i}"))).collect();
    broker.enqueue_all("jobs.restart", sent.clone()).await.expect("enqueue");
    let mut consumer = broker.consume("jobs.restart", options(Duration::from_secs(5), 16)).await.expect("consume");
    let mut subscription = broker.subscribe("events.restart").await.expect("subscribe");
    let mut acked = HashSet::new();
    while acked.len() < SENT / 3 {
        let delivery = next_delivery(consumer.as_mut(), "a job before the restart").await;
        acked.insert(delivery.message.id);
        delivery.ack().await.expect("ack before the restart");
    }

    restart().await;

    let after = message("enqueued after the restart");
    enqueue_once_back(broker, "jobs.restart", &after).await;
    let mut expected: HashSet<Uuid> = sent.iter().map(|m| m.id).collect();
    expected.insert(after.id);
    let mut again = 0;
    within(2 * RECONNECT_WAIT, "every job after the restart", async {
        while acked.len() < expected.len() {
            let delivery = consumer.next().await.expect("the consumer keeps working");
            assert!(expected.contains(&delivery.message.id), "an unknown message: {:?}", delivery.message);
            if !acked.insert(delivery.message.id) {
                again += 1; // held when the broker went down: delivered again, at least once
            }
            delivery.ack().await.ok();
        }
    })
    .await;
    assert!(again <= 16, "{again} jobs came twice: only those held (prefetch 16) may");

    until_interrupted(subscription.as_mut(), broker, "events.restart", false).await;
    let resumed = message("resumed");
    broker.broadcast("events.restart", resumed.clone()).await.expect("broadcast after the restart");
    within(WAIT, "the broadcast after the restart", async {
        while subscription.next().await.expect("subscription").id != resumed.id {}
    })
    .await;
}
