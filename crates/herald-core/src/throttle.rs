//! Limits on the costly work a client can ask for: password checks, per account everywhere and
//! per client address where a transport knows one, and look-ups of the host names users aim
//! webhooks at, per account. A request over a limit is refused with `too_many_requests` and a
//! `Retry-After`, before any hashing or resolving.
//!
//! The limiters are GCRA buckets (`governor`) keyed by the normalised email and by IP address. The
//! keys a client can make are bounded: when a limiter holds `max_keys` keys it forgets the ones
//! whose bucket is full again, and while it is still full a new key is refused (fail closed)
//! rather than remembered.

use std::{net::IpAddr, num::NonZeroU32, time::Duration};

use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock as _, DefaultClock},
};

use crate::{error::ApiError, user::UserId};

/// How many password checks an account and an address may make.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleOptions {
    /// Checks per second for one account; `None` is unlimited.
    pub per_account: Option<f64>,
    /// Checks per second from one client address; `None` is unlimited.
    pub per_address: Option<f64>,
    /// Destination host names (webhooks) one account may have looked up per second; `None` is
    /// unlimited.
    pub lookups_per_account: Option<f64>,
    /// Most accounts, and most addresses, remembered at once.
    pub max_keys: usize,
}

impl Default for ThrottleOptions {
    fn default() -> Self {
        Self {
            per_account: Some(10.0 / 60.0),
            per_address: Some(1.0),
            lookups_per_account: Some(10.0 / 60.0),
            max_keys: 100_000,
        }
    }
}

impl ThrottleOptions {
    /// No limits (tests that hash many passwords from one address).
    pub fn unlimited() -> Self {
        Self { per_account: None, per_address: None, lookups_per_account: None, ..Self::default() }
    }
}

/// The limiters of one process.
#[derive(Debug)]
pub struct Throttle {
    accounts: Option<Keyed<String>>,
    addresses: Option<Keyed<IpAddr>>,
    lookups: Option<Keyed<UserId>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(ThrottleOptions::default())
    }
}

impl Throttle {
    pub fn new(options: ThrottleOptions) -> Self {
        Self {
            accounts: options.per_account.map(|rate| Keyed::new(rate, options.max_keys)),
            addresses: options.per_address.map(|rate| Keyed::new(rate, options.max_keys)),
            lookups: options.lookups_per_account.map(|rate| Keyed::new(rate, options.max_keys)),
        }
    }

    /// Takes one password check for `account` (a normalised email) from `address`, or refuses it.
    pub fn password_attempt(&self, account: &str, address: Option<IpAddr>) -> Result<(), ApiError> {
        if let (Some(limiter), Some(address)) = (&self.addresses, address) {
            limiter.take(client_key(address), "too many password attempts from your address")?;
        }
        if let Some(limiter) = &self.accounts {
            limiter.take(account.to_owned(), "too many password attempts for this account")?;
        }
        Ok(())
    }

    /// Takes one single sign-on from `address` (its code is exchanged with the provider), from
    /// the same budget per address as password checks, or refuses it.
    pub fn sign_in_attempt(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        match (&self.addresses, address) {
            (Some(limiter), Some(address)) => {
                limiter.take(client_key(address), "too many sign-in attempts from your address")
            }
            _ => Ok(()),
        }
    }

    /// Takes one look-up of a destination host name for `user`, or refuses it.
    pub fn destination_lookup(&self, user: UserId) -> Result<(), ApiError> {
        match &self.lookups {
            Some(limiter) => limiter.take(user, "too many webhook destinations checked for this account"),
            None => Ok(()),
        }
    }
}

/// The key of a client address: an IPv4 address itself, an IPv6 address by its /64 (one host
/// or home network holds a whole /64, so counting single addresses would let one client make
/// endless keys and fill the limiter).
pub fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
        v4 => v4,
    }
}

/// One keyed limiter with a bound on its keys.
struct Keyed<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    max_keys: usize,
}

impl<K: std::hash::Hash + Eq + Clone> std::fmt::Debug for Keyed<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed").field("keys", &self.limiter.len()).field("max_keys", &self.max_keys).finish()
    }
}

