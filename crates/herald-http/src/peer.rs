//! The client's address: the TCP peer, or, when that peer is a trusted reverse proxy
//! (`HERALD_TRUSTED_PROXIES`), the nearest address in `X-Forwarded-For` that is not one.

use std::net::IpAddr;

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, request::Parts},
};
use herald_core::net::Networks;

use crate::state::AppState;

/// The client address of a request, as the password-check limits count it.
pub fn client_ip(parts: &Parts, trusted: &Networks) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>()?.0.ip();
    Some(forwarded_client(peer, &parts.headers, trusted))
}

/// Walks `X-Forwarded-For` from the right (the hop nearest to us) while the address seen so far
/// is a trusted proxy. A client cannot spoof past the first untrusted hop: whatever it wrote
/// stands to the left of what our proxies appended.
pub(crate) fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted: &Networks) -> IpAddr {
    if !trusted.contains(peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        client = ip;
        if !trusted.contains(ip) {
            break;
        }
    }
    client
}

/// The client address of a request (`None` when the server did not record the peer).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<IpAddr>);

impl FromRequestParts<AppState> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(parts, &state.trusted_proxies)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn xff(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().expect("header"));
        headers
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let none = Networks::default();
        let proxies: Networks = "10.0.0.0/8".parse().expect("nets");
        let spoofed = xff("1.2.3.4");
        assert_eq!(forwarded_client(ip("198.51.100.7"), &spoofed, &none), ip("198.51.100.7"), "nothing trusted");
        assert_eq!(forwarded_client(ip("198.51.100.7"), &spoofed, &proxies), ip("198.51.100.7"), "untrusted peer");
        assert_eq!(forwarded_client(ip("10.0.0.2"), &spoofed, &proxies), ip("1.2.3.4"), "one proxy");
        // The client wrote 6.6.6.6 itself; our two proxies appended the real client and themselves.
        let chain = xff("6.6.6.6, 203.0.113.5, 10.0.0.3");
        assert_eq!(forwarded_client(ip("10.0.0.2"), &chain, &proxies), ip("203.0.113.5"));
        assert_eq!(forwarded_client(ip("10.0.0.2"), &HeaderMap::new(), &proxies), ip("10.0.0.2"), "no header");
        assert_eq!(forwarded_client(ip("10.0.0.2"), &xff("junk, 10.0.0.9"), &proxies), ip("10.0.0.9"));
    }
}
