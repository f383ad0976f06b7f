//! The per-channel rate limit: a token bucket that says when the next send is allowed, so a sender can
//! schedule it instead of sleeping blindly.
//!
//! Kept as one instant (the generic cell rate algorithm): the bucket is full again at `full_at`; every send
//! pushes that `interval` later. Integer nanoseconds, so the rate does not drift however long it runs.
//!
//! Why not `governor`, which the password limits use: the sender needs to *reserve* the next free
//! slot ([`TokenBucket::next_allowed`], then [`TokenBucket::take`] at that instant) so waiters are
//! spaced exactly and one whose slot would outlast its claim is deferred instead, and it runs on the
//! deliveries' clock (a paused one in tests), not on `governor`'s. Its admission decisions are the
//! same as `governor`'s for the same quota: a test below checks them side by side.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::add_saturating;

/// A rate that is not a positive, finite number per second, or a burst of zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a rate limit needs a positive, finite rate per second and a burst of at least 1")]
pub struct InvalidRate;

/// Allows `burst` sends at once, then one per `1 / rate` seconds; idle time refills it up to `burst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    /// The time one token takes to come back.
    interval: Duration,
    burst: u32,
    /// When the bucket is full again; `None` until the first send (full).
    full_at: Option<DateTime<Utc>>,
}

impl TokenBucket {
    /// A full bucket for `per_second` sends a second (fractions allowed: 0.5 is one every 2 s) and bursts of
    /// up to `burst`. Rates above one per nanosecond are treated as one per nanosecond.
    pub fn new(per_second: f64, burst: u32) -> Result<Self, InvalidRate> {
        if burst == 0 || !per_second.is_finite() || per_second <= 0.0 {
            return Err(InvalidRate);
        }
        let interval = Duration::try_from_secs_f64(per_second.recip()).map_err(|_| InvalidRate)?;
        Ok(Self { interval: interval.max(Duration::from_nanos(1)), burst, full_at: None })
    }

    /// Takes a token if one is there; otherwise says how long until one is (and takes nothing).
    pub fn take(&mut self, now: DateTime<Utc>) -> Result<(), Duration> {
        let wait = self.wait(now);
        if !wait.is_zero() {
            return Err(wait);
        }
        let from = self.full_at.map_or(now, |full_at| full_at.max(now));
        self.full_at = Some(add_saturating(from, self.interval));
        Ok(())
    }

    /// The first instant at or after `now` when [`take`](Self::take) will succeed, if nothing else takes first.
    pub fn next_allowed(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        add_saturating(now, self.wait(now))
    }

    /// How long from `now` until a token is there; zero when one is.
    pub fn wait(&self, now: DateTime<Utc>) -> Duration {
        let Some(full_at) = self.full_at else { return Duration::ZERO };
        // A send is allowed while the bucket, after it, is no more than `burst` tokens short of full.
        let after_send = add_saturating(full_at.max(now), self.interval);
        let limit = add_saturating(now, self.interval.saturating_mul(self.burst));
        (after_send - limit).to_std().unwrap_or(Duration::ZERO)
    }

    /// The time one token takes to come back (`1 / rate`).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The most sends allowed at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;

