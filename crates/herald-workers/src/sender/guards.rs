//! The sender's circuit breakers and token buckets: one per channel, and for webhooks one per
//! destination host, in a map of bounded size, so that one user's failing webhook does not hold
//! back another user's.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use chrono::{DateTime, Utc};
use herald_core::{
    delivery::{Attempt, BreakerConfig, BreakerState, Channel, CircuitBreaker, TokenBucket},
    metrics::ChannelLabels,
};

use super::Rate;

/// A breaker and an optional rate limit, shared by the deliveries of one channel or host.
pub(super) struct Guard {
    pub breaker: CircuitBreaker,
    pub bucket: Option<TokenBucket>,
}

/// Which guard a delivery goes through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum GuardKey {
    /// A channel an operator aims (provider, log, realtime, queue): one guard for all of it.
    Channel(Channel),
    /// A webhook destination, `host:port`, or a mail domain, `email:<domain>`: users aim these,
    /// so each has its own.
    Host(String),
}

impl GuardKey {
    /// The guard of a delivery on `channel` to `recipient`.
    pub fn of(channel: Channel, recipient: &str) -> Self {
        match channel {
            // A recipient that is not a URL fails before any call; its own key keeps it apart.
            Channel::Webhook => {
                Self::Host(crate::channels::webhook_host(recipient).unwrap_or_else(|| recipient.to_owned()))
            }
            // One domain's mail servers being down holds back only mail to that domain.
            Channel::Email => Self::Host(format!(
                "email:{}",
                crate::email::domain_of(recipient).unwrap_or_else(|| recipient.to_owned())
            )),
            channel => Self::Channel(channel),
        }
    }
}

fn new_guard(breaker: &BreakerConfig, rates: &HashMap<Channel, Rate>, channel: Channel) -> Guard {
    Guard {
        breaker: CircuitBreaker::new(breaker.clone()),
        bucket: rates.get(&channel).and_then(|r| TokenBucket::new(r.per_second, r.burst).ok()),
    }
}

/// Every guard of a sender. Webhook hosts are kept up to `max_hosts`; the least recently used
/// one is forgotten to make room (it starts closed again if it comes back).
pub(super) struct Guards {
    breaker: BreakerConfig,
    rates: HashMap<Channel, Rate>,
    channels: HashMap<Channel, Guard>,
    max_hosts: usize,
    /// Each host's guard and when it was last used.
    hosts: HashMap<String, (u64, Guard)>,
    /// Hosts by last use, oldest first.
    used: BTreeMap<u64, String>,
    tick: u64,
}

impl Guards {
    pub fn new(breaker: BreakerConfig, rates: HashMap<Channel, Rate>, max_hosts: usize) -> Self {
        Self {
            breaker,
            rates,
            channels: HashMap::new(),
            max_hosts: max_hosts.max(1),
            hosts: HashMap::new(),
            used: BTreeMap::new(),
            tick: 0,
        }
    }

    /// Runs `f` on the guard of `key`, made if there is none yet.
    pub fn with<T>(&mut self, key: &GuardKey, f: impl FnOnce(&mut Guard) -> T) -> T {
        match key {
            GuardKey::Channel(channel) => {
                let (breaker, rates) = (&self.breaker, &self.rates);
                f(self.channels.entry(*channel).or_insert_with(|| new_guard(breaker, rates, *channel)))
            }
            GuardKey::Host(host) => {
                self.tick += 1;
                let tick = self.tick;
                if let Some((used, _)) = self.hosts.get(host) {
                    self.used.remove(used);
                } else {
                    while self.hosts.len() >= self.max_hosts {
                        let Some((_, oldest)) = self.used.pop_first() else { break };
                        self.hosts.remove(&oldest);
                    }
                }
                self.used.insert(tick, host.clone());
                let (breaker, rates) = (&self.breaker, &self.rates);
                let (used, guard) = self
                    .hosts
                    .entry(host.clone())
                    .or_insert_with(|| (tick, new_guard(breaker, rates, Channel::Webhook)));
                *used = tick;
                f(guard)
            }
        }
    }

    /// The breaker state of a webhook host, `None` for one not kept (closed, if it came).
    pub fn host_state(&self, host: &str, now: DateTime<Utc>) -> Option<BreakerState> {
        self.hosts.get(host).map(|(_, guard)| guard.breaker.state(now))
    }

    /// How many webhook hosts are kept.
    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }
}

/// The guards as the sender uses them around each call.
impl super::Sender {
    /// `None` when the guard's breaker lets a call through now, else when to try again.
    pub(super) fn gate(&self, key: &GuardKey, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.with_guard(key, |g| {
            if g.breaker.allow(now) {
                return None;
            }
            // While a probe is out, look again soon: its answer may close the breaker.
            let soon = now + chrono::Duration::seconds(1);
            Some(match g.breaker.state(now) {
                BreakerState::HalfOpen => soon,
                _ => g.breaker.open_until(now).unwrap_or(soon),
            })
        })
    }

