//! SQLite: deliveries. One writer at a time makes a claim exclusive without row locks.

use std::{collections::HashSet, sync::LazyLock, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::timeline::bucket_of;
use herald_core::{
    change::ChangeEvent,
    delivery::{Claimed, Delivery, DeliveryId, DeliveryReport, DeliveryStatus, NewDelivery},
    quarantine::Worker,
    store::{DeliveryStore, StoreError},
};
use sqlx::{Row as _, Sqlite, Transaction};
use uuid::Uuid;

use super::{SqliteStore, err, held_ids, micros, outbox::insert_events};
use crate::{
    decode,
    timeline::{self, Tallies},
};

fn lease_end(now: DateTime<Utc>, lease: Duration) -> Result<DateTime<Utc>, StoreError> {
    Ok(now + chrono::Duration::from_std(lease).map_err(|e| StoreError::Other(Box::new(e)))?)
}

/// The earliest due time of a pending delivery, a notice step still to come, or a scheduled
/// mailing's start.
const NEXT_DUE: &str = "SELECT min(at) FROM (SELECT min(next_attempt_at) AS at FROM deliveries WHERE status = 'pending' \
     UNION ALL SELECT min(due_at) FROM notice_steps WHERE status IN ('pending', 'deferred') \
     UNION ALL SELECT min(start_at) FROM mailings WHERE status = 'scheduled') AS due";

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn create_deliveries(&self, deliveries: &[NewDelivery]) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(err)?;
        let created = insert_deliveries(&mut tx, deliveries, OnTaken::Skip).await?;
        tx.commit().await.map_err(err)?;
        if created > 0 && deliveries.iter().any(|d| d.next_attempt_at <= Utc::now()) {
            self.wake_schedulers();
        }
        Ok(created)
    }

    async fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let row = sqlx::query("SELECT * FROM deliveries WHERE id = ?")
            .bind(id.0)
            .fetch_optional(&self.reader)
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
        let held = held_ids(&self.reader, [Worker::Scheduler, Worker::Sender], now).await?;
        let rows = sqlx::query(
            "UPDATE deliveries SET status = 'sending', lease_until = ?1, updated_at = ?2 WHERE number IN \
             (SELECT number FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?2 \
              AND id NOT IN (SELECT unhex(value) FROM json_each(?4)) \
              ORDER BY next_attempt_at, number LIMIT ?3) RETURNING *",
        )
        .bind(micros(lease_end(now, lease)?))
        .bind(micros(now))
        .bind(i64::from(limit))
        .bind(&held)
        .fetch_all(&self.writer)
        .await
        .map_err(err)?;
        let mut claimed = crate::unreadable::claimed(&rows);
        if !claimed.unreadable.is_empty() {
            // Not claimed after all: left pending for the scheduler to hold back.
            let ids: Vec<String> = claimed
                .unreadable
                .iter()
                .filter_map(|f| f.record.parse::<uuid::Uuid>().ok())
                .map(|id| id.simple().to_string())
                .collect();
            sqlx::query("UPDATE deliveries SET status = 'pending', lease_until = NULL WHERE id IN (SELECT unhex(value) FROM json_each(?1))")
                .bind(serde_json::to_string(&ids).map_err(|e| StoreError::Other(Box::new(e)))?)
                .execute(&self.writer)
                .await
                .map_err(err)?;
        }
        claimed.deliveries.sort_by_key(|d| (d.next_attempt_at, d.number));
        Ok(claimed)
    }

    async fn rescue_expired_leases(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'pending', lease_until = NULL, updated_at = ?1 \
             WHERE status = 'sending' AND lease_until < ?1",
        )
        .bind(micros(now))
        .execute(&self.writer)
        .await
        .map_err(err)?;
        Ok(done.rows_affected())
    }

    async fn record_deliveries(&self, reports: &[DeliveryReport], now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(err)?;
        let mut applied = 0;
        let mut tallies = Tallies::default();
        for r in reports {
            if let Some((kind, source)) = apply_report(&mut tx, r, now).await? {
                applied += 1;
                tallies.count(&kind, source, r);
            }
        }
        add_to_timeline(&mut tx, &tallies, now).await?;
        tx.commit().await.map_err(err)?;
        Ok(applied)
    }

    async fn record_delivery_with_events(
        &self,
        report: &DeliveryReport,
        events: &[ChangeEvent],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await.map_err(err)?;
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
        let mut current = HashSet::new();
        // One statement per bounded chunk keeps under SQLite's bound-parameter limit.
        for chunk in claims.chunks(400) {
            let pairs = vec!["(?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "WITH c (id, lease_until) AS (VALUES {pairs}) SELECT d.id FROM deliveries d JOIN c \
                 ON d.id = c.id AND d.lease_until = c.lease_until WHERE d.status = 'sending'"
            );
            // Only the number of placeholders varies.
            let mut query = sqlx::query_scalar::<_, Uuid>(sqlx::AssertSqlSafe(sql));
            for (id, lease) in chunk {
                query = query.bind(id.0).bind(micros(*lease));
            }
            current.extend(query.fetch_all(&self.reader).await.map_err(err)?.into_iter().map(DeliveryId));
        }
        Ok(current)
    }

    async fn count_due_deliveries(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?")
                .bind(micros(now))
                .fetch_one(&self.reader)
                .await
                .map_err(err)?;
        Ok(n.max(0) as u64)
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> = sqlx::query_scalar(NEXT_DUE).fetch_one(&self.reader).await.map_err(err)?;
        at.map(super::from_micros).transpose()
    }

    async fn wait_for_due(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.due_signal.notified()).await;
    }

    async fn count_claimed_deliveries(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'sending'")
            .fetch_one(&self.reader)
            .await
            .map_err(err)?;
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
    tx: &mut Transaction<'_, Sqlite>,
    deliveries: &[NewDelivery],
    on_taken: OnTaken,
) -> Result<u64, StoreError> {
    let sql = match on_taken {
        OnTaken::Skip => concat!(
            "INSERT INTO deliveries (id, kind, source_key, recipient, channel, payload, source_id, recipient_id, \
             status, next_attempt_at, deadline, created_at, updated_at, trace_context) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?10, ?11, ?11, ?12) ",
            "ON CONFLICT (source_key) DO NOTHING"
        ),
        OnTaken::RefreshPending => concat!(
            "INSERT INTO deliveries (id, kind, source_key, recipient, channel, payload, source_id, recipient_id, \
             status, next_attempt_at, deadline, created_at, updated_at, trace_context) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?10, ?11, ?11, ?12) ",
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
            .bind(d.payload.to_string())
            .bind(d.source_id)
            .bind(d.recipient_id)
            .bind(micros(d.next_attempt_at))
            .bind(d.deadline.map(micros))
            .bind(micros(d.created_at))
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
    tx: &mut Transaction<'_, Sqlite>,
    r: &DeliveryReport,
    now: DateTime<Utc>,
) -> Result<Option<(String, Option<Uuid>)>, StoreError> {
    let lease = (r.status == DeliveryStatus::Sending).then_some(micros(r.lease_until));
    let row = sqlx::query(
        "UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ?, sent_at = ?, \
         lease_until = ?, updated_at = ? WHERE id = ? AND status = 'sending' AND lease_until = ? \
         RETURNING kind, source_id",
    )
    .bind(r.status.as_str())
    .bind(i64::from(r.attempts))
    .bind(micros(r.next_attempt_at))
    .bind(&r.last_error)
    .bind(r.sent_at.map(micros))
    .bind(lease)
    .bind(micros(now))
    .bind(r.id.0)
    .bind(micros(r.lease_until))
    .fetch_optional(&mut **tx)
    .await
    .map_err(err)?;
    row.map(|row| Ok((row.try_get("kind").map_err(err)?, row.try_get("source_id").map_err(err)?))).transpose()
}

/// Adds `tallies` to their mailings' timeline bucket of `now`.
pub(super) async fn add_to_timeline(
    tx: &mut Transaction<'_, Sqlite>,
    tallies: &Tallies,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    static ADD_ONE: LazyLock<String> = LazyLock::new(|| timeline::add_one(|n| format!("?{n}")));
    for (mailing, tally) in &tallies.0 {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(ADD_ONE.as_str())).bind(mailing).bind(bucket_of(now));
        for n in timeline::counters(tally) {
            query = query.bind(n);
        }
        query.execute(&mut **tx).await.map_err(err)?;
    }
    Ok(())
}
