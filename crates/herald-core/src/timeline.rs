//! A mailing's timeline: counters kept per ten-second bucket as messages are created, sent and
//! settled, so a mailing's progress, its charts and the daily report are sums of a few rows
//! whatever the number of messages (never a count of message rows).

use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// The width of a stored bucket, in seconds; every bucket starts at a multiple of it (Unix time).
pub const BUCKET_SECONDS: i64 = 10;

/// Upper bounds, in milliseconds, of the provider call-time histogram; a last bucket holds the
/// calls slower than the last bound.
pub const CALL_MS_BOUNDS: [u32; 10] = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000];

/// How many buckets the call-time histogram has.
pub const CALL_BUCKETS: usize = CALL_MS_BOUNDS.len() + 1;

/// The start of the stored bucket holding `at`, as Unix seconds.
pub fn bucket_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(BUCKET_SECONDS) * BUCKET_SECONDS
}

/// The histogram bucket of a call that took `took`.
pub fn call_bucket(took: Duration) -> usize {
    let ms = took.as_millis();
    CALL_MS_BOUNDS.iter().position(|&bound| ms <= u128::from(bound)).unwrap_or(CALL_MS_BOUNDS.len())
}

/// What happened to a mailing's messages in one span of time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Messages made (when the mailing started or went on making them).
    pub created: u64,
    /// Provider calls made.
    pub attempts: u64,
    pub sent: u64,
    pub failed: u64,
    pub expired: u64,
    pub cancelled: u64,
    /// Calls that failed and were scheduled again.
    pub retried: u64,
    /// Provider call times: calls per bucket of [`CALL_MS_BOUNDS`].
    pub calls: [u64; CALL_BUCKETS],
}

impl Tally {
    /// Adds `other`'s counts to this one.
    pub fn add(&mut self, other: &Tally) {
        self.created += other.created;
        self.attempts += other.attempts;
        self.sent += other.sent;
        self.failed += other.failed;
        self.expired += other.expired;
        self.cancelled += other.cancelled;
        self.retried += other.retried;
        for (mine, theirs) in self.calls.iter_mut().zip(other.calls) {
            *mine += theirs;
        }
    }

    /// Messages settled, whatever the outcome.
    pub fn settled(&self) -> u64 {
        self.sent + self.failed + self.expired + self.cancelled
    }

    /// Calls that did not end in a send, as a share of all calls; `None` without calls.
    pub fn error_rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.attempts.saturating_sub(self.sent) as f64 / self.attempts as f64)
    }

    /// The call time at or under which a share `q` (0..=1) of the calls ended, as the upper bound
    /// of its histogram bucket (as a Prometheus histogram answers); `None` without calls or when it
    /// falls in the open last bucket.
    pub fn call_ms_quantile(&self, q: f64) -> Option<u32> {
        let total: u64 = self.calls.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.calls.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return CALL_MS_BOUNDS.get(i).copied();
            }
        }
        None
    }
}

/// Provider call times of a span, as upper bounds in milliseconds (see
/// [`Tally::call_ms_quantile`]); a field is absent when the calls it covers were slower than
/// the histogram's last bound (5 s).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct CallTimes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p95: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99: Option<u32>,
}

/// One span of a mailing's timeline as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TallyView {
    /// Messages made.
    pub created: u64,
    /// Provider calls made.
    pub attempts: u64,
    pub sent: u64,
    pub failed: u64,
    pub expired: u64,
    pub cancelled: u64,
    /// Calls that failed and were scheduled again.
    pub retried: u64,
    /// Provider call times in milliseconds; absent without calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_latency_ms: Option<CallTimes>,
}

impl From<&Tally> for TallyView {
    fn from(t: &Tally) -> Self {
        let any = t.calls.iter().any(|&n| n > 0);
        Self {
            created: t.created,
            attempts: t.attempts,
            sent: t.sent,
            failed: t.failed,
            expired: t.expired,
            cancelled: t.cancelled,
            retried: t.retried,
            provider_latency_ms: any.then(|| CallTimes {
                p50: t.call_ms_quantile(0.5),
                p95: t.call_ms_quantile(0.95),
                p99: t.call_ms_quantile(0.99),
            }),
        }
    }
}

/// The kind of a mailing's progress snapshot on its `mailing:<id>` stream.
pub const PROGRESS_KIND: &str = "mailing.progress";

/// A mailing's messages by status, from its timeline's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProgressCounts {
    /// Messages made so far.
    pub total: u64,
    /// Made and not settled yet (waiting or being sent).
    pub pending: u64,
    pub sent: u64,
    pub failed: u64,
    pub expired: u64,
    pub cancelled: u64,
}

