//! PostgreSQL: deliveries. Claims take due rows with `FOR UPDATE SKIP LOCKED`, so any number of
//! schedulers claim disjoint batches without waiting on each other.

use std::{collections::HashSet, sync::LazyLock, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    campaign::MESSAGE_KIND,
    timeline::{CALL_BUCKETS, bucket_of},
};
use herald_core::{
    change::ChangeEvent,
    delivery::{Claimed, Delivery, DeliveryId, DeliveryReport, DeliveryStatus, NewDelivery},
    quarantine::Worker,
    store::{DeliveryStore, StoreError},
};
use sqlx::{Postgres, Row, Transaction, types::Json};
use uuid::Uuid;

use super::{PgStore, err, held_ids, outbox::insert_events};
use crate::{
    decode,
    timeline::{self, Tallies},
};

/// The earliest due time of a pending delivery, a notice step still to come, or a scheduled
/// mailing's start.
const NEXT_DUE: &str = "SELECT min(at) FROM (SELECT min(next_attempt_at) AS at FROM deliveries WHERE status = 'pending' \
     UNION ALL SELECT min(due_at) FROM notice_steps WHERE status IN ('pending', 'deferred') \
     UNION ALL SELECT min(start_at) FROM mailings WHERE status = 'scheduled') AS due";

#[async_trait]
impl DeliveryStore for PgStore {
    async fn create_deliveries(&self, deliveries: &[NewDelivery]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let created = insert_deliveries(&mut tx, deliveries, OnTaken::Skip).await?;
        tx.commit().await.map_err(err)?;
        if created > 0 && deliveries.iter().any(|d| d.next_attempt_at <= Utc::now()) {
            self.wake_schedulers();
        }
        Ok(created)
    }

    async fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let row = sqlx::query("SELECT * FROM deliveries WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(decode::delivery).transpose()
    }

    async fn claim_due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
    ) -> Result<Claimed, StoreError> {
        let lease_until = now + chrono::Duration::from_std(lease).map_err(|e| StoreError::Other(Box::new(e)))?;
        let held = held_ids(&self.pool, [Worker::Scheduler, Worker::Sender], now).await?;
        let rows = sqlx::query(
            "WITH due AS (SELECT number FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
                          AND NOT (id = ANY($4)) ORDER BY next_attempt_at, number LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE deliveries d SET status = 'sending', lease_until = $3, updated_at = $1 \
             FROM due WHERE d.number = due.number RETURNING d.*",
        )
        .bind(now)
        .bind(i64::from(limit))
        .bind(lease_until)
        .bind(&held)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        let mut claimed = crate::unreadable::claimed(&rows);
        if !claimed.unreadable.is_empty() {
            // Not claimed after all: left pending for the scheduler to hold back.
            let ids: Vec<Uuid> = claimed.unreadable.iter().filter_map(|f| f.record.parse().ok()).collect();
            sqlx::query("UPDATE deliveries SET status = 'pending', lease_until = NULL WHERE id = ANY($1)")
                .bind(&ids)
                .execute(&self.pool)
                .await
                .map_err(err)?;
        }
        claimed.deliveries.sort_by_key(|d| (d.next_attempt_at, d.number));
        Ok(claimed)
    }

    async fn rescue_expired_leases(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        // A function that scans the index of claims without a bitmap (see migration 0006).
        let n: i64 =
            sqlx::query_scalar("SELECT herald_rescue_lapsed($1)").bind(now).fetch_one(&self.pool).await.map_err(err)?;
        Ok(n.max(0) as u64)
    }

    async fn record_deliveries(&self, reports: &[DeliveryReport], now: DateTime<Utc>) -> Result<u64, StoreError> {
        // One statement for the whole batch, its mailing timeline counts included: a round trip
        // per report would bound every sender.
        let ids: Vec<Uuid> = reports.iter().map(|r| r.id.0).collect();
        let leases: Vec<DateTime<Utc>> = reports.iter().map(|r| r.lease_until).collect();
        let statuses: Vec<&str> = reports.iter().map(|r| r.status.as_str()).collect();
        let attempts: Vec<i32> = reports.iter().map(|r| i32::try_from(r.attempts).unwrap_or(i32::MAX)).collect();
        let next: Vec<DateTime<Utc>> = reports.iter().map(|r| r.next_attempt_at).collect();
        let errors: Vec<Option<&str>> = reports.iter().map(|r| r.last_error.as_deref()).collect();
        let sent: Vec<Option<DateTime<Utc>>> = reports.iter().map(|r| r.sent_at).collect();
        let calls: Vec<Option<i16>> = reports.iter().map(timeline::call_slot).collect();
        let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(RECORD_REPORTS.as_str()))
            .bind(&ids)
            .bind(&leases)
            .bind(&statuses)
            .bind(&attempts)
            .bind(&next)
            .bind(&errors)
            .bind(&sent)
            .bind(now)
            .bind(&calls)
            .bind(bucket_of(now))
            .bind(MESSAGE_KIND)
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        Ok(applied.max(0) as u64)
    }

    async fn record_delivery_with_events(
        &self,
        report: &DeliveryReport,
        events: &[ChangeEvent],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let Some((kind, source)) = apply_report(&mut tx, report, now).await? else {
            return Ok(false);
        };
        let mut tallies = Tallies::default();
        tallies.count(&kind, source, report);
        add_to_timeline(&mut tx, &tallies, now).await?;
        insert_events(&mut tx, events).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn current_claims(&self, claims: &[(DeliveryId, DateTime<Utc>)]) -> Result<HashSet<DeliveryId>, StoreError> {
        let ids: Vec<Uuid> = claims.iter().map(|(id, _)| id.0).collect();
        let leases: Vec<DateTime<Utc>> = claims.iter().map(|(_, lease)| *lease).collect();
        let rows: Vec<Uuid> = sqlx::query_scalar(
            "SELECT d.id FROM deliveries d JOIN UNNEST($1::uuid[], $2::timestamptz[]) AS c (id, lease_until) \
             ON d.id = c.id AND d.lease_until = c.lease_until WHERE d.status = 'sending'",
        )
        .bind(&ids)
        .bind(&leases)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        Ok(rows.into_iter().map(DeliveryId).collect())
    }

    async fn count_due_deliveries(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1")
                .bind(now)
                .fetch_one(&self.pool)
                .await
                .map_err(err)?;
        Ok(n.max(0) as u64)
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        sqlx::query_scalar(NEXT_DUE).fetch_one(&self.pool).await.map_err(err)
    }

    async fn wait_for_due(&self, timeout: Duration) {
        self.due_wakeup.wait(timeout).await;
    }

    async fn count_claimed_deliveries(&self) -> Result<u64, StoreError> {
        // A function that scans the index of claims without a bitmap (see migration 0006).
        let n: i64 = sqlx::query_scalar("SELECT herald_count_claimed()").fetch_one(&self.pool).await.map_err(err)?;
        Ok(n.max(0) as u64)
    }
}

