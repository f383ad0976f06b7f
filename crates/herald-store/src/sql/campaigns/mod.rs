//! Clients, mailings and their messages, in both adapters: the `CampaignStore` impl is here, the
//! client bodies in [`clients`]. A started mailing's messages are made in chunks ([`materialize`]),
//! each the adapter's own way (see [`CampaignWrites::make_messages`]).

pub(crate) mod clients;
pub(crate) mod materialize;

pub(crate) use self::materialize::Chunk;
use super::{Adapter, Dialect, Query, Sql};
use crate::timeline;
use herald_core::{
    campaign::{Client, ClientId, Mailing},
    store::StoreError,
};

/// What each adapter does its own way for campaigns: PostgreSQL writes many rows in one
/// statement over arrays and counts what a statement changes as it changes it; SQLite writes
/// rows in chunks and counts before it changes (its one writer keeps the rows as they are).
pub(crate) trait CampaignWrites: Adapter {
    /// Stores a batch of clients, skipping a phone stored already (or by a racing insert) and the
    /// repeats of an earlier phone of the batch: the indexes of `clients` skipped, in order.
    async fn import_clients(&self, clients: &[Client]) -> Result<Vec<usize>, StoreError>;

    /// Runs `cancel` (a [`clients::CANCEL_CLIENT_MESSAGES`] with its parameters bound) in `tx`, and
    /// answers how many of deleted client `client`'s messages it cancelled of each mailing, as
    /// rows of `source_id` and `n` (PostgreSQL: the statement's own; SQLite counts them first).
    async fn count_cancelled(
        tx: &mut sqlx::Transaction<'_, Self::Db>,
        cancel: Query<'_, Self>,
        client: ClientId,
    ) -> Result<Vec<<Self::Db as sqlx::Database>::Row>, StoreError>;

    /// Runs `moving` (a [`MOVE_LIVE_MESSAGES`] with its parameters bound) in `tx`, and answers
    /// how many of running mailing `m`'s messages it stored expired (PostgreSQL: the statement
    /// counts them; SQLite counts them first).
    async fn count_expired(
        tx: &mut sqlx::Transaction<'_, Self::Db>,
        moving: Query<'_, Self>,
        m: &Mailing,
    ) -> Result<u64, StoreError>;

    /// Makes in `tx` the messages of a chunk of a started mailing, and counts them in the
    /// mailing's timeline: how many it made.
    async fn make_messages(tx: &mut sqlx::Transaction<'_, Self::Db>, chunk: &Chunk<'_>) -> Result<u64, StoreError>;
}

/// `id > $n` when a page starts after an id, else a condition on `$n` that always holds: a plain
/// range or none, where `$n IS NULL OR id > $n` would keep a generic plan off the index.
pub(crate) fn after_id(n: u8, given: bool) -> String {
    if given { format!("id > ${n}") } else { format!("${n} IS NULL") }
}

/// `status = $n` when a list is of one status, else a condition on `$n` that always holds.
pub(crate) fn of_status(n: u8, given: bool) -> String {
    if given { format!("status = ${n}") } else { format!("${n} IS NULL") }
}

pub(crate) const MAILING_STATUS: &str = "SELECT status FROM mailings WHERE id = $1";

/// Marks `finished` every `running` mailing with no live message left.
pub(crate) const FINISH_ALL: &str = "UPDATE mailings AS m SET status = 'finished', updated_at = $1 \
     WHERE m.status = 'running' AND NOT m.materializing AND NOT EXISTS (SELECT 1 FROM deliveries d \
     WHERE d.source_id = m.id AND d.status IN ('pending', 'sending')) RETURNING id";

pub(crate) const CREATE_MAILING: &str = "INSERT INTO mailings (id, start_at, end_at, text, operator_codes, tags, \
     window_from, window_to, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

pub(crate) const MAILING: &str = "SELECT * FROM mailings WHERE id = $1";

pub(crate) const UPDATE_MAILING: &str = "UPDATE mailings SET start_at = $2, end_at = $3, text = $4, \
     operator_codes = $5, tags = $6, window_from = $7, window_to = $8, status = $9, updated_at = $10 \
     WHERE id = $1 AND status = $11";

/// Starts mailing `$1` at `$2` if it is scheduled, its messages to be made for the clients up to
/// the last one now. The row lock this takes in PostgreSQL makes a racing start wait, then find
/// the mailing running.
pub(crate) const START_MAILING: &str = "UPDATE mailings SET status = 'running', updated_at = $2, \
     materializing = true, materialized_through = NULL, \
     materialize_high = (SELECT id FROM clients ORDER BY id DESC LIMIT 1) WHERE id = $1 AND status = 'scheduled'";

