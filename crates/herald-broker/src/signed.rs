//! [`SignedBroker`]: the Broker port around any other broker, signing every message it publishes
//! with HMAC-SHA256 and dropping every message it receives whose signature is missing or wrong, so
//! that only processes holding the deployment's key can hand events and jobs to Herald.
//!
//! The signature travels in the [`SIGNATURE_HEADER`] header as `v1=<64 hex digits>`. It covers,
//! each field length-prefixed so that no two messages encode alike: whether the message goes to a
//! queue or a topic, the queue or topic name (as the caller names it, before the adapter adds its
//! namespace), the message id, every other header (sorted by name, as [`Message::headers`] keeps
//! them) and the payload. A signed message therefore cannot be moved to another queue or topic,
//! from a queue to a topic, or have a header added, removed or changed, or its payload altered.
//!
//! Messages that pass reach the caller **without** the signature header, exactly as they were
//! published, so the port's "headers travel unchanged" holds through the decorator. A rejected
//! message is logged at warn (id, queue or topic and reason; never its payload or headers) and
//! counted in `herald_broker_rejected_messages_total{reason}`. A rejected queue delivery is
//! **acked**: a forged message never becomes valid, so nacking it would redeliver it forever, and
//! the port has no dead-letter queue to send it to. The store stays the truth: a genuine job lost
//! this way (a process signing with another key during a key change) comes back from the store,
//! as a lost job does after a crash (the scheduler rescues lapsed claims).
//!
//! A signature proves who published and that nothing changed; it does not make a message fresh.
//! Someone who can read the broker can replay a signed message to its own queue or topic, where
//! consumers see the duplicate the port's at-least-once contract already makes them handle.

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use herald_core::{
    broker::{Broker, BrokerError, ConsumeOptions, Message, QueueConsumer, QueueMessage, Subscription},
    metrics::{Metrics, RejectionLabels},
};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header carrying a message's signature. Stripped from every message that passes.
pub const SIGNATURE_HEADER: &str = "herald-broker-signature";

/// The shortest key accepted, in bytes: as long as the HMAC-SHA256 output.
pub const MIN_KEY_LEN: usize = 32;

/// What a signature value starts with; a later scheme gets another prefix.
const VERSION_PREFIX: &str = "v1=";

/// Separates these MACs from any other use of the same key.
const DOMAIN: &[u8] = b"herald broker message v1\0";

/// A signing key shorter than [`MIN_KEY_LEN`].
#[derive(Debug, thiserror::Error)]
#[error("the broker signing key is {0} bytes long; it must have at least {MIN_KEY_LEN}")]
pub struct ShortSigningKey(pub usize);

/// Where a message goes: part of what is signed, so one cannot be moved from a queue to a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Queue,
    Topic,
}

impl Route {
    fn tag(self) -> u8 {
        match self {
            Self::Queue => b'q',
            Self::Topic => b't',
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Topic => "topic",
        }
    }
}

/// Why a received message was dropped; the `reason` label of the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejection {
    /// No signature header.
    Unsigned,
    /// A signature header that is malformed, or does not match the message under this key.
    BadSignature,
}

impl Rejection {
    const ALL: [Self; 2] = [Self::Unsigned, Self::BadSignature];

    fn label(self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::BadSignature => "bad_signature",
        }
    }
}

/// The keyed MAC and where rejections are counted; shared by the broker and its streams.
struct Signer {
    /// The MAC with the key already absorbed, cloned for every message.
    keyed: HmacSha256,
    metrics: Arc<Metrics>,
}

impl Signer {
    /// The MAC over everything a signature covers, the signature header itself excepted.
    fn mac(&self, route: Route, name: &str, message: &Message) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(DOMAIN);
        mac.update(&[route.tag()]);
        field(&mut mac, name.as_bytes());
        mac.update(message.id.as_bytes());
        let headers = || message.headers.iter().filter(|(name, _)| name.as_str() != SIGNATURE_HEADER);
        mac.update(&(headers().count() as u64).to_be_bytes());
        for (name, value) in headers() {
            field(&mut mac, name.as_bytes());
            field(&mut mac, value.as_bytes());
        }
        field(&mut mac, &message.payload);
        mac
    }

    /// `message` with its signature for `route` and `name` in [`SIGNATURE_HEADER`], replacing any.
    fn sign(&self, route: Route, name: &str, mut message: Message) -> Message {
        message.headers.remove(SIGNATURE_HEADER);
        let signature = hex::encode(self.mac(route, name, &message).finalize().into_bytes());
        message.headers.insert(SIGNATURE_HEADER.to_owned(), format!("{VERSION_PREFIX}{signature}"));
        message
    }

    /// Takes the signature header off `message` and checks it, in constant time.
    fn verify(&self, route: Route, name: &str, message: &mut Message) -> Result<(), Rejection> {
        let value = message.headers.remove(SIGNATURE_HEADER).ok_or(Rejection::Unsigned)?;
        let signature = value
            .strip_prefix(VERSION_PREFIX)
            .and_then(|digits| hex::decode(digits).ok())
            .ok_or(Rejection::BadSignature)?;
        self.mac(route, name, message).verify_slice(&signature).map_err(|_| Rejection::BadSignature)
    }

    /// Logs and counts a dropped message; its payload and headers stay out of the log.
    fn reject(&self, route: Route, name: &str, message: &Message, why: Rejection) {
        tracing::warn!(
            id = %message.id,
            route = route.as_str(),
            name,
            reason = why.label(),
            "dropping a broker message not signed with this deployment's key"
        );
        self.count(why, 1);
    }

    /// Adds `by` to the rejection counter of `why` (creating its series when `by` is 0).
    fn count(&self, why: Rejection, by: u64) {
        self.metrics
            .broker_rejected_messages
            .get_or_create(&RejectionLabels { reason: why.label().to_owned() })
            .inc_by(by);
    }
}

