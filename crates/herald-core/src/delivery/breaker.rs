//! The per-channel circuit breaker: stop calling a provider that keeps failing, and probe it now and then.
//!
//! Closed, it counts consecutive transient failures; at the threshold it opens for an interval, during which
//! the scheduler defers everything due on the channel (see [`CircuitBreaker::open_until`]) instead of spending
//! attempts. Then it lets one probe through: success closes it, a transient failure re-opens it for longer.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::policy::Attempt;
use crate::clock::add_saturating;

/// How a [`CircuitBreaker`] trips and recovers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive transient failures that open the breaker (0 is read as 1).
    pub failure_threshold: u32,
    /// How long the breaker first stays open.
    pub open_for: Duration,
    /// Each failed probe multiplies the open interval by this; 1 keeps it constant.
    pub growth: u32,
    /// The longest open interval.
    pub max_open_for: Duration,
    /// How long a probe may go unanswered before another is let through (its sender may have died).
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    /// Opens after 5 consecutive transient failures for 30 s, doubling per failed probe up to 10 min.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            growth: 2,
            max_open_for: Duration::from_secs(600),
            probe_timeout: Duration::from_secs(60),
        }
    }
}

/// What a breaker is doing, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// No calls until `until`.
    Open {
        /// When the breaker will let a probe through.
        until: DateTime<Utc>,
    },
    /// One probe call decides whether the breaker closes or opens again.
    HalfOpen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed {
        failures: u32,
    },
    Open {
        until: DateTime<Utc>,
    },
    /// `probe` is when the current probe was let through; `None` while no probe is out.
    HalfOpen {
        probe: Option<DateTime<Utc>>,
    },
}

