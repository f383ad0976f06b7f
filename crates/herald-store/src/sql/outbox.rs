//! The outbox and leases, in both adapters. How events get their offsets and how relays wake is
//! each adapter's own (see [`Adapter::insert_events`](super::Adapter::insert_events)); which
//! unpublished events a relay may take differs by dialect (see [`UNPUBLISHED`]).

use super::{Dialect, Sql};

/// The unpublished events in `seq` order, at most `$1`, but those of the streams `$2` (held
/// back).
///
/// PostgreSQL: the prefix up to the first row whose transaction is not yet below the visibility
/// horizon (`txid` older than every transaction still running), so no later commit overtakes an
/// earlier, still-open one. Filtering rows one by one would not do: a writer that took its xid
/// before another but the stream's counter lock after it holds the later offset with the smaller xid, and
/// could pass the horizon first. SQLite: one writer at a time makes `seq` commit order.
pub(crate) static UNPUBLISHED: Sql = Sql::new(|d| match d {
    Dialect::Postgres => format!(
        "WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin), \
         candidates AS (SELECT * FROM outbox WHERE published_at IS NULL AND NOT ({}) ORDER BY seq LIMIT $1) \
         SELECT * FROM candidates WHERE seq < COALESCE( \
             (SELECT min(c.seq) FROM candidates c, horizon h WHERE c.txid >= h.xmin), 9223372036854775807) \
         ORDER BY seq",
        d.in_list("channel", 2)
    ),
    Dialect::Sqlite => format!(
        "SELECT * FROM outbox WHERE published_at IS NULL AND NOT ({}) ORDER BY seq LIMIT $1",
        d.in_list("channel", 2)
    ),
});

/// Marks the events `$2` published at `$1`. PostgreSQL commits it without waiting for the WAL to
/// reach the disk (`synchronous_commit` off for this statement's own transaction): a mark lost in
/// a crash only publishes its events again, which consumers drop by id, and the relay's pass does
/// not wait for an fsync.
pub(crate) static MARK_PUBLISHED: Sql = Sql::new(|d| match d {
    Dialect::Postgres => format!(
        "WITH lazy AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)) \
         UPDATE outbox SET published_at = $1 FROM lazy WHERE {}",
        d.in_list("seq", 2)
    ),
    Dialect::Sqlite => format!("UPDATE outbox SET published_at = $1 WHERE {}", d.in_list("seq", 2)),
});

pub(crate) const PRUNE_PUBLISHED: &str =
    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE published_at < $1 ORDER BY seq LIMIT $2)";

pub(crate) const OLDEST_UNPUBLISHED: &str =
    "SELECT created_at FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT 1";

/// Takes lease `$1` for holder `$2` for `$3`, if it is free, lapsed or theirs already. The
/// database's clock decides (PostgreSQL's, so relays on hosts with skewed clocks agree).
pub(crate) static ACQUIRE_LEASE: Sql = Sql::new(|d| {
    format!(
        "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, {now} + $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE leases.holder = excluded.holder OR leases.expires_at < {now}",
        now = d.now(4)
    )
});

pub(crate) const RELEASE_LEASE: &str = "DELETE FROM leases WHERE name = $1 AND holder = $2";

pub(crate) const READ_OUTBOX: &str = "SELECT * FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2";

/// Implements `OutboxStore` for an adapter (see [`crate::sql`]).
macro_rules! outbox_store {
    ($store:ty) => {
        const _: () = {
            use std::time::Duration;

            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use herald_core::{
                change::{ChangeEvent, OutboxEvent, Unpublished},
                quarantine::Worker,
                store::{OutboxStore, StoreError},
            };
            use $crate::{
                columns::{Ints, Span, Stamp, Texts},
                decode,
                sql::{Adapter, outbox::*},
            };

            #[async_trait]
            impl OutboxStore for $store {
                async fn unpublished_events(&self, limit: u32) -> Result<Unpublished, StoreError> {
                    let held = $crate::sql::quarantine::held_now([Worker::Relay; 2], Utc::now())
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    let rows = sqlx::query(UNPUBLISHED.text(Self::DIALECT))
                        .bind(i64::from(limit))
                        .bind(Texts(held))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    Ok($crate::unreadable::unpublished(&rows))
                }

                async fn append_events(&self, events: &[ChangeEvent]) -> Result<(), StoreError> {
                    if events.is_empty() {
                        return Ok(());
                    }
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    Self::insert_events(&mut tx, events).await?;
                    self.commit(tx).await
                }

                async fn mark_published(&self, seqs: &[i64], at: DateTime<Utc>) -> Result<(), StoreError> {
                    sqlx::query(MARK_PUBLISHED.text(Self::DIALECT))
                        .bind(Stamp(at))
                        .bind(Ints(seqs.to_vec()))
                        .execute(self.writer())
                        .await
                        .map(drop)
                        .map_err(Self::err)
                }

                async fn prune_published(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
                    self.delete_before(PRUNE_PUBLISHED, before, limit).await
                }

                async fn oldest_unpublished(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
                    let at: Option<Stamp> = sqlx::query_scalar(OLDEST_UNPUBLISHED)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(Self::err)?;
                    Ok(at.map(Into::into))
                }

                async fn wait_for_outbox(&self, timeout: Duration) {
                    self.wait_for_events(timeout).await;
                }

                async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
                    let ttl = chrono::Duration::from_std(ttl).map_err(|e| StoreError::Other(Box::new(e)))?;
                    let mut query =
                        sqlx::query(ACQUIRE_LEASE.text(Self::DIALECT)).bind(name).bind(holder).bind(Span(ttl));
                    if Self::DIALECT.binds_now() {
                        query = query.bind(Stamp(Utc::now()));
                    }
                    let done = query.execute(self.writer()).await.map_err(Self::err)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
                    sqlx::query(RELEASE_LEASE)
                        .bind(name)
                        .bind(holder)
                        .execute(self.writer())
                        .await
                        .map(drop)
                        .map_err(Self::err)
                }

                async fn read_outbox(&self, after_seq: i64, limit: u32) -> Result<Vec<OutboxEvent>, StoreError> {
                    let rows = sqlx::query(READ_OUTBOX)
                        .bind(after_seq)
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    rows.iter().map(decode::outbox_event).collect()
                }
            }
        };
    };
}
pub(crate) use outbox_store;
