//! SQLite: clients, mailings and their messages. A mailing starts with one `INSERT … SELECT` over
//! the clients; message ids are UUIDv7 built in SQL from the clock and `random()`. Lists travel
//! as JSON text (filters, plans, id sets) and are read back with `json_each`.
//! The `CampaignStore` impl is here; client bodies are in `clients`, the chunked start in `materialize`.

mod clients;
mod materialize;

use std::collections::HashMap;

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

use super::{SqliteStore, err, micros};
use crate::{
    campaign::{self, ENDS_BEFORE_ATTEMPT},
    decode,
    error::{self, corrupt},
    timeline::{self, Tallies},
};

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

#[async_trait]
impl CampaignStore for SqliteStore {
    async fn create_client(&self, c: &Client) -> Result<(), StoreError> {
        clients::create(self, c).await
    }

    async fn insert_clients(&self, clients: &[Client]) -> Result<Vec<usize>, StoreError> {
        clients::insert(self, clients).await
    }

    async fn client(&self, id: ClientId) -> Result<Option<Client>, StoreError> {
        clients::find(self, id).await
    }

    async fn list_clients(
        &self,
        filter: &ClientFilter,
        after: Option<ClientId>,
        limit: u32,
    ) -> Result<Vec<Client>, StoreError> {
        clients::list(self, filter, after, limit).await
    }

    async fn update_client(&self, c: &Client) -> Result<(), StoreError> {
        clients::update(self, c).await
    }

    async fn delete_client(&self, id: ClientId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        clients::delete(self, id, now).await
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
            SqliteStore::add_to_timeline(&mut tx, &Tallies::of(m.id, tally), now).await?;
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
        SqliteStore::add_to_timeline(&mut tx, &Tallies::of(id, Tally { cancelled, ..Tally::default() }), now).await?;
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
        let of_mailing = if mailing.is_some() { "mailing_id = $1" } else { "$1 IS NULL" };
        let sql = timeline::by_bucket_sql(of_mailing);
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
        let sql = timeline::BY_MAILING.as_str();
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
