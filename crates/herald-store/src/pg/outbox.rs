//! PostgreSQL: the outbox and leases.
//!
//! Order: a writer bumps its channel's row in `channel_offsets` in the same transaction as its
//! events, so writers of one channel take turns and, within a channel, `seq` order is commit
//! order. The relay reads the unpublished prefix whose transactions are all below the visibility
//! horizon (`txid` older than every transaction still running), so no later commit overtakes an
//! earlier, still-open one.
//!
//! Wake-ups: after a commit that wrote events, a coalesced `NOTIFY` is sent from outside the
//! writer's transaction (a `NOTIFY` inside it would serialise committing writers on the global
//! notification lock). It carries no payload; the relay reads the table. Polling covers lost ones.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    change::{ChangeEvent, OutboxEvent, Unpublished},
    quarantine::Worker,
    store::{OutboxStore, StoreError},
};
use sqlx::{Postgres, Transaction, types::Json};

use super::{PgStore, err};
use crate::decode;

/// The `LISTEN` channel the relay wakes on.
pub(super) const CHANNEL: &str = "herald_outbox";

/// A write and the events it makes, as one statement: `$write` (a data-modifying statement
/// ending in `RETURNING 1`, its parameters numbered from `$7`) becomes the CTE `w`; when it wrote
/// a row, each channel of the events (`$1`..`$6`, bound by [`Events::query`]) has its counter
/// bumped once for all its events, in channel-name order (two writers of the same channels lock
/// them in the same order, so they queue instead of deadlocking), and the events are inserted
/// with the offsets reserved, in their order within each channel. The counter rows' locks are
/// taken before any outbox row (and its `seq`) is made: the outbox insert reads the bump. The
/// statement answers how many rows `w` wrote.
macro_rules! with_events {
    ($write:literal) => {
        concat!(
            "WITH w AS (",
            $write,
            "), events AS (SELECT e.*, row_number() OVER (PARTITION BY e.channel ORDER BY e.ord) AS rank, \
             count(*) OVER (PARTITION BY e.channel) AS n \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::timestamptz[]) \
             WITH ORDINALITY AS e (id, channel, kind, payload, trace, created, ord) WHERE EXISTS (SELECT 1 FROM w)), \
             bumped AS (INSERT INTO channel_offsets (channel, last_offset) \
             SELECT DISTINCT ON (channel) channel, n FROM events ORDER BY channel \
             ON CONFLICT (channel) DO UPDATE SET last_offset = channel_offsets.last_offset + excluded.last_offset \
             RETURNING channel, last_offset), \
             appended AS (INSERT INTO outbox (id, kind, channel, channel_offset, payload, trace_context, created_at) \
             SELECT e.id, e.kind, e.channel, b.last_offset - e.n + e.rank, e.payload, e.trace, e.created \
             FROM events e JOIN bumped b USING (channel) ORDER BY e.channel, e.rank) \
             SELECT count(*) FROM w"
        )
    };
}
pub(super) use with_events;

/// A [`with_events!`] statement being built: its answer is the rows `w` wrote.
pub(super) type PgScalar<'q> = sqlx::query::QueryScalar<'q, Postgres, i64, sqlx::postgres::PgArguments>;

/// Events as the arrays a [`with_events!`] statement binds.
#[derive(Debug, Default)]
pub(super) struct Events<'a> {
    ids: Vec<uuid::Uuid>,
    channels: Vec<&'a str>,
    kinds: Vec<&'a str>,
    payloads: Vec<Json<&'a serde_json::Value>>,
    traces: Vec<Option<&'a str>>,
    created: Vec<DateTime<Utc>>,
}

impl<'a> Events<'a> {
    pub(super) fn new(events: impl IntoIterator<Item = &'a ChangeEvent>) -> Self {
        let mut arrays = Self::default();
        for e in events {
            arrays.ids.push(e.id);
            arrays.channels.push(e.channel.as_str());
            arrays.kinds.push(e.kind.as_str());
            arrays.payloads.push(Json(&e.payload));
            arrays.traces.push(e.trace_context.as_deref());
            arrays.created.push(e.created_at);
        }
        arrays
    }

