//! PostgreSQL: batches of delivery reports and of claims to check, each one statement over
//! arrays (the other delivery queries are in [`crate::sql::deliveries`]).

use std::{collections::HashSet, sync::LazyLock};

use chrono::{DateTime, Utc};
use herald_core::{
    campaign::MESSAGE_KIND,
    delivery::{DeliveryId, DeliveryReport},
    store::StoreError,
    timeline::{CALL_BUCKETS, bucket_of},
};
use uuid::Uuid;

use super::{PgStore, err};
use crate::{sql::deliveries::DeliveryBatches, timeline};

/// Applies a batch of reports (`$1`…`$7` their columns, `$9` their call-time buckets, `$8` now)
/// whose claims are current, and adds what they did to mailing `$10`'s timeline bucket for the
/// messages among them (kind `$11`); answers how many applied. The timeline rows are added to in
/// mailing id order, the order every writer of them takes.
/// The statement is made once: it serves every report batch.
static RECORD_REPORTS: LazyLock<String> = LazyLock::new(|| {
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
});

impl DeliveryBatches for PgStore {
    /// One statement for the whole batch, its mailing timeline counts included.
    async fn record_reports(&self, reports: &[DeliveryReport], now: DateTime<Utc>) -> Result<u64, StoreError> {
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

    async fn claims_still_held(
        &self,
        claims: &[(DeliveryId, DateTime<Utc>)],
    ) -> Result<HashSet<DeliveryId>, StoreError> {
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
}
