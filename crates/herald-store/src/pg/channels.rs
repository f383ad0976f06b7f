//! PostgreSQL: channel streams (the outbox read by channel and offset) and session cursors.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    change::OutboxEvent,
    notice::Acknowledged,
    store::StoreError,
    store::StreamStore,
    stream::{SessionCursor, SessionId, StreamHead},
    user::UserId,
};
use sqlx::Row as _;
use uuid::Uuid;

use super::{PgStore, err};
use crate::decode;

#[async_trait]
impl StreamStore for PgStore {
    async fn stream_head(&self, channel: &str) -> Result<StreamHead, StoreError> {
        // One statement, one snapshot: the head and the oldest retained offset agree.
        let row = sqlx::query(
            "SELECT (SELECT value FROM store_meta WHERE key = 'epoch') AS epoch, \
                    COALESCE((SELECT last_offset FROM channel_offsets WHERE channel = $1), 0) AS last_offset, \
                    (SELECT min(channel_offset) FROM outbox WHERE channel = $1) AS first_offset",
        )
        .bind(channel)
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        let offset: i64 = row.try_get("last_offset").map_err(err)?;
        let first: Option<i64> = row.try_get("first_offset").map_err(err)?;
        Ok(StreamHead { epoch: row.try_get("epoch").map_err(err)?, offset, first: first.unwrap_or(offset + 1) })
    }

    async fn read_stream(&self, channel: &str, after: i64, limit: u32) -> Result<Vec<OutboxEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM outbox WHERE channel = $1 AND channel_offset > $2 ORDER BY channel_offset LIMIT $3",
        )
        .bind(channel)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(decode::outbox_event).collect()
    }

    async fn session_cursor(
        &self,
        user: UserId,
        session: &SessionId,
        channel: &str,
    ) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT acked FROM session_cursors WHERE user_id = $1 AND session_id = $2 AND channel = $3")
            .bind(user.0)
            .bind(session.as_str())
            .bind(channel)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)
    }

    async fn set_cursor(&self, cursor: &SessionCursor, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO session_cursors (user_id, session_id, channel, acked, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id, session_id, channel) DO UPDATE SET acked = excluded.acked, updated_at = excluded.updated_at",
        )
        .bind(cursor.user.0)
        .bind(cursor.session.as_str())
        .bind(&cursor.channel)
        .bind(cursor.offset)
        .bind(now)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(err)
    }

    async fn advance_cursors(
        &self,
        cursors: &[SessionCursor],
        now: DateTime<Utc>,
    ) -> Result<Vec<Acknowledged>, StoreError> {
        if cursors.is_empty() {
            return Ok(Vec::new());
        }
        // One statement for the batch, one row per cursor (the highest offset wins), sorted so
        // that concurrent batches lock rows in one order. The same statement acknowledges the
        // pending notices whose in-app event a cursor reached, and cancels what they had to come.
        let mut highest: BTreeMap<(Uuid, &str, &str), i64> = BTreeMap::new();
        for c in cursors {
            let offset = highest.entry((c.user.0, c.session.as_str(), c.channel.as_str())).or_insert(c.offset);
            *offset = (*offset).max(c.offset);
        }
        let users: Vec<Uuid> = highest.keys().map(|k| k.0).collect();
        let sessions: Vec<&str> = highest.keys().map(|k| k.1).collect();
        let channels: Vec<&str> = highest.keys().map(|k| k.2).collect();
        let offsets: Vec<i64> = highest.values().copied().collect();
        let rows = sqlx::query(concat!(
            "WITH moved AS (INSERT INTO session_cursors (user_id, session_id, channel, acked, updated_at) \
             SELECT u, s, c, o, $5 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[]) AS t(u, s, c, o) \
             ON CONFLICT (user_id, session_id, channel) DO UPDATE \
             SET acked = greatest(session_cursors.acked, excluded.acked), updated_at = excluded.updated_at \
             RETURNING channel, acked), \
             reached AS (SELECT channel, max(acked) AS acked FROM moved GROUP BY channel), \
             acked AS (UPDATE notices n SET status = 'acknowledged', acknowledged_at = $5 FROM reached r \
             WHERE n.status = 'pending' AND n.event_offset IS NOT NULL AND n.event_channel = r.channel \
             AND n.event_offset <= r.acked RETURNING n.id, n.created_at)",
            super::notices::cancel_rest!("$5")
        ))
        .bind(&users)
        .bind(&sessions)
        .bind(&channels)
        .bind(&offsets)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        super::notices::acknowledged(rows)
    }

    async fn expire_cursors(&self, idle_before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM session_cursors WHERE ctid IN \
             (SELECT ctid FROM session_cursors WHERE updated_at < $1 LIMIT $2)",
        )
        .bind(idle_before)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(done.rows_affected())
    }

    async fn trim_streams(&self, keep: u32, limit: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM outbox WHERE seq IN (SELECT o.seq FROM outbox o JOIN channel_offsets c ON c.channel = o.channel \
             WHERE o.published_at IS NOT NULL AND o.channel_offset <= c.last_offset - $1 LIMIT $2)",
        )
        .bind(i64::from(keep))
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(done.rows_affected())
    }
}