    /// Waits for the guard's rate limit; `Err(wait)` when the wait would outlast the claim.
    ///
    /// Each call reserves the next free slot and sleeps until it, so waiters are spaced exactly
    /// and a late wake-up does not push every later slot back.
    pub(super) async fn pace(&self, key: &GuardKey, lease_until: DateTime<Utc>) -> Result<(), Duration> {
        // Pacing is about real time, whatever clock the store's timestamps come from.
        let now = Utc::now();
        let slot = self.with_guard(key, |g| {
            g.bucket.as_mut().map(|bucket| {
                let at = bucket.next_allowed(now);
                // A token is there at `next_allowed` by definition; take it for that instant.
                let _ = bucket.take(at);
                at
            })
        });
        let Some(at) = slot else { return Ok(()) };
        let wait = (at - now).to_std().unwrap_or_default();
        if wait.is_zero() {
            return Ok(());
        }
        let margin = chrono::Duration::from_std(wait + self.0.options.call_margin).unwrap_or(chrono::Duration::MAX);
        if self.0.clock.now() + margin > lease_until {
            return Err(wait);
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Feeds `outcome` to the guard's breaker. A channel's state is the `delivery_breaker_state`
    /// gauge; webhook hosts have none: user-aimed, some host is always down somewhere, so one
    /// value for all of them would be an alert that never clears, and one per host would put
    /// users' hosts in the metrics without bound.
    pub(super) fn record_health(&self, key: &GuardKey, outcome: &Attempt, now: DateTime<Utc>) {
        let (before, state) = self.with_guard(key, |g| {
            let before = g.breaker.state(now);
            g.breaker.record(outcome, now);
            (before, g.breaker.state(now))
        });
        let channel = match key {
            GuardKey::Channel(channel) => *channel,
            GuardKey::Host(host) => {
                if before == BreakerState::Closed && matches!(state, BreakerState::Open { .. }) {
                    tracing::info!(%host, "a webhook host's circuit breaker opened: its deliveries are deferred");
                }
                return;
            }
        };
        let value = match state {
            BreakerState::Closed => 0,
            BreakerState::Open { .. } => 1,
            BreakerState::HalfOpen => 2,
        };
        let labels = ChannelLabels { channel: channel.as_str().to_owned() };
        let gauge = self.0.metrics.delivery_breaker_state.get_or_create(&labels);
        if gauge.set(value) != value && value == 1 {
            tracing::warn!(
                channel = channel.as_str(),
                "circuit breaker opened: deliveries on this channel are deferred"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;
    use herald_core::delivery::Failure;

    use super::*;

    fn host(n: u32) -> GuardKey {
        GuardKey::Host(format!("10.0.0.{n}:80"))
    }

    #[test]
    fn webhook_urls_key_by_host_and_port_other_channels_by_channel() {
        let key = |channel, recipient| GuardKey::of(channel, recipient);
        assert_eq!(key(Channel::Webhook, "http://Hooks.Example:80/a"), key(Channel::Webhook, "http://hooks.example/b"));
        assert_ne!(key(Channel::Webhook, "http://hooks.example:81/"), key(Channel::Webhook, "http://hooks.example/"));
        assert_eq!(key(Channel::Webhook, "http://[::1]:9/x"), GuardKey::Host("[::1]:9".into()));
        assert_eq!(key(Channel::Provider, "4915100000"), GuardKey::Channel(Channel::Provider));
    }

    #[test]
    fn hosts_have_their_own_breakers_and_the_least_recently_used_is_forgotten() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap();
        let config = BreakerConfig { failure_threshold: 1, open_for: Duration::from_secs(600), ..Default::default() };
        let rate = Rate { per_second: 1.0, burst: 1 };
        let mut guards = Guards::new(config, HashMap::from([(Channel::Webhook, rate)]), 3);
        let failed = Err(Failure::Connection);
        guards.with(&host(1), |g| g.breaker.record(&failed, now));
        assert!(matches!(guards.host_state("10.0.0.1:80", now), Some(BreakerState::Open { .. })));
        assert!(guards.with(&host(2), |g| g.breaker.allow(now)), "another host is not held back");
        assert!(guards.with(&GuardKey::Channel(Channel::Provider), |g| g.breaker.allow(now)));
        assert!(guards.with(&host(2), |g| g.bucket.is_some()), "each host has the webhook rate limit");

        guards.with(&host(3), |_| ());
        // Host 1 was used before 2 and 3; touching it makes 2 the oldest.
        guards.with(&host(1), |_| ());
        guards.with(&host(4), |_| ());
        assert_eq!(guards.hosts(), 3, "bounded");
        assert_eq!(guards.host_state("10.0.0.2:80", now), None, "the least recently used went");
        assert!(matches!(guards.host_state("10.0.0.1:80", now), Some(BreakerState::Open { .. })), "kept");
        for n in 5..50 {
            guards.with(&host(n), |_| ());
        }
        assert_eq!((guards.hosts(), guards.used.len()), (3, 3));
    }
}
