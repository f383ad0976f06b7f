//! Change events: written to the outbox in the same transaction as the change they describe.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::{quarantine::ItemFailure, stream::StreamName, user::UserId};

/// An event about to be written to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// UUIDv7; also the broker message id, so consumers can drop duplicates.
    pub id: Uuid,
    /// Dotted type, e.g. `task.updated`.
    pub kind: String,
    /// Where the event goes (stored, and sent to clients, as its `channel`).
    pub stream: StreamName,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
    /// W3C `traceparent` of the span that caused it, when spans are exported (see [`crate::trace`]).
    pub trace_context: Option<String>,
}

impl ChangeEvent {
    /// An event for one user's own stream.
    pub fn for_user(owner: UserId, kind: &str, payload: Value, now: DateTime<Utc>) -> Self {
        Self::on_stream(StreamName::User(owner), kind, payload, now)
    }

    /// An event for any stream, caused by the current span (the command that writes it).
    pub fn on_stream(stream: StreamName, kind: &str, payload: Value, now: DateTime<Utc>) -> Self {
        let trace_context = crate::trace::current();
        Self { id: Uuid::now_v7(), kind: kind.to_owned(), stream, payload, created_at: now, trace_context }
    }
}

/// What the relay may publish now: unpublished events in order, but for the streams it holds
/// back and the streams of rows that cannot be read (named in `unreadable`, by stream).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unpublished {
    pub events: Vec<OutboxEvent>,
    pub unreadable: Vec<ItemFailure>,
}

/// An event as stored in the outbox, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// Position in the outbox: commit order on SQLite; insertion order on PostgreSQL, which within
    /// one stream is commit order.
    pub seq: i64,
    /// Gap-free position within the event's stream, from 1.
    pub stream_offset: i64,
    pub event: ChangeEvent,
    pub published_at: Option<DateTime<Utc>>,
}
