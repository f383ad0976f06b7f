//! Why a call got no answer: a coarse kind for users, the detail for the operator's log.

use herald_core::net::Refusal;
use tokio_rustls::rustls;

/// A call that got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// No answer within the call's timeout (the connection and the handshake included).
    Timeout,
    /// The destination guard refused the host.
    Refused(Refusal),
    /// The TLS handshake failed: a certificate not trusted, for another name or expired, or no
    /// protocol in common. The detail is rustls's.
    Tls(String),
    /// No connection could be made, or it broke before an answer.
    Unreachable(String),
    /// The request could not be made at all (a bad URL or header).
    Invalid(String),
}

impl Outbound {
    /// What a failed reqwest call was.
    pub fn of(e: &reqwest::Error) -> Self {
        if let Some(refusal) = find::<Refusal>(e) {
            return Self::Refused(refusal.clone());
        }
        if e.is_timeout() {
            return Self::Timeout;
        }
        if let Some(tls) = find::<rustls::Error>(e) {
            return Self::Tls(tls.to_string());
        }
        if e.is_builder() {
            return Self::Invalid(e.to_string());
        }
        Self::Unreachable(herald_core::quarantine::with_causes(e))
    }
}

/// The first error of type `T` in `e`'s chain, looking inside I/O errors too (a TLS failure
/// reaches reqwest as an I/O error that wraps rustls's, which `source()` alone skips).
fn find<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref)
            && let Some(found) = find::<T>(inner)
        {
            return Some(found);
        }
        next = err.source();
    }
    None
}
