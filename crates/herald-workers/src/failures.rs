//! What a worker does with a record it cannot handle: log it with its id, count it, and back it
//! off in the store (quarantined after the policy's count), then go on with the others.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use herald_core::{
    metrics::{ItemFailureLabels, Metrics},
    quarantine::{FailurePolicy, HeldRecord, ItemFailure},
    store::Store,
};

/// Records failures of single records for a worker.
#[derive(Debug, Clone)]
pub struct Failures {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    policy: FailurePolicy,
}

impl Failures {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>, policy: FailurePolicy) -> Self {
        Self { store, metrics, policy }
    }

    /// How failing records are backed off.
    pub fn policy(&self) -> &FailurePolicy {
        &self.policy
    }

    /// Logs, counts and backs off one failure; the record's entry, unless the store could not
    /// keep it (then the record is simply taken again at its worker's next pass).
    pub async fn record(&self, failure: &ItemFailure, now: DateTime<Utc>) -> Option<HeldRecord> {
        let labels = ItemFailureLabels {
            worker: failure.worker.as_str().to_owned(),
            reason: failure.reason.as_str().to_owned(),
        };
        self.metrics.worker_item_failures.get_or_create(&labels).inc();
        if failure.record.is_empty() {
            tracing::error!(worker = %failure.worker, reason = %failure.reason, error = %failure.error,
                "a record without a readable id could not be handled");
            return None;
        }
        match self.store.record_failure(failure, &self.policy, now).await {
            Ok(held) if held.quarantined_at.is_some() => {
                tracing::error!(worker = %failure.worker, record = %failure.record, reason = %failure.reason,
                    error = %failure.error, failures = held.failures, held_id = %held.id,
                    "quarantined a record that keeps failing; an administrator can retry it");
                Some(held)
            }
            Ok(held) => {
                tracing::warn!(worker = %failure.worker, record = %failure.record, reason = %failure.reason,
                    error = %failure.error, failures = held.failures, retry_at = %held.retry_at,
                    "could not handle a record; backing it off");
                Some(held)
            }
            Err(err) => {
                tracing::warn!(worker = %failure.worker, record = %failure.record, reason = %failure.reason,
                    error = %failure.error, store_error = %err, "could not handle a record, nor record its failure");
                None
            }
        }
    }

    /// Records every failure of a pass.
    pub async fn record_all(&self, failures: &[ItemFailure], now: DateTime<Utc>) {
        for failure in failures {
            self.record(failure, now).await;
        }
    }
}