/// What storing a delivery does when its `source_key` is taken.
#[derive(Debug, Clone, Copy)]
pub(super) enum OnTaken {
    /// Keep the stored one as it is.
    Skip,
    /// Keep its state, but while it is pending give it the new payload and deadline.
    RefreshPending,
}

/// Stores `deliveries` as pending in `tx`; returns how many were new (or refreshed).
pub(super) async fn insert_deliveries(
    tx: &mut Transaction<'_, Postgres>,
    deliveries: &[NewDelivery],
    on_taken: OnTaken,
) -> Result<u64, StoreError> {
    let sql = match on_taken {
        OnTaken::Skip => concat!(
            "INSERT INTO deliveries (id, kind, source_key, recipient, channel, payload, source_id, recipient_id, \
             status, next_attempt_at, deadline, created_at, updated_at, trace_context) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11, $11, $12) ",
            "ON CONFLICT (source_key) DO NOTHING"
        ),
        OnTaken::RefreshPending => concat!(
            "INSERT INTO deliveries (id, kind, source_key, recipient, channel, payload, source_id, recipient_id, \
             status, next_attempt_at, deadline, created_at, updated_at, trace_context) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11, $11, $12) ",
            "ON CONFLICT (source_key) DO UPDATE SET payload = EXCLUDED.payload, deadline = EXCLUDED.deadline, \
             updated_at = EXCLUDED.updated_at, trace_context = EXCLUDED.trace_context WHERE deliveries.status = 'pending'"
        ),
    };
    let mut stored = 0;
    for d in deliveries {
        let done = sqlx::query(sql)
            .bind(d.id.0)
            .bind(&d.kind)
            .bind(&d.source_key)
            .bind(&d.recipient)
            .bind(d.channel.as_str())
            .bind(Json(&d.payload))
            .bind(d.source_id)
            .bind(d.recipient_id)
            .bind(d.next_attempt_at)
            .bind(d.deadline)
            .bind(d.created_at)
            .bind(&d.trace_context)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        stored += done.rows_affected();
    }
    Ok(stored)
}