/// The mailing, held in PostgreSQL until the chunk and its cursor commit: a racing scheduler
/// waits and takes the next.
pub(crate) static MATERIALIZING: Sql = Sql::new(|d| {
    format!("SELECT id FROM mailings WHERE id = $1 AND status = 'running' AND materializing{}", d.lock(" FOR UPDATE"))
});

/// Moves the live messages (kind `$6`) of mailing `$1` to its end `$2` and text `$4` at `$3`: a
/// pending one whose next attempt is not before the end is stored expired, for reason `$5` (SET
/// expressions all read the row as it was, so `status = 'pending'` is the old status).
/// PostgreSQL's statement answers how many it stored expired.
pub(crate) static MOVE_LIVE_MESSAGES: Sql = Sql::new(|d| {
    let moving = format!(
        "UPDATE deliveries SET deadline = $2, updated_at = $3, \
         status = CASE WHEN status = 'pending' AND next_attempt_at >= $2 THEN 'expired' ELSE status END, \
         last_error = CASE WHEN status = 'pending' AND next_attempt_at >= $2 THEN $5 ELSE last_error END, \
         payload = CASE WHEN status = 'pending' THEN {} ELSE payload END \
         WHERE source_id = $1 AND kind = $6 AND status IN ('pending', 'sending')",
        d.with_text("payload", 4)
    );
    match d {
        Dialect::Postgres => format!(
            "WITH moved AS ({moving} RETURNING status, last_error) \
             SELECT count(*) FROM moved WHERE status = 'expired' AND last_error = $5"
        ),
        Dialect::Sqlite => moving,
    }
});

pub(crate) const MATERIALIZING_MAILINGS: &str =
    "SELECT * FROM mailings WHERE materializing AND status = 'running' ORDER BY id LIMIT $1";

pub(crate) const CANCEL_MAILING: &str = "UPDATE mailings SET status = 'cancelled', updated_at = $2 \
     WHERE id = $1 AND status IN ('scheduled', 'running')";

pub(crate) const CANCEL_MESSAGES: &str = "UPDATE deliveries SET status = 'cancelled', updated_at = $2 \
     WHERE source_id = $1 AND kind = $3 AND status = 'pending'";

pub(crate) const DUE_MAILINGS: &str =
    "SELECT id FROM mailings WHERE status = 'scheduled' AND start_at <= $1 ORDER BY start_at, id LIMIT $2";

/// The counters of mailings `$1` (a few rows a mailing, whatever its size) and their messages
/// being sent now (an index range as short as the claims in flight), never a count of all rows;
/// one statement, so both are read in one snapshot.
pub(crate) static MESSAGE_COUNTS: Sql = Sql::new(|d| {
    format!(
        "SELECT t.mailing_id, {}, (SELECT count(*) FROM deliveries d \
           WHERE d.source_id = t.mailing_id AND d.status = 'sending') AS sending \
         FROM mailing_timeline t WHERE {} GROUP BY t.mailing_id",
        timeline::sums(),
        d.in_ids("t.mailing_id", 1),
    )
});

/// The messages of mailing `$1` after `$3`, at most `$4`, of status `$2` when given.
pub(crate) fn list_messages(status: bool, after: bool) -> String {
    format!(
        "SELECT * FROM deliveries WHERE source_id = $1 AND {} AND {} ORDER BY id LIMIT $4",
        of_status(2, status),
        after_id(3, after),
    )
}

