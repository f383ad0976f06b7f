//! SQLite: channel streams (the outbox read by channel and offset) and session cursors.

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

use super::{SqliteStore, err, micros};
use crate::decode;

#[async_trait]
impl StreamStore for SqliteStore {
    async fn stream_head(&self, channel: &str) -> Result<StreamHead, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT value FROM store_meta WHERE key = 'epoch') AS epoch, \
                    COALESCE((SELECT last_offset FROM channel_offsets WHERE channel = ?1), 0) AS last_offset, \
                    (SELECT min(channel_offset) FROM outbox WHERE channel = ?1) AS first_offset",
        )
        .bind(channel)
        .fetch_one(&self.reader)
        .await
        .map_err(err)?;
        let offset: i64 = row.try_get("last_offset").map_err(err)?;
        let first: Option<i64> = row.try_get("first_offset").map_err(err)?;
        Ok(StreamHead { epoch: row.try_get("epoch").map_err(err)?, offset, first: first.unwrap_or(offset + 1) })
    }

    async fn read_stream(&self, channel: &str, after: i64, limit: u32) -> Result<Vec<OutboxEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM outbox WHERE channel = ? AND channel_offset > ? ORDER BY channel_offset LIMIT ?",
        )
        .bind(channel)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
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
        sqlx::query_scalar("SELECT acked FROM session_cursors WHERE user_id = ? AND session_id = ? AND channel = ?")
            .bind(user.0)
            .bind(session.as_str())
            .bind(channel)
            .fetch_optional(&self.reader)
            .await
            .map_err(err)
    }

    async fn set_cursor(&self, cursor: &SessionCursor, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO session_cursors (user_id, session_id, channel, acked, updated_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (user_id, session_id, channel) DO UPDATE SET acked = excluded.acked, updated_at = excluded.updated_at",
        )
        .bind(cursor.user.0)
        .bind(cursor.session.as_str())
        .bind(&cursor.channel)
        .bind(cursor.offset)
        .bind(micros(now))
        .execute(&self.writer)
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
        let mut tx = self.writer.begin().await.map_err(err)?;
        let mut reached: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
        for cursor in cursors {
            let acked: i64 = sqlx::query_scalar(
                "INSERT INTO session_cursors (user_id, session_id, channel, acked, updated_at) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (user_id, session_id, channel) DO UPDATE \
                 SET acked = max(session_cursors.acked, excluded.acked), updated_at = excluded.updated_at \
                 RETURNING acked",
            )
            .bind(cursor.user.0)
            .bind(cursor.session.as_str())
            .bind(&cursor.channel)
            .bind(cursor.offset)
            .bind(micros(now))
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
            // Only a person's own stream carries notices.
            if cursor.channel.starts_with("user:") {
                let highest = reached.entry(cursor.channel.as_str()).or_insert(acked);
                *highest = (*highest).max(acked);
            }
        }
        let mut acknowledged = Vec::new();
        for (channel, offset) in reached {
            acknowledged.extend(super::notices::acknowledge_reached(&mut tx, channel, offset, now).await?);
        }
        tx.commit().await.map_err(err)?;
        Ok(acknowledged)
    }

    async fn expire_cursors(&self, idle_before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM session_cursors WHERE rowid IN \
             (SELECT rowid FROM session_cursors WHERE updated_at < ? LIMIT ?)",
        )
        .bind(micros(idle_before))
        .bind(i64::from(limit))
        .execute(&self.writer)
        .await
        .map_err(err)?;
        Ok(done.rows_affected())
    }

    async fn trim_streams(&self, keep: u32, limit: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM outbox WHERE seq IN (SELECT o.seq FROM outbox o JOIN channel_offsets c ON c.channel = o.channel \
             WHERE o.published_at IS NOT NULL AND o.channel_offset <= c.last_offset - ? LIMIT ?)",
        )
        .bind(i64::from(keep))
        .bind(i64::from(limit))
        .execute(&self.writer)
        .await
        .map_err(err)?;
        Ok(done.rows_affected())
    }
}
