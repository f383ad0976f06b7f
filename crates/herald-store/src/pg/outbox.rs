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

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    change::{ChangeEvent, OutboxEvent},
    store::{OutboxStore, StoreError},
};
use sqlx::{Postgres, Transaction, types::Json};

use super::{PgStore, err};
use crate::decode;

/// The `LISTEN` channel the relay wakes on.
pub(super) const CHANNEL: &str = "herald_outbox";

/// Writes events with their channel offsets, inside the caller's transaction: one statement per
/// channel, which bumps the channel's counter once for all its events and inserts them with the
/// offsets it reserved. Channels go in name order: two transactions writing to the same channels
/// lock them in the same order, so they queue instead of deadlocking. Within a channel the events
/// keep their order.
pub(super) async fn insert_events(
    tx: &mut Transaction<'_, Postgres>,
    events: &[ChangeEvent],
) -> Result<(), StoreError> {
    let mut by_channel: BTreeMap<&str, Vec<&ChangeEvent>> = BTreeMap::new();
    for e in events {
        by_channel.entry(e.channel.as_str()).or_default().push(e);
    }
    for (channel, events) in by_channel {
        let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
        let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        let payloads: Vec<Json<&serde_json::Value>> = events.iter().map(|e| Json(&e.payload)).collect();
        let traces: Vec<Option<&str>> = events.iter().map(|e| e.trace_context.as_deref()).collect();
        let created: Vec<DateTime<Utc>> = events.iter().map(|e| e.created_at).collect();
        // The counter row's lock is taken before any outbox row (and its `seq`) is made.
        sqlx::query(
            "WITH bumped AS (INSERT INTO channel_offsets (channel, last_offset) VALUES ($1, $2) \
             ON CONFLICT (channel) DO UPDATE SET last_offset = channel_offsets.last_offset + $2 RETURNING last_offset) \
             INSERT INTO outbox (id, kind, channel, channel_offset, payload, trace_context, created_at) \
             SELECT e.id, e.kind, $1, bumped.last_offset - $2 + e.ord, e.payload, e.trace, e.created \
             FROM bumped, unnest($3::uuid[], $4::text[], $5::jsonb[], $6::text[], $7::timestamptz[]) \
             WITH ORDINALITY AS e (id, kind, payload, trace, created, ord) ORDER BY e.ord",
        )
        .bind(channel)
        .bind(count)
        .bind(&ids)
        .bind(&kinds)
        .bind(&payloads)
        .bind(&traces)
        .bind(&created)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    }
    Ok(())
}

impl PgStore {
    /// Commits a write that stored events, then wakes relays.
    pub(super) async fn commit(&self, tx: Transaction<'_, Postgres>) -> Result<(), StoreError> {
        tx.commit().await.map_err(err)?;
        self.wake_relays();
        Ok(())
    }

    fn wake_relays(&self) {
        self.outbox_wakeup.wake();
    }
}

#[async_trait]
impl OutboxStore for PgStore {
    /// The unpublished prefix, in `seq` order, up to the first row whose transaction is not yet
    /// below the horizon. Filtering rows one by one would not do: a writer that took its xid
    /// before another but the channel lock after it holds the later offset with the smaller xid,
    /// and could pass the horizon first.
    async fn unpublished_events(&self, limit: u32) -> Result<Vec<OutboxEvent>, StoreError> {
        let rows = sqlx::query(
            "WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin), \
             candidates AS (SELECT * FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1) \
             SELECT * FROM candidates WHERE seq < COALESCE( \
                 (SELECT min(c.seq) FROM candidates c, horizon h WHERE c.txid >= h.xmin), \
                 9223372036854775807) \
             ORDER BY seq",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(decode::outbox_event).collect()
    }

    async fn mark_published(&self, seqs: &[i64], at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET published_at = $1 WHERE seq = ANY($2)")
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
