//! Reports are written in batches (group commit), and a queue message is settled only once the
//! reports of all its jobs are durable.

use std::time::Duration;

use herald_core::{
    broker,
    delivery::DeliveryReport,
    quarantine::{ItemFailure, Worker, reason_of},
};
use tokio::sync::mpsc;

use super::{Disposition, Handled, Sender};

impl Sender {
    /// Writes reports in batches and settles each message once all its jobs are recorded.
    pub(super) async fn report(self, mut received: mpsc::UnboundedReceiver<Handled>) {
        let max = self.0.options.report_batch.max(1);
        while let Some(first) = received.recv().await {
            let mut batch = vec![first];
            while batch.len() < max {
                match received.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let mut reports = Vec::with_capacity(batch.len());
            // Each job's message with whether to redeliver it, and the slot it frees once recorded.
            let mut recorded = Vec::with_capacity(batch.len());
            let mut claims = Vec::with_capacity(batch.len());
            for (claim, disposition, message, slot) in batch {
                let retry = matches!(disposition, Disposition::Retry);
                if let Disposition::Report(report) = disposition {
                    reports.push(report);
                }
                claims.push(claim);
                recorded.push((retry, message, slot));
            }
            let mut backoff = Duration::from_millis(100);
            while !reports.is_empty() {
                match self.0.store.record_deliveries(&reports, self.0.clock.now()).await {
                    Err(err) if reason_of(&err).is_some() && reports.len() > 1 => {
                        // Something in the batch is refused: record the reports one by one, so
                        // only the ones refused wait.
                        tracing::debug!(error = %err, "a batch of reports was refused; recording them one by one");
                        reports = self.record_one_by_one(reports).await;
                    }
                    Err(err) if reason_of(&err).is_some() => {
                        // One report the store refuses: its delivery is backed off (its claim lapses
                        // and the rescuer returns it) and the others go on.
                        if let Some(report) = reports.pop()
                            && let Some(failure) = ItemFailure::of_store(Worker::Sender, report.id.to_string(), &err)
                        {
                            self.0.failures.record(&failure, self.0.clock.now()).await;
                        }
                    }
                    Ok(applied) => {
                        if (applied as usize) < reports.len() {
                            tracing::debug!(
                                stale = reports.len() - applied as usize,
                                "reports for claims that lapsed were ignored"
                            );
                        }
                        break;
                    }
                    Err(err) => {
                        self.0.metrics.sender_errors.inc();
                        tracing::warn!(error = %err, retry_in = ?backoff, "could not record delivery outcomes");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            // Recorded: from now on the store's claim check keeps a second copy from being sent.
            {
                let mut taken = self.0.taken.lock();
                for claim in &claims {
                    taken.remove(claim);
                }
            }
            // Settle the messages this batch completed together: one broker round trip each,
            // overlapped.
            let mut settling = Vec::new();
            for (retry, message, slot) in recorded {
                drop(slot);
                if let Some((delivery, retry)) = message.finish_one(retry) {
                    settling.push(settle(delivery, retry));
                }
            }
            futures::future::join_all(settling).await;
        }
    }
}

impl Sender {
    /// Records reports one at a time; returns those the store could not reach (to retry as a
    /// batch), with the refused ones backed off and dropped.
    async fn record_one_by_one(&self, reports: Vec<DeliveryReport>) -> Vec<DeliveryReport> {
        let mut unreached = Vec::new();
        for report in reports {
            let now = self.0.clock.now();
            match self.0.store.record_deliveries(std::slice::from_ref(&report), now).await {
                Ok(_) => {}
                Err(err) => match ItemFailure::of_store(Worker::Sender, report.id.to_string(), &err) {
                    Some(failure) => {
                        self.0.failures.record(&failure, now).await;
                    }
                    None => unreached.push(report),
                },
            }
        }
        unreached
    }
}

/// Acks a queue message, or redelivers it after a second when `retry`.
pub(super) async fn settle(delivery: broker::QueueMessage, retry: bool) {
    let settled = if retry { delivery.nack(Some(Duration::from_secs(1))).await } else { delivery.ack().await };
    if let Err(err) = settled {
        tracing::debug!(error = %err, "could not settle a queue message; the broker redelivers it");
    }
}
