//! What both adapters share of the mailing timeline (see [`herald_core::timeline`]): its counter
//! columns, the SQL that sums and adds to them, and how a sender's report counts.

use std::{collections::BTreeMap, sync::LazyLock};

use herald_core::{
    campaign::{MESSAGE_KIND, MailingId, MessageCounts},
    delivery::{DeliveryReport, DeliveryStatus},
    store::StoreError,
    timeline::{CALL_BUCKETS, Tally, call_bucket},
};
use sqlx::{Row, ValueRef};
use uuid::Uuid;

use crate::error::corrupt;

/// The counter columns, in the order of [`counters`]: the counts of a [`Tally`], then its
/// call-time histogram.
pub(crate) const COUNTERS: [&str; 7 + CALL_BUCKETS] = [
    "created",
    "attempts",
    "sent",
    "failed",
    "expired",
    "cancelled",
    "retried",
    "calls_5",
    "calls_10",
    "calls_25",
    "calls_50",
    "calls_100",
    "calls_250",
    "calls_500",
    "calls_1000",
    "calls_2500",
    "calls_5000",
    "calls_over",
];

/// A tally's counters in [`COUNTERS`] order, as the databases store them.
pub(crate) fn counters(t: &Tally) -> [i64; 7 + CALL_BUCKETS] {
    let mut all = [0; 7 + CALL_BUCKETS];
    let counts = [t.created, t.attempts, t.sent, t.failed, t.expired, t.cancelled, t.retried];
    for (slot, n) in all.iter_mut().zip(counts.into_iter().chain(t.calls)) {
        *slot = i64::try_from(n).unwrap_or(i64::MAX);
    }
    all
}

/// `CAST(sum(created) AS BIGINT) AS created, …`: every counter summed (both dialects; a sum of
/// BIGINT is NUMERIC in PostgreSQL).
pub(crate) fn sums() -> String {
    COUNTERS.iter().map(|c| format!("CAST(sum({c}) AS BIGINT) AS {c}")).collect::<Vec<_>>().join(", ")
}

/// The `ON CONFLICT` action of an insert into `mailing_timeline AS t`: every counter added.
pub(crate) fn add_on_conflict() -> String {
    let sets = COUNTERS.iter().map(|c| format!("{c} = t.{c} + excluded.{c}")).collect::<Vec<_>>().join(", ");
    format!("ON CONFLICT (mailing_id, bucket) DO UPDATE SET {sets}")
}

/// `INSERT INTO mailing_timeline AS t (mailing_id, bucket, <counters>) VALUES ($1, $2, …)` adding
/// to the counters of a bucket, made once.
pub(crate) static ADD_ONE: LazyLock<String> = LazyLock::new(|| {
    let values = (1..=2 + COUNTERS.len()).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ");
    format!(
        "INSERT INTO mailing_timeline AS t (mailing_id, bucket, {}) VALUES ({values}) {}",
        COUNTERS.join(", "),
        add_on_conflict()
    )
});

/// The sums of the buckets starting in `[$3, $4)` grouped by width `$2` (as `at`), of the
/// mailings `of_mailing` admits (a condition on `$1`), earliest first, at most `$5`.
pub(crate) fn by_bucket_sql(of_mailing: &str) -> String {
    format!(
        "SELECT bucket / $2 * $2 AS at, {} FROM mailing_timeline \
         WHERE {of_mailing} AND bucket >= $3 AND bucket < $4 GROUP BY 1 ORDER BY 1 LIMIT $5",
        sums(),
    )
}

/// The sums per mailing of the buckets starting in `[$1, $2)`, in mailing order, at most `$3`.
pub(crate) static BY_MAILING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT mailing_id, {} FROM mailing_timeline WHERE bucket >= $1 AND bucket < $2 \
         GROUP BY mailing_id ORDER BY mailing_id LIMIT $3",
        sums(),
    )
});

/// The sums a query of [`sums`] answered.
pub(crate) fn tally<R: Row>(row: &R) -> Result<Tally, StoreError>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let mut v = [0u64; 7 + CALL_BUCKETS];
    for (slot, name) in v.iter_mut().zip(COUNTERS) {
        // A sum over no rows is NULL.
        let null = row.try_get_raw(name).map_err(|e| corrupt("timeline sum", e))?.is_null();
        let n: i64 = if null { 0 } else { row.try_get(name).map_err(|e| corrupt("timeline sum", e))? };
        *slot = u64::try_from(n).map_err(|e| corrupt("timeline sum", e))?;
    }
    let mut calls = [0; CALL_BUCKETS];
    calls.copy_from_slice(&v[7..]);
    Ok(Tally {
        created: v[0],
        attempts: v[1],
        sent: v[2],
        failed: v[3],
        expired: v[4],
        cancelled: v[5],
        retried: v[6],
        calls,
    })
}

/// Tallies per mailing of the reports a store applied, added to the timeline together.
#[derive(Debug, Default)]
pub(crate) struct Tallies(pub BTreeMap<Uuid, Tally>);

impl Tallies {
    /// Counts report `r`, applied to a delivery of `kind` whose source is `source`.
    pub(crate) fn count(&mut self, kind: &str, source: Option<Uuid>, r: &DeliveryReport) {
        let Some(mailing) = source.filter(|_| kind == MESSAGE_KIND) else { return };
        let t = self.0.entry(mailing).or_default();
        match r.status {
            DeliveryStatus::Sent => t.sent += 1,
            DeliveryStatus::Failed => t.failed += 1,
            DeliveryStatus::Expired => t.expired += 1,
            DeliveryStatus::Cancelled => t.cancelled += 1,
            DeliveryStatus::Pending if r.call_time.is_some() => t.retried += 1,
            DeliveryStatus::Pending | DeliveryStatus::Sending => {}
        }
        if let Some(took) = r.call_time {
            t.attempts += 1;
            t.calls[call_bucket(took)] += 1;
        }
    }

    /// One tally for one mailing.
    pub(crate) fn of(mailing: MailingId, tally: Tally) -> Self {
        Self(BTreeMap::from([(mailing.0, tally)]))
    }
}

/// The histogram bucket of a report's call, as PostgreSQL's batch statement binds it.
pub(crate) fn call_slot(r: &DeliveryReport) -> Option<i16> {
    r.call_time.map(|took| call_bucket(took) as i16)
}

/// A mailing's messages by status from its counters and the number being sent now (which the
/// counters do not keep: a claim and its rescue change no count).
pub(crate) fn message_counts(t: &Tally, sending: u64) -> MessageCounts {
    let sending = sending.min(t.created.saturating_sub(t.settled()));
    MessageCounts {
        total: t.created,
        pending: t.created.saturating_sub(t.settled()).saturating_sub(sending),
        sending,
        sent: t.sent,
        failed: t.failed,
        expired: t.expired,
        cancelled: t.cancelled,
    }
}
