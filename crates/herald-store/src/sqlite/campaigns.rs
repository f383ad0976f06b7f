//! SQLite: clients, mailings and their messages. A mailing starts with one `INSERT … SELECT` over
//! the clients; message ids are UUIDv7 built in SQL from the clock and `random()`. Lists travel
//! as JSON text (filters, plans, id sets) and are read back with `json_each`.

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
use sqlx::{Row as _, Sqlite, Transaction};
use uuid::Uuid;

use super::{SqliteStore, deliveries::add_to_timeline, err, micros};
use crate::{
    campaign::{self, ENDS_BEFORE_ATTEMPT, PlanParts, WINDOW_AFTER_END},
    decode,
    error::{self, corrupt},
    timeline::{self, Tallies},
};

/// Clients per `INSERT`: seven bound values each keeps a statement well under SQLite's limit of
/// 32,766 variables.
const CLIENTS_PER_INSERT: usize = 1000;

/// `id > ?n` when a page starts after an id, else a condition on `?n` that always holds: a plain
/// range or none, where `?n IS NULL OR id > ?n` would keep the planner off the index.
fn after_id(n: u8, given: bool) -> String {
    if given { format!("id > ?{n}") } else { format!("?{n} IS NULL") }
}

/// `status = ?n` when a list is of one status, else a condition on `?n` that always holds.
fn of_status(n: u8, given: bool) -> String {
    if given { format!("status = ?{n}") } else { format!("?{n} IS NULL") }
}

/// The stored status of a mailing, read inside `tx` (after a guarded update changed nothing).
async fn stored_status(tx: &mut Transaction<'_, Sqlite>, id: MailingId) -> Result<Option<MailingStatus>, StoreError> {
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM mailings WHERE id = ?")
        .bind(id.0)
        .fetch_optional(&mut **tx)
        .await
        .map_err(err)?;
    status.map(|s| s.parse().map_err(|e| corrupt("mailing status", e))).transpose()
}

