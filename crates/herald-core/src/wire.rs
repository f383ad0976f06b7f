//! What Herald puts on the broker. Payloads are a serde-tagged, versioned enum: consumers accept
//! every version they know and refuse the rest loudly, so producers and consumers can be upgraded
//! one after the other.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use std::fmt::Write as _;

use crate::{
    broker::Message,
    change::OutboxEvent,
    delivery::{DeliveryJob, JobBatch},
    stream::StreamName,
};

/// The topic every change event is broadcast on (gateways subscribe to it).
pub const EVENTS_TOPIC: &str = "events";

/// Header carrying the event type, so consumers can route without decoding.
pub const TYPE_HEADER: &str = "herald-type";
/// Header carrying the event's stream (named `channel` on the wire, as in the envelope).
pub const STREAM_HEADER: &str = "herald-channel";

/// A change event on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum EventEnvelope {
    #[serde(rename = "1")]
    V1 {
        id: Uuid,
        #[serde(rename = "type")]
        kind: String,
        #[serde(rename = "channel")]
        stream: StreamName,
        /// Gap-free position within the stream.
        offset: i64,
        data: Value,
        ts: DateTime<Utc>,
    },
}

impl EventEnvelope {
    /// The broker message for an outbox event: its id is the event id, for de-duplication.
    pub fn message(event: &OutboxEvent) -> Message {
        let e = &event.event;
        let envelope = EventEnvelope::V1 {
            id: e.id,
            kind: e.kind.clone(),
            stream: e.stream,
            offset: event.stream_offset,
            data: e.payload.clone(),
            ts: e.created_at,
        };
        #[allow(clippy::expect_used, reason = "a struct of strings, numbers and a JSON value always serialises")]
        let payload = serde_json::to_vec(&envelope).expect("an envelope serialises");
        Message::new(e.id, payload)
            .with_header(TYPE_HEADER, &e.kind)
            .with_header(STREAM_HEADER, e.stream.to_string())
            .with_traceparent(e.trace_context.clone())
    }

    /// Decodes a message's payload.
    pub fn decode(payload: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

impl JobBatch {
    /// The broker message for `jobs`. Its id is derived from every claim in it, so a redelivered
    /// copy is dropped where the broker de-duplicates, and a new claim is never mistaken for an
    /// old one.
    pub fn message(jobs: Vec<DeliveryJob>) -> Message {
        let mut claims = String::with_capacity(jobs.len() * 54);
        for job in &jobs {
            let _ = write!(claims, "{}:{};", job.id, job.lease_until.timestamp_micros());
        }
        let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, claims.as_bytes());
        let count = jobs.len();
        let payload = serde_json::to_vec(&Self::V1 { jobs }).unwrap_or_default();
        Message::new(id, payload).with_header("herald-jobs", count.to_string())
    }
}