/// Absorbs `bytes`, prefixed with their length, so that field boundaries are part of the MAC.
fn field(mac: &mut HmacSha256, bytes: &[u8]) {
    mac.update(&(bytes.len() as u64).to_be_bytes());
    mac.update(bytes);
}

/// A broker that signs what it publishes and drops what it receives unsigned or forged. See the
/// module docs for what is signed and what happens to a rejected message.
pub struct SignedBroker {
    inner: Arc<dyn Broker>,
    signer: Arc<Signer>,
}

impl fmt::Debug for SignedBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedBroker").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl SignedBroker {
    /// Wraps `inner`, signing and checking with `key` (at least [`MIN_KEY_LEN`] bytes) and counting
    /// rejections in `metrics`.
    pub fn new(inner: Arc<dyn Broker>, key: &[u8], metrics: Arc<Metrics>) -> Result<Self, ShortSigningKey> {
        if key.len() < MIN_KEY_LEN {
            return Err(ShortSigningKey(key.len()));
        }
        let keyed = HmacSha256::new_from_slice(key).map_err(|_| ShortSigningKey(key.len()))?;
        let signer = Signer { keyed, metrics };
        // Both series exist from the start, so a dashboard shows 0 rather than nothing.
        for why in Rejection::ALL {
            signer.count(why, 0);
        }
        Ok(Self { inner, signer: Arc::new(signer) })
    }
}

#[async_trait]
impl Broker for SignedBroker {
    async fn enqueue(&self, queue: &str, message: Message) -> Result<(), BrokerError> {
        self.inner.enqueue(queue, self.signer.sign(Route::Queue, queue, message)).await
    }

    async fn enqueue_all(&self, queue: &str, messages: Vec<Message>) -> Result<(), BrokerError> {
        let signed = messages.into_iter().map(|m| self.signer.sign(Route::Queue, queue, m)).collect();
        self.inner.enqueue_all(queue, signed).await
    }

    async fn consume(&self, queue: &str, options: ConsumeOptions) -> Result<Box<dyn QueueConsumer>, BrokerError> {
        let inner = self.inner.consume(queue, options).await?;
        Ok(Box::new(VerifiedConsumer { inner, signer: self.signer.clone(), queue: queue.to_owned() }))
    }

    async fn broadcast(&self, topic: &str, message: Message) -> Result<(), BrokerError> {
        self.inner.broadcast(topic, self.signer.sign(Route::Topic, topic, message)).await
    }

    async fn broadcast_all(&self, topic: &str, messages: Vec<Message>) -> Result<(), BrokerError> {
        let signed = messages.into_iter().map(|m| self.signer.sign(Route::Topic, topic, m)).collect();
        self.inner.broadcast_all(topic, signed).await
    }