    /// `statement` (made by [`with_events!`]) with the events bound as `$1`..`$6`; bind the
    /// write's own parameters (`$7`, …) after them and run it with [`PgStore::write_with_events`].
    pub(super) fn query<'q>(&'q self, statement: &'static str) -> PgScalar<'q> {
        sqlx::query_scalar(statement)
            .bind(&self.ids)
            .bind(&self.channels)
            .bind(&self.kinds)
            .bind(&self.payloads)
            .bind(&self.traces)
            .bind(&self.created)
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Writes events with their channel offsets inside the caller's transaction, in one statement.
pub(super) async fn insert_events(
    tx: &mut Transaction<'_, Postgres>,
    events: &[ChangeEvent],
) -> Result<(), StoreError> {
    let events = Events::new(events);
    events.query(with_events!("SELECT 1")).fetch_one(&mut **tx).await.map(drop).map_err(err)
}

impl PgStore {
    /// Runs `write` — a statement from [`Events::query`] with its own parameters bound — in its
    /// own implicit transaction (one round trip, whatever the channels), answers how many rows
    /// its write made, and wakes relays when it wrote events.
    pub(super) async fn write_with_events(&self, write: PgScalar<'_>, events: &Events<'_>) -> Result<u64, StoreError> {
        let written = write.fetch_one(&self.pool).await.map_err(err)?;
        if written > 0 && !events.is_empty() {
            self.wake_relays();
        }
        Ok(u64::try_from(written).unwrap_or(0))
    }

    /// Commits a write that stored events, then wakes relays.
    pub(super) async fn commit(&self, tx: Transaction<'_, Postgres>) -> Result<(), StoreError> {
        tx.commit().await.map_err(err)?;
        self.wake_relays();
        Ok(())
    }

    pub(super) fn wake_relays(&self) {
        self.outbox_wakeup.wake();
    }
}

#[async_trait]
impl OutboxStore for PgStore {
    /// The unpublished prefix, in `seq` order, up to the first row whose transaction is not yet
    /// below the horizon. Filtering rows one by one would not do: a writer that took its xid
    /// before another but the channel lock after it holds the later offset with the smaller xid,
    /// and could pass the horizon first.
    async fn unpublished_events(&self, limit: u32) -> Result<Unpublished, StoreError> {
        let held =
            crate::quarantine::held_now([Worker::Relay; 2], Utc::now()).fetch_all(&self.pool).await.map_err(err)?;
        let rows = sqlx::query(
            "WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin), \
             candidates AS (SELECT * FROM outbox WHERE published_at IS NULL AND NOT (channel = ANY($2)) \
                            ORDER BY seq LIMIT $1) \
             SELECT * FROM candidates WHERE seq < COALESCE( \
                 (SELECT min(c.seq) FROM candidates c, horizon h WHERE c.txid >= h.xmin), \
                 9223372036854775807) \
             ORDER BY seq",
        )
        .bind(i64::from(limit))
        .bind(&held)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        Ok(crate::unreadable::unpublished(&rows))
    }

    async fn append_events(&self, events: &[ChangeEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(err)?;
        insert_events(&mut tx, events).await?;
        self.commit(tx).await
    }

    /// Committed without waiting for the WAL to reach the disk (`synchronous_commit` off for this
    /// statement's own transaction): a mark lost in a crash only publishes its events again, which
    /// consumers drop by id, and the relay's pass does not wait for an fsync.
    async fn mark_published(&self, seqs: &[i64], at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "WITH lazy AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)) \
             UPDATE outbox SET published_at = $1 FROM lazy WHERE seq = ANY($2)",
        )
        .bind(at)
        .bind(seqs)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(err)
    }

    async fn prune_published(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM outbox WHERE seq IN \
             (SELECT seq FROM outbox WHERE published_at < $1 ORDER BY seq LIMIT $2)",
        )
        .bind(before)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(done.rows_affected())
    }

    async fn oldest_unpublished(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        sqlx::query_scalar("SELECT created_at FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(err)
    }

    async fn wait_for_outbox(&self, timeout: Duration) {
        self.outbox_wakeup.wait(timeout).await;
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let ttl = chrono::Duration::from_std(ttl).map_err(|e| StoreError::Other(Box::new(e)))?;
        // The database's clock decides, so relays on hosts with skewed clocks agree.
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, now() + $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < now()",
        )
        .bind(name)
        .bind(holder)
        .bind(ttl)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(err)
    }

    async fn read_outbox(&self, after_seq: i64, limit: u32) -> Result<Vec<OutboxEvent>, StoreError> {
        let rows = sqlx::query("SELECT * FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(decode::outbox_event).collect()
    }
}
