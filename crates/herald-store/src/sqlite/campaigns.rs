//! SQLite: what it does its own way for campaigns: clients imported a chunk of rows per
//! statement, a started mailing's messages made in one `INSERT … SELECT` over the clients
//! (message ids are UUIDv7 built in SQL from the clock and `random()`; lists travel as JSON text
//! and are read back with `json_each`), and what a change cancels or expires counted before it
//! changes (SQLite's one writer keeps the rows as they are meanwhile). The other campaign queries
//! are in [`crate::sql::campaigns`].

use std::collections::HashSet;

use herald_core::{
    campaign::{Client, ClientId, MESSAGE_KIND, Mailing},
    store::StoreError,
    timeline::Tally,
};
use sqlx::{Row as _, Sqlite, Transaction, sqlite::SqliteRow};
use uuid::Uuid;

use super::{SqliteStore, err, values};
use crate::{
    campaign::{self, PlanParts, WINDOW_AFTER_END},
    columns::Stamp,
    sql::{
        Query,
        campaigns::{CampaignWrites, Chunk},
    },
    timeline::Tallies,
};

/// Clients per `INSERT`: seven bound values each keeps a statement well under SQLite's limit of
/// 32,766 variables.
const CLIENTS_PER_INSERT: usize = 1000;

/// Stores the plan (`$2`: `[[zone, micros], …]`) of mailing `$1` for [`CREATE_MESSAGES`] to join.
const STORE_PLAN: &str = "INSERT INTO mailing_start_plans (mailing_id, zone, at) \
    SELECT $1, value ->> 0, value ->> 1 FROM json_each($2)";

/// Creates a chunk of a started mailing's messages: one row for each client with an id in
/// `($10, $11]` that the filter (`$5`, `$6`: JSON arrays or
/// NULL) matches, its first attempt its zone's instant in the stored plan, else `$4`. The id is
/// a UUIDv7 laid out as PostgreSQL's `herald_uuidv7` lays it out: 48 bits of Unix milliseconds
/// (`$9`, of `now`, as `created_at`), version 7, a 32-bit counter (the row's place in the
/// statement) around the variant bits `10`, and 42 random bits; ids ascend as rows are written,
/// which keeps index inserts at the right edge. Answers the status of each message it made.
const CREATE_MESSAGES: &str = "INSERT INTO deliveries (id, kind, source_key, recipient, channel, payload, \
        source_id, recipient_id, status, attempts, next_attempt_at, deadline, last_error, created_at, updated_at) \
    SELECT unhex(printf('%012x7%03x%04x%012x', $9, (n.seq >> 20) & 4095, 32768 | ((n.seq >> 6) & 16383), \
            ((n.seq & 63) << 42) | (random() & 4398046511103))), \
        $2, 'mailing:' || $3 || ':client:' || n.uuid, n.phone, 'provider', \
        CASE WHEN m.window_from IS NULL \
            THEN json_object('phone', n.phone, 'text', m.text, 'mailing_id', $3, 'client_id', n.uuid) \
            ELSE json_object('phone', n.phone, 'text', m.text, 'mailing_id', $3, 'client_id', n.uuid, 'window', \
                json_object('from', m.window_from, 'to', m.window_to, 'tz', n.timezone)) END, \
        m.id, n.id, CASE WHEN n.at >= m.end_at THEN 'expired' ELSE 'pending' END, 0, n.at, m.end_at, \
        CASE WHEN n.at >= m.end_at THEN $7 END, $8, $8 \
    FROM mailings m, \
        (SELECT c.id, c.phone, c.timezone, coalesce(z.at, $4) AS at, row_number() OVER () AS seq, \
            lower(substr(hex(c.id), 1, 8) || '-' || substr(hex(c.id), 9, 4) || '-' || substr(hex(c.id), 13, 4) \
                || '-' || substr(hex(c.id), 17, 4) || '-' || substr(hex(c.id), 21)) AS uuid \
         FROM (SELECT id, phone, timezone FROM clients \
               WHERE ($5 IS NULL OR operator_code IN (SELECT value FROM json_each($5))) \
                 AND ($6 IS NULL OR tag IN (SELECT value FROM json_each($6))) \
                 AND id > $10 AND id <= $11) c \
         LEFT JOIN mailing_start_plans z ON z.mailing_id = $1 AND z.zone = c.timezone) n \
    WHERE m.id = $1 \
    RETURNING status";

