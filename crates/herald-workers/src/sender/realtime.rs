//! The `realtime` channel: the delivery's event goes to the recipient's stream through the
//! outbox, written with the delivery's report in one transaction (exactly once); and the
//! `queue` channel's publish to a broker queue.

use chrono::{DateTime, Utc};
use herald_core::{
    broker,
    change::ChangeEvent,
    delivery::{Attempt, Channel, DeliveryJob, DeliveryStatus, Failure},
    quarantine::{ItemFailure, Worker},
    stream::StreamName,
    trace,
    user::UserId,
    wire::TYPE_HEADER,
};

use super::{Disposition, Sender};

impl Sender {
    /// Appends the payload to the recipient's `user:` stream and records the delivery, together.
    pub(super) async fn realtime(&self, job: &DeliveryJob, now: DateTime<Utc>) -> Disposition {
        let Ok(user) = job.recipient.parse::<uuid::Uuid>() else {
            let reason = Some(format!("the recipient {:?} is not a user id", job.recipient));
            return Disposition::Report(self.report_for(job, "realtime", DeliveryStatus::Failed, now, reason));
        };
        let kind = job.payload.get("type").and_then(|t| t.as_str()).unwrap_or(&job.kind).to_owned();
        let event = ChangeEvent {
            // The delivery's id: the event of a delivery is one event, however often it is tried.
            id: job.id,
            kind,
            stream: StreamName::User(UserId(user)),
            payload: job.payload.clone(),
            created_at: now,
            // The channel call's span: the relay and the gateway continue this delivery's trace.
            trace_context: trace::current(),
        };
        let report = self.report_for(job, "realtime", DeliveryStatus::Sent, now, None);
        match self.0.store.record_delivery_with_events(&report, &[event], now).await {
            Ok(_) => Disposition::Done,
            Err(err) => match ItemFailure::of_store(Worker::Sender, job.id.to_string(), &err) {
                // The store refused this delivery's write: it waits, backed off, and the other
                // deliveries go on.
                Some(failure) => match self.0.failures.record(&failure, now).await {
                    Some(held) => {
                        let reason = Some(format!("held back: {}", failure.error));
                        Disposition::Report(self.defer(job, Channel::Realtime, held.retry_at, reason))
                    }
                    None => Disposition::Retry,
                },
                None => {
                    tracing::warn!(delivery = %job.id, error = %err, "could not append a realtime delivery; retrying");
                    Disposition::Retry
                }
            },
        }
    }

    /// Publishes the payload, as it is, on the broker work queue the recipient names; the
    /// delivery's id is the message id, so a repeated attempt is one message to de-duplicating
    /// consumers.
    pub(super) async fn publish(&self, job: &DeliveryJob) -> Attempt {
        let payload = serde_json::to_vec(&job.payload).map_err(|e| Failure::Malformed { reason: e.to_string() })?;
        let message = broker::Message::new(job.id, payload)
            .with_header(TYPE_HEADER, job.kind.clone())
            .with_traceparent(trace::current());
        match self.0.broker.enqueue(&job.recipient, message).await {
            Ok(()) => Ok(()),
            Err(broker::BrokerError::Unavailable(_) | broker::BrokerError::Closed) => Err(Failure::Connection),
            Err(err) => Err(Failure::Malformed { reason: format!("the broker refused the message: {err}") }),
        }
    }
}