/// Implements `CampaignStore` for an adapter (see [`crate::sql`]).
macro_rules! campaign_store {
    ($store:ty) => {
        $crate::sql::campaigns::clients::client_bodies!($store);
        $crate::sql::campaigns::materialize::chunk_bodies!($store);

        const _: () = {
            use std::collections::HashMap;

            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use herald_core::{
                campaign::{
                    Client, ClientFilter, ClientId, FirstAttempts, MESSAGE_KIND, Mailing, MailingId, MailingStatus,
                    MessageCounts,
                },
                delivery::{Delivery, DeliveryId, DeliveryStatus},
                store::{CampaignStore, Constraint, StoreError},
                timeline::Tally,
            };
            use sqlx::Row as _;
            use uuid::Uuid;
            use $crate::{
                campaign::{self, ENDS_BEFORE_ATTEMPT},
                columns::{Ids, Stamp},
                decode,
                error::{self, corrupt},
                sql::{Adapter, campaigns::*},
                timeline::{self, Tallies},
            };

            type Tx<'c> = sqlx::Transaction<'c, <$store as Adapter>::Db>;

            /// The stored status of a mailing, read inside `tx` (after a guarded update changed nothing).
            async fn stored_status(tx: &mut Tx<'_>, id: MailingId) -> Result<Option<MailingStatus>, StoreError> {
                let status: Option<String> = sqlx::query_scalar(MAILING_STATUS)
                    .bind(id.0)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(<$store>::err)?;
                status.map(|s| s.parse().map_err(|e| corrupt("mailing status", e))).transpose()
            }

            #[async_trait]
            impl CampaignStore for $store {
                async fn create_client(&self, c: &Client) -> Result<(), StoreError> {
                    self.store_client(c).await
                }

                async fn insert_clients(&self, clients: &[Client]) -> Result<Vec<usize>, StoreError> {
                    self.import_clients(clients).await
                }

                async fn client(&self, id: ClientId) -> Result<Option<Client>, StoreError> {
                    self.find_client(id).await
                }

                async fn list_clients(
                    &self,
                    filter: &ClientFilter,
                    after: Option<ClientId>,
                    limit: u32,
                ) -> Result<Vec<Client>, StoreError> {
                    self.clients_page(filter, after, limit).await
                }

                async fn update_client(&self, c: &Client) -> Result<(), StoreError> {
                    self.change_client(c).await
                }

                async fn delete_client(&self, id: ClientId, now: DateTime<Utc>) -> Result<bool, StoreError> {
                    self.remove_client(id, now).await
                }

                async fn create_mailing(&self, m: &Mailing) -> Result<(), StoreError> {
                    let (codes, tags) = campaign::filter_parts(&m.filter);
                    sqlx::query(CREATE_MAILING)
                        .bind(m.id.0)
                        .bind(Stamp(m.start_at))
                        .bind(Stamp(m.end_at))
                        .bind(m.text.as_str())
                        .bind(codes)
                        .bind(tags)
                        .bind(m.window.map(|w| w.start.to_string()))
                        .bind(m.window.map(|w| w.end.to_string()))
                        .bind(m.status.as_str())
                        .bind(Stamp(m.created_at))
                        .bind(Stamp(m.updated_at))
                        .execute(self.writer())
                        .await
                        .map(drop)
                        .map_err(Self::err)
                }

                async fn mailing(&self, id: MailingId) -> Result<Option<Mailing>, StoreError> {
                    let row = sqlx::query(MAILING).bind(id.0).fetch_optional(self.reader()).await.map_err(Self::err)?;
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
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    rows.iter().map(decode::mailing).collect()
                }

                async fn update_mailing(
                    &self,
                    m: &Mailing,
                    expected: MailingStatus,
                    now: DateTime<Utc>,
                ) -> Result<(), StoreError> {
                    let (codes, tags) = campaign::filter_parts(&m.filter);
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    let done = sqlx::query(UPDATE_MAILING)
                        .bind(m.id.0)
                        .bind(Stamp(m.start_at))
                        .bind(Stamp(m.end_at))
                        .bind(m.text.as_str())
                        .bind(codes)
                        .bind(tags)
                        .bind(m.window.map(|w| w.start.to_string()))
                        .bind(m.window.map(|w| w.end.to_string()))
                        .bind(m.status.as_str())
                        .bind(Stamp(m.updated_at))
                        .bind(expected.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    if done.rows_affected() == 0 {
                        let there = stored_status(&mut tx, m.id).await?.is_some();
                        return Err(error::unchanged(there, Constraint::MailingStatus));
                    }
                    if expected == MailingStatus::Running {
                        let moving = sqlx::query(MOVE_LIVE_MESSAGES.text(Self::DIALECT))
                            .bind(m.id.0)
                            .bind(Stamp(m.end_at))
                            .bind(Stamp(now))
                            .bind(m.text.as_str())
                            .bind(ENDS_BEFORE_ATTEMPT)
                            .bind(MESSAGE_KIND);
                        let expired = Self::count_expired(&mut tx, moving, m).await?;
                        let tally = Tally { expired, ..Tally::default() };
                        Self::add_to_timeline(&mut tx, &Tallies::of(m.id, tally), now).await?;
                    }
                    tx.commit().await.map_err(Self::err)
                }

                async fn start_mailing(
                    &self,
                    id: MailingId,
                    plan: &FirstAttempts,
                    now: DateTime<Utc>,
                    chunk: u32,
                ) -> Result<Option<u64>, StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    let started = sqlx::query(START_MAILING)
                        .bind(id.0)
                        .bind(Stamp(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
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
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    let held: Option<Uuid> = sqlx::query_scalar(MATERIALIZING.text(Self::DIALECT))
                        .bind(id.0)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    if held.is_none() {
                        return Ok(None);
                    }
                    self.commit_chunk(tx, id, plan, now, chunk).await
                }

                async fn materializing_mailings(&self, limit: u32) -> Result<Vec<Mailing>, StoreError> {
                    let rows = sqlx::query(MATERIALIZING_MAILINGS)
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    rows.iter().map(decode::mailing).collect()
                }

                async fn cancel_mailing(&self, id: MailingId, now: DateTime<Utc>) -> Result<u64, StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    let done = sqlx::query(CANCEL_MAILING)
                        .bind(id.0)
                        .bind(Stamp(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    if done.rows_affected() == 0 {
                        return match stored_status(&mut tx, id).await? {
                            None => Err(StoreError::NotFound),
                            Some(MailingStatus::Cancelled) => Ok(0),
                            Some(_) => Err(StoreError::conflict(Constraint::MailingStatus)),
                        };
                    }
                    let cancelled = sqlx::query(CANCEL_MESSAGES)
                        .bind(id.0)
                        .bind(Stamp(now))
                        .bind(MESSAGE_KIND)
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?
                        .rows_affected();
                    let tally = Tally { cancelled, ..Tally::default() };
                    Self::add_to_timeline(&mut tx, &Tallies::of(id, tally), now).await?;
                    tx.commit().await.map_err(Self::err)?;
                    Ok(cancelled)
                }

                async fn due_mailings(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<MailingId>, StoreError> {
                    let ids: Vec<Uuid> = sqlx::query_scalar(DUE_MAILINGS)
                        .bind(Stamp(now))
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    Ok(ids.into_iter().map(MailingId).collect())
                }

                async fn finish_mailings(&self, now: DateTime<Utc>) -> Result<Vec<MailingId>, StoreError> {
                    let mut ids: Vec<Uuid> = sqlx::query_scalar(FINISH_ALL)
                        .bind(Stamp(now))
                        .fetch_all(self.writer())
                        .await
                        .map_err(Self::err)?;
                    ids.sort_unstable();
                    Ok(ids.into_iter().map(MailingId).collect())
                }

                async fn message_counts(
                    &self,
                    mailings: &[MailingId],
                ) -> Result<HashMap<MailingId, MessageCounts>, StoreError> {
                    let rows = sqlx::query(MESSAGE_COUNTS.text(Self::DIALECT))
                        .bind(Ids(mailings.iter().map(|m| m.0).collect()))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    let mut counts: HashMap<MailingId, MessageCounts> =
                        mailings.iter().map(|&m| (m, MessageCounts::default())).collect();
                    for row in rows {
                        let mailing: Uuid = row.try_get("mailing_id").map_err(Self::err)?;
                        let now_sending = row.try_get::<i64, _>("sending").map_err(Self::err)?.max(0) as u64;
                        counts
                            .insert(MailingId(mailing), timeline::message_counts(&timeline::tally(&row)?, now_sending));
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
                    let rows = sqlx::query(sqlx::AssertSqlSafe(list_messages(status.is_some(), after.is_some())))
                        .bind(mailing.0)
                        .bind(status.map(DeliveryStatus::as_str))
                        .bind(after.map(|a| a.0))
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
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
                    // A plain key range or none: `<id> IS NULL OR mailing_id = <id>` would leave the key unused.
                    let of_mailing = if mailing.is_some() { "mailing_id = $1" } else { "$1 IS NULL" };
                    let rows = sqlx::query(sqlx::AssertSqlSafe(timeline::by_bucket_sql(of_mailing)))
                        .bind(mailing.map(|m| m.0))
                        .bind(width.max(1))
                        .bind(from)
                        .bind(to)
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    rows.iter().map(|row| Ok((row.try_get("at").map_err(Self::err)?, timeline::tally(row)?))).collect()
                }

                async fn mailing_tallies(
                    &self,
                    from: i64,
                    to: i64,
                    limit: u32,
                ) -> Result<Vec<(MailingId, Tally)>, StoreError> {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(timeline::BY_MAILING.as_str()))
                        .bind(from)
                        .bind(to)
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    rows.iter()
                        .map(|row| {
                            Ok((MailingId(row.try_get("mailing_id").map_err(Self::err)?), timeline::tally(row)?))
                        })
                        .collect()
                }
            }
        };
    };
}
pub(crate) use campaign_store;
