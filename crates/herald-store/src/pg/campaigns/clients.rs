//! PostgreSQL: clients, the people a mailing goes to: one made, many imported at once (a phone
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
    pg::{PgStore, err},
    timeline::Tallies,
};

pub(super) async fn create(store: &PgStore, c: &Client) -> Result<(), StoreError> {
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
    .execute(&store.pool)
    .await
    .map(drop)
    .map_err(err)
}

pub(super) async fn insert(store: &PgStore, clients: &[Client]) -> Result<Vec<usize>, StoreError> {
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
    .fetch_all(&store.pool)
    .await
    .map_err(err)?
    .into_iter()
    .collect();
    Ok(campaign::skipped(clients, repeats, &tried, &inserted))
}

pub(super) async fn find(store: &PgStore, id: ClientId) -> Result<Option<Client>, StoreError> {
    let row =
        sqlx::query("SELECT * FROM clients WHERE id = $1").bind(id.0).fetch_optional(&store.pool).await.map_err(err)?;
    row.as_ref().map(decode::client).transpose()
}

pub(super) async fn list(
    store: &PgStore,
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
        .fetch_all(&store.pool)
        .await
        .map_err(err)?;
    rows.iter().map(decode::client).collect()
}

pub(super) async fn update(store: &PgStore, c: &Client) -> Result<(), StoreError> {
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
    .execute(&store.pool)
    .await
    .map_err(err)?;
    if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

pub(super) async fn delete(store: &PgStore, id: ClientId, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let mut tx = store.pool.begin().await.map_err(err)?;
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
    PgStore::add_to_timeline(&mut tx, &tallies, now).await?;
    tx.commit().await.map_err(err)?;
    Ok(true)
}