/// Marks `finished` every `running` mailing with no live message left.
const FINISH_ALL: &str = "UPDATE mailings SET status = 'finished', updated_at = ?1 WHERE status = 'running' \
    AND NOT materializing AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.source_id = mailings.id \
                    AND d.status IN ('pending', 'sending')) RETURNING id";

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
        add_to_timeline(tx, &Tallies::of(id, Tally { created, expired, ..Tally::default() }), now).await?;
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
    async fn commit_chunk(
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

#[async_trait]
impl CampaignStore for SqliteStore {
    async fn create_client(&self, c: &Client) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO clients (id, phone, operator_code, tag, timezone, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(c.id.0)
        .bind(c.phone.as_str())
        .bind(c.operator_code.as_str())
        .bind(c.tag.as_str())
        .bind(c.timezone.name())
        .bind(micros(c.created_at))
        .bind(micros(c.updated_at))
        .execute(&self.writer)
        .await
        .map(drop)
        .map_err(err)
    }

    async fn insert_clients(&self, clients: &[Client]) -> Result<Vec<usize>, StoreError> {
        let (tried, repeats) = campaign::first_of_each_phone(clients);
        let mut inserted = HashSet::with_capacity(tried.len());
        let mut tx = self.writer.begin().await.map_err(err)?;
        for chunk in tried.chunks(CLIENTS_PER_INSERT) {
            let rows = vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT INTO clients (id, phone, operator_code, tag, timezone, created_at, updated_at) \
                 VALUES {rows} ON CONFLICT (phone) DO NOTHING RETURNING id"
            );
            // Only the number of placeholders varies; full chunks share one cached statement.
            let mut query =
                sqlx::query_scalar::<_, Uuid>(sqlx::AssertSqlSafe(sql)).persistent(chunk.len() == CLIENTS_PER_INSERT);
            for c in chunk.iter().map(|&i| &clients[i]) {
                query = query
                    .bind(c.id.0)
                    .bind(c.phone.as_str())
                    .bind(c.operator_code.as_str())
                    .bind(c.tag.as_str())
                    .bind(c.timezone.name())
                    .bind(micros(c.created_at))
                    .bind(micros(c.updated_at));
            }
            inserted.extend(query.fetch_all(&mut *tx).await.map_err(err)?);
        }
        tx.commit().await.map_err(err)?;
        Ok(campaign::skipped(clients, repeats, &tried, &inserted))
    }

    async fn client(&self, id: ClientId) -> Result<Option<Client>, StoreError> {
        let row = sqlx::query("SELECT * FROM clients WHERE id = ?")
            .bind(id.0)
            .fetch_optional(&self.reader)
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
            if given { condition.to_owned() } else { format!("?{n} IS NULL") }
        };
        let conditions = [
            after_id(1, after.is_some()),
            part(filter.phone_prefix.is_some(), "phone LIKE ?3 || '%'", 3),
            part(filter.operator_code.is_some(), "operator_code = ?4", 4),
            part(filter.tag.is_some(), "tag = ?5", 5),
        ];
        let sql = format!("SELECT * FROM clients WHERE {} ORDER BY id LIMIT ?2", conditions.join(" AND "));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after.map(|a| a.0))
            .bind(i64::from(limit))
            .bind(filter.phone_prefix.as_deref())
            .bind(filter.operator_code.as_ref().map(|c| c.as_str()))
            .bind(filter.tag.as_ref().map(|t| t.as_str()))
            .fetch_all(&self.reader)
            .await
            .map_err(err)?;
        rows.iter().map(decode::client).collect()
    }

    async fn update_client(&self, c: &Client) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE clients SET phone = ?2, operator_code = ?3, tag = ?4, timezone = ?5, updated_at = ?6 \
             WHERE id = ?1",
        )
        .bind(c.id.0)
        .bind(c.phone.as_str())
        .bind(c.operator_code.as_str())
        .bind(c.tag.as_str())
        .bind(c.timezone.name())
        .bind(micros(c.updated_at))
        .execute(&self.writer)
        .await
        .map_err(err)?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn delete_client(&self, id: ClientId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await.map_err(err)?;
        let done = sqlx::query("DELETE FROM clients WHERE id = ?").bind(id.0).execute(&mut *tx).await.map_err(err)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // Counted before they change: SQLite's one writer keeps them as they are meanwhile.
        let rows = sqlx::query(
            "SELECT source_id, count(*) AS n FROM deliveries \
             WHERE recipient_id = ?1 AND kind = ?2 AND status = 'pending' AND source_id IS NOT NULL GROUP BY source_id",
        )
        .bind(id.0)
        .bind(MESSAGE_KIND)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let mut tallies = Tallies::default();
        for row in rows {
            let cancelled = row.try_get::<i64, _>("n").map_err(err)?.max(0) as u64;
            tallies.0.insert(row.try_get("source_id").map_err(err)?, Tally { cancelled, ..Tally::default() });
        }
        sqlx::query(
            "UPDATE deliveries SET status = 'cancelled', updated_at = ?2 \
             WHERE recipient_id = ?1 AND kind = ?3 AND status = 'pending'",
        )
        .bind(id.0)
        .bind(micros(now))
        .bind(MESSAGE_KIND)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        add_to_timeline(&mut tx, &tallies, now).await?;
        tx.commit().await.map_err(err)?;
        Ok(true)
    }

    async fn create_mailing(&self, m: &Mailing) -> Result<(), StoreError> {
        let (codes, tags) = campaign::filter_parts(&m.filter);
        sqlx::query(
            "INSERT INTO mailings (id, start_at, end_at, text, operator_codes, tags, window_from, window_to, \
             status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(m.id.0)
        .bind(micros(m.start_at))
        .bind(micros(m.end_at))
        .bind(m.text.as_str())
        .bind(codes)
        .bind(tags)
        .bind(m.window.map(|w| w.from.to_string()))
        .bind(m.window.map(|w| w.to.to_string()))
        .bind(m.status.as_str())
        .bind(micros(m.created_at))
        .bind(micros(m.updated_at))
        .execute(&self.writer)
        .await
        .map(drop)
        .map_err(err)
    }

    async fn mailing(&self, id: MailingId) -> Result<Option<Mailing>, StoreError> {
        let row = sqlx::query("SELECT * FROM mailings WHERE id = ?")
            .bind(id.0)
            .fetch_optional(&self.reader)
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
            "SELECT * FROM mailings WHERE {} AND {} ORDER BY id LIMIT ?3",
            of_status(1, status.is_some()),
            after_id(2, after.is_some()),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(status.map(MailingStatus::as_str))
            .bind(after.map(|a| a.0))
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(err)?;
        rows.iter().map(decode::mailing).collect()
    }

    async fn update_mailing(&self, m: &Mailing, expected: MailingStatus, now: DateTime<Utc>) -> Result<(), StoreError> {
        let (codes, tags) = campaign::filter_parts(&m.filter);
        let mut tx = self.writer.begin().await.map_err(err)?;
        let done = sqlx::query(
            "UPDATE mailings SET start_at = ?2, end_at = ?3, text = ?4, operator_codes = ?5, tags = ?6, \
             window_from = ?7, window_to = ?8, status = ?9, updated_at = ?10 WHERE id = ?1 AND status = ?11",
        )
        .bind(m.id.0)
        .bind(micros(m.start_at))
        .bind(micros(m.end_at))
        .bind(m.text.as_str())
        .bind(codes)
        .bind(tags)
        .bind(m.window.map(|w| w.from.to_string()))
        .bind(m.window.map(|w| w.to.to_string()))
        .bind(m.status.as_str())
        .bind(micros(m.updated_at))
        .bind(expected.as_str())
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        if done.rows_affected() == 0 {
            return Err(error::unchanged(stored_status(&mut tx, m.id).await?.is_some(), Constraint::MailingStatus));
        }
        if expected == MailingStatus::Running {
            let expired: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM deliveries \
                 WHERE source_id = ?1 AND kind = ?2 AND status = 'pending' AND next_attempt_at >= ?3",
            )
            .bind(m.id.0)
            .bind(MESSAGE_KIND)
            .bind(micros(m.end_at))
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
            let tally = Tally { expired: expired.max(0) as u64, ..Tally::default() };
            add_to_timeline(&mut tx, &Tallies::of(m.id, tally), now).await?;
            // SET expressions all read the row as it was, so `status = 'pending'` is the old status.
            sqlx::query(
                "UPDATE deliveries SET deadline = ?2, updated_at = ?3, \
                 status = CASE WHEN status = 'pending' AND next_attempt_at >= ?2 THEN 'expired' ELSE status END, \
                 last_error = CASE WHEN status = 'pending' AND next_attempt_at >= ?2 THEN ?5 ELSE last_error END, \
                 payload = CASE WHEN status = 'pending' THEN json_set(payload, '$.text', ?4) ELSE payload END \
                 WHERE source_id = ?1 AND kind = ?6 AND status IN ('pending', 'sending')",
            )
            .bind(m.id.0)
            .bind(micros(m.end_at))
            .bind(micros(now))
            .bind(m.text.as_str())
            .bind(ENDS_BEFORE_ATTEMPT)
            .bind(MESSAGE_KIND)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
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
        let mut tx = self.writer.begin().await.map_err(err)?;
        let started = sqlx::query(
            "UPDATE mailings SET status = 'running', updated_at = ?2, materializing = 1, materialized_through = NULL, \
             materialize_high = (SELECT id FROM clients ORDER BY id DESC LIMIT 1) \
             WHERE id = ?1 AND status = 'scheduled' RETURNING id",
        )
        .bind(id.0)
        .bind(micros(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        if started.is_none() {
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
        let mut tx = self.writer.begin().await.map_err(err)?;
        let held: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM mailings WHERE id = ?1 AND status = 'running' AND materializing")
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
        let rows = sqlx::query("SELECT * FROM mailings WHERE materializing AND status = 'running' ORDER BY id LIMIT ?")
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(err)?;
        rows.iter().map(decode::mailing).collect()
    }

    async fn cancel_mailing(&self, id: MailingId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(err)?;
        let done = sqlx::query(
            "UPDATE mailings SET status = 'cancelled', updated_at = ?2 \
             WHERE id = ?1 AND status IN ('scheduled', 'running')",
        )
        .bind(id.0)
        .bind(micros(now))
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
            "UPDATE deliveries SET status = 'cancelled', updated_at = ?2 \
             WHERE source_id = ?1 AND kind = ?3 AND status = 'pending'",
        )
        .bind(id.0)
        .bind(micros(now))
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
            "SELECT id FROM mailings WHERE status = 'scheduled' AND start_at <= ? ORDER BY start_at, id LIMIT ?",
        )
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        Ok(ids.into_iter().map(MailingId).collect())
    }

    async fn finish_mailings(&self, now: DateTime<Utc>) -> Result<Vec<MailingId>, StoreError> {
        let mut ids: Vec<Uuid> =
            sqlx::query_scalar(FINISH_ALL).bind(micros(now)).fetch_all(&self.writer).await.map_err(err)?;
        ids.sort_unstable();
        Ok(ids.into_iter().map(MailingId).collect())
    }

    async fn message_counts(&self, mailings: &[MailingId]) -> Result<HashMap<MailingId, MessageCounts>, StoreError> {
        // From the counters and the messages being sent now, never a count of all rows.
        let ids =
            serde_json::Value::from(mailings.iter().map(|m| m.0.simple().to_string()).collect::<Vec<_>>()).to_string();
        // One statement, so the counters and the messages being sent are read in one snapshot.
        let sql = format!(
            "SELECT t.mailing_id, {}, (SELECT count(*) FROM deliveries d \
               WHERE d.source_id = t.mailing_id AND d.status = 'sending') AS sending \
             FROM mailing_timeline t WHERE t.mailing_id IN (SELECT unhex(value) FROM json_each(?)) GROUP BY t.mailing_id",
            timeline::sums()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&ids).fetch_all(&self.reader).await.map_err(err)?;
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
            "SELECT * FROM deliveries WHERE source_id = ?1 AND {} AND {} ORDER BY id LIMIT ?4",
            of_status(2, status.is_some()),
            after_id(3, after.is_some()),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(mailing.0)
            .bind(status.map(DeliveryStatus::as_str))
            .bind(after.map(|a| a.0))
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
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
        let of_mailing = if mailing.is_some() { "mailing_id = ?1" } else { "?1 IS NULL" };
        let sql = timeline::by_bucket_sql(of_mailing, |n| format!("?{n}"));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(mailing.map(|m| m.0))
            .bind(width.max(1))
            .bind(from)
            .bind(to)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(err)?;
        rows.iter().map(|row| Ok((row.try_get("at").map_err(err)?, timeline::tally(row)?))).collect()
    }

    async fn mailing_tallies(&self, from: i64, to: i64, limit: u32) -> Result<Vec<(MailingId, Tally)>, StoreError> {
        let sql = timeline::by_mailing_sql(|n| format!("?{n}"));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(from)
            .bind(to)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(err)?;
        rows.iter().map(|row| Ok((MailingId(row.try_get("mailing_id").map_err(err)?), timeline::tally(row)?))).collect()
    }
}
