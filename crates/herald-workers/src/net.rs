//! Name resolution for outbound destination checks: the system resolver behind the
//! [`Resolve`] port, with a bound on the lookups in flight, one lookup per name at a time, and a
//! short memory of answers.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, ToSocketAddrs as _},
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use herald_core::net::Resolve;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

/// How long an answer (addresses, or a failure) is reused. The addresses checked are the ones
/// connected to, so reuse never lets a name slip past the destination check.
const REMEMBER: Duration = Duration::from_secs(30);

type Lookup = dyn Fn(&str, u16) -> io::Result<Vec<IpAddr>> + Send + Sync;
/// Each name (and port) with its lock and its last answer.
type Names = HashMap<(String, u16), Arc<tokio::sync::Mutex<Name>>>;

/// One name's last answer, and the lock its lookups take turns on.
#[derive(Debug, Default)]
struct Name {
    answer: Option<(Instant, Result<Vec<IpAddr>, String>)>,
}

/// Resolves names with the operating system's resolver (`getaddrinfo`, on the blocking pool).
///
/// A lookup can take seconds and cannot be cancelled once it runs, and users choose the names
/// (webhooks), so:
/// - at most `concurrency` run at once, each holding its slot until `getaddrinfo` returns, even
///   when the caller gave up waiting; others wait for a slot (callers bound that wait);
/// - one name is looked up by one caller at a time: the others wait for its answer instead of
///   taking slots, so one slow name holds at most one slot;
/// - an answer is reused for 30 s, failures too.
#[derive(Clone)]
pub struct SystemResolver {
    slots: Arc<Semaphore>,
    concurrency: usize,
    names: Arc<Mutex<Names>>,
    /// Most names remembered; when full, the names no caller is waiting on are forgotten.
    max_names: usize,
    lookup: Arc<Lookup>,
}

impl std::fmt::Debug for SystemResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemResolver").field("concurrency", &self.concurrency).finish_non_exhaustive()
    }
}

impl SystemResolver {
    pub const DEFAULT_CONCURRENCY: usize = 8;
    pub const DEFAULT_MAX_NAMES: usize = 10_000;

    /// At most `concurrency` lookups at once (zero is taken as one), and the answers of at most
    /// `max_names` names remembered.
    pub fn new(concurrency: usize, max_names: usize) -> Self {
        Self::with_lookup(concurrency, max_names, |host, port| {
            Ok((host, port).to_socket_addrs()?.map(|addr| addr.ip()).collect())
        })
    }

    /// The same bounds around another lookup function (tests use a slow one).
    pub fn with_lookup(
        concurrency: usize,
        max_names: usize,
        lookup: impl Fn(&str, u16) -> io::Result<Vec<IpAddr>> + Send + Sync + 'static,
    ) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            slots: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            names: Arc::default(),
            max_names: max_names.max(1),
            lookup: Arc::new(lookup),
        }
    }

    /// Lookups running now (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.concurrency.saturating_sub(self.slots.available_permits())
    }

    /// The entry of `key`, made if there is room.
    fn name(&self, key: (String, u16)) -> Arc<tokio::sync::Mutex<Name>> {
        let mut names = self.names.lock();
        if let Some(name) = names.get(&key) {
            return name.clone();
        }
        if names.len() >= self.max_names {
            // Forget the names no caller holds; if every one is busy, this name goes unremembered.
            names.retain(|_, name| Arc::strong_count(name) > 1);
            if names.len() >= self.max_names {
                return Arc::default();
            }
        }
        names.entry(key).or_default().clone()
    }
}

impl Default for SystemResolver {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CONCURRENCY, Self::DEFAULT_MAX_NAMES)
    }
}

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        let name = self.name((host.to_owned(), port));
        let mut name = name.lock().await;
        if let Some((at, answer)) = &name.answer
            && at.elapsed() < REMEMBER
        {
            return answer.clone().map_err(io::Error::other);
        }
        let slot = self.slots.clone().acquire_owned().await.map_err(io::Error::other)?;
        let (host, lookup) = (host.to_owned(), self.lookup.clone());
        let answer = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            lookup(&host, port)
        })
        .await
        .map_err(io::Error::other)?;
        name.answer = Some((Instant::now(), answer.as_ref().map(Clone::clone).map_err(ToString::to_string)));
        answer
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn resolves_names_and_literals_and_frees_its_slots() {
        let resolver = SystemResolver::new(2, 10);
        let addrs = resolver.resolve("localhost", 80).await.expect("localhost resolves");
        assert!(addrs.iter().all(IpAddr::is_loopback), "{addrs:?}");
        let literal = resolver.resolve("192.0.2.7", 80).await.expect("literal");
        assert_eq!(literal, vec!["192.0.2.7".parse::<IpAddr>().expect("ip")]);
        assert!(resolver.resolve("no-such-host.invalid", 80).await.is_err());
        assert_eq!(resolver.in_flight(), 0, "every slot is back");
    }

    /// A caller that stops waiting does not free the slot of a lookup still running, and the
    /// next caller waits for one instead of starting another thread.
    #[tokio::test]
    async fn a_full_resolver_makes_callers_wait() {
        let resolver = SystemResolver::new(1, 10);
        let held = resolver.slots.clone().acquire_owned().await.expect("slot");
        let waiting = tokio::time::timeout(Duration::from_millis(100), resolver.resolve("localhost", 80));
        assert!(waiting.await.is_err(), "no slot, no lookup");
        drop(held);
        assert!(resolver.resolve("localhost", 80).await.is_ok());
    }

    /// Many callers of one slow name: one lookup, one slot, one answer for all, then reused;
    /// another name still gets a slot meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_slow_name_holds_one_slot_and_its_answer_is_reused() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let resolver = SystemResolver::with_lookup(2, 10, move |host, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            if host == "slow.example" {
                std::thread::sleep(Duration::from_millis(300));
                return Err(io::Error::other("timed out"));
            }
            Ok(vec!["192.0.2.1".parse().expect("ip")])
        });
        let slow: Vec<_> = (0..10)
            .map(|_| {
                let resolver = resolver.clone();
                tokio::spawn(async move { resolver.resolve("slow.example", 80).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(resolver.in_flight(), 1, "one lookup for ten callers");
        let fast = tokio::time::timeout(Duration::from_millis(200), resolver.resolve("fast.example", 80)).await;
        assert!(fast.expect("a free slot").is_ok());
        for task in slow {
            assert!(task.await.expect("task").is_err(), "every caller gets the failure");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "slow looked up once, fast once");
        assert!(resolver.resolve("slow.example", 80).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the failure is remembered");
    }

    /// Names a client makes up are remembered only up to the bound: the oldest idle ones go.
    #[tokio::test]
    async fn the_names_remembered_are_bounded() {
        let resolver = SystemResolver::with_lookup(2, 3, |_, _| Ok(vec!["192.0.2.1".parse().expect("ip")]));
        for n in 0..50 {
            assert!(resolver.resolve(&format!("name-{n}.example"), 80).await.is_ok());
            assert!(resolver.names.lock().len() <= 3, "after {n}");
        }
    }
}