    /// The same arrivals, the same answers as `governor`'s GCRA for the same quota.
    #[test]
    fn admits_exactly_what_governor_admits() {
        use std::num::NonZeroU32;

        use governor::{Quota, RateLimiter, clock::FakeRelativeClock};
        use rand::{Rng as _, SeedableRng as _};

        for (per_second, burst) in [(50.0, 1), (10.0, 5), (0.5, 3), (1000.0, 20)] {
            let mut ours = TokenBucket::new(per_second, burst).expect("rate");
            let clock = FakeRelativeClock::default();
            let quota = Quota::with_period(ours.interval())
                .expect("a period")
                .allow_burst(NonZeroU32::new(burst).expect("burst"));
            let theirs = RateLimiter::direct_with_clock(quota, clock.clone());
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
            let mut elapsed = Duration::ZERO;
            for n in 0..2_000 {
                // Gaps from none (a burst) to three intervals, in whole microseconds.
                let gap = ours.interval().mul_f64(rng.random_range(0.0..3.0));
                let gap = Duration::from_micros(gap.as_micros() as u64);
                clock.advance(gap);
                elapsed += gap;
                let now = start + TimeDelta::from_std(elapsed).expect("elapsed");
                assert_eq!(
                    ours.take(now).is_ok(),
                    theirs.check().is_ok(),
                    "{per_second}/s burst {burst}: arrival {n} at {elapsed:?}"
                );
            }
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().expect("valid time")
    }

    fn after(d: Duration) -> DateTime<Utc> {
        t0() + TimeDelta::from_std(d).expect("small duration")
    }

    fn bucket(per_second: f64, burst: u32) -> TokenBucket {
        TokenBucket::new(per_second, burst).expect("valid rate")
    }

    #[test]
    fn a_full_bucket_allows_the_burst_then_asks_to_wait() {
        let mut b = bucket(10.0, 5);
        for i in 0..5 {
            assert_eq!(b.take(t0()), Ok(()), "send {i} of the burst");
        }
        assert_eq!(b.take(t0()), Err(Duration::from_millis(100)));
        assert_eq!(b.take(after(Duration::from_millis(40))), Err(Duration::from_millis(60)), "refusals take nothing");
        assert_eq!(b.next_allowed(t0()), after(Duration::from_millis(100)));
        assert_eq!(b.take(after(Duration::from_millis(100))), Ok(()));
        assert!(b.take(after(Duration::from_millis(100))).is_err(), "only one token came back");
    }

    #[test]
    fn idle_time_refills_up_to_the_burst_and_no_further() {
        let mut b = bucket(2.0, 3);
        for _ in 0..3 {
            assert_eq!(b.take(t0()), Ok(()));
        }
        let later = after(Duration::from_secs(3600));
        assert_eq!(b.next_allowed(later), later);
        for _ in 0..3 {
            assert_eq!(b.take(later), Ok(()));
        }
        assert_eq!(b.take(later), Err(Duration::from_millis(500)));
    }

    /// Sends as fast as the bucket allows (or polls every `poll`), for `span` of simulated time; returns the
    /// sends per second achieved after the initial burst.
    fn achieved_rate(b: &mut TokenBucket, span: Duration, poll: Option<Duration>) -> f64 {
        let end = after(span);
        let (mut now, mut sent) = (t0(), 0u64);
        while now < end {
            match b.take(now) {
                Ok(()) => sent += 1,
                Err(wait) => now += TimeDelta::from_std(poll.unwrap_or(wait)).expect("small duration"),
            }
        }
        (sent - u64::from(b.burst())) as f64 / span.as_secs_f64()
    }

    #[test]
    fn the_configured_rate_holds_over_time() {
        for (rate, burst) in [(50.0, 10), (3.3, 1), (3.3, 2), (0.5, 2), (1000.0, 100)] {
            let span = Duration::from_secs_f64(20_000.0 / rate);
            let greedy = achieved_rate(&mut bucket(rate, burst), span, None);
            assert!((greedy / rate - 1.0).abs() < 0.05, "rate {rate}: achieved {greedy}");
            // A sender that only looks now and then, out of step with the bucket, still gets the rate once the
            // burst leaves room to bank a little (with burst 1 a late look's lateness is lost, by definition).
            if burst > 1 {
                let poll = Duration::from_secs_f64(0.37 / rate);
                let polling = achieved_rate(&mut bucket(rate, burst), span, Some(poll));
                assert!((polling / rate - 1.0).abs() < 0.05, "rate {rate} polled: achieved {polling}");
            }
        }
    }

    #[test]
    fn the_wait_it_gives_is_exactly_enough() {
        let mut b = bucket(7.0, 3);
        let mut now = t0();
        for _ in 0..1_000 {
            if let Err(wait) = b.take(now) {
                let just_before = now + TimeDelta::from_std(wait).expect("small") - TimeDelta::nanoseconds(1);
                assert!(b.clone().take(just_before).is_err(), "not a nanosecond early");
                now += TimeDelta::from_std(wait).expect("small duration");
                assert_eq!(b.take(now), Ok(()));
            }
        }
    }

    #[test]
    fn a_clock_stepping_back_grants_nothing_extra() {
        let mut b = bucket(1.0, 1);
        assert_eq!(b.take(after(Duration::from_secs(10))), Ok(()));
        assert_eq!(b.take(t0()), Err(Duration::from_secs(11)));
    }

    #[test]
    fn nonsense_rates_are_refused() {
        for (rate, burst) in [(0.0, 1), (-1.0, 1), (f64::NAN, 1), (f64::INFINITY, 1), (1e-300, 1), (1.0, 0)] {
            assert_eq!(TokenBucket::new(rate, burst), Err(InvalidRate), "{rate}/s burst {burst}");
        }
        assert_eq!(bucket(1e12, 1).interval(), Duration::from_nanos(1));
    }
}
