//! Deliveries, in both adapters. A claim takes due rows `FOR UPDATE SKIP LOCKED` in PostgreSQL,
//! so any number of schedulers claim disjoint batches without waiting on each other; in SQLite
//! one writer at a time makes a claim exclusive without row locks. A batch of reports is the
//! adapter's own (see [`DeliveryBatches::record_reports`]).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use herald_core::{
    delivery::{DeliveryId, DeliveryReport},
    store::StoreError,
};

use super::{Adapter, Sql};

/// What each adapter does its own way for deliveries: PostgreSQL writes a batch in one
/// statement (a round trip per report would bound every sender), SQLite one at a time.
pub(crate) trait DeliveryBatches: Adapter {
    /// Applies the reports whose claims are current and adds what they did to their mailings'
    /// timeline buckets (in mailing id order, the order every writer of them takes); answers how
    /// many applied.
    async fn record_reports(&self, reports: &[DeliveryReport], now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Which of `claims` (deliveries and the leases they were claimed until) are still held.
    async fn claims_still_held(
        &self,
        claims: &[(DeliveryId, DateTime<Utc>)],
    ) -> Result<HashSet<DeliveryId>, StoreError>;
}

/// What storing a delivery does when its `source_key` is taken.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OnTaken {
    /// Keep the stored one as it is.
    Skip,
    /// Keep its state, but while it is pending give it the new payload and deadline.
    RefreshPending,
}

macro_rules! insert_delivery {
    () => {
        "INSERT INTO deliveries (id, kind, source_key, recipient, channel, payload, source_id, recipient_id, \
         status, next_attempt_at, deadline, created_at, updated_at, trace_context) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11, $11, $12) "
    };
}

impl OnTaken {
    /// The statement that stores one delivery.
    pub(crate) fn insert(self) -> &'static str {
        match self {
            Self::Skip => concat!(insert_delivery!(), "ON CONFLICT (source_key) DO NOTHING"),
            Self::RefreshPending => concat!(
                insert_delivery!(),
                "ON CONFLICT (source_key) DO UPDATE SET payload = EXCLUDED.payload, deadline = EXCLUDED.deadline, \
                 updated_at = EXCLUDED.updated_at, trace_context = EXCLUDED.trace_context \
                 WHERE deliveries.status = 'pending'"
            ),
        }
    }
}

/// The earliest due time of a pending delivery, a notice step still to come, or a scheduled
/// mailing's start.
pub(crate) const NEXT_DUE: &str = "SELECT min(at) FROM (SELECT min(next_attempt_at) AS at FROM deliveries \
     WHERE status = 'pending' \
     UNION ALL SELECT min(due_at) FROM notice_steps WHERE status IN ('pending', 'deferred') \
     UNION ALL SELECT min(start_at) FROM mailings WHERE status = 'scheduled') AS due";

pub(crate) const DELIVERY: &str = "SELECT * FROM deliveries WHERE id = $1";

/// Claims up to `$2` deliveries due at `$1`, earliest first, but those among `$4` (held back),
/// leasing them until `$3`.
pub(crate) static CLAIM_DUE: Sql = Sql::new(|d| {
    format!(
        "WITH due AS (SELECT number FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
         AND NOT ({}) ORDER BY next_attempt_at, number LIMIT $2{}) \
         UPDATE deliveries SET status = 'sending', lease_until = $3, updated_at = $1 \
         WHERE number IN (SELECT number FROM due) RETURNING *",
        d.in_ids("id", 4),
        d.lock(" FOR UPDATE SKIP LOCKED"),
    )
});

/// Gives back claims of the deliveries `$1` (rows that could not be read).
pub(crate) static UNCLAIM: Sql =
    Sql::new(|d| format!("UPDATE deliveries SET status = 'pending', lease_until = NULL WHERE {}", d.in_ids("id", 1)));

/// Gives back the claims lapsed at `$1`, in PostgreSQL through a function of the migration's that
/// scans the index of claims without a bitmap (see migration 0006) and answers how many.
pub(crate) const RESCUE_LAPSED_PG: &str = "SELECT herald_rescue_lapsed($1)";

/// Gives back the claims lapsed at `$1` (SQLite).
pub(crate) const RESCUE_LAPSED: &str = "UPDATE deliveries SET status = 'pending', lease_until = NULL, \
     updated_at = $1 WHERE status = 'sending' AND lease_until < $1";

/// How many deliveries are claimed, in PostgreSQL through a function of the migration's that scans
/// the index of claims without a bitmap (see migration 0006).
pub(crate) static COUNT_CLAIMED: Sql = Sql::new(|d| {
    match d {
        super::Dialect::Postgres => "SELECT herald_count_claimed()",
        super::Dialect::Sqlite => "SELECT count(*) FROM deliveries WHERE status = 'sending'",
    }
    .to_owned()
});

