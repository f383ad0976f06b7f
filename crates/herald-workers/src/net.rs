//! Name resolution for outbound destination checks: the system resolver behind the
//! [`Resolve`] port, with a bound on the lookups in flight.

use std::{
    io,
    net::{IpAddr, ToSocketAddrs as _},
    sync::Arc,
};

use async_trait::async_trait;
use herald_core::net::Resolve;
use tokio::sync::Semaphore;

/// Resolves names with the operating system's resolver (`getaddrinfo`, on the blocking pool).
///
/// A lookup can take seconds and cannot be cancelled once it runs, and users choose the names
/// (webhooks), so at most `concurrency` run at once: each holds its slot until `getaddrinfo`
/// returns, even when the caller gave up waiting. Others wait for a slot; callers bound that wait
/// with their own timeout.
#[derive(Debug, Clone)]
pub struct SystemResolver {
    slots: Arc<Semaphore>,
    concurrency: usize,
}

impl SystemResolver {
    pub const DEFAULT_CONCURRENCY: usize = 8;

    /// At most `concurrency` lookups at once; zero is taken as one.
    pub fn new(concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self { slots: Arc::new(Semaphore::new(concurrency)), concurrency }
    }

    /// Lookups running now (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.concurrency.saturating_sub(self.slots.available_permits())
    }
}

impl Default for SystemResolver {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CONCURRENCY)
    }
}

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        let slot = self.slots.clone().acquire_owned().await.map_err(io::Error::other)?;
        let host = host.to_owned();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            Ok((host.as_str(), port).to_socket_addrs()?.map(|addr| addr.ip()).collect())
        })
        .await
        .map_err(io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_names_and_literals_and_frees_its_slots() {
        let resolver = SystemResolver::new(2);
        let addrs = resolver.resolve("localhost", 80).await.expect("localhost resolves");
        assert!(addrs.iter().all(IpAddr::is_loopback), "{addrs:?}");
        assert_eq!(
            resolver.resolve("192.0.2.7", 80).await.expect("literal"),
            vec!["192.0.2.7".parse::<IpAddr>().expect("ip")]
        );
        assert!(resolver.resolve("no-such-host.invalid", 80).await.is_err());
        assert_eq!(resolver.in_flight(), 0, "every slot is back");
    }

    /// A caller that stops waiting does not free the slot of a lookup still running, and the
    /// next caller waits for one instead of starting another thread.
    #[tokio::test]
    async fn a_full_resolver_makes_callers_wait() {
        let resolver = SystemResolver::new(1);
        let held = resolver.slots.clone().acquire_owned().await.expect("slot");
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(100), resolver.resolve("localhost", 80));
        assert!(waiting.await.is_err(), "no slot, no lookup");
        drop(held);
        assert!(resolver.resolve("localhost", 80).await.is_ok());
    }
}
