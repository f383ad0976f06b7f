//! The streams port: each stream's events in offset order, and each session's cursor in it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::store_error::StoreError;
use crate::{
    change::OutboxEvent,
    notice::Acknowledged,
    stream::{SessionCursor, SessionId, StreamHead, StreamName},
    user::UserId,
};

/// Streams and session cursors.
///
/// Contract: offsets of one stream are gap-free and, read in offset order, are commit order; a
/// reader that sees offset `n` sees every retained offset below it. Cursor writes are durable when
/// they return; [`StreamStore::advance_cursors`] never moves a cursor back.
#[async_trait]
pub trait StreamStore: Send + Sync {
    /// Where `stream` stands now.
    async fn stream_head(&self, stream: StreamName) -> Result<StreamHead, StoreError>;

    /// The stream's retained events after offset `after`, in offset order, at most `limit`.
    async fn read_stream(&self, stream: StreamName, after: i64, limit: u32) -> Result<Vec<OutboxEvent>, StoreError>;

    /// The session's cursor in `stream`, if it has one.
    async fn session_cursor(
        &self,
        user: UserId,
        session: &SessionId,
        stream: StreamName,
    ) -> Result<Option<i64>, StoreError>;

    /// Sets a cursor to exactly `cursor.offset` (a subscription's starting point), at `now`.
    async fn set_cursor(&self, cursor: &SessionCursor, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Moves each cursor forward to its offset (never back), creating missing ones, in one
    /// transaction, at `now`. In the same transaction it acknowledges every pending notice whose
    /// in-app event a cursor reached (see [`crate::store::NoticeStore`]), and returns them.
    async fn advance_cursors(
        &self,
        cursors: &[SessionCursor],
        now: DateTime<Utc>,
    ) -> Result<Vec<Acknowledged>, StoreError>;

    /// Forgets cursors untouched since `idle_before`, at most `limit`; returns how many.
    async fn expire_cursors(&self, idle_before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;

    /// Deletes published events that are more than `keep` behind their stream's head, at most
    /// `limit`; returns how many. (Age is bounded by [`crate::store::OutboxStore::prune_published`].)
    async fn trim_streams(&self, keep: u32, limit: u32) -> Result<u64, StoreError>;
}