    async fn subscribe(&self, topic: &str) -> Result<Box<dyn Subscription>, BrokerError> {
        let inner = self.inner.subscribe(topic).await?;
        Ok(Box::new(VerifiedSubscription { inner, signer: self.signer.clone(), topic: topic.to_owned() }))
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        self.inner.ping().await
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

/// A queue consumer that hands on only deliveries signed with the key, and acks the rest away.
struct VerifiedConsumer {
    inner: Box<dyn QueueConsumer>,
    signer: Arc<Signer>,
    queue: String,
}

#[async_trait]
impl QueueConsumer for VerifiedConsumer {
    async fn next(&mut self) -> Result<QueueMessage, BrokerError> {
        loop {
            let mut delivery = self.inner.next().await?;
            let Err(why) = self.signer.verify(Route::Queue, &self.queue, &mut delivery.message) else {
                return Ok(delivery);
            };
            self.signer.reject(Route::Queue, &self.queue, &delivery.message, why);
            // When the ack fails the message comes back after its deadline and is dropped again.
            if let Err(error) = delivery.ack().await {
                tracing::warn!(%error, queue = %self.queue, "could not ack a rejected broker message");
            }
        }
    }
}

/// A topic subscription that hands on only broadcasts signed with the key; interruptions pass.
struct VerifiedSubscription {
    inner: Box<dyn Subscription>,
    signer: Arc<Signer>,
    topic: String,
}

#[async_trait]
impl Subscription for VerifiedSubscription {
    async fn next(&mut self) -> Result<Message, BrokerError> {
        loop {
            let mut message = self.inner.next().await?;
            match self.signer.verify(Route::Topic, &self.topic, &mut message) {
                Ok(()) => return Ok(message),
                Err(why) => self.signer.reject(Route::Topic, &self.topic, &message, why),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::memory::MemoryBroker;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn signer() -> Signer {
        Signer { keyed: HmacSha256::new_from_slice(KEY).expect("key"), metrics: Arc::default() }
    }

    fn sample() -> Message {
        Message::new(Uuid::now_v7(), b"payload".to_vec()).with_header("a", "1").with_header("b", "2")
    }

    #[test]
    fn short_keys_are_refused() {
        let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
        let short = SignedBroker::new(broker.clone(), &KEY[..31], Arc::default());
        assert!(matches!(short, Err(ShortSigningKey(31))));
        assert!(SignedBroker::new(broker, KEY, Arc::default()).is_ok());
    }

    #[test]
    fn a_signed_message_verifies_once_and_comes_back_as_it_was() {
        let signer = signer();
        let original = sample();
        let mut signed = signer.sign(Route::Topic, "events", original.clone());
        let value = signed.headers.get(SIGNATURE_HEADER).expect("signed").clone();
        assert!(value.starts_with("v1=") && value.len() == 3 + 64, "{value}");
        assert_eq!(signer.verify(Route::Topic, "events", &mut signed), Ok(()));
        assert_eq!(signed, original, "the signature header is stripped");
        assert_eq!(signer.verify(Route::Topic, "events", &mut signed), Err(Rejection::Unsigned));
    }

    #[test]
    fn every_covered_part_is_bound() {
        let signer = signer();
        let signed = signer.sign(Route::Queue, "jobs.a", sample());
        // What was changed, where the message is checked, and the change.
        type Tamper = (&'static str, Route, &'static str, fn(&mut Message));
        let tampered: [Tamper; 8] = [
            ("another queue", Route::Queue, "jobs.b", |_| {}),
            ("the topic of that name", Route::Topic, "jobs.a", |_| {}),
            ("another id", Route::Queue, "jobs.a", |m| m.id = Uuid::now_v7()),
            ("a changed header", Route::Queue, "jobs.a", |m| drop(m.headers.insert("a".into(), "9".into()))),
            ("an added header", Route::Queue, "jobs.a", |m| drop(m.headers.insert("c".into(), String::new()))),
            ("a removed header", Route::Queue, "jobs.a", |m| drop(m.headers.remove("b"))),
            ("a changed payload", Route::Queue, "jobs.a", |m| m.payload.push(b'!')),
            ("a header folded into another", Route::Queue, "jobs.a", |m| {
                m.headers.remove("b");
                m.headers.insert("a".into(), "1b2".into());
            }),
        ];
        for (what, route, name, change) in tampered {
            let mut message = signed.clone();
            change(&mut message);
            assert_eq!(signer.verify(route, name, &mut message), Err(Rejection::BadSignature), "{what}");
        }
        let mut intact = signed.clone();
        assert_eq!(signer.verify(Route::Queue, "jobs.a", &mut intact), Ok(()));
    }

    #[test]
    fn malformed_and_foreign_signatures_are_bad() {
        let signer = signer();
        let other = Signer { keyed: HmacSha256::new_from_slice(&[7; 32]).expect("key"), metrics: Arc::default() };
        let mut foreign = other.sign(Route::Topic, "events", sample());
        assert_eq!(signer.verify(Route::Topic, "events", &mut foreign), Err(Rejection::BadSignature));
        let signed = signer.sign(Route::Topic, "events", sample());
        let good = signed.headers[SIGNATURE_HEADER].clone();
        for bad in
            [String::new(), "v1=".into(), "v1=zz".into(), good[3..].to_owned(), good[..good.len() - 2].to_owned()]
        {
            let mut message = signed.clone();
            message.headers.insert(SIGNATURE_HEADER.into(), bad.clone());
            assert_eq!(signer.verify(Route::Topic, "events", &mut message), Err(Rejection::BadSignature), "{bad:?}");
        }
    }

    #[test]
    fn a_publisher_supplied_signature_is_replaced() {
        let signer = signer();
        let message = sample().with_header(SIGNATURE_HEADER, "v1=00");
        let mut signed = signer.sign(Route::Topic, "events", message);
        assert_eq!(signer.verify(Route::Topic, "events", &mut signed), Ok(()));
        assert!(!signed.headers.contains_key(SIGNATURE_HEADER));
    }
}
