//! PostgreSQL: a started mailing's messages, made in chunks of clients by id (a cursor on the mailing),
//! the mailing finished once the last chunk leaves no message live.

use chrono::{DateTime, Utc};
use herald_core::{
    campaign::{FirstAttempts, MESSAGE_KIND, MailingId},
    store::StoreError,
    timeline::Tally,
};
use sqlx::{Postgres, Row as _, Transaction};
use uuid::Uuid;

use crate::{
    campaign::{PlanParts, WINDOW_AFTER_END},
    pg::{PgStore, err},
    sql::Adapter as _,
    timeline::Tallies,
};

/// Marks mailing `$2` `finished` if it is `running` with no live message.
const FINISH_ONE: &str = "UPDATE mailings m SET status = 'finished', updated_at = $1 \
    WHERE m.id = $2 AND m.status = 'running' AND NOT m.materializing \
    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.source_id = m.id AND d.status IN ('pending', 'sending'))";

/// Creates a chunk of a started mailing's messages: one row for each matching client whose id is
/// in `($9, $10]`, joined with the plan's instant for the client's zone (`$3`, `$4`), else `$5`.
/// Ids carry the creation time `$8` (Unix milliseconds of `now`, as `created_at`) and the row's
/// place in the statement. Answers how many it made, and how many of them it stored expired.
const CREATE_MESSAGES: &str = "WITH made AS (INSERT INTO deliveries (id, kind, source_key, recipient, channel, payload, \
        source_id, recipient_id, status, attempts, next_attempt_at, deadline, last_error, created_at, updated_at) \
    SELECT herald_uuidv7($8, n.seq), $2, 'mailing:' || n.mailing_id || ':client:' || n.client_id, n.phone, \
        'provider', \
        CASE WHEN n.window_from IS NULL \
            THEN jsonb_build_object('phone', n.phone, 'text', n.text, 'mailing_id', n.mailing_id, \
                'client_id', n.client_id) \
            ELSE jsonb_build_object('phone', n.phone, 'text', n.text, 'mailing_id', n.mailing_id, \
                'client_id', n.client_id, 'window', \
                jsonb_build_object('from', n.window_from, 'to', n.window_to, 'tz', n.timezone)) END, \
        n.mailing_id, n.client_id, CASE WHEN n.at >= n.end_at THEN 'expired' ELSE 'pending' END, 0, n.at, \
        n.end_at, CASE WHEN n.at >= n.end_at THEN $6 END, $7, $7 \
    FROM (SELECT m.id AS mailing_id, m.text, m.end_at, m.window_from, m.window_to, c.id AS client_id, c.phone, \
            c.timezone, COALESCE(z.at, $5) AS at, row_number() OVER () AS seq \
        FROM mailings m \
        JOIN clients c ON (m.operator_codes IS NULL OR c.operator_code = ANY (m.operator_codes)) \
            AND (m.tags IS NULL OR c.tag = ANY (m.tags)) \
            AND c.id > $9 AND c.id <= $10 \
        LEFT JOIN UNNEST($3::text[], $4::timestamptz[]) AS z (zone, at) ON z.zone = c.timezone \
        WHERE m.id = $1) n \
    RETURNING status) \
    SELECT count(*) AS created, count(*) FILTER (WHERE status = 'expired') AS expired FROM made";

/// Creates the next chunk of mailing `id`'s messages in `tx` (which holds the mailing, running and
/// materializing): those of the matching clients among the next `chunk` clients by id (found on
/// the primary key alone, so a chunk costs its own rows whatever the filter), then moves its
/// cursor; when the chunk reached the last client of the start, the mailing is materialized (and
/// finished at once if no message is live). Returns how many were created.
async fn materialize_chunk(
    tx: &mut Transaction<'_, Postgres>,
    id: MailingId,
    plan: &FirstAttempts,
    now: DateTime<Utc>,
    chunk: u32,
) -> Result<u64, StoreError> {
    let row = sqlx::query("SELECT materialized_through, materialize_high FROM mailings WHERE id = $1")
        .bind(id.0)
        .fetch_one(&mut **tx)
        .await
        .map_err(err)?;
    let through: Uuid = row.try_get::<Option<Uuid>, _>("materialized_through").map_err(err)?.unwrap_or(Uuid::nil());
    let high: Option<Uuid> = row.try_get("materialize_high").map_err(err)?;
    let mut created = 0;
    let mut done = true;
    if let Some(high) = high {
        let end: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM clients WHERE id > $1 AND id <= $2 ORDER BY id OFFSET $3 LIMIT 1")
                .bind(through)
                .bind(high)
                .bind(i64::from(chunk.max(1)) - 1)
                .fetch_optional(&mut **tx)
                .await
                .map_err(err)?;
        let upper = end.unwrap_or(high);
        done = upper == high;
        let plan = PlanParts::of(plan, now);
        let made = sqlx::query(CREATE_MESSAGES)
            .bind(id.0)
            .bind(MESSAGE_KIND)
            .bind(&plan.zones)
            .bind(&plan.ats)
            .bind(plan.otherwise)
            .bind(WINDOW_AFTER_END)
            .bind(now)
            .bind(now.timestamp_millis())
            .bind(through)
            .bind(upper)
            .fetch_one(&mut **tx)
            .await
            .map_err(err)?;
        let count = |name: &str| made.try_get::<i64, _>(name).map(|n| n.max(0) as u64).map_err(err);
        let tally = Tally { created: count("created")?, expired: count("expired")?, ..Tally::default() };
        created = tally.created;
        PgStore::add_to_timeline(tx, &Tallies::of(id, tally), now).await?;
        sqlx::query("UPDATE mailings SET materialized_through = $2 WHERE id = $1")
            .bind(id.0)
            .bind(upper)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
    }
    if done {
        sqlx::query("UPDATE mailings SET materializing = false WHERE id = $1")
            .bind(id.0)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        sqlx::query(FINISH_ONE).bind(now).bind(id.0).execute(&mut **tx).await.map_err(err)?;
    }
    Ok(created)
}

impl PgStore {
    /// Makes the next chunk of mailing `id`'s messages in `tx` (which holds it), commits, and
    /// wakes schedulers: the messages are theirs to claim.
    pub(super) async fn commit_chunk(
        &self,
        mut tx: Transaction<'_, Postgres>,
        id: MailingId,
        plan: &FirstAttempts,
        now: DateTime<Utc>,
        chunk: u32,
    ) -> Result<Option<u64>, StoreError> {
        let created = materialize_chunk(&mut tx, id, plan, now, chunk).await?;
        tx.commit().await.map_err(err)?;
        self.wake_schedulers();
        Ok(Some(created))
    }
}
