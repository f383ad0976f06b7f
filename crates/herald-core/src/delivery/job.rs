//! Deliveries: the durable jobs behind every outgoing notification (a campaign message, a calendar
//! reminder). The store is their truth; the scheduler claims due ones under a lease and senders
//! report what happened.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::quarantine::ItemFailure;

id_type!(
    /// A delivery's id (UUIDv7).
    DeliveryId
);

string_enum!(
    /// Where a delivery stands. `pending` and `sending` are live; the rest are final.
    DeliveryStatus {
        Pending => "pending",
        Sending => "sending",
        Sent => "sent",
        Failed => "failed",
        Expired => "expired",
        Cancelled => "cancelled",
    }
);

impl DeliveryStatus {
    /// No further attempt will be made.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Sending)
    }
}

string_enum!(
    /// How a delivery is carried.
    Channel {
        Log => "log",
        Provider => "provider",
        Webhook => "webhook",
        Realtime => "realtime",
        Queue => "queue",
        Email => "email",
    }
);

/// A delivery about to be stored. Creation is idempotent on `source_key`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub id: DeliveryId,
    /// What produced it, e.g. `campaign.message` or `calendar.reminder`.
    pub kind: String,
    /// Unique per source (`mailing:<id>:client:<id>`): storing the same key twice stores one.
    pub source_key: String,
    /// Who receives it: a phone number, a user id, a URL, as the channel needs.
    pub recipient: String,
    pub channel: Channel,
    pub payload: Value,
    /// What it belongs to, if anything: a mailing, a calendar event.
    pub source_id: Option<Uuid>,
    /// Whom it goes to, when that is a record: a client, a user.
    pub recipient_id: Option<Uuid>,
    /// No attempt before this instant.
    pub next_attempt_at: DateTime<Utc>,
    /// No attempt at or after this instant; the delivery expires instead.
    pub deadline: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// W3C `traceparent` of the span that created it: the sender's span continues that trace.
    pub trace_context: Option<String>,
}

/// What one claim of due deliveries took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claimed {
    /// The deliveries claimed, earliest first.
    pub deliveries: Vec<Delivery>,
    /// Due rows that could not be read (left unclaimed), with why.
    pub unreadable: Vec<ItemFailure>,
}

/// A stored delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: DeliveryId,
    /// A 64-bit number assigned by the store, sent to providers that want a numeric id; the same
    /// on every retry, so a provider can drop duplicates.
    pub number: i64,
    pub kind: String,
    pub source_key: String,
    pub recipient: String,
    pub channel: Channel,
    pub payload: Value,
    pub source_id: Option<Uuid>,
    pub recipient_id: Option<Uuid>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub deadline: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// While `sending`: when the claim lapses and the rescuer may hand it out again.
    pub lease_until: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// W3C `traceparent` of the span that created it.
    pub trace_context: Option<String>,
}

/// What a sender reports for one claimed delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryReport {
    pub id: DeliveryId,
    /// The lease the report is for: a report for a lease that was rescued and handed out again
    /// is ignored, so a slow sender cannot overwrite a newer attempt.
    pub lease_until: DateTime<Utc>,
    /// `Pending` (retry at `next_attempt_at`), or a final status.
    pub status: DeliveryStatus,
    /// Attempts made so far, this one included.
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    /// How long the channel call took, when one was made (a mailing's timeline counts it).
    pub call_time: Option<std::time::Duration>,
}

/// The work queue through which the scheduler hands claimed deliveries to senders.
pub const DELIVERY_QUEUE: &str = "deliveries";

