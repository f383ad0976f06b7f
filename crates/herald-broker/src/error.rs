//! The adapters' own failures, carried inside [`BrokerError`]'s `Other` and `Unavailable`.

use herald_core::broker::BrokerError;

/// What went wrong inside an adapter, beyond the backend's own error types.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("invalid queue or topic name {0:?}: dot-separated tokens of [A-Za-z0-9_-]")]
    InvalidName(String),
    #[error("invalid namespace {0:?}: one token of [A-Za-z0-9_-], at most 64 characters")]
    InvalidNamespace(String),
    /// The broker did not answer (or did not come back) within the time allowed.
    #[error("timed out after {0:?} {1}")]
    Timeout(std::time::Duration, &'static str),
    /// The broker refused a publish (publisher nack, no route).
    #[error("publish refused: {0}")]
    Refused(String),
    /// A delivery whose lease is gone (deadline passed, consumer dropped, connection lost) cannot be
    /// settled any more; the broker redelivers it.
    #[error("delivery no longer held: its ack deadline passed or its consumer went away")]
    LeaseLost,
    /// A header this backend cannot carry (NATS: `\r`/`\n` in a value, `:` or control characters
    /// in a name, or a name in the reserved `Nats-` range).
    #[error("header {0:?} cannot be carried by this broker")]
    InvalidHeader(String),
    /// A message arrived without a valid id.
    #[error("message without a valid id: {0}")]
    MissingId(String),
}

impl From<AdapterError> for BrokerError {
    fn from(error: AdapterError) -> Self {
        match error {
            AdapterError::Timeout(..) => BrokerError::Unavailable(Box::new(error)),
            _ => BrokerError::Other(Box::new(error)),
        }
    }
}

/// Wraps any error as retryable.
pub(crate) fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> BrokerError {
    BrokerError::Unavailable(Box::new(error))
}

/// Wraps any error as not retryable.
pub(crate) fn other(error: impl std::error::Error + Send + Sync + 'static) -> BrokerError {
    BrokerError::Other(Box::new(error))
}

/// An error and its sources on one line, for logs.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}
