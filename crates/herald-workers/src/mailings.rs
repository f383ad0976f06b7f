//! The `mailings` periodic job: starts scheduled mailings whose start has come, marks running
//! ones `finished` once no message is pending or sending, and refreshes the campaign gauges.
//! Idempotent: a start is one transaction guarded by the mailing's status, so two runs (or a run
//! racing the API) start a mailing once.

use std::{collections::HashSet, sync::Arc};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    campaign::{MailingStatus, MessageCounts},
    commands::mailings,
    metrics::{MailingLabels, Metrics, StatusLabels},
    store::{Store, StoreError},
};

use crate::scheduler::PeriodicJob;

/// Running mailings whose progress is exported; beyond this the gauges cover the oldest.
const GAUGED: u32 = 1000;
/// Counting a large mailing's messages is a scan: the gauges are refreshed this often at most.
const MEASURE_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// Starts due mailings and finishes drained ones.
#[derive(Debug)]
pub struct MailingsJob {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Mailings whose progress gauge is set, so finished ones are removed from the export.
    gauged: parking_lot::Mutex<HashSet<String>>,
    measured_at: parking_lot::Mutex<Option<DateTime<Utc>>>,
}

impl MailingsJob {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { store, metrics, gauged: Default::default(), measured_at: Default::default() }
    }

    /// Sets the message gauges from the running mailings' counts.
    async fn measure(&self) -> Result<(), StoreError> {
        let running = self.store.list_mailings(Some(MailingStatus::Running), None, GAUGED).await?;
        let ids: Vec<_> = running.iter().map(|m| m.id).collect();
        let counts = if ids.is_empty() { Default::default() } else { self.store.message_counts(&ids).await? };
        let mut total = MessageCounts::default();
        let mut gauged = HashSet::new();
        for (id, c) in &counts {
            for (status, n) in c.by_status() {
                total.add(status, n);
            }
            let progress = if c.total == 0 { 1.0 } else { c.settled() as f64 / c.total as f64 };
            let mailing_id = id.to_string();
            self.metrics
                .mailing_progress
                .get_or_create(&MailingLabels { mailing_id: mailing_id.clone() })
                .set(progress);
            gauged.insert(mailing_id);
        }
        for (status, n) in total.by_status() {
            let labels = StatusLabels { status: status.as_str().to_owned() };
            self.metrics.mailing_messages.get_or_create(&labels).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut previous = self.gauged.lock();
        for gone in previous.difference(&gauged) {
            self.metrics.mailing_progress.remove(&MailingLabels { mailing_id: gone.clone() });
        }
        *previous = gauged;
        Ok(())
    }
}

#[async_trait]
impl PeriodicJob for MailingsJob {
    fn name(&self) -> &str {
        "mailings"
    }

    async fn run(&self, now: DateTime<Utc>) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let started = mailings::start_due(self.store.as_ref(), &self.metrics, now).await?;
        let finished = self.store.finish_mailings(now).await?;
        for id in &finished {
            self.metrics.mailings_finished.inc();
            tracing::info!(mailing_id = %id, "mailing finished");
        }
        let measure = {
            let mut at = self.measured_at.lock();
            let due = !finished.is_empty() || at.is_none_or(|at| now - at >= MEASURE_EVERY);
            if due {
                *at = Some(now);
            }
            due
        };
        if measure {
            self.measure().await?;
        }
        if started == 0 && finished.is_empty() {
            return Ok(String::new());
        }
        Ok(format!("{started} started, {} finished", finished.len()))
    }
}
