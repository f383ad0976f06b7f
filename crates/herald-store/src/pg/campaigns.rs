//! PostgreSQL: what it does its own way for campaigns: clients imported in one statement over
//! arrays, and a started mailing's messages made in one `INSERT … SELECT` over the clients, with
//! ids made in SQL (`herald_uuidv7`, from the migration), so a chunk of a mailing to a million
//! clients is one statement and no round trip per client; what a change cancels or expires is
//! counted by the statement that changes it (the other campaign queries are in
//! [`crate::sql::campaigns`]).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use herald_core::{
    campaign::{Client, ClientId, MESSAGE_KIND, Mailing},
    store::StoreError,
    timeline::Tally,
};
use sqlx::{Postgres, Row as _, Transaction, postgres::PgRow};
use uuid::Uuid;

use super::{PgStore, err};
use crate::{
    campaign::{self, PlanParts, WINDOW_AFTER_END},
    sql::{
        Query,
        campaigns::{CampaignWrites, Chunk},
    },
    timeline::Tallies,
};

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

impl CampaignWrites for PgStore {
    /// One statement, so it is atomic; a phone stored already (or by a racing insert) is skipped.
    async fn import_clients(&self, clients: &[Client]) -> Result<Vec<usize>, StoreError> {
        let (tried, repeats) = campaign::first_of_each_phone(clients);
        if tried.is_empty() {
            return Ok(repeats);
        }
        let column = |f: fn(&Client) -> String| tried.iter().map(|&i| f(&clients[i])).collect::<Vec<_>>();
        let ids: Vec<Uuid> = tried.iter().map(|&i| clients[i].id.0).collect();
        let times = |f: fn(&Client) -> DateTime<Utc>| tried.iter().map(|&i| f(&clients[i])).collect::<Vec<_>>();
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

    /// The statement counts them.
    async fn count_cancelled(
        tx: &mut Transaction<'_, Postgres>,
        cancel: Query<'_, Self>,
        _client: ClientId,
    ) -> Result<Vec<PgRow>, StoreError> {
        cancel.fetch_all(&mut **tx).await.map_err(err)
    }

    /// The statement counts them.
    async fn count_expired(
        tx: &mut Transaction<'_, Postgres>,
        moving: Query<'_, Self>,
        _m: &Mailing,
    ) -> Result<u64, StoreError> {
        let expired: i64 = moving.fetch_one(&mut **tx).await.map_err(err)?.try_get(0).map_err(err)?;
        Ok(expired.max(0) as u64)
    }

    /// The timeline counts what the statement made, even none.
    async fn make_messages(tx: &mut Transaction<'_, Postgres>, chunk: &Chunk<'_>) -> Result<u64, StoreError> {
        let Chunk { mailing: id, plan, now, after, upto } = *chunk;
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
            .bind(after)
            .bind(upto)
            .fetch_one(&mut **tx)
            .await
            .map_err(err)?;
        let count = |name: &str| made.try_get::<i64, _>(name).map(|n| n.max(0) as u64).map_err(err);
        let created = count("created")?;
        let tally = Tally { created, expired: count("expired")?, ..Tally::default() };
        Self::add_to_timeline(tx, &Tallies::of(id, tally), now).await?;
        Ok(created)
    }
}
