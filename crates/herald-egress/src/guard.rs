//! The destination guard inside the client: names resolve only to addresses it allows.

use std::net::{IpAddr, SocketAddr};

use herald_core::net::{Destinations, Refusal};

/// Resolves names through [`Destinations`]: a name with any address the guard refuses does not
/// resolve at all, so no connection to it is tried; the addresses it answers are the ones
/// connected to (reqwest connects to what its resolver returns), and TLS still verifies the
/// certificate for the URL's name. The operator's proxy, when one is set, is the one name it
/// resolves unchecked (the destinations behind it are checked before a call, see
/// [`crate::Egress::proxied`]).
#[derive(Debug, Clone)]
pub(crate) struct CheckedResolver {
    pub(crate) destinations: Destinations,
    pub(crate) proxy_host: Option<String>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (destinations, host) = (self.destinations.clone(), name.as_str().to_owned());
        if self.proxy_host.as_deref() == Some(host.as_str()) {
            return Box::pin(async move {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
                let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
                Ok(addrs)
            });
        }
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port (or the scheme's) in its place.
            let addrs = destinations.check_host(&host, 0).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Refuses a URL whose host is an address the guard does not allow. An address written in a URL
/// is connected to as it is, without asking the resolver, so a guarded call checks it first.
pub fn check_literal(destinations: &Destinations, url: &reqwest::Url) -> Result<(), Refusal> {
    let literal = url.host_str().and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok());
    match literal {
        Some(ip) => destinations.check_ip(ip),
        None => Ok(()),
    }
}