/// A snapshot of a mailing's progress, as its `mailing:<id>` stream carries it (at most one a
/// second, and only when something changed).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Progress {
    pub mailing_id: uuid::Uuid,
    pub status: crate::campaign::MailingStatus,
    /// When it was taken.
    pub at: DateTime<Utc>,
    pub messages: ProgressCounts,
    /// Provider calls made so far.
    pub attempts: u64,
    /// Calls that failed and were scheduled again, so far.
    pub retried: u64,
    /// Provider calls per second since the previous snapshot; absent on the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sends_per_second: Option<f64>,
    /// Provider call times over the whole mailing; absent without calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_latency_ms: Option<CallTimes>,
}

impl Progress {
    /// The snapshot of mailing `id` in `status` whose counters sum to `t`, taken at `at`, after
    /// `previous` (for the send rate).
    pub fn of(
        id: crate::campaign::MailingId,
        status: crate::campaign::MailingStatus,
        t: &Tally,
        at: DateTime<Utc>,
        previous: Option<&Progress>,
    ) -> Self {
        let sends_per_second = previous.and_then(|p| {
            let secs = (at - p.at).num_milliseconds() as f64 / 1000.0;
            (secs > 0.0).then(|| t.attempts.saturating_sub(p.attempts) as f64 / secs)
        });
        Self {
            mailing_id: id.0,
            status,
            at,
            messages: ProgressCounts {
                total: t.created,
                pending: t.created.saturating_sub(t.settled()),
                sent: t.sent,
                failed: t.failed,
                expired: t.expired,
                cancelled: t.cancelled,
            },
            attempts: t.attempts,
            retried: t.retried,
            sends_per_second,
            provider_latency_ms: TallyView::from(t).provider_latency_ms,
        }
    }

    /// Whether `other` shows the same state (whatever the time and rate).
    pub fn same_state(&self, other: &Progress) -> bool {
        (self.status, self.messages, self.attempts, self.retried)
            == (other.status, other.messages, other.attempts, other.retried)
    }
}

/// The instant of a bucket start given as Unix seconds.
pub fn instant(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_start_at_multiples_of_ten_seconds() {
        let at = Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 19).single().expect("time");
        assert_eq!(bucket_of(at), at.timestamp() - 9);
        assert_eq!(bucket_of(instant(-1)), -10);
        assert_eq!(instant(bucket_of(at)).to_rfc3339(), "2026-12-06T10:00:10+00:00");
    }

    #[test]
    fn call_times_fall_in_their_bucket() {
        assert_eq!(call_bucket(Duration::from_millis(0)), 0);
        assert_eq!(call_bucket(Duration::from_millis(5)), 0);
        assert_eq!(call_bucket(Duration::from_micros(5_001)), 0, "whole milliseconds");
        assert_eq!(call_bucket(Duration::from_millis(6)), 1);
        assert_eq!(call_bucket(Duration::from_millis(5_000)), 9);
        assert_eq!(call_bucket(Duration::from_secs(60)), 10);
    }

    #[test]
    fn quantiles_answer_the_upper_bound_of_their_bucket() {
        let mut t = Tally::default();
        assert_eq!(t.call_ms_quantile(0.5), None);
        t.calls[0] = 90; // <= 5 ms
        t.calls[4] = 9; // <= 100 ms
        t.calls[10] = 1; // > 5 s
        assert_eq!(t.call_ms_quantile(0.5), Some(5));
        assert_eq!(t.call_ms_quantile(0.9), Some(5));
        assert_eq!(t.call_ms_quantile(0.95), Some(100));
        assert_eq!(t.call_ms_quantile(0.99), Some(100));
        assert_eq!(t.call_ms_quantile(1.0), None, "the slowest call is past the last bound");
        let view = TallyView::from(&t);
        assert_eq!(view.provider_latency_ms.map(|c| c.p95), Some(Some(100)));
    }

    #[test]
    fn tallies_add_up() {
        let mut a = Tally { created: 3, attempts: 4, sent: 2, retried: 2, ..Tally::default() };
        a.calls[1] = 4;
        let mut b = Tally { failed: 1, expired: 1, cancelled: 1, attempts: 1, ..Tally::default() };
        b.calls[1] = 1;
        a.add(&b);
        assert_eq!((a.attempts, a.settled(), a.calls[1]), (5, 5, 5));
        assert_eq!(a.error_rate(), Some(3.0 / 5.0));
        assert_eq!(Tally::default().error_rate(), None);
        assert!(TallyView::from(&Tally::default()).provider_latency_ms.is_none());
    }
}
