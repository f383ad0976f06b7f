//! What a channel call produced, and when (or whether) to try a failed delivery again.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use rand::Rng;

use crate::clock::add_saturating;

/// What one channel call produced: `Ok` when the channel accepted the message.
pub type Attempt = Result<(), Failure>;

/// Why a channel call failed. Transient failures are retried; permanent ones would fail the same way again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// No answer in time (including HTTP 408).
    #[error("timed out")]
    Timeout,
    /// The connection could not be made or broke before an answer.
    #[error("could not reach the provider")]
    Connection,
    /// The TLS handshake failed: a certificate not trusted, for another name or expired, or no
    /// protocol in common. Retried: the other side may mend it.
    #[error("the TLS handshake failed")]
    Tls,
    /// The provider failed (HTTP 5xx); a 503 may say when to come back.
    #[error("provider error: HTTP {status}")]
    Server {
        /// The HTTP status, 500–599.
        status: u16,
        /// The provider's `Retry-After`, when it sent a usable one.
        retry_after: Option<Duration>,
    },
    /// The provider asked us to slow down (HTTP 429).
    #[error("rate limited by the provider: HTTP 429")]
    RateLimited {
        /// The provider's `Retry-After`, when it sent a usable one.
        retry_after: Option<Duration>,
    },
    /// The provider refused this message (other 4xx, or a status a sender does not expect).
    #[error("rejected by the provider: HTTP {status}")]
    Rejected {
        /// The HTTP status.
        status: u16,
    },
    /// A mail server's answer: 4xx says try later (greylisting, a full mailbox), 5xx never.
    #[error("the mail server answered {code}")]
    Smtp {
        /// The SMTP reply code.
        code: u16,
    },
    /// The request could not be built or was refused before sending (bad recipient, payload too big, …).
    #[error("malformed request: {reason}")]
    Malformed {
        /// What is wrong, for the delivery's `last_error`.
        reason: String,
    },
}

impl Failure {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout | Self::Connection | Self::Tls | Self::Server { .. } | Self::RateLimited { .. } => true,
            Self::Smtp { code } => (400..500).contains(code),
            Self::Rejected { .. } | Self::Malformed { .. } => false,
        }
    }

    /// How long the provider asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Server { retry_after, .. } | Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// Classifies an HTTP answer: 2xx delivered; 408, 429 and 5xx transient; anything else final.
///
/// `retry_after` is the raw `Retry-After` header (see [`parse_retry_after`]); it is kept for 429 and 503 and
/// ignored when it cannot be parsed. `now` turns an HTTP-date into a delay.
pub fn classify_http(status: u16, retry_after: Option<&str>, now: DateTime<Utc>) -> Attempt {
    let retry_after = || retry_after.and_then(|value| parse_retry_after(value, now));
    match status {
        200..=299 => Ok(()),
        408 => Err(Failure::Timeout),
        429 => Err(Failure::RateLimited { retry_after: retry_after() }),
        503 => Err(Failure::Server { status, retry_after: retry_after() }),
        500..=599 => Err(Failure::Server { status, retry_after: None }),
        // 1xx and 3xx should never reach us (redirects are followed); asking again gets the same answer.
        _ => Err(Failure::Rejected { status }),
    }
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP-date (IMF-fixdate, RFC 850 or asctime, as RFC 9110
/// asks recipients to accept). A date in the past means no wait. Anything else is `None`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok().map(Duration::from_secs);
    }
    const HTTP_DATES: [&str; 3] = ["%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"];
    let at = HTTP_DATES.iter().find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())?.and_utc();
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// Capped exponential back-off with optional jitter, a cap on attempts and a deadline.
///
/// The n-th retry (after `n` attempts) waits `base × factorⁿ⁻¹`, at most `cap`, then spread by ±`jitter`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The wait before the first retry.
    pub base: Duration,
    /// How much each wait grows over the previous one.
    pub factor: u32,
    /// The longest computed wait (before jitter; a provider's `Retry-After` may ask for longer).
    pub cap: Duration,
    /// Attempts in all, the first included; after this many the delivery fails.
    pub max_attempts: u32,
    /// Fraction by which each wait is spread at random (0.1 = ±10 %); 0 keeps the schedule exact.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 1 s, 2 s, 4 s, … capped at 10 min, 10 attempts, no jitter: exactly the mailing rules' schedule.
    /// Many senders sharing one provider should set some jitter so their retries do not arrive together.
    fn default() -> Self {
        Self { base: Duration::from_secs(1), factor: 2, cap: Duration::from_secs(600), max_attempts: 10, jitter: 0.0 }
    }
}

