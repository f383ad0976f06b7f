//! The transport's side of a session: what a transport implements ([`Outlet`]) and the event
//! as its client receives it ([`EventBody`]).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::session::Session;
use crate::{change::OutboxEvent, stream::StreamName, wire::EventEnvelope};

/// An event as a client receives it.
#[derive(Debug, Clone, Serialize)]
pub struct EventBody {
    #[serde(rename = "channel")]
    pub stream: StreamName,
    pub offset: i64,
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: Value,
    pub ts: DateTime<Utc>,
}

impl From<EventEnvelope> for EventBody {
    fn from(envelope: EventEnvelope) -> Self {
        let EventEnvelope::V1 { id, kind, stream, offset, data, ts } = envelope;
        Self { stream, offset, id, kind, data, ts }
    }
}

impl From<&OutboxEvent> for EventBody {
    fn from(event: &OutboxEvent) -> Self {
        let e = &event.event;
        Self {
            stream: e.stream,
            offset: event.stream_offset,
            id: e.id,
            kind: e.kind.clone(),
            data: e.payload.clone(),
            ts: e.created_at,
        }
    }
}

/// Why an event could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// The session's outgoing buffer is full: the client is not keeping up.
    Full,
    /// The connection is gone.
    Closed,
}

/// The transport's side of a session.
#[async_trait]
pub trait Outlet: Send + Sync + std::fmt::Debug + 'static {
    /// Queues `event` without waiting; the transport reports the client's ack to `session.ack`.
    fn send_event(&self, session: &Arc<Session>, event: &Arc<EventBody>) -> Result<(), SendFailure>;
    /// Queues `event`, waiting for room in the buffer.
    async fn send_paced(&self, session: &Arc<Session>, event: &Arc<EventBody>) -> Result<(), SendFailure>;
    /// Tells the client why (`code`, `message`) and closes the connection. Must not wait or call
    /// back into the session: it is called with the session's state locked.
    fn close(&self, code: &str, message: &str);
    /// The session has ended: let go of whatever of the transport refers back to it.
    fn release(&self) {}
}