impl<K: std::hash::Hash + Eq + Clone> Keyed<K> {
    /// Bursts of up to a minute's worth (at least one), refilled at `per_second`.
    fn new(per_second: f64, max_keys: usize) -> Self {
        let period = Duration::from_secs_f64(1.0 / per_second.max(1e-6)).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new((per_second * 60.0).ceil().clamp(1.0, f64::from(u32::MAX)) as u32)
            .unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)).allow_burst(burst);
        Self { limiter: RateLimiter::keyed(quota), max_keys: max_keys.max(1) }
    }

    fn take(&self, key: K, refusal: &str) -> Result<(), ApiError> {
        if self.limiter.len() >= self.max_keys {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
            if self.limiter.len() >= self.max_keys {
                return Err(ApiError::too_many_requests(refusal, Duration::from_secs(1)));
            }
        }
        self.limiter.check_key(&key).map_err(|not_until| {
            ApiError::too_many_requests(refusal, not_until.wait_time_from(DefaultClock::default().now()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn an_account_gets_its_burst_then_waits() {
        let throttle = Throttle::new(ThrottleOptions {
            per_account: Some(3.0 / 60.0),
            per_address: None,
            max_keys: 10,
            ..ThrottleOptions::unlimited()
        });
        for _ in 0..3 {
            throttle.password_attempt("ada@example.org", None).expect("within the burst");
        }
        let refused = throttle.password_attempt("ada@example.org", None).expect_err("over the limit");
        assert_eq!(refused.code(), ErrorCode::TooManyRequests);
        let wait = refused.retry_after_secs().expect("retry after");
        assert!((1..=20).contains(&wait), "{wait}");
        throttle.password_attempt("bob@example.org", None).expect("another account is not affected");
    }

    #[test]
    fn an_address_is_limited_across_accounts() {
        let throttle = Throttle::new(ThrottleOptions {
            per_account: None,
            per_address: Some(2.0 / 60.0),
            max_keys: 10,
            ..ThrottleOptions::unlimited()
        });
        let ip: IpAddr = "203.0.113.9".parse().expect("ip");
        throttle.password_attempt("a@example.org", Some(ip)).expect("first");
        throttle.password_attempt("b@example.org", Some(ip)).expect("second");
        assert!(throttle.password_attempt("c@example.org", Some(ip)).is_err());
        throttle.password_attempt("c@example.org", Some("203.0.113.10".parse().expect("ip"))).expect("other address");
        throttle.password_attempt("c@example.org", None).expect("no address known: only the account counts");
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let throttle = Throttle::new(ThrottleOptions {
            per_address: Some(2.0 / 60.0),
            max_keys: 10,
            ..ThrottleOptions::unlimited()
        });
        throttle.password_attempt("a@example.org", Some("2001:db8:1:2::1".parse().expect("ip"))).expect("first");
        throttle.password_attempt("b@example.org", Some("2001:db8:1:2::ffff".parse().expect("ip"))).expect("second");
        let third = throttle.password_attempt("c@example.org", Some("2001:db8:1:2:aaaa::9".parse().expect("ip")));
        assert!(third.is_err(), "a third address of the same /64 is the same client");
        throttle.password_attempt("c@example.org", Some("2001:db8:1:3::1".parse().expect("ip"))).expect("another /64");
        assert_eq!(client_key("::ffff:203.0.113.9".parse().expect("ip")), "203.0.113.9".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn the_keys_are_bounded() {
        let throttle = Throttle::new(ThrottleOptions {
            per_account: Some(1.0 / 60.0),
            per_address: None,
            max_keys: 3,
            ..ThrottleOptions::unlimited()
        });
        for n in 0..3 {
            throttle.password_attempt(&format!("{n}@example.org"), None).expect("room for the key");
        }
        // Every bucket is still drawn down, so none can be forgotten: a fourth key is refused.
        let refused = throttle.password_attempt("4@example.org", None).expect_err("no room");
        assert_eq!(refused.code(), ErrorCode::TooManyRequests);
        assert_eq!(throttle.accounts.as_ref().map(|k| k.limiter.len()), Some(3));
    }

    #[test]
    fn destination_lookups_are_limited_per_account() {
        let throttle =
            Throttle::new(ThrottleOptions { lookups_per_account: Some(2.0 / 60.0), ..ThrottleOptions::unlimited() });
        let (ada, bob) = (UserId::new(), UserId::new());
        throttle.destination_lookup(ada).expect("first");
        throttle.destination_lookup(ada).expect("second");
        let refused = throttle.destination_lookup(ada).expect_err("over the limit");
        assert_eq!(refused.code(), ErrorCode::TooManyRequests);
        assert!(refused.retry_after_secs().is_some());
        throttle.destination_lookup(bob).expect("another account is not affected");
        throttle.password_attempt("ada@example.org", None).expect("password checks are counted apart");
    }
}
