//! What the two adapters share: one copy of each query body where only the dialect differs. The
//! queries use `$N` placeholders (sqlx's SQLite binds them by number too), bind times as
//! [`Stamp`](crate::columns::Stamp) and lists as the other [`crate::columns`] types, and read rows
//! through [`crate::decode`]. Each store port's body is a macro here that both adapters invoke for
//! themselves (through [`shared_ports!`]), as [`quarantine`] does; its SQL differs only
//! where the [`Dialect`] says, and it runs on the [`Adapter`]'s pools.
//!
//! What truly behaves differently stays with each adapter, behind [`Adapter`] (pools, how events
//! get their offsets, wake-ups) and a trait beside the bodies of the port concerned (group
//! commit, statements over arrays, counting what a statement changes). This module imports
//! nothing from `pg` or `sqlite`; they build on it.

pub(crate) mod accounts;
pub(crate) mod calendar;
pub(crate) mod campaigns;
pub(crate) mod deliveries;
mod dialect;
pub(crate) mod escalate;
pub(crate) mod notices;
pub(crate) mod outbox;
pub(crate) mod quarantine;
pub(crate) mod rooms;
pub(crate) mod streams;
pub(crate) mod tasks;
pub(crate) mod users;
pub(crate) mod webhooks;

use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_core::{change::ChangeEvent, quarantine::Worker, store::StoreError};

pub(crate) use self::dialect::{Dialect, Sql, Write};
use crate::columns::Ids;

/// A statement being built for adapter `A`.
pub(crate) type Query<'q, A> =
    sqlx::query::Query<'q, <A as Adapter>::Db, <<A as Adapter>::Db as sqlx::Database>::Arguments>;

/// What each adapter gives the shared bodies: its dialect and pools, and what it does its own way
/// whatever the port (how events are stored and relays woken, how schedulers wake). What it does
/// its own way within one port is that port's trait beside its bodies (`TaskWrites`,
/// `DeliveryBatches`, `CursorBatches`, `NoticeWrites`, `CampaignWrites`).
pub(crate) trait Adapter: Sized + Sync {
    type Db: sqlx::Database;

    const DIALECT: Dialect;

    /// The pool writes run on (SQLite's single writer connection).
    fn writer(&self) -> &sqlx::Pool<Self::Db>;

    /// The pool reads run on: SQLite's read-only connections; where writers lock rows, the
    /// writers' pool.
    fn reader(&self) -> &sqlx::Pool<Self::Db> {
        self.writer()
    }

    /// A driver error as the port's error (SQLite names a violated constraint only in its message).
    fn err(e: sqlx::Error) -> StoreError;

    /// Stores `events` with their stream offsets inside `tx`.
    async fn insert_events(tx: &mut sqlx::Transaction<'_, Self::Db>, events: &[ChangeEvent]) -> Result<(), StoreError>;

    /// Commits a transaction that stored events, and wakes the relays waiting for them.
    async fn commit(&self, tx: sqlx::Transaction<'_, Self::Db>) -> Result<(), StoreError>;

    /// The statement that runs `write`: PostgreSQL's stores its events too (see [`Write`]).
    fn write_statement(write: &'static Write) -> &'static str;

    /// Runs `statement` (a [`Self::write_statement`] with the write's parameters bound) and,
    /// when it wrote a row, stores `events` with it (PostgreSQL: in the same statement, one round
    /// trip; SQLite: in the same transaction); answers how many rows it wrote.
    async fn run_write(&self, statement: Query<'_, Self>, events: &[ChangeEvent]) -> Result<u64, StoreError>;

    /// Runs `write`, its parameters bound by `bind`, and stores `events` with it (see
    /// [`Self::run_write`]).
    async fn write_with_events<'q, B>(
        &self,
        write: &'static Write,
        events: &[ChangeEvent],
        bind: B,
    ) -> Result<u64, StoreError>
    where
        B: FnOnce(Query<'q, Self>) -> Query<'q, Self> + Send,
    {
        self.run_write(bind(sqlx::query(Self::write_statement(write))), events).await
    }

    /// Waits for a committed event (a relay's wake-up), or `timeout`.
    async fn wait_for_events(&self, timeout: Duration);

    /// Wakes schedulers waiting for due deliveries.
    fn wake_schedulers(&self);

    /// Waits for deliveries that became due (a scheduler's wake-up), or `timeout`.
    async fn wait_for_due_deliveries(&self, timeout: Duration);
}

/// The ids of the records `workers` hold back at `now`, run on `reader` (see
/// [`quarantine::held_now`]).
pub(crate) async fn held_ids<'e, DB, E>(reader: E, workers: [Worker; 2], now: DateTime<Utc>) -> Result<Ids, sqlx::Error>
where
    DB: sqlx::Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> crate::columns::Stamp: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let held = quarantine::held_now::<DB>(workers, now).fetch_all(reader).await?;
    Ok(Ids(held.iter().filter_map(|r| r.parse().ok()).collect()))
}

/// Implements, for adapter `$store`, every store port written here.
macro_rules! shared_ports {
    ($store:ty) => {
        $crate::sql::shared_helpers!($store);
        $crate::sql::users::user_store!($store);
        $crate::sql::accounts::account_store!($store);
        $crate::sql::tasks::task_store!($store);
        $crate::sql::calendar::calendar_store!($store);
        $crate::sql::rooms::room_store!($store);
        $crate::sql::streams::stream_store!($store);
        $crate::sql::outbox::outbox_store!($store);
        $crate::sql::deliveries::delivery_store!($store);
        $crate::sql::notices::notice_store!($store);
        $crate::sql::escalate::escalation!($store);
        $crate::sql::campaigns::campaign_store!($store);
        $crate::sql::quarantine::quarantine_store!($store);
        $crate::sql::webhooks::webhook_store!($store);
    };
}
pub(crate) use shared_ports;

/// Implements, for adapter `$store`, what several ports' bodies share.
macro_rules! shared_helpers {
    ($store:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use herald_core::store::StoreError;
            use uuid::Uuid;
            use $crate::{columns::Stamp, sql::Adapter};

            impl $store {
                /// The row `statement` reads: the one of id `$1` that owner `$2` owns, if any.
                pub(crate) async fn owned_row(
                    &self,
                    statement: &'static str,
                    id: Uuid,
                    owner: Uuid,
                ) -> Result<Option<<<$store as Adapter>::Db as sqlx::Database>::Row>, StoreError> {
                    sqlx::query(statement).bind(id).bind(owner).fetch_optional(self.reader()).await.map_err(Self::err)
                }

                /// Runs `statement`, which deletes rows of a time before `$1`, at most `$2` of
                /// them: how many it deleted.
                pub(crate) async fn delete_before(
                    &self,
                    statement: &'static str,
                    before: DateTime<Utc>,
                    limit: u32,
                ) -> Result<u64, StoreError> {
                    let done = sqlx::query(statement)
                        .bind(Stamp(before))
                        .bind(i64::from(limit))
                        .execute(self.writer())
                        .await
                        .map_err(Self::err)?;
                    Ok(done.rows_affected())
                }
            }
        };
    };
}
pub(crate) use shared_helpers;
