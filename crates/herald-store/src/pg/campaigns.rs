//! PostgreSQL: clients, mailings and their messages. A mailing starts with one `INSERT … SELECT`
//! over the clients, with ids made in SQL (`herald_uuidv7`, from the migration), so a mailing to a
//! million clients is one statement and no round trip per client.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    campaign::{
        Client, ClientFilter, ClientId, FirstAttempts, MESSAGE_KIND, Mailing, MailingId, MailingStatus, MessageCounts,
    },
    delivery::{Delivery, DeliveryId, DeliveryStatus},
    store::{CampaignStore, Constraint, StoreError},
    timeline::Tally,
};
use sqlx::{Postgres, Row as _, Transaction};
use uuid::Uuid;

use super::{PgStore, deliveries::add_to_timeline, err};
use crate::{
    campaign::{self, ENDS_BEFORE_ATTEMPT, PlanParts, WINDOW_AFTER_END},
    decode,
    error::{self, corrupt},
    timeline::{self, Tallies},
};

/// `id > $n` when a page starts after an id, else a condition on `$n` that always holds: a plain
/// range or none, where `$n IS NULL OR id > $n` would keep a generic plan off the index.
fn after_id(n: u8, given: bool) -> String {
    if given { format!("id > ${n}") } else { format!("${n}::uuid IS NULL") }
}

/// `status = $n` when a list is of one status, else a condition on `$n` that always holds.
fn of_status(n: u8, given: bool) -> String {
    if given { format!("status = ${n}") } else { format!("${n}::text IS NULL") }
}

/// The stored status of a mailing, read inside `tx` (after a guarded update changed nothing).
async fn stored_status(tx: &mut Transaction<'_, Postgres>, id: MailingId) -> Result<Option<MailingStatus>, StoreError> {
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM mailings WHERE id = $1")
        .bind(id.0)
        .fetch_optional(&mut **tx)
        .await
        .map_err(err)?;
    status.map(|s| s.parse().map_err(|e| corrupt("mailing status", e))).transpose()
}