/// A claimed delivery as it travels to a sender: everything needed to send it and to report on
/// the claim, so a sender reads nothing before calling the channel.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryJob {
    pub id: Uuid,
    pub number: i64,
    pub kind: String,
    pub recipient: String,
    pub channel: String,
    pub payload: Value,
    /// The mailing or calendar event it belongs to, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<Uuid>,
    /// The client or user it goes to, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<Uuid>,
    /// Attempts made before this one.
    pub attempts: u32,
    pub deadline: Option<DateTime<Utc>>,
    /// The claim this job belongs to; reports for an older claim are ignored.
    pub lease_until: DateTime<Utc>,
    /// W3C `traceparent` of the span that created the delivery (absent from earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_context: Option<String>,
}

impl DeliveryJob {
    pub fn of(d: &Delivery) -> Option<Self> {
        Some(Self {
            id: d.id.0,
            number: d.number,
            kind: d.kind.clone(),
            recipient: d.recipient.clone(),
            channel: d.channel.as_str().to_owned(),
            payload: d.payload.clone(),
            source_id: d.source_id,
            recipient_id: d.recipient_id,
            attempts: d.attempts,
            deadline: d.deadline,
            lease_until: d.lease_until?,
            trace_context: d.trace_context.clone(),
        })
    }

    /// The claim this job carries: the delivery and its lease.
    pub fn claim(&self) -> (DeliveryId, DateTime<Utc>) {
        (DeliveryId(self.id), self.lease_until)
    }
}

/// Claimed deliveries as one work-queue message: a sender checks their claims with one store
/// read and settles the message once every report is written, so the broker carries one message
/// per batch rather than one per delivery.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "v")]
pub enum JobBatch {
    #[serde(rename = "1")]
    V1 { jobs: Vec<DeliveryJob> },
}

impl JobBatch {
    /// The jobs of a queue message: a batch, or a lone [`DeliveryJob`] as versions before
    /// batches queued them.
    pub fn decode(payload: &[u8]) -> Result<Vec<DeliveryJob>, serde_json::Error> {
        match serde_json::from_slice::<Self>(payload) {
            Ok(Self::V1 { jobs }) => Ok(jobs),
            Err(err) => serde_json::from_slice::<DeliveryJob>(payload).map(|job| vec![job]).map_err(|_| err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: i64) -> DeliveryJob {
        DeliveryJob {
            id: Uuid::now_v7(),
            number: n,
            kind: "campaign.message".into(),
            recipient: "79001234567".into(),
            channel: "provider".into(),
            payload: serde_json::json!({"text": "hi"}),
            source_id: None,
            recipient_id: None,
            attempts: 0,
            deadline: None,
            lease_until: DateTime::from_timestamp(1_800_000_000, 0).expect("instant"),
            trace_context: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        }
    }

    #[test]
    fn a_batch_round_trips_and_its_id_follows_its_claims() {
        let jobs = vec![job(1), job(2)];
        let message = JobBatch::message(jobs.clone());
        assert_eq!(JobBatch::decode(&message.payload).expect("decodes"), jobs);
        assert_eq!(JobBatch::message(jobs.clone()).id, message.id, "the same claims, the same id");
        let mut later = jobs;
        later[1].lease_until += chrono::Duration::seconds(1);
        assert_ne!(JobBatch::message(later).id, message.id, "a new claim is a new message");
    }

    #[test]
    fn a_lone_job_of_an_earlier_version_still_decodes_and_garbage_does_not() {
        let lone = job(7);
        let payload = serde_json::to_vec(&lone).expect("encodes");
        assert_eq!(JobBatch::decode(&payload).expect("decodes"), vec![lone.clone()]);
        let mut untraced = serde_json::to_value(&lone).expect("encodes");
        untraced.as_object_mut().expect("an object").remove("trace_context");
        let decoded = JobBatch::decode(&serde_json::to_vec(&untraced).expect("encodes")).expect("decodes");
        assert_eq!(decoded[0].trace_context, None, "a job queued before trace context still decodes");
        assert!(JobBatch::decode(br#"{"v": "9", "jobs": []}"#).is_err(), "an unknown version is refused");
        assert!(JobBatch::decode(b"\xff not json").is_err());
    }
}
