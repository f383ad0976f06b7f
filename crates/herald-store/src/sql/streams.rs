//! Streams (the outbox read by stream and offset) and session cursors, in both adapters.
//! Advancing a batch of cursors, which acknowledges the notices they reached, is the adapter's
//! own (see [`CursorBatches::advance_session_cursors`]).

use chrono::{DateTime, Utc};
use herald_core::{notice::Acknowledged, store::StoreError, stream::SessionCursor};

use super::{Adapter, Sql};

/// What each adapter does its own way for session cursors.
pub(crate) trait CursorBatches: Adapter {
    /// Advances `cursors` (at least one), each to the highest of its offsets, and acknowledges
    /// the pending notices whose in-app event a cursor reached, cancelling what they had to come.
    async fn advance_session_cursors(
        &self,
        cursors: &[SessionCursor],
        now: DateTime<Utc>,
    ) -> Result<Vec<Acknowledged>, StoreError>;
}

/// The epoch, a stream's head and its oldest retained offset, in one statement: one snapshot, so
/// the head and the oldest offset agree.
pub(crate) const STREAM_HEAD: &str = "SELECT (SELECT value FROM store_meta WHERE key = 'epoch') AS epoch, \
     COALESCE((SELECT last_offset FROM channel_offsets WHERE channel = $1), 0) AS last_offset, \
     (SELECT min(channel_offset) FROM outbox WHERE channel = $1) AS first_offset";

pub(crate) const READ_STREAM: &str =
    "SELECT * FROM outbox WHERE channel = $1 AND channel_offset > $2 ORDER BY channel_offset LIMIT $3";

pub(crate) const SESSION_CURSOR: &str =
    "SELECT acked FROM session_cursors WHERE user_id = $1 AND session_id = $2 AND channel = $3";

pub(crate) const SET_CURSOR: &str = "INSERT INTO session_cursors (user_id, session_id, channel, acked, updated_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, session_id, channel) \
     DO UPDATE SET acked = excluded.acked, updated_at = excluded.updated_at";

pub(crate) static EXPIRE_CURSORS: Sql = Sql::new(|d| {
    format!(
        "DELETE FROM session_cursors WHERE {row} IN (SELECT {row} FROM session_cursors WHERE updated_at < $1 LIMIT $2)",
        row = d.row_id()
    )
});

pub(crate) const TRIM_STREAMS: &str = "DELETE FROM outbox WHERE seq IN (SELECT o.seq FROM outbox o \
     JOIN channel_offsets c ON c.channel = o.channel \
     WHERE o.published_at IS NOT NULL AND o.channel_offset <= c.last_offset - $1 LIMIT $2)";

/// Implements `StreamStore` for an adapter (see [`crate::sql`]).
macro_rules! stream_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use herald_core::{
                change::OutboxEvent,
                notice::Acknowledged,
                store::{StoreError, StreamStore},
                stream::{SessionCursor, SessionId, StreamHead, StreamName},
                user::UserId,
            };
            use sqlx::Row as _;
            use $crate::{
                columns::Stamp,
                decode,
                sql::{Adapter, streams::*},
            };

            #[async_trait]
            impl StreamStore for $store {
                async fn stream_head(&self, stream: StreamName) -> Result<StreamHead, StoreError> {
                    let row = sqlx::query(STREAM_HEAD)
                        .bind(stream.to_string())
                        .fetch_one(self.reader())
                        .await
                        .map_err(Self::err)?;
                    let offset: i64 = row.try_get("last_offset").map_err(Self::err)?;
                    let first: Option<i64> = row.try_get("first_offset").map_err(Self::err)?;
                    let epoch = row.try_get("epoch").map_err(Self::err)?;
                    Ok(StreamHead { epoch, offset, first: first.unwrap_or(offset + 1) })
                }

                async fn read_stream(
                    &self,
                    stream: StreamName,
                    after: i64,
                    limit: u32,
                ) -> Result<Vec<OutboxEvent>, StoreError> {
                    let rows = sqlx::query(READ_STREAM)
                        .bind(stream.to_string())
                        .bind(after)
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    rows.iter().map(decode::outbox_event).collect()
                }

                async fn session_cursor(
                    &self,
                    user: UserId,
                    session: &SessionId,
                    stream: StreamName,
                ) -> Result<Option<i64>, StoreError> {
                    sqlx::query_scalar(SESSION_CURSOR)
                        .bind(user.0)
                        .bind(session.as_str())
                        .bind(stream.to_string())
                        .fetch_optional(self.reader())
                        .await
                        .map_err(Self::err)
                }

                async fn set_cursor(&self, cursor: &SessionCursor, now: DateTime<Utc>) -> Result<(), StoreError> {
                    sqlx::query(SET_CURSOR)
                        .bind(cursor.user.0)
                        .bind(cursor.session.as_str())
                        .bind(cursor.stream.to_string())
                        .bind(cursor.offset)
                        .bind(Stamp(now))
                        .execute(self.writer())
                        .await
                        .map(drop)
                        .map_err(Self::err)
                }

                async fn advance_cursors(
                    &self,
                    cursors: &[SessionCursor],
                    now: DateTime<Utc>,
                ) -> Result<Vec<Acknowledged>, StoreError> {
                    if cursors.is_empty() {
                        return Ok(Vec::new());
                    }
                    self.advance_session_cursors(cursors, now).await
                }

                async fn expire_cursors(&self, idle_before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
                    self.delete_before(EXPIRE_CURSORS.text(Self::DIALECT), idle_before, limit).await
                }

                async fn trim_streams(&self, keep: u32, limit: u32) -> Result<u64, StoreError> {
                    let done = sqlx::query(TRIM_STREAMS)
                        .bind(i64::from(keep))
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
pub(crate) use stream_store;
