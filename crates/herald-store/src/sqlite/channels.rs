//! SQLite: channel streams (the outbox read by channel and offset) and session cursors.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    change::OutboxEvent,
    store::StoreError,
    stream::{SessionCursor, SessionId, StreamHead, StreamStore},
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

    async fn advance_cursors(&self, cursors: &[SessionCursor], now: DateTime<Utc>) -> Result<(), StoreError> {
        if cursors.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await.map_err(err)?;
        for cursor in cursors {
            sqlx::query(
                "INSERT INTO session_cursors (user_id, session_id, channel, acked, updated_at) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (user_id, session_id, channel) DO UPDATE \
                 SET acked = max(session_cursors.acked, excluded.acked), updated_at = excluded.updated_at",
            )
            .bind(cursor.user.0)
            .bind(cursor.session.as_str())
            .bind(&cursor.channel)
            .bind(cursor.offset)
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)
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
