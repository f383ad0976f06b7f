//! SQLite: the outbox and leases. One writer at a time makes `seq` commit order, so no visibility
//! horizon is needed; the relay in this process is woken through a `Notify`.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    change::{ChangeEvent, OutboxEvent, Unpublished},
    quarantine::Worker,
    store::{OutboxStore, StoreError},
};
use sqlx::{Sqlite, Transaction};

use super::{SqliteStore, err, from_micros, micros};
use crate::decode;

/// Writes events with their channel offsets, inside the caller's transaction. Each channel's
/// counter is bumped once for all its events, channels in name order: two transactions writing to
/// the same channels lock them in the same order, so they queue instead of deadlocking. Within a
/// channel the events keep their order.
pub(super) async fn insert_events(tx: &mut Transaction<'_, Sqlite>, events: &[ChangeEvent]) -> Result<(), StoreError> {
    let mut by_channel: BTreeMap<&str, Vec<&ChangeEvent>> = BTreeMap::new();
    for e in events {
        by_channel.entry(e.channel.as_str()).or_default().push(e);
    }
    for (channel, events) in by_channel {
        let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
        let last: i64 = sqlx::query_scalar(
            "INSERT INTO channel_offsets (channel, last_offset) VALUES (?1, ?2) \
             ON CONFLICT (channel) DO UPDATE SET last_offset = last_offset + ?2 RETURNING last_offset",
        )
        .bind(channel)
        .bind(count)
        .fetch_one(&mut **tx)
        .await
        .map_err(err)?;
        for (offset, e) in (last - count + 1..).zip(events) {
            sqlx::query(
                "INSERT INTO outbox (id, kind, channel, channel_offset, payload, trace_context, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(e.id)
            .bind(&e.kind)
            .bind(&e.channel)
            .bind(offset)
            .bind(e.payload.to_string())
            .bind(&e.trace_context)
            .bind(micros(e.created_at))
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
    }
    Ok(())
}

fn seq_list(seqs: &[i64]) -> Result<String, StoreError> {
    serde_json::to_string(seqs).map_err(|e| StoreError::Other(Box::new(e)))
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn unpublished_events(&self, limit: u32) -> Result<Unpublished, StoreError> {
        let held =
            crate::quarantine::held_now([Worker::Relay; 2], Utc::now()).fetch_all(&self.reader).await.map_err(err)?;
        let rows = sqlx::query(
            "SELECT * FROM outbox WHERE published_at IS NULL \
             AND channel NOT IN (SELECT value FROM json_each(?2)) ORDER BY seq LIMIT ?1",
        )
        .bind(i64::from(limit))
        .bind(serde_json::to_string(&held).map_err(|e| StoreError::Other(Box::new(e)))?)
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        Ok(crate::unreadable::unpublished(&rows))
    }

    async fn append_events(&self, events: &[ChangeEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await.map_err(err)?;
        insert_events(&mut tx, events).await?;
        self.commit(tx).await
    }

    async fn mark_published(&self, seqs: &[i64], at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET published_at = ? WHERE seq IN (SELECT value FROM json_each(?))")
            .bind(micros(at))
            .bind(seq_list(seqs)?)
            .execute(&self.writer)
            .await
            .map(drop)
            .map_err(err)
    }

    async fn prune_published(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM outbox WHERE seq IN \
             (SELECT seq FROM outbox WHERE published_at IS NOT NULL AND published_at < ? ORDER BY seq LIMIT ?)",
        )
        .bind(micros(before))
        .bind(i64::from(limit))
        .execute(&self.writer)
        .await
        .map_err(err)?;
        Ok(done.rows_affected())
    }

    async fn oldest_unpublished(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT created_at FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT 1")
                .fetch_optional(&self.reader)
                .await
                .map_err(err)?;
        at.map(from_micros).transpose()
    }

    async fn wait_for_outbox(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.outbox_signal.notified()).await;
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Utc::now();
        let expires = now + chrono::Duration::from_std(ttl).map_err(|e| StoreError::Other(Box::new(e)))?;
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < ?4",
        )
        .bind(name)
        .bind(holder)
        .bind(micros(expires))
        .bind(micros(now))
        .execute(&self.writer)
        .await
        .map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE name = ? AND holder = ?")
            .bind(name)
            .bind(holder)
            .execute(&self.writer)
            .await
            .map(drop)
            .map_err(err)
    }

    async fn read_outbox(&self, after_seq: i64, limit: u32) -> Result<Vec<OutboxEvent>, StoreError> {
        let rows = sqlx::query("SELECT * FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(err)?;
        rows.iter().map(decode::outbox_event).collect()
    }
}
