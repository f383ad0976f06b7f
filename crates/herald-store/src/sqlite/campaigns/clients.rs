//! SQLite: clients, the people a mailing goes to: one made, many imported at once (a phone
//! stored already is skipped), read, listed, changed and deleted (their pending messages cancelled).
//! The `CampaignStore` impl in `mod.rs` calls these.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use herald_core::{
    campaign::{Client, ClientFilter, ClientId, MESSAGE_KIND},
    store::StoreError,
    timeline::Tally,
};
use sqlx::Row as _;
use uuid::Uuid;

use super::after_id;
use crate::{
    campaign, decode,
    sqlite::{SqliteStore, err, micros},
    timeline::Tallies,
};

/// Clients per `INSERT`: seven bound values each keeps a statement well under SQLite's limit of
/// 32,766 variables.
const CLIENTS_PER_INSERT: usize = 1000;

pub(super) async fn create(store: &SqliteStore, c: &Client) -> Result<(), StoreError> {
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
    .execute(&store.writer)
    .await
    .map(drop)
    .map_err(err)
}

pub(super) async fn insert(store: &SqliteStore, clients: &[Client]) -> Result<Vec<usize>, StoreError> {
    let (tried, repeats) = campaign::first_of_each_phone(clients);
    let mut inserted = HashSet::with_capacity(tried.len());
    let mut tx = store.writer.begin().await.map_err(err)?;
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

pub(super) async fn find(store: &SqliteStore, id: ClientId) -> Result<Option<Client>, StoreError> {
    let row = sqlx::query("SELECT * FROM clients WHERE id = ?")
        .bind(id.0)
        .fetch_optional(&store.reader)
        .await
        .map_err(err)?;
    row.as_ref().map(decode::client).transpose()
}

pub(super) async fn list(
    store: &SqliteStore,
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
        .fetch_all(&store.reader)
        .await
        .map_err(err)?;
    rows.iter().map(decode::client).collect()
}

pub(super) async fn update(store: &SqliteStore, c: &Client) -> Result<(), StoreError> {
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
    .execute(&store.writer)
    .await
    .map_err(err)?;
    if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

pub(super) async fn delete(store: &SqliteStore, id: ClientId, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let mut tx = store.writer.begin().await.map_err(err)?;
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
    SqliteStore::add_to_timeline(&mut tx, &tallies, now).await?;
    tx.commit().await.map_err(err)?;
    Ok(true)
}