/// What to do with a delivery whose attempt just failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Try again at this instant.
    RetryAt(DateTime<Utc>),
    /// Give up: the delivery becomes `failed`.
    Fail(FailReason),
    /// The next attempt would fall at or after the deadline: the delivery becomes `expired`.
    Expire,
}

/// Why a delivery failed for good; its `Display` is what goes in `last_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailReason {
    /// The provider or the request made success impossible.
    #[error("{0}")]
    Permanent(Failure),
    /// Every allowed attempt failed.
    #[error("gave up after {attempts} attempts; last error: {last}")]
    AttemptsExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's failure.
        last: Failure,
    },
}

impl RetryPolicy {
    /// Decides what follows a failed attempt. `attempts_made` counts every attempt so far, the failed one
    /// included (so 1 after the first try). A provider's `Retry-After` longer than the computed wait replaces
    /// it; the deadline still wins over both.
    pub fn next_attempt<R: Rng + ?Sized>(
        &self,
        attempts_made: u32,
        failure: &Failure,
        now: DateTime<Utc>,
        deadline: Option<DateTime<Utc>>,
        rng: &mut R,
    ) -> Decision {
        if !failure.is_transient() {
            return Decision::Fail(FailReason::Permanent(failure.clone()));
        }
        if attempts_made >= self.max_attempts {
            return Decision::Fail(FailReason::AttemptsExhausted { attempts: attempts_made, last: failure.clone() });
        }
        let mut delay = self.delay(attempts_made, rng);
        if let Some(asked) = failure.retry_after() {
            delay = delay.max(asked);
        }
        let at = add_saturating(now, delay);
        match deadline {
            Some(deadline) if at >= deadline => Decision::Expire,
            _ => Decision::RetryAt(at),
        }
    }

    /// The wait after `attempts_made` attempts, jitter applied (`attempts_made` 0 is read as 1).
    pub fn delay<R: Rng + ?Sized>(&self, attempts_made: u32, rng: &mut R) -> Duration {
        let steps = attempts_made.saturating_sub(1);
        let growth = self.factor.max(1).checked_pow(steps).unwrap_or(u32::MAX);
        let delay = self.base.saturating_mul(growth).min(self.cap);
        spread(delay, self.jitter, rng)
    }
}

