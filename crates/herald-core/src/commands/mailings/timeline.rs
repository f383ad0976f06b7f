//! `mailings.timeline`: what the mailing timeline's counters answer (see [`crate::timeline`]),
//! a mailing's activity bucket by bucket, for charts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    campaign::MailingId,
    command::{Access, Command, Ctx},
    error::{ApiError, ErrorCode},
    services::Services,
    timeline::{BUCKET_SECONDS, Tally, TallyView, instant},
};

/// Most buckets one timeline answer holds.
pub const MAX_BUCKETS: usize = 10_000;

/// The widest bucket a timeline is asked for: a day.
const MAX_BUCKET_SECONDS: i64 = 86_400;

/// Reads a bucket width like `10s`, `1m`, `5m`, `1h`, `1d`: a multiple of ten seconds, at most a
/// day.
pub fn parse_bucket(raw: &str) -> Result<i64, ApiError> {
    let bad =
        || ApiError::invalid_field("bucket", "a width like 10s, 30s, 1m, 5m, 1h or 1d: a multiple of 10s, at most 1d");
    let digits = raw.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &raw[digits.len()..] {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let width = n.checked_mul(unit).ok_or_else(bad)?;
    if width < BUCKET_SECONDS || width % BUCKET_SECONDS != 0 || width > MAX_BUCKET_SECONDS {
        return Err(bad());
    }
    Ok(width)
}

/// Input of `mailings.timeline`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = mailings::TimelineInput)]
pub struct TimelineInput {
    /// The mailing's id.
    pub id: Uuid,
    /// The width of a bucket: `10s` (the default), `30s`, `1m`, `5m`, `1h`, `1d`…, a multiple of
    /// ten seconds up to a day.
    #[schema(max_length = 16, example = "10s")]
    pub bucket: Option<String>,
    /// Only activity at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Only activity before this instant.
    pub to: Option<DateTime<Utc>>,
}

/// One bucket of a mailing's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TimelineBucket {
    /// When the bucket starts.
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub counts: TallyView,
    /// Provider calls per second over the bucket.
    pub sends_per_second: f64,
}

/// A mailing's activity, bucket by bucket.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Timeline {
    pub mailing_id: Uuid,
    /// The width of each bucket, in seconds.
    pub bucket_seconds: i64,
    /// Everything in the buckets, added up.
    pub totals: TallyView,
    /// Every bucket from the first with activity to the last, earliest first (quiet ones count
    /// zero); at most 10,000.
    pub buckets: Vec<TimelineBucket>,
}

/// A mailing's activity over time: messages made, sends, outcomes, retries and provider call
/// times per bucket, from counters kept as reports are written.
#[derive(Debug)]
pub struct MailingTimeline;

#[async_trait]
impl Command for MailingTimeline {
    const NAME: &'static str = "mailings.timeline";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "A mailing's sends, outcomes, retries and provider latency over time (admin)";
    type Input = TimelineInput;
    type Output = Timeline;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: TimelineInput) -> Result<Timeline, ApiError> {
        let width = input.bucket.as_deref().map_or(Ok(BUCKET_SECONDS), parse_bucket)?;
        let from = input.from.map_or(i64::MIN, |at| at.timestamp());
        let to = input.to.map_or(i64::MAX, |at| at.timestamp());
        if from >= to {
            return Err(ApiError::invalid_field("to", "must be after from"));
        }
        let mailing = MailingId(input.id);
        svc.store.mailing(mailing).await?.ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such mailing"))?;
        let rows = svc.store.mailing_timeline(Some(mailing), width, from, to, MAX_BUCKETS as u32 + 1).await?;
        let too_many = || {
            ApiError::invalid_field(
                "bucket",
                format!("more than {MAX_BUCKETS} buckets: ask for a wider bucket or a shorter from..to"),
            )
        };
        let (Some(first), Some(last)) = (rows.first().map(|r| r.0), rows.last().map(|r| r.0)) else {
            return Ok(Timeline {
                mailing_id: mailing.0,
                bucket_seconds: width,
                totals: TallyView::from(&Tally::default()),
                buckets: Vec::new(),
            });
        };
        if rows.len() > MAX_BUCKETS || (last - first) / width >= MAX_BUCKETS as i64 {
            return Err(too_many());
        }
        let mut totals = Tally::default();
        let mut rows = rows.into_iter().peekable();
        let mut buckets = Vec::with_capacity(((last - first) / width + 1) as usize);
        let mut at = first;
        while at <= last {
            let tally = match rows.peek() {
                Some((row_at, _)) if *row_at == at => rows.next().map(|(_, t)| t).unwrap_or_default(),
                _ => Tally::default(),
            };
            totals.add(&tally);
            buckets.push(TimelineBucket {
                at: instant(at),
                sends_per_second: tally.attempts as f64 / width as f64,
                counts: TallyView::from(&tally),
            });
            at += width;
        }
        Ok(Timeline { mailing_id: mailing.0, bucket_seconds: width, totals: TallyView::from(&totals), buckets })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_widths_are_multiples_of_ten_seconds_up_to_a_day() {
        for (raw, secs) in [("10s", 10), ("30s", 30), ("1m", 60), ("5m", 300), ("1h", 3_600), ("1d", 86_400)] {
            assert_eq!(parse_bucket(raw).expect(raw), secs);
        }
        for bad in ["", "s", "10", "5s", "15s", "0s", "2d", "1w", "-10s", "10 s", "9999999999999999999s", "1h30m"] {
            assert!(parse_bucket(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