impl CampaignWrites for SqliteStore {
    /// One transaction, a statement per chunk of clients.
    async fn import_clients(&self, clients: &[Client]) -> Result<Vec<usize>, StoreError> {
        let (tried, repeats) = campaign::first_of_each_phone(clients);
        let mut inserted = HashSet::with_capacity(tried.len());
        let mut tx = self.writer.begin().await.map_err(err)?;
        for chunk in tried.chunks(CLIENTS_PER_INSERT) {
            let rows = values(chunk.len(), 7);
            let sql = format!(
                "INSERT INTO clients (id, phone, operator_code, tag, timezone, created_at, updated_at) \
                 VALUES {rows} ON CONFLICT (phone) DO NOTHING RETURNING id"
            );
            // Only the number of placeholders varies; full chunks share one cached statement.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(chunk.len() == CLIENTS_PER_INSERT);
            for c in chunk.iter().map(|&i| &clients[i]) {
                query = Self::bind_client(query, c);
            }
            for row in query.fetch_all(&mut *tx).await.map_err(err)? {
                inserted.insert(row.try_get::<Uuid, _>(0).map_err(err)?);
            }
        }
        tx.commit().await.map_err(err)?;
        Ok(campaign::skipped(clients, repeats, &tried, &inserted))
    }

    /// Counted before they change.
    async fn count_cancelled(
        tx: &mut Transaction<'_, Sqlite>,
        cancel: Query<'_, Self>,
        client: ClientId,
    ) -> Result<Vec<SqliteRow>, StoreError> {
        let counts = sqlx::query(
            "SELECT source_id, count(*) AS n FROM deliveries \
             WHERE recipient_id = $1 AND kind = $2 AND status = 'pending' AND source_id IS NOT NULL GROUP BY source_id",
        )
        .bind(client.0)
        .bind(MESSAGE_KIND)
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?;
        cancel.execute(&mut **tx).await.map_err(err)?;
        Ok(counts)
    }

    /// Counted before they move.
    async fn count_expired(
        tx: &mut Transaction<'_, Sqlite>,
        moving: Query<'_, Self>,
        m: &Mailing,
    ) -> Result<u64, StoreError> {
        let expired: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM deliveries \
             WHERE source_id = $1 AND kind = $2 AND status = 'pending' AND next_attempt_at >= $3",
        )
        .bind(m.id.0)
        .bind(MESSAGE_KIND)
        .bind(Stamp(m.end_at))
        .fetch_one(&mut **tx)
        .await
        .map_err(err)?;
        moving.execute(&mut **tx).await.map_err(err)?;
        Ok(expired.max(0) as u64)
    }

    /// The plan is stored for the statement to join, and taken away after it; the timeline
    /// counts what the statement made, when it made any.
    async fn make_messages(tx: &mut Transaction<'_, Sqlite>, chunk: &Chunk<'_>) -> Result<u64, StoreError> {
        let Chunk { mailing: id, plan, now, after, upto } = *chunk;
        let row = sqlx::query("SELECT operator_codes, tags FROM mailings WHERE id = $1")
            .bind(id.0)
            .fetch_one(&mut **tx)
            .await
            .map_err(err)?;
        let codes: Option<String> = row.try_get("operator_codes").map_err(err)?;
        let tags: Option<String> = row.try_get("tags").map_err(err)?;
        let plan = PlanParts::of(plan, now);
        let zones: Vec<_> =
            plan.zones.iter().zip(&plan.ats).map(|(z, at)| serde_json::json!([z, at.timestamp_micros()])).collect();
        if !zones.is_empty() {
            sqlx::query(STORE_PLAN)
                .bind(id.0)
                .bind(serde_json::Value::from(zones).to_string())
                .execute(&mut **tx)
                .await
                .map_err(err)?;
        }
        // Each message's status, so the ones stored expired are counted without another scan.
        let statuses: Vec<String> = sqlx::query_scalar(CREATE_MESSAGES)
            .bind(id.0)
            .bind(MESSAGE_KIND)
            .bind(id.to_string())
            .bind(Stamp(plan.otherwise))
            .bind(codes)
            .bind(tags)
            .bind(WINDOW_AFTER_END)
            .bind(Stamp(now))
            .bind(now.timestamp_millis())
            .bind(after)
            .bind(upto)
            .fetch_all(&mut **tx)
            .await
            .map_err(err)?;
        let created = statuses.len() as u64;
        if created > 0 {
            let expired = statuses.iter().filter(|s| s.as_str() == "expired").count() as u64;
            Self::add_to_timeline(tx, &Tallies::of(id, Tally { created, expired, ..Tally::default() }), now).await?;
        }
        if !plan.zones.is_empty() {
            sqlx::query("DELETE FROM mailing_start_plans WHERE mailing_id = $1")
                .bind(id.0)
                .execute(&mut **tx)
                .await
                .map_err(err)?;
        }
        Ok(created)
    }
}