/// Marks `finished` every `running` mailing with no live message left.
const FINISH_ALL: &str = "UPDATE mailings m SET status = 'finished', updated_at = $1 WHERE m.status = 'running' \
    AND NOT m.materializing AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.source_id = m.id AND d.status IN ('pending', 'sending')) \
    RETURNING m.id";

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
        add_to_timeline(tx, &Tallies::of(id, tally), now).await?;
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
    async fn commit_chunk(
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

#[async_trait]
impl CampaignStore for PgStore {
    async fn create_client(&self, c: &Client) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO clients (id, phone, operator_code, tag, timezone, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(c.id.0)
        .bind(c.phone.as_str())
        .bind(c.operator_code.as_str())
        .bind(c.tag.as_str())
        .bind(c.timezone.name())
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(err)
    }

    async fn insert_clients(&self, clients: &[Client]) -> Result<Vec<usize>, StoreError> {
        let (tried, repeats) = campaign::first_of_each_phone(clients);
        if tried.is_empty() {
            return Ok(repeats);
        }
        let column = |f: fn(&Client) -> String| tried.iter().map(|&i| f(&clients[i])).collect::<Vec<_>>();
        let ids: Vec<Uuid> = tried.iter().map(|&i| clients[i].id.0).collect();
        let times = |f: fn(&Client) -> DateTime<Utc>| tried.iter().map(|&i| f(&clients[i])).collect::<Vec<_>>();
        // One statement, so it is atomic; a phone stored already (or by a racing insert) is skipped.
        let inserted: HashSet<Uuid> = sqlx::query_scalar(
            "INSERT INTO clients (id, phone, operator_code, tag, timezone, created_at, updated_at) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                  $6::timestamptz[], $7::timestamptz[]) \
             ON CONFLICT (phone) DO NOTHING RETURNING id",
        )
        .bind(&ids)
        .bind(column(|c| c.phone.as_str().to_owned()))
        .bind(column(|c| c.operator_code.as_str().to_owned()))
        .bind(column(|c| c.tag.as_str().to_owned()))
        .bind(column(|c| c.timezone.name().to_owned()))
        .bind(times(|c| c.created_at))
        .bind(times(|c| c.updated_at))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?
        .into_iter()
        .collect();
        Ok(campaign::skipped(clients, repeats, &tried, &inserted))
    }

    async fn client(&self, id: ClientId) -> Result<Option<Client>, StoreError> {
        let row = sqlx::query("SELECT * FROM clients WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(decode::client).transpose()
    }

    async fn list_clients(
        &self,
        filter: &ClientFilter,
        after: Option<ClientId>,
        limit: u32,
    ) -> Result<Vec<Client>, StoreError> {
        // A plain condition for each part given, one that always holds for the others (as
        // `after_id` does), so each plan is a plain one and every placeholder is used.
        let part = |given: bool, condition: &str, n: u8| {
            if given { condition.to_owned() } else { format!("${n}::text IS NULL") }
        };
        let conditions = [
            after_id(1, after.is_some()),
            part(filter.phone_prefix.is_some(), "phone LIKE $3 || '%'", 3),
            part(filter.operator_code.is_some(), "operator_code = $4", 4),
            part(filter.tag.is_some(), "tag = $5", 5),
        ];
        let sql = format!("SELECT * FROM clients WHERE {} ORDER BY id LIMIT $2", conditions.join(" AND "));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after.map(|a| a.0))
            .bind(i64::from(limit))
            .bind(filter.phone_prefix.as_deref())
            .bind(filter.operator_code.as_ref().map(|c| c.as_str()))
            .bind(filter.tag.as_ref().map(|t| t.as_str()))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(decode::client).collect()
    }

    async fn update_client(&self, c: &Client) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE clients SET phone = $2, operator_code = $3, tag = $4, timezone = $5, updated_at = $6 \
             WHERE id = $1",
        )
        .bind(c.id.0)
        .bind(c.phone.as_str())
        .bind(c.operator_code.as_str())
        .bind(c.tag.as_str())
        .bind(c.timezone.name())
        .bind(c.updated_at)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn delete_client(&self, id: ClientId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let done = sqlx::query("DELETE FROM clients WHERE id = $1").bind(id.0).execute(&mut *tx).await.map_err(err)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let rows = sqlx::query(
            "WITH cancelled AS (UPDATE deliveries SET status = 'cancelled', updated_at = $2 \
               WHERE recipient_id = $1 AND kind = $3 AND status = 'pending' RETURNING source_id) \
             SELECT source_id, count(*) AS n FROM cancelled WHERE source_id IS NOT NULL GROUP BY source_id",
        )
        .bind(id.0)
        .bind(now)
        .bind(MESSAGE_KIND)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let mut tallies = Tallies::default();
        for row in rows {
            let cancelled = row.try_get::<i64, _>("n").map_err(err)?.max(0) as u64;
            tallies.0.insert(row.try_get("source_id").map_err(err)?, Tally { cancelled, ..Tally::default() });
        }
        add_to_timeline(&mut tx, &tallies, now).await?;
        tx.commit().await.map_err(err)?;
        Ok(true)
    }

    async fn create_mailing(&self, m: &Mailing) -> Result<(), StoreError> {
        let (codes, tags) = campaign::filter_parts(&m.filter);
        sqlx::query(
            "INSERT INTO mailings (id, start_at, end_at, text, operator_codes, tags, window_from, window_to, \
             status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(m.id.0)
        .bind(m.start_at)
        .bind(m.end_at)
        .bind(m.text.as_str())
        .bind(codes)
        .bind(tags)
        .bind(m.window.map(|w| w.from.to_string()))
        .bind(m.window.map(|w| w.to.to_string()))
        .bind(m.status.as_str())
        .bind(m.created_at)
        .bind(m.updated_at)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(err)
    }

    async fn mailing(&self, id: MailingId) -> Result<Option<Mailing>, StoreError> {
        let row = sqlx::query("SELECT * FROM mailings WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(decode::mailing).transpose()
    }

    async fn list_mailings(
        &self,
        status: Option<MailingStatus>,
        after: Option<MailingId>,
        limit: u32,
    ) -> Result<Vec<Mailing>, StoreError> {
        let sql = format!(
            "SELECT * FROM mailings WHERE {} AND {} ORDER BY id LIMIT $3",
            of_status(1, status.is_some()),
            after_id(2, after.is_some()),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(status.map(MailingStatus::as_str))
            .bind(after.map(|a| a.0))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(decode::mailing).collect()
    }

    async fn update_mailing(&self, m: &Mailing, expected: MailingStatus, now: DateTime<Utc>) -> Result<(), StoreError> {
        let (codes, tags) = campaign::filter_parts(&m.filter);
        let mut tx = self.pool.begin().await.map_err(err)?;
        let done = sqlx::query(
            "UPDATE mailings SET start_at = $2, end_at = $3, text = $4, operator_codes = $5, tags = $6, \
             window_from = $7, window_to = $8, status = $9, updated_at = $10 WHERE id = $1 AND status = $11",
        )
        .bind(m.id.0)
        .bind(m.start_at)
        .bind(m.end_at)
        .bind(m.text.as_str())
        .bind(codes)
        .bind(tags)
        .bind(m.window.map(|w| w.from.to_string()))
        .bind(m.window.map(|w| w.to.to_string()))
        .bind(m.status.as_str())
        .bind(m.updated_at)
        .bind(expected.as_str())
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        if done.rows_affected() == 0 {
            return Err(error::unchanged(stored_status(&mut tx, m.id).await?.is_some(), Constraint::MailingStatus));
        }
        if expected == MailingStatus::Running {
            // SET expressions all read the row as it was, so `status = 'pending'` is the old status.
            let expired: i64 = sqlx::query_scalar(
                "WITH moved AS (UPDATE deliveries SET deadline = $2, updated_at = $3, \
                 status = CASE WHEN status = 'pending' AND next_attempt_at >= $2 THEN 'expired' ELSE status END, \
                 last_error = CASE WHEN status = 'pending' AND next_attempt_at >= $2 THEN $5 ELSE last_error END, \
                 payload = CASE WHEN status = 'pending' THEN jsonb_set(payload, '{text}', to_jsonb($4::text)) \
                           ELSE payload END \
                 WHERE source_id = $1 AND kind = $6 AND status IN ('pending', 'sending') \
                 RETURNING status, last_error) \
                 SELECT count(*) FROM moved WHERE status = 'expired' AND last_error = $5",
            )
            .bind(m.id.0)
            .bind(m.end_at)
            .bind(now)
            .bind(m.text.as_str())
            .bind(ENDS_BEFORE_ATTEMPT)
            .bind(MESSAGE_KIND)
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
            let tally = Tally { expired: expired.max(0) as u64, ..Tally::default() };
            add_to_timeline(&mut tx, &Tallies::of(m.id, tally), now).await?;
        }
        tx.commit().await.map_err(err)
    }

    async fn start_mailing(
        &self,
        id: MailingId,
        plan: &FirstAttempts,
        now: DateTime<Utc>,
        chunk: u32,
    ) -> Result<Option<u64>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        // The row lock this takes makes a racing start wait, then find the mailing running.
        let started = sqlx::query(
            "UPDATE mailings SET status = 'running', updated_at = $2, materializing = true, \
             materialized_through = NULL, materialize_high = (SELECT id FROM clients ORDER BY id DESC LIMIT 1) \
             WHERE id = $1 AND status = 'scheduled'",
        )
        .bind(id.0)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        if started.rows_affected() == 0 {
            return Ok(None);
        }
        self.commit_chunk(tx, id, plan, now, chunk).await
    }

    async fn continue_mailing(
        &self,
        id: MailingId,
        plan: &FirstAttempts,
        now: DateTime<Utc>,
        chunk: u32,
    ) -> Result<Option<u64>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        // Held until the chunk and its cursor commit: a racing scheduler waits and takes the next.
        let held: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM mailings WHERE id = $1 AND status = 'running' AND materializing FOR UPDATE",
        )
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        if held.is_none() {
            return Ok(None);
        }
        self.commit_chunk(tx, id, plan, now, chunk).await
    }

    async fn materializing_mailings(&self, limit: u32) -> Result<Vec<Mailing>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM mailings WHERE materializing AND status = 'running' ORDER BY id LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        rows.iter().map(decode::mailing).collect()
    }

    async fn cancel_mailing(&self, id: MailingId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let done = sqlx::query(
            "UPDATE mailings SET status = 'cancelled', updated_at = $2 \
             WHERE id = $1 AND status IN ('scheduled', 'running')",
        )
        .bind(id.0)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        if done.rows_affected() == 0 {
            return match stored_status(&mut tx, id).await? {
                None => Err(StoreError::NotFound),
                Some(MailingStatus::Cancelled) => Ok(0),
                Some(_) => Err(StoreError::conflict(Constraint::MailingStatus)),
            };
        }
        let cancelled = sqlx::query(
            "UPDATE deliveries SET status = 'cancelled', updated_at = $2 \
             WHERE source_id = $1 AND kind = $3 AND status = 'pending'",
        )
        .bind(id.0)
        .bind(now)
        .bind(MESSAGE_KIND)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        add_to_timeline(&mut tx, &Tallies::of(id, Tally { cancelled, ..Tally::default() }), now).await?;
        tx.commit().await.map_err(err)?;
        Ok(cancelled)
    }

    async fn due_mailings(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<MailingId>, StoreError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM mailings WHERE status = 'scheduled' AND start_at <= $1 ORDER BY start_at, id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        Ok(ids.into_iter().map(MailingId).collect())
    }

    async fn finish_mailings(&self, now: DateTime<Utc>) -> Result<Vec<MailingId>, StoreError> {
        let mut ids: Vec<Uuid> = sqlx::query_scalar(FINISH_ALL).bind(now).fetch_all(&self.pool).await.map_err(err)?;
        ids.sort_unstable();
        Ok(ids.into_iter().map(MailingId).collect())
    }

    async fn message_counts(&self, mailings: &[MailingId]) -> Result<HashMap<MailingId, MessageCounts>, StoreError> {
        // From the counters (a few rows a mailing, whatever its size) and the messages being
        // sent now (an index range as short as the claims in flight), never a count of all rows.
        let ids: Vec<Uuid> = mailings.iter().map(|m| m.0).collect();
        // One statement, so the counters and the messages being sent are read in one snapshot.
        let sql = format!(
            "SELECT t.mailing_id, {}, (SELECT count(*) FROM deliveries d \
               WHERE d.source_id = t.mailing_id AND d.status = 'sending') AS sending \
             FROM mailing_timeline t WHERE t.mailing_id = ANY ($1) GROUP BY t.mailing_id",
            timeline::sums()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&ids).fetch_all(&self.pool).await.map_err(err)?;
        let mut counts: HashMap<MailingId, MessageCounts> =
            mailings.iter().map(|&m| (m, MessageCounts::default())).collect();
        for row in rows {
            let mailing: Uuid = row.try_get("mailing_id").map_err(err)?;
            let now_sending = row.try_get::<i64, _>("sending").map_err(err)?.max(0) as u64;
            counts.insert(MailingId(mailing), timeline::message_counts(&timeline::tally(&row)?, now_sending));
        }
        Ok(counts)
    }

    async fn list_messages(
        &self,
        mailing: MailingId,
        status: Option<DeliveryStatus>,
        after: Option<DeliveryId>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let sql = format!(
            "SELECT * FROM deliveries WHERE source_id = $1 AND {} AND {} ORDER BY id LIMIT $4",
            of_status(2, status.is_some()),
            after_id(3, after.is_some()),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(mailing.0)
            .bind(status.map(DeliveryStatus::as_str))
            .bind(after.map(|a| a.0))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(decode::delivery).collect()
    }

    async fn mailing_timeline(
        &self,
        mailing: Option<MailingId>,
        width: i64,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Tally)>, StoreError> {
        // A plain key range or none: a condition `<id> IS NULL OR mailing_id = <id>` would leave the key unused.
        let of_mailing = if mailing.is_some() { "mailing_id = $1" } else { "$1::uuid IS NULL" };
        let sql = timeline::by_bucket_sql(of_mailing, |n| format!("${n}"));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(mailing.map(|m| m.0))
            .bind(width.max(1))
            .bind(from)
            .bind(to)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(|row| Ok((row.try_get("at").map_err(err)?, timeline::tally(row)?))).collect()
    }

    async fn mailing_tallies(&self, from: i64, to: i64, limit: u32) -> Result<Vec<(MailingId, Tally)>, StoreError> {
        let sql = timeline::by_mailing_sql(|n| format!("${n}"));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(from)
            .bind(to)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(|row| Ok((MailingId(row.try_get("mailing_id").map_err(err)?), timeline::tally(row)?))).collect()
    }
}
