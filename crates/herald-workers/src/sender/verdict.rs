//! What a channel call's [`Attempt`] becomes: the delivery's report (sent, retried at, deferred
//! or failed) through the [`RetryPolicy`], and the outcome counted.

use chrono::{DateTime, Utc};
use herald_core::{
    delivery::{
        Attempt, Channel, Decision, DeliveryId, DeliveryJob, DeliveryReport, DeliveryStatus, Failure, ZonedWindow,
    },
    metrics::OutcomeLabels,
};

use super::Sender;
use crate::channels::webhook_error;

impl Sender {
    pub(super) fn decide(
        &self,
        job: &DeliveryJob,
        channel: Channel,
        outcome: Attempt,
        took: std::time::Duration,
        now: DateTime<Utc>,
    ) -> DeliveryReport {
        let attempts = job.attempts + 1;
        let mut report = DeliveryReport {
            id: DeliveryId(job.id),
            lease_until: job.lease_until,
            status: DeliveryStatus::Sent,
            attempts,
            next_attempt_at: now,
            last_error: None,
            sent_at: Some(now),
            call_time: Some(took),
        };
        let failure: Failure = match outcome {
            Ok(()) => {
                self.count(channel.as_str(), "sent");
                return report;
            }
            Err(failure) => failure,
        };
        report.sent_at = None;
        let decision = {
            let mut rng = self.0.rng.lock();
            self.0.options.policy.next_attempt(attempts, &failure, now, job.deadline, &mut *rng)
        };
        match decision {
            Decision::RetryAt(at) => {
                // A retry waits for the recipient's send window, if it has one.
                let at = ZonedWindow::of_payload(&job.payload).map_or(at, |w| w.next_allowed(at));
                if job.deadline.is_some_and(|deadline| at >= deadline) {
                    self.count(channel.as_str(), "expired");
                    report.status = DeliveryStatus::Expired;
                    report.last_error =
                        Some(format!("{failure}; the send window does not open again before the deadline"));
                } else {
                    self.count(channel.as_str(), "retry");
                    report.status = DeliveryStatus::Pending;
                    report.next_attempt_at = at;
                    report.last_error = Some(failure.to_string());
                }
            }
            Decision::Fail(reason) => {
                self.count(channel.as_str(), "failed");
                report.status = DeliveryStatus::Failed;
                report.last_error = Some(reason.to_string());
            }
            Decision::Expire => {
                self.count(channel.as_str(), "expired");
                report.status = DeliveryStatus::Expired;
                report.last_error = Some(format!("{failure}; the next attempt would fall after the deadline"));
            }
        }
        if channel == Channel::Webhook {
            // The user who aimed the webhook sees only whether it answered and with what status;
            // the status and attempts say the rest.
            report.last_error = Some(webhook_error(&failure));
        }
        report
    }

    /// A final report without a channel call (attempts unchanged).
    pub(super) fn report_for(
        &self,
        job: &DeliveryJob,
        channel: &str,
        status: DeliveryStatus,
        now: DateTime<Utc>,
        last_error: Option<String>,
    ) -> DeliveryReport {
        let (attempts, sent_at) =
            if status == DeliveryStatus::Sent { (job.attempts + 1, Some(now)) } else { (job.attempts, None) };
        self.count(channel, status.as_str());
        DeliveryReport {
            id: DeliveryId(job.id),
            lease_until: job.lease_until,
            status,
            attempts,
            next_attempt_at: now,
            last_error,
            sent_at,
            call_time: None,
        }
    }

    /// Puts a delivery back to pending at `at` without spending an attempt.
    pub(super) fn defer(
        &self,
        job: &DeliveryJob,
        channel: Channel,
        at: DateTime<Utc>,
        reason: Option<String>,
    ) -> DeliveryReport {
        self.count(channel.as_str(), "deferred");
        DeliveryReport {
            id: DeliveryId(job.id),
            lease_until: job.lease_until,
            status: DeliveryStatus::Pending,
            attempts: job.attempts,
            next_attempt_at: at,
            last_error: reason,
            sent_at: None,
            call_time: None,
        }
    }

    pub(super) fn count(&self, channel: &str, outcome: &str) {
        let labels = OutcomeLabels { channel: channel.to_owned(), outcome: outcome.to_owned() };
        self.0.metrics.deliveries.get_or_create(&labels).inc();
    }
}
