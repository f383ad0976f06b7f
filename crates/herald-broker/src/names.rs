//! Queue, topic and namespace names: the checks every adapter applies before it names anything
//! on its backend.

use herald_core::broker::BrokerError;

use crate::error::AdapterError;

/// Checks a queue or topic name: dot-separated, non-empty tokens of `[A-Za-z0-9_-]`.
pub(crate) fn check_name(name: &str) -> Result<(), BrokerError> {
    let valid = !name.is_empty()
        && name.split('.').all(|token| {
            !token.is_empty() && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if valid { Ok(()) } else { Err(AdapterError::InvalidName(name.to_owned()).into()) }
}

/// Checks a namespace: one non-empty token of `[A-Za-z0-9_-]`, so it fits every backend's naming.
pub(crate) fn check_namespace(namespace: &str) -> Result<(), BrokerError> {
    let valid = !namespace.is_empty()
        && namespace.len() <= 64
        && namespace.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid { Ok(()) } else { Err(AdapterError::InvalidNamespace(namespace.to_owned()).into()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("deliveries.sms").is_ok());
        assert!(check_name("a-b_c.D9").is_ok());
        for bad in ["", ".", "a..b", "a.", "a b", "a*", "a>", "a:b"] {
            assert!(check_name(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(check_namespace("t_0190abc").is_ok());
        assert!(check_namespace("").is_err());
        assert!(check_namespace("a.b").is_err());
    }
}
