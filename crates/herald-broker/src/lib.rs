//! Broker port adapters: [`MemoryBroker`] (in-process, for `herald serve`), [`AmqpBroker`]
//! (RabbitMQ through lapin), [`NatsBroker`] (NATS JetStream through async-nats) and
//! [`RedisBroker`] (Redis streams and pub/sub through the `redis` crate). [`BrokerUrl`]
//! picks one from a URL, once, at the edge. [`SignedBroker`] wraps any of them to sign what it
//! publishes and drop what it receives unsigned. `docs/brokers.md` says how each maps the port.

mod amqp;
mod error;
mod lease;
mod memory;
mod names;
mod nats;
mod redis_streams;
mod signed;
mod url;

/// Commands over NATS request-reply: the NATS transport of the command registry.
pub use nats::{
    commands as nats_commands,
    forward::NatsForward,
    forwarded::{ForwardSealing, fwd_subject},
    seal::{ForwardKey, Way as SealWay, now_ms},
};

pub use amqp::AmqpBroker;
pub use error::AdapterError;
pub use memory::MemoryBroker;
pub use nats::NatsBroker;
pub use redis_streams::{DEDUPE_WINDOW as REDIS_DEDUPE_WINDOW, RedisBroker};
pub use signed::{MIN_KEY_LEN, SIGNATURE_HEADER, ShortSigningKey, SignedBroker};
pub use url::BrokerUrl;