/// Picks a wait uniformly within ±`jitter` of `delay`, never below zero. Whole nanoseconds keep the bounds exact.
fn spread<R: Rng + ?Sized>(delay: Duration, jitter: f64, rng: &mut R) -> Duration {
    // NaN, negative or zero jitter means none; `as` saturates, so a huge delay or jitter cannot overflow.
    if jitter.is_nan() || jitter <= 0.0 {
        return delay;
    }
    let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
    let half_width = (nanos as f64 * jitter) as u64;
    let picked = rng.random_range(nanos.saturating_sub(half_width)..=nanos.saturating_add(half_width));
    Duration::from_nanos(picked)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().expect("valid time")
    }

    fn secs(s: i64) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(s)
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn the_first_retries_wait_exactly_1_2_4_seconds() {
        let policy = RetryPolicy::default();
        let waits: Vec<_> = (1..=4)
            .map(|n| match policy.next_attempt(n, &Failure::Timeout, t0(), None, &mut rng()) {
                Decision::RetryAt(at) => at - t0(),
                other => panic!("attempt {n}: {other:?}"),
            })
            .collect();
        assert_eq!(waits, [secs(1), secs(2), secs(4), secs(8)]);
    }

    #[test]
    fn waits_stop_growing_at_the_cap() {
        let policy = RetryPolicy { cap: Duration::from_secs(5), max_attempts: 100, ..RetryPolicy::default() };
        assert_eq!(policy.delay(3, &mut rng()), Duration::from_secs(4));
        assert_eq!(policy.delay(4, &mut rng()), Duration::from_secs(5));
        assert_eq!(policy.delay(99, &mut rng()), Duration::from_secs(5), "no overflow far down the schedule");
    }

    #[test]
    fn the_last_allowed_attempt_failing_fails_the_delivery() {
        let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
        assert!(matches!(policy.next_attempt(2, &Failure::Connection, t0(), None, &mut rng()), Decision::RetryAt(_)));
        let decision = policy.next_attempt(3, &Failure::Connection, t0(), None, &mut rng());
        let Decision::Fail(reason) = decision else { panic!("{decision:?}") };
        assert_eq!(reason, FailReason::AttemptsExhausted { attempts: 3, last: Failure::Connection });
        assert_eq!(reason.to_string(), "gave up after 3 attempts; last error: could not reach the provider");
    }

    #[test]
    fn a_retry_at_or_after_the_deadline_expires() {
        let policy = RetryPolicy::default();
        let next = |deadline| policy.next_attempt(3, &Failure::Timeout, t0(), Some(deadline), &mut rng());
        assert_eq!(next(t0() + secs(5)), Decision::RetryAt(t0() + secs(4)));
        assert_eq!(next(t0() + secs(4)), Decision::Expire, "landing exactly on the deadline is too late");
        assert_eq!(next(t0() + secs(3)), Decision::Expire);
        assert_eq!(next(t0() - secs(1)), Decision::Expire, "already past the deadline");
    }

    #[test]
    fn a_longer_retry_after_replaces_the_wait_and_a_shorter_one_does_not() {
        let policy = RetryPolicy::default();
        let limited = |s| Failure::RateLimited { retry_after: Some(Duration::from_secs(s)) };
        let next = |failure: &Failure, deadline| policy.next_attempt(2, failure, t0(), deadline, &mut rng());
        assert_eq!(next(&limited(30), None), Decision::RetryAt(t0() + secs(30)));
        assert_eq!(next(&limited(1), None), Decision::RetryAt(t0() + secs(2)), "never sooner than the schedule");
        assert_eq!(next(&limited(30), Some(t0() + secs(30))), Decision::Expire, "the deadline still rules");
        let huge = Failure::RateLimited { retry_after: Some(Duration::MAX) };
        assert_eq!(next(&huge, Some(t0() + secs(60))), Decision::Expire, "no overflow on absurd values");
        let Err(dated) = classify_http(429, Some("Sun, 01 Mar 2026 12:01:00 GMT"), t0()) else { panic!("429") };
        assert_eq!(next(&dated, None), Decision::RetryAt(t0() + secs(60)), "an HTTP-date counts the same");
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_any_http_date() {
        let now = t0();
        let at = |header: &str| parse_retry_after(header, now);
        assert_eq!(at("120"), Some(Duration::from_secs(120)));
        assert_eq!(at(" 0 "), Some(Duration::ZERO));
        assert_eq!(at("Sun, 01 Mar 2026 12:01:30 GMT"), Some(Duration::from_secs(90)));
        assert_eq!(at("Sunday, 01-Mar-26 12:00:10 GMT"), Some(Duration::from_secs(10)));
        assert_eq!(at("Sun Mar  1 12:00:05 2026"), Some(Duration::from_secs(5)));
        assert_eq!(at("Sun, 01 Mar 2026 11:00:00 GMT"), Some(Duration::ZERO), "a past date means now");
        for junk in ["", "soon", "-5", "1.5", "+5", "Mon, 01 Mar 2026 12:01:30 GMT", "99999999999999999999999"] {
            assert_eq!(at(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn http_statuses_are_classified() {
        let now = t0();
        assert_eq!(classify_http(200, None, now), Ok(()));
        assert_eq!(classify_http(204, Some("5"), now), Ok(()));
        assert_eq!(classify_http(408, None, now), Err(Failure::Timeout));
        assert_eq!(
            classify_http(429, Some("Sun, 01 Mar 2026 12:00:20 GMT"), now),
            Err(Failure::RateLimited { retry_after: Some(Duration::from_secs(20)) })
        );
        assert_eq!(classify_http(429, Some("whenever"), now), Err(Failure::RateLimited { retry_after: None }));
        assert_eq!(
            classify_http(503, Some("7"), now),
            Err(Failure::Server { status: 503, retry_after: Some(Duration::from_secs(7)) })
        );
        assert_eq!(classify_http(500, Some("7"), now), Err(Failure::Server { status: 500, retry_after: None }));
        for status in [400, 401, 404, 422, 302, 101, 0, 999] {
            assert_eq!(classify_http(status, None, now), Err(Failure::Rejected { status }), "{status}");
        }
    }

    #[test]
    fn permanent_failures_are_never_retried() {
        let policy = RetryPolicy::default();
        for failure in [Failure::Rejected { status: 404 }, Failure::Malformed { reason: "no recipient".into() }] {
            let decision = policy.next_attempt(1, &failure, t0(), None, &mut rng());
            assert_eq!(decision, Decision::Fail(FailReason::Permanent(failure.clone())));
        }
        let Err(rejected) = classify_http(400, None, t0()) else { panic!("400 is a failure") };
        assert!(matches!(policy.next_attempt(1, &rejected, t0(), None, &mut rng()), Decision::Fail(_)));
        assert_eq!(FailReason::Permanent(rejected).to_string(), "rejected by the provider: HTTP 400");
    }

    #[test]
    fn jitter_spreads_waits_within_bounds_and_reproducibly() {
        let policy =
            RetryPolicy { cap: Duration::from_secs(8), jitter: 0.25, max_attempts: 20, ..RetryPolicy::default() };
        let mut rng = rng();
        for attempts in 1..=6 {
            let exact = RetryPolicy { jitter: 0.0, ..policy.clone() }.delay(attempts, &mut rng).as_secs_f64();
            let waits: Vec<f64> = (0..2_000).map(|_| policy.delay(attempts, &mut rng).as_secs_f64()).collect();
            let (low, high) = waits.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &w| (lo.min(w), hi.max(w)));
            assert!(low >= exact * 0.75 && high <= exact * 1.25, "attempt {attempts}: {low}..{high}");
            assert!(high <= 8.0 * 1.25, "never above the cap plus jitter");
            // Spread over the band, not bunched: both outer quarters are reached.
            assert!(low < exact * 0.8 && high > exact * 1.2, "attempt {attempts}: {low}..{high}");
        }
        let sample = |seed| policy.delay(3, &mut StdRng::seed_from_u64(seed));
        assert_eq!(sample(42), sample(42), "a fixed seed gives a fixed wait");
    }

    #[test]
    fn jitter_wider_than_the_wait_never_goes_below_zero() {
        let policy = RetryPolicy { jitter: 3.0, ..RetryPolicy::default() };
        let mut rng = rng();
        let waits: Vec<Duration> = (0..1_000).map(|_| policy.delay(1, &mut rng)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(4)));
        assert!(waits.iter().any(|w| *w < Duration::from_millis(500)), "the lower bound clamps to zero");
        let nan = RetryPolicy { jitter: f64::NAN, ..RetryPolicy::default() };
        assert_eq!(nan.delay(2, &mut rng), Duration::from_secs(2), "NaN jitter means none");
    }
}
