//! SQLite: a started mailing's messages, made in chunks of clients by id (a cursor on the mailing),
//! the mailing finished once the last chunk leaves no message live.

use chrono::{DateTime, Utc};
use herald_core::{
    campaign::{FirstAttempts, MESSAGE_KIND, MailingId},
    store::StoreError,
    timeline::Tally,
};
use sqlx::{Row as _, Sqlite, Transaction};
use uuid::Uuid;

use crate::{
    campaign::{PlanParts, WINDOW_AFTER_END},
    sql::Adapter as _,
    sqlite::{SqliteStore, err, micros},
    timeline::Tallies,
};

/// Marks mailing `?2` `finished` if it is `running` with no live message.
const FINISH_ONE: &str = "UPDATE mailings SET status = 'finished', updated_at = ?1 \
    WHERE id = ?2 AND status = 'running' AND NOT materializing \
    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.source_id = ?2 AND d.status IN ('pending', 'sending'))";

/// Stores the plan (`?2`: `[[zone, micros], …]`) of mailing `?1` for [`CREATE_MESSAGES`] to join.
const STORE_PLAN: &str = "INSERT INTO mailing_start_plans (mailing_id, zone, at) \
    SELECT ?1, value ->> 0, value ->> 1 FROM json_each(?2)";

/// Creates a chunk of a started mailing's messages: one row for each client with an id in
/// `(?10, ?11]` (from the first when `?10` is NULL) that the filter (`?5`, `?6`: JSON arrays or
/// NULL) matches, its first attempt its zone's instant in the stored plan, else `?4`. The id is
/// a UUIDv7 laid out as PostgreSQL's `herald_uuidv7` lays it out: 48 bits of Unix milliseconds
/// (`?9`, of `now`, as `created_at`), version 7, a 32-bit counter (the row's place in the
/// statement) around the variant bits `10`, and 42 random bits; ids ascend as rows are written,
/// which keeps index inserts at the right edge. Answers the status of each message it made.
const CREATE_MESSAGES: &str = "INSERT INTO deliveries (id, kind, source_key, recipient, channel, payload, \
        source_id, recipient_id, status, attempts, next_attempt_at, deadline, last_error, created_at, updated_at) \
    SELECT unhex(printf('%012x7%03x%04x%012x', ?9, (n.seq >> 20) & 4095, 32768 | ((n.seq >> 6) & 16383), \
            ((n.seq & 63) << 42) | (random() & 4398046511103))), \
        ?2, 'mailing:' || ?3 || ':client:' || n.uuid, n.phone, 'provider', \
        CASE WHEN m.window_from IS NULL \
            THEN json_object('phone', n.phone, 'text', m.text, 'mailing_id', ?3, 'client_id', n.uuid) \
            ELSE json_object('phone', n.phone, 'text', m.text, 'mailing_id', ?3, 'client_id', n.uuid, 'window', \
                json_object('from', m.window_from, 'to', m.window_to, 'tz', n.timezone)) END, \
        m.id, n.id, CASE WHEN n.at >= m.end_at THEN 'expired' ELSE 'pending' END, 0, n.at, m.end_at, \
        CASE WHEN n.at >= m.end_at THEN ?7 END, ?8, ?8 \
    FROM mailings m, \
        (SELECT c.id, c.phone, c.timezone, coalesce(z.at, ?4) AS at, row_number() OVER () AS seq, \
            lower(substr(hex(c.id), 1, 8) || '-' || substr(hex(c.id), 9, 4) || '-' || substr(hex(c.id), 13, 4) \
                || '-' || substr(hex(c.id), 17, 4) || '-' || substr(hex(c.id), 21)) AS uuid \
         FROM (SELECT id, phone, timezone FROM clients \
               WHERE (?5 IS NULL OR operator_code IN (SELECT value FROM json_each(?5))) \
                 AND (?6 IS NULL OR tag IN (SELECT value FROM json_each(?6))) \
                 AND (?10 IS NULL OR id > ?10) AND id <= ?11) c \
         LEFT JOIN mailing_start_plans z ON z.mailing_id = ?1 AND z.zone = c.timezone) n \
    WHERE m.id = ?1 \
    RETURNING status";

