//! [`BrokerUrl`]: which broker to open, picked once from a URL, at the edge.

use std::{fmt, str::FromStr, sync::Arc};

use herald_core::broker::{Broker, BrokerError};

use crate::{
    amqp::AmqpBroker,
    memory::MemoryBroker,
    nats::{self, NatsBroker},
    redis_streams::RedisBroker,
};

/// Which broker to open, parsed from `HERALD_BROKER_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum BrokerUrl {
    /// `memory://`: the in-process broker; nothing leaves the process.
    Memory,
    /// `amqp://…` or `amqps://…`: RabbitMQ, URL passed to lapin as is.
    Amqp(String),
    /// `nats://…` (or `tls://…`): NATS with JetStream enabled. `user:password@` or `token@` in the
    /// URL (percent-encoded) authenticate the connection; async-nats gets the rest as the address.
    Nats(String),
    /// `redis://…` or `rediss://…` (TLS): Redis 7.0 or later, URL passed to the `redis` crate as
    /// is (`user:password@`, `/db`).
    Redis(String),
}

impl FromStr for BrokerUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if url == "memory://" || url == "memory:" {
            Ok(Self::Memory)
        } else if url.starts_with("amqp://") || url.starts_with("amqps://") {
            Ok(Self::Amqp(url.to_owned()))
        } else if url.starts_with("nats://") || url.starts_with("tls://") {
            // Credentials are checked now, so that a malformed one fails at startup, not on connect.
            nats::check_url(url)?;
            Ok(Self::Nats(url.to_owned()))
        } else if url.starts_with("redis://") || url.starts_with("rediss://") {
            // Parsed now, so that a malformed URL fails at startup (the error never echoes it).
            redis::Client::open(url).map_err(|_| "not a valid redis:// or rediss:// URL".to_owned())?;
            Ok(Self::Redis(url.to_owned()))
        } else {
            Err("must be memory://, or start with amqp://, amqps://, nats://, redis:// or rediss://".into())
        }
    }
}

impl fmt::Display for BrokerUrl {
    /// Shows the URL with any password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory://"),
            Self::Amqp(url) | Self::Nats(url) | Self::Redis(url) => {
                f.write_str(&herald_core::redact::url_password(url))
            }
        }
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl BrokerUrl {
    /// Opens the broker this URL names. `namespace` prefixes every queue, topic, stream and
    /// subject, so that several deployments (or tests) can share one broker.
    pub async fn open(&self, namespace: &str) -> Result<Arc<dyn Broker>, BrokerError> {
        Ok(match self {
            Self::Memory => Arc::new(MemoryBroker::new()),
            Self::Amqp(url) => Arc::new(AmqpBroker::connect(url, namespace).await?),
            Self::Nats(url) => Arc::new(NatsBroker::connect(url, namespace).await?),
            Self::Redis(url) => Arc::new(RedisBroker::connect(url, namespace).await?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_redact() {
        assert_eq!("memory://".parse(), Ok(BrokerUrl::Memory));
        let amqp: BrokerUrl = "amqp://guest:s3cret@rabbit:5672/%2f".parse().expect("amqp");
        assert_eq!(amqp.to_string(), "amqp://guest:***@rabbit:5672/%2f");
        assert_eq!(format!("{amqp:?}"), "amqp://guest:***@rabbit:5672/%2f");
        assert!(matches!("amqps://h".parse(), Ok(BrokerUrl::Amqp(_))));
        let nats: BrokerUrl = "nats://tok3n@nats:4222".parse().expect("nats");
        assert_eq!(nats.to_string(), "nats://***@nats:4222");
        assert_eq!("nats://127.0.0.1:4222".parse::<BrokerUrl>().expect("nats").to_string(), "nats://127.0.0.1:4222");
        let redis: BrokerUrl = "redis://:s3cret@cache:6379/2".parse().expect("redis");
        assert_eq!(redis.to_string(), "redis://:***@cache:6379/2");
        assert!(matches!("rediss://cache".parse(), Ok(BrokerUrl::Redis(_))));
        assert!("kafka://x".parse::<BrokerUrl>().is_err());
    }

    #[test]
    fn nats_credentials_are_checked_when_parsed() {
        let user: BrokerUrl = "nats://herald:s3cret@nats:4222".parse().expect("user and password");
        assert_eq!(user, BrokerUrl::Nats("nats://herald:s3cret@nats:4222".into()), "kept whole, split on connect");
        assert_eq!(user.to_string(), "nats://herald:***@nats:4222");
        assert!(matches!("tls://tok3n@nats:4222".parse(), Ok(BrokerUrl::Nats(_))));
        for bad in ["nats://herald:@nats:4222", "nats://:s3cret@nats:4222", "nats://@nats", "nats://tok%zz@nats"] {
            let error = bad.parse::<BrokerUrl>().expect_err(bad);
            assert!(!error.contains("s3cret") && !error.contains("tok%"), "{bad}: {error}");
        }
    }
}
