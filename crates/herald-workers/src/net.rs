//! Name resolution for outbound destination checks: the system resolver behind the
//! [`Resolve`] port.

use std::net::IpAddr;

use async_trait::async_trait;
use herald_core::net::Resolve;

/// Resolves names with the operating system's resolver (`getaddrinfo`, off the executor).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.map(|addr| addr.ip()).collect())
    }
}