/// Applies one report if its claim is current: the delivery's kind and source when it did,
/// `None` when the claim was stale.
async fn apply_report(
    tx: &mut Transaction<'_, Postgres>,
    r: &DeliveryReport,
    now: DateTime<Utc>,
) -> Result<Option<(String, Option<Uuid>)>, StoreError> {
    let lease = (r.status == DeliveryStatus::Sending).then_some(r.lease_until);
    let row = sqlx::query(
        "UPDATE deliveries SET status = $1, attempts = $2, next_attempt_at = $3, last_error = $4, \
         sent_at = $5, lease_until = $6, updated_at = $7 \
         WHERE id = $8 AND status = 'sending' AND lease_until = $9 RETURNING kind, source_id",
    )
    .bind(r.status.as_str())
    .bind(i32::try_from(r.attempts).unwrap_or(i32::MAX))
    .bind(r.next_attempt_at)
    .bind(&r.last_error)
    .bind(r.sent_at)
    .bind(lease)
    .bind(now)
    .bind(r.id.0)
    .bind(r.lease_until)
    .fetch_optional(&mut **tx)
    .await
    .map_err(err)?;
    row.map(|row| Ok((row.try_get("kind").map_err(err)?, row.try_get("source_id").map_err(err)?))).transpose()
}

/// Applies a batch of reports (`$1`…`$7` their columns, `$9` their call-time buckets, `$8` now)
/// whose claims are current, and adds what they did to mailing `$10`'s timeline bucket for the
/// messages among them (kind `$11`); answers how many applied. The timeline rows are added to in
/// mailing id order, the order every writer of them takes.
/// The statement is made once: it serves every report batch.
static RECORD_REPORTS: LazyLock<String> = LazyLock::new(record_reports_sql);

fn record_reports_sql() -> String {
    let calls =
        (0..CALL_BUCKETS).map(|i| format!("count(*) FILTER (WHERE r.call = {i})")).collect::<Vec<_>>().join(", ");
    format!(
        "WITH r AS (UPDATE deliveries d SET status = r.status, attempts = r.attempts, \
             next_attempt_at = r.next_attempt_at, last_error = r.last_error, sent_at = r.sent_at, \
             lease_until = CASE WHEN r.status = 'sending' THEN r.lease ELSE NULL END, updated_at = $8 \
           FROM UNNEST($1::uuid[], $2::timestamptz[], $3::text[], $4::int4[], $5::timestamptz[], $6::text[], \
                       $7::timestamptz[], $9::int2[]) \
             AS r (id, lease, status, attempts, next_attempt_at, last_error, sent_at, call) \
           WHERE d.id = r.id AND d.status = 'sending' AND d.lease_until = r.lease \
           RETURNING d.kind, d.source_id, r.status, r.call), \
         counted AS (INSERT INTO mailing_timeline AS t (mailing_id, bucket, {counters}) \
           SELECT r.source_id, $10, 0, count(r.call), count(*) FILTER (WHERE r.status = 'sent'), \
             count(*) FILTER (WHERE r.status = 'failed'), count(*) FILTER (WHERE r.status = 'expired'), \
             count(*) FILTER (WHERE r.status = 'cancelled'), \
             count(*) FILTER (WHERE r.status = 'pending' AND r.call IS NOT NULL), {calls} \
           FROM r WHERE r.kind = $11 AND r.source_id IS NOT NULL GROUP BY r.source_id ORDER BY r.source_id \
           {on_conflict}) \
         SELECT count(*) FROM r",
        counters = timeline::COUNTERS.join(", "),
        on_conflict = timeline::add_on_conflict(),
    )
}

/// Adds `tallies` to their mailings' timeline bucket of `now`, in mailing id order.
pub(super) async fn add_to_timeline(
    tx: &mut Transaction<'_, Postgres>,
    tallies: &Tallies,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    static ADD_ONE: LazyLock<String> = LazyLock::new(|| timeline::add_one(|n| format!("${n}")));
    for (mailing, tally) in &tallies.0 {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(ADD_ONE.as_str())).bind(mailing).bind(bucket_of(now));
        for n in timeline::counters(tally) {
            query = query.bind(n);
        }
        query.execute(&mut **tx).await.map_err(err)?;
    }
    Ok(())
}