/// One channel's circuit breaker. Not shared: the sender owns it (behind a lock if several tasks send).
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    phase: Phase,
    /// The interval the next opening lasts; grows with failed probes, back to `config.open_for` on closing.
    open_for: Duration,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        let open_for = config.open_for.min(config.max_open_for);
        Self { config, phase: Phase::Closed { failures: 0 }, open_for }
    }

    /// Whether a call may be made now. Once the open interval has passed this answers `true` exactly once (the
    /// probe), then `false` until the probe's result is recorded or the probe times out.
    pub fn allow(&mut self, now: DateTime<Utc>) -> bool {
        match self.phase {
            Phase::Closed { .. } => true,
            Phase::Open { until } if now < until => false,
            Phase::HalfOpen { probe: Some(sent) } if now < add_saturating(sent, self.config.probe_timeout) => false,
            Phase::Open { .. } | Phase::HalfOpen { .. } => {
                self.phase = Phase::HalfOpen { probe: Some(now) };
                true
            }
        }
    }

    /// Until when calls are refused, or `None` when [`allow`](Self::allow) would let one through now. While a
    /// probe is out this is when the probe times out; its result may free the channel sooner.
    pub fn open_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let until = match self.phase {
            Phase::Closed { .. } | Phase::HalfOpen { probe: None } => return None,
            Phase::Open { until } => until,
            Phase::HalfOpen { probe: Some(sent) } => add_saturating(sent, self.config.probe_timeout),
        };
        (now < until).then_some(until)
    }

    /// Records a call's outcome. Success closes the breaker and resets the count; a transient failure counts
    /// (or, for a probe, re-opens it for longer); a permanent failure says nothing about the provider's health
    /// and neither counts nor resets, though it frees the probe slot. Results arriving while open come from
    /// calls made before it opened and are ignored.
    pub fn record(&mut self, outcome: &Attempt, now: DateTime<Utc>) {
        match (self.phase, outcome) {
            (Phase::Open { .. }, _) => {}
            (_, Ok(())) => {
                self.phase = Phase::Closed { failures: 0 };
                self.open_for = self.config.open_for.min(self.config.max_open_for);
            }
            (Phase::Closed { failures }, Err(failure)) if failure.is_transient() => {
                let failures = failures.saturating_add(1);
                if failures >= self.config.failure_threshold.max(1) {
                    self.open(now);
                } else {
                    self.phase = Phase::Closed { failures };
                }
            }
            (Phase::HalfOpen { .. }, Err(failure)) if failure.is_transient() => {
                self.open_for = self.open_for.saturating_mul(self.config.growth.max(1)).min(self.config.max_open_for);
                self.open(now);
            }
            (Phase::HalfOpen { .. }, Err(_)) => self.phase = Phase::HalfOpen { probe: None },
            (Phase::Closed { .. }, Err(_)) => {}
        }
    }

    /// The breaker's state at `now`; an open breaker whose interval has passed reports `HalfOpen`.
    pub fn state(&self, now: DateTime<Utc>) -> BreakerState {
        match self.phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { until } if now < until => BreakerState::Open { until },
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Consecutive transient failures counted while closed.
    pub fn consecutive_failures(&self) -> u32 {
        match self.phase {
            Phase::Closed { failures } => failures,
            Phase::Open { .. } | Phase::HalfOpen { .. } => 0,
        }
    }

    fn open(&mut self, now: DateTime<Utc>) {
        self.phase = Phase::Open { until: add_saturating(now, self.open_for) };
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;
    use crate::delivery::Failure;

    const TRANSIENT: Attempt = Err(Failure::Server { status: 502, retry_after: None });
    const PERMANENT: Attempt = Err(Failure::Rejected { status: 400 });
    const SUCCESS: Attempt = Ok(());

    fn at(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().expect("valid time") + TimeDelta::seconds(s)
    }

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(10),
            growth: 2,
            max_open_for: Duration::from_secs(25),
            probe_timeout: Duration::from_secs(5),
        })
    }

    /// Trips `b` at time `t` with three transient failures.
    fn trip(b: &mut CircuitBreaker, t: i64) {
        for _ in 0..3 {
            b.record(&TRANSIENT, at(t));
        }
    }

    #[test]
    fn opens_after_consecutive_transient_failures_and_a_success_resets_the_count() {
        let mut b = breaker();
        b.record(&TRANSIENT, at(0));
        b.record(&TRANSIENT, at(0));
        b.record(&SUCCESS, at(0));
        b.record(&TRANSIENT, at(1));
        b.record(&TRANSIENT, at(1));
        assert_eq!(b.state(at(1)), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 2);
        assert!(b.allow(at(1)));
        b.record(&Err(Failure::Timeout), at(2));
        assert_eq!(b.state(at(2)), BreakerState::Open { until: at(12) });
    }

    #[test]
    fn permanent_failures_neither_count_nor_reset() {
        let mut b = breaker();
        for _ in 0..10 {
            b.record(&PERMANENT, at(0));
        }
        assert_eq!(b.state(at(0)), BreakerState::Closed);
        b.record(&TRANSIENT, at(0));
        b.record(&TRANSIENT, at(0));
        b.record(&PERMANENT, at(0));
        assert_eq!(b.consecutive_failures(), 2);
        b.record(&TRANSIENT, at(0));
        assert!(matches!(b.state(at(0)), BreakerState::Open { .. }));
    }

    #[test]
    fn while_open_nothing_is_allowed_and_it_says_until_when() {
        let mut b = breaker();
        trip(&mut b, 0);
        for s in [0, 5, 9] {
            assert!(!b.allow(at(s)), "at {s}s");
            assert_eq!(b.open_until(at(s)), Some(at(10)));
        }
        b.record(&SUCCESS, at(5));
        assert_eq!(b.state(at(5)), BreakerState::Open { until: at(10) }, "late results are ignored");
    }

    #[test]
    fn after_the_interval_exactly_one_probe_goes_through() {
        let mut b = breaker();
        trip(&mut b, 0);
        assert_eq!(b.state(at(10)), BreakerState::HalfOpen);
        assert_eq!(b.open_until(at(10)), None, "a probe may go now");
        assert!(b.allow(at(10)));
        assert!(!b.allow(at(10)));
        assert!(!b.allow(at(14)));
        assert_eq!(b.open_until(at(11)), Some(at(15)), "defer until the probe could time out");
        assert_eq!(b.state(at(11)), BreakerState::HalfOpen);
    }

    #[test]
    fn a_successful_probe_closes_the_breaker() {
        let mut b = breaker();
        trip(&mut b, 0);
        assert!(b.allow(at(10)));
        b.record(&SUCCESS, at(11));
        assert_eq!(b.state(at(11)), BreakerState::Closed);
        assert!(b.allow(at(11)) && b.allow(at(11)));
        assert_eq!(b.open_until(at(11)), None);
        trip(&mut b, 20);
        assert_eq!(b.state(at(20)), BreakerState::Open { until: at(30) }, "the interval starts afresh");
    }

    #[test]
    fn a_failed_probe_reopens_for_longer_up_to_the_cap() {
        let mut b = breaker();
        trip(&mut b, 0);
        assert!(b.allow(at(10)));
        b.record(&TRANSIENT, at(11));
        assert_eq!(b.state(at(11)), BreakerState::Open { until: at(31) }, "10 s doubled");
        assert!(!b.allow(at(30)));
        assert!(b.allow(at(31)));
        b.record(&Err(Failure::Connection), at(31));
        assert_eq!(b.state(at(31)), BreakerState::Open { until: at(56) }, "40 s capped at 25 s");
    }

    #[test]
    fn an_unanswered_probe_times_out_and_a_permanent_answer_frees_the_slot() {
        let mut b = breaker();
        trip(&mut b, 0);
        assert!(b.allow(at(10)));
        assert!(!b.allow(at(14)));
        assert!(b.allow(at(15)), "the first probe's sender is presumed dead");
        assert!(!b.allow(at(15)));
        b.record(&PERMANENT, at(16));
        assert_eq!(b.state(at(16)), BreakerState::HalfOpen, "a 4xx proves nothing either way");
        assert!(b.allow(at(16)), "but the next call may probe");
        assert!(!b.allow(at(16)));
    }

    #[test]
    fn a_zero_threshold_still_needs_one_failure() {
        let mut b = CircuitBreaker::new(BreakerConfig { failure_threshold: 0, ..BreakerConfig::default() });
        assert!(b.allow(at(0)));
        b.record(&TRANSIENT, at(0));
        assert_eq!(b.state(at(0)), BreakerState::Open { until: at(30) });
    }
}
