//! Channel streams and session cursors: what a real-time session resumes from.
//!
//! A channel (`user:<id>`, `room:<id>`) is the ordered stream of its outbox events: offsets 1, 2, 3, …
//! given in the writing transaction, never reused. The stream keeps a window of recent events
//! (by age and by count); a session's cursor is the highest offset its client acknowledged.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{error::ApiError, event::OutboxEvent, store::StoreError, user::UserId};

/// Where a channel stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelHead {
    /// Names the stream's history; offsets of another epoch mean nothing here.
    pub epoch: String,
    /// The last offset given out (0 when the channel never had an event).
    pub offset: i64,
    /// The oldest offset the stream still holds; `offset + 1` when it holds none.
    pub first: i64,
}

impl ChannelHead {
    /// Whether every event after `position` is still in the stream.
    pub fn holds_after(&self, position: i64) -> bool {
        position >= self.first - 1 && position <= self.offset
    }
}

/// A client-chosen session id: 1–64 characters of `[A-Za-z0-9_.:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let ok = (1..=64).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ApiError::invalid_field("session", "1 to 64 characters of A-Z, a-z, 0-9, _ . : -"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(|_| serde::de::Error::custom("1 to 64 characters of A-Z, a-z, 0-9, _ . : -"))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A session's position in one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCursor {
    pub user: UserId,
    pub session: SessionId,
    pub channel: String,
    /// The highest offset the client acknowledged.
    pub offset: i64,
}

/// Channel streams and session cursors.
///
/// Contract: offsets of one channel are gap-free and, read in offset order, are commit order; a
/// reader that sees offset `n` sees every retained offset below it. Cursor writes are durable when
/// they return; [`ChannelStore::advance_cursors`] never moves a cursor back.
#[async_trait]
pub trait ChannelStore: Send + Sync {
    /// Where `channel` stands now.
    async fn channel_head(&self, channel: &str) -> Result<ChannelHead, StoreError>;

    /// The channel's retained events after offset `after`, in offset order, at most `limit`.
    async fn read_channel(&self, channel: &str, after: i64, limit: u32) -> Result<Vec<OutboxEvent>, StoreError>;

    /// The session's cursor in `channel`, if it has one.
    async fn session_cursor(&self, user: UserId, session: &SessionId, channel: &str)
    -> Result<Option<i64>, StoreError>;

    /// Sets a cursor to exactly `cursor.offset` (a subscription's starting point), at `now`.
    async fn set_cursor(&self, cursor: &SessionCursor, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Moves each cursor forward to its offset (never back), creating missing ones, in one
    /// transaction, at `now`.
    async fn advance_cursors(&self, cursors: &[SessionCursor], now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Forgets cursors untouched since `idle_before`, at most `limit`; returns how many.
    async fn expire_cursors(&self, idle_before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;

    /// Deletes published events that are more than `keep` behind their channel's head, at most
    /// `limit`; returns how many. (Age is bounded by [`crate::store::OutboxStore::prune_published`].)
    async fn trim_channels(&self, keep: u32, limit: u32) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_short_tokens() {
        assert!(SessionId::parse("tab-1").is_ok());
        assert!(SessionId::parse("a.b:c_d-9").is_ok());
        assert!(SessionId::parse(&"x".repeat(64)).is_ok());
        for bad in ["", "has space", "slash/", &"x".repeat(65), "é"] {
            assert!(SessionId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_head_holds_positions_within_its_window() {
        let head = ChannelHead { epoch: "e".into(), offset: 10, first: 4 };
        assert!(head.holds_after(3));
        assert!(head.holds_after(10));
        assert!(!head.holds_after(2));
        assert!(!head.holds_after(11));
        let empty = ChannelHead { epoch: "e".into(), offset: 0, first: 1 };
        assert!(empty.holds_after(0));
    }
}
