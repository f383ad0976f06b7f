//! Herald's outbound HTTP: the one place calls to the world are made from — the SMS provider,
//! users' webhooks, and what comes later (push services, event endpoints).
//!
//! - TLS through rustls with ring, trusting the system's roots and, when the operator names one,
//!   a private CA (`HERALD_HTTP_CA_FILE`); HTTP/2 or HTTP/1.1 by ALPN; the certificate checked
//!   for the URL's host name, which is also the SNI.
//! - No redirect is followed and no proxy is used: the standard `HTTP(S)_PROXY` variables are
//!   not read, so a call goes where its URL says.
//! - For destinations users choose, [`Egress::guarded`] resolves every name through
//!   [`Destinations`](herald_core::net::Destinations): a name with any address outside what is
//!   allowed does not resolve, and the connection is made to the checked addresses only, so
//!   there is no gap between the check and the connect, over TLS as over plain HTTP.
//!   [`check_literal`] does the same for an address written in the URL, which no resolver sees.
//! - A call's timeout covers the connection, the TLS handshake and the answer; connections to
//!   one destination are pooled and reused.
//!
//! A failure is told apart by [`Outbound::of`] — timed out, refused by the guard, a TLS problem,
//! unreachable — so a user can be told a coarse reason and the operator's log the detail.

mod answer;
mod client;
mod failure;
mod guard;
mod tls;

pub use answer::{Answer, BodyError, read_body, send};
pub use client::{Egress, EgressError, EgressOptions, ProxyError};
pub use failure::Outbound;
pub use guard::check_literal;
/// The HTTP client library, for the types a caller of [`Egress`] handles.
pub use reqwest;
pub use tls::{TlsError, install_ring_provider};
