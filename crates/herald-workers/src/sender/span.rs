//! The tracing span of one delivery's handling.

use herald_core::{campaign::MESSAGE_KIND, delivery::DeliveryJob, trace};

/// The span of one delivery's handling: every line about a mailing message carries the message,
/// mailing and client ids; about any other delivery, its id, source and recipient.
pub(super) fn delivery_span(job: &DeliveryJob) -> tracing::Span {
    let ids = |id: Option<uuid::Uuid>| id.map(tracing::field::display);
    // A child of the span that created the delivery (the request, for a reminder).
    trace::child_of(job.trace_context.as_deref(), || {
        if job.kind == MESSAGE_KIND {
            tracing::info_span!(
                "message",
                otel.name = "sender.deliver",
                message_id = %job.id,
                mailing_id = ids(job.source_id),
                client_id = ids(job.recipient_id),
            )
        } else {
            tracing::info_span!(
                "delivery",
                otel.name = "sender.deliver",
                delivery_id = %job.id,
                kind = %job.kind,
                source_id = ids(job.source_id),
                recipient_id = ids(job.recipient_id),
            )
        }
    })
}