pub(crate) const COUNT_DUE: &str = "SELECT count(*) FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1";

/// Applies a report if its claim (`$8` leased until `$9`) is current.
pub(crate) const APPLY_REPORT: &str = "UPDATE deliveries SET status = $1, attempts = $2, next_attempt_at = $3, \
     last_error = $4, sent_at = $5, lease_until = $6, updated_at = $7 \
     WHERE id = $8 AND status = 'sending' AND lease_until = $9 RETURNING kind, source_id";

/// Implements `DeliveryStore` for an adapter (see [`crate::sql`]), and the delivery writes other
/// ports' bodies share: `insert_deliveries`, `apply_report` and `add_to_timeline`.
macro_rules! delivery_store {
    ($store:ty) => {
        const _: () = {
            use std::{collections::HashSet, time::Duration};

            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use herald_core::{
                change::ChangeEvent,
                delivery::{Claimed, Delivery, DeliveryId, DeliveryReport, DeliveryStatus, NewDelivery},
                quarantine::Worker,
                store::{DeliveryStore, StoreError},
                timeline::bucket_of,
            };
            use sqlx::{Row as _, types::Json};
            use uuid::Uuid;
            use $crate::{
                columns::{Ids, Stamp},
                decode,
                sql::{Adapter, Dialect, deliveries::*, held_ids},
                timeline::{self, Tallies},
            };

            type Tx<'c> = sqlx::Transaction<'c, <$store as Adapter>::Db>;

            impl $store {
                /// Stores `deliveries` as pending in `tx`; returns how many were new (or refreshed).
                pub(crate) async fn insert_deliveries(
                    tx: &mut Tx<'_>,
                    deliveries: &[NewDelivery],
                    on_taken: OnTaken,
                ) -> Result<u64, StoreError> {
                    let mut stored = 0;
                    for d in deliveries {
                        let done = sqlx::query(on_taken.insert())
                            .bind(d.id.0)
                            .bind(&d.kind)
                            .bind(&d.source_key)
                            .bind(&d.recipient)
                            .bind(d.channel.as_str())
                            .bind(Json(&d.payload))
                            .bind(d.source_id)
                            .bind(d.recipient_id)
                            .bind(Stamp(d.next_attempt_at))
                            .bind(d.deadline.map(Stamp))
                            .bind(Stamp(d.created_at))
                            .bind(&d.trace_context)
                            .execute(&mut **tx)
                            .await
                            .map_err(Self::err)?;
                        stored += done.rows_affected();
                    }
                    Ok(stored)
                }

                /// Applies one report if its claim is current: the delivery's kind and source when
                /// it did, `None` when the claim was stale.
                pub(crate) async fn apply_report(
                    tx: &mut Tx<'_>,
                    r: &DeliveryReport,
                    now: DateTime<Utc>,
                ) -> Result<Option<(String, Option<Uuid>)>, StoreError> {
                    let lease = (r.status == DeliveryStatus::Sending).then_some(Stamp(r.lease_until));
                    let row = sqlx::query(APPLY_REPORT)
                        .bind(r.status.as_str())
                        .bind(i32::try_from(r.attempts).unwrap_or(i32::MAX))
                        .bind(Stamp(r.next_attempt_at))
                        .bind(&r.last_error)
                        .bind(r.sent_at.map(Stamp))
                        .bind(lease)
                        .bind(Stamp(now))
                        .bind(r.id.0)
                        .bind(Stamp(r.lease_until))
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(Self::err)?;
                    row.map(|row| {
                        Ok((row.try_get("kind").map_err(Self::err)?, row.try_get("source_id").map_err(Self::err)?))
                    })
                    .transpose()
                }

                /// Adds `tallies` to their mailings' timeline bucket of `now`, in mailing id order
                /// (the order every writer of them takes).
                pub(crate) async fn add_to_timeline(
                    tx: &mut Tx<'_>,
                    tallies: &Tallies,
                    now: DateTime<Utc>,
                ) -> Result<(), StoreError> {
                    for (mailing, tally) in &tallies.0 {
                        let mut query = sqlx::query(sqlx::AssertSqlSafe(timeline::ADD_ONE.as_str()))
                            .bind(mailing)
                            .bind(bucket_of(now));
                        for n in timeline::counters(tally) {
                            query = query.bind(n);
                        }
                        query.execute(&mut **tx).await.map_err(Self::err)?;
                    }
                    Ok(())
                }
            }

            #[async_trait]
            impl DeliveryStore for $store {
                async fn create_deliveries(&self, deliveries: &[NewDelivery]) -> Result<u64, StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    let created = Self::insert_deliveries(&mut tx, deliveries, OnTaken::Skip).await?;
                    tx.commit().await.map_err(Self::err)?;
                    if created > 0 && deliveries.iter().any(|d| d.next_attempt_at <= Utc::now()) {
                        Adapter::wake_schedulers(self);
                    }
                    Ok(created)
                }

                async fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
                    let row =
                        sqlx::query(DELIVERY).bind(id.0).fetch_optional(self.reader()).await.map_err(Self::err)?;
                    row.as_ref().map(decode::delivery).transpose()
                }

                async fn claim_due_deliveries(
                    &self,
                    now: DateTime<Utc>,
                    limit: u32,
                    lease: Duration,
                ) -> Result<Claimed, StoreError> {
                    let lease = chrono::Duration::from_std(lease).map_err(|e| StoreError::Other(Box::new(e)))?;
                    let held =
                        held_ids(self.reader(), [Worker::Scheduler, Worker::Sender], now).await.map_err(Self::err)?;
                    let rows = sqlx::query(CLAIM_DUE.text(Self::DIALECT))
                        .bind(Stamp(now))
                        .bind(i64::from(limit))
                        .bind(Stamp(now + lease))
                        .bind(held)
                        .fetch_all(self.writer())
                        .await
                        .map_err(Self::err)?;
                    let mut claimed = $crate::unreadable::claimed(&rows);
                    if !claimed.unreadable.is_empty() {
                        // Not claimed after all: left pending for the scheduler to hold back.
                        let ids = Ids(claimed.unreadable.iter().filter_map(|f| f.record.parse().ok()).collect());
                        sqlx::query(UNCLAIM.text(Self::DIALECT))
                            .bind(ids)
                            .execute(self.writer())
                            .await
                            .map_err(Self::err)?;
                    }
                    claimed.deliveries.sort_by_key(|d| (d.next_attempt_at, d.number));
                    Ok(claimed)
                }

                async fn rescue_expired_leases(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
                    let rescued = match Self::DIALECT {
                        Dialect::Postgres => {
                            let n: i64 = sqlx::query_scalar(RESCUE_LAPSED_PG)
                                .bind(Stamp(now))
                                .fetch_one(self.writer())
                                .await
                                .map_err(Self::err)?;
                            n.max(0) as u64
                        }
                        Dialect::Sqlite => {
                            let done = sqlx::query(RESCUE_LAPSED)
                                .bind(Stamp(now))
                                .execute(self.writer())
                                .await
                                .map_err(Self::err)?;
                            done.rows_affected()
                        }
                    };
                    Ok(rescued)
                }

                async fn record_deliveries(
                    &self,
                    reports: &[DeliveryReport],
                    now: DateTime<Utc>,
                ) -> Result<u64, StoreError> {
                    self.record_reports(reports, now).await
                }

                async fn record_delivery_with_events(
                    &self,
                    report: &DeliveryReport,
                    events: &[ChangeEvent],
                    now: DateTime<Utc>,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    let Some((kind, source)) = Self::apply_report(&mut tx, report, now).await? else {
                        return Ok(false);
                    };
                    let mut tallies = Tallies::default();
                    tallies.count(&kind, source, report);
                    Self::add_to_timeline(&mut tx, &tallies, now).await?;
                    Self::insert_events(&mut tx, events).await?;
                    self.commit(tx).await?;
                    Ok(true)
                }

                async fn current_claims(
                    &self,
                    claims: &[(DeliveryId, DateTime<Utc>)],
                ) -> Result<HashSet<DeliveryId>, StoreError> {
                    self.claims_still_held(claims).await
                }

                async fn count_due_deliveries(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
                    let n: i64 = sqlx::query_scalar(COUNT_DUE)
                        .bind(Stamp(now))
                        .fetch_one(self.reader())
                        .await
                        .map_err(Self::err)?;
                    Ok(n.max(0) as u64)
                }

                async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
                    let at: Option<Stamp> =
                        sqlx::query_scalar(NEXT_DUE).fetch_one(self.reader()).await.map_err(Self::err)?;
                    Ok(at.map(Into::into))
                }

                async fn wait_for_due(&self, timeout: Duration) {
                    self.wait_for_due_deliveries(timeout).await;
                }

                async fn count_claimed_deliveries(&self) -> Result<u64, StoreError> {
                    let n: i64 = sqlx::query_scalar(COUNT_CLAIMED.text(Self::DIALECT))
                        .fetch_one(self.reader())
                        .await
                        .map_err(Self::err)?;
                    Ok(n.max(0) as u64)
                }
            }
        };
    };
}
pub(crate) use delivery_store;