/// Creates the next chunk of mailing `id`'s messages in `tx` and moves its cursor; when the
/// chunk was the last, the mailing is materialized (and finished at once if no message is live).
/// Returns how many were created.
async fn materialize_chunk(
    tx: &mut Transaction<'_, Sqlite>,
    id: MailingId,
    plan: &FirstAttempts,
    now: DateTime<Utc>,
    chunk: u32,
) -> Result<u64, StoreError> {
    let row =
        sqlx::query("SELECT operator_codes, tags, materialized_through, materialize_high FROM mailings WHERE id = ?")
            .bind(id.0)
            .fetch_one(&mut **tx)
            .await
            .map_err(err)?;
    let codes: Option<String> = row.try_get("operator_codes").map_err(err)?;
    let tags: Option<String> = row.try_get("tags").map_err(err)?;
    let through: Option<Uuid> = row.try_get("materialized_through").map_err(err)?;
    let high: Option<Uuid> = row.try_get("materialize_high").map_err(err)?;
    let plan = PlanParts::of(plan, now);
    let zones: Vec<_> = plan.zones.iter().zip(&plan.ats).map(|(z, at)| serde_json::json!([z, micros(*at)])).collect();
    if !zones.is_empty() {
        sqlx::query(STORE_PLAN)
            .bind(id.0)
            .bind(serde_json::Value::from(zones).to_string())
            .execute(&mut **tx)
            .await
            .map_err(err)?;
    }
    // The chunk's last client by id, found on the primary key alone.
    let upper: Option<Uuid> = match high {
        None => None,
        Some(high) => {
            let end: Option<Uuid> = sqlx::query_scalar(
                "SELECT id FROM clients WHERE (?1 IS NULL OR id > ?1) AND id <= ?2 ORDER BY id LIMIT 1 OFFSET ?3",
            )
            .bind(through)
            .bind(high)
            .bind(i64::from(chunk.max(1)) - 1)
            .fetch_optional(&mut **tx)
            .await
            .map_err(err)?;
            Some(end.unwrap_or(high))
        }
    };
    // Each message's status, so the ones stored expired are counted without another scan.
    let statuses: Vec<String> = match upper {
        // No client at the start: nothing to make.
        None => Vec::new(),
        Some(upper) => sqlx::query_scalar(CREATE_MESSAGES)
            .bind(id.0)
            .bind(MESSAGE_KIND)
            .bind(id.to_string())
            .bind(micros(plan.otherwise))
            .bind(codes)
            .bind(tags)
            .bind(WINDOW_AFTER_END)
            .bind(micros(now))
            .bind(now.timestamp_millis())
            .bind(through)
            .bind(upper)
            .fetch_all(&mut **tx)
            .await
            .map_err(err)?,
    };
    let created = statuses.len() as u64;
    if created > 0 {
        let expired = statuses.iter().filter(|s| s.as_str() == "expired").count() as u64;
        SqliteStore::add_to_timeline(tx, &Tallies::of(id, Tally { created, expired, ..Tally::default() }), now).await?;
    }
    if !plan.zones.is_empty() {
        sqlx::query("DELETE FROM mailing_start_plans WHERE mailing_id = ?")
            .bind(id.0)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
    }
    let done = upper == high;
    sqlx::query(
        "UPDATE mailings SET materialized_through = coalesce(?2, materialized_through), materializing = NOT ?3 \
         WHERE id = ?1",
    )
    .bind(id.0)
    .bind(upper)
    .bind(done)
    .execute(&mut **tx)
    .await
    .map_err(err)?;
    if done {
        sqlx::query(FINISH_ONE).bind(micros(now)).bind(id.0).execute(&mut **tx).await.map_err(err)?;
    }
    Ok(created)
}

impl SqliteStore {
    /// Makes the next chunk of mailing `id`'s messages in `tx` (which holds it), commits, and
    /// wakes schedulers: the messages are theirs to claim.
    pub(super) async fn commit_chunk(
        &self,
        mut tx: Transaction<'_, Sqlite>,
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
