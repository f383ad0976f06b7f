//! The `mailings` periodic job: starts scheduled mailings whose start has come, marks running
//! ones `finished` once no message is pending or sending, refreshes the campaign gauges, and
//! appends a progress snapshot to the `mailing:<id>` stream of each mailing whose counters moved
//! (at most one a second each, whatever the number of messages).
//! Idempotent: a start is one transaction guarded by the mailing's status, so two runs (or a run
//! racing the API) start a mailing once.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    campaign::{MailingId, MailingStatus, MessageCounts},
    change::ChangeEvent,
    commands::mailings,
    metrics::{MailingLabels, Metrics, StatusLabels},
    store::{Store, StoreError},
    stream::StreamName,
    timeline::{BUCKET_SECONDS, PROGRESS_KIND, Progress, bucket_of},
};

use crate::scheduler::PeriodicJob;

/// Running mailings whose progress is exported; beyond this the gauges cover the oldest.
const GAUGED: u32 = 1000;
/// The gauges are refreshed this often at most (up to a thousand running mailings each time).
const MEASURE_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(10);
/// Mailings followed at once: those whose counters moved in the last [`ACTIVE_BUCKETS`] buckets,
/// at most this many (the oldest by id first).
const FOLLOWED: u32 = 1000;
/// How far back a mailing's counters must have moved for its progress to be looked at.
const ACTIVE_BUCKETS: i64 = 3;
/// The shortest time between two snapshots of one mailing.
const SNAPSHOT_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// Starts due mailings and finishes drained ones.
#[derive(Debug)]
pub struct MailingsJob {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Mailings whose progress gauge is set, so finished ones are removed from the export.
    gauged: parking_lot::Mutex<HashSet<String>>,
    measured_at: parking_lot::Mutex<Option<DateTime<Utc>>>,
    /// The last snapshot published of each mailing followed (at most [`FOLLOWED`] and the
    /// mailings finished in one run); a mailing leaves when its counters stop moving.
    published: parking_lot::Mutex<HashMap<MailingId, Progress>>,
}

impl MailingsJob {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            metrics,
            gauged: Default::default(),
            measured_at: Default::default(),
            published: Default::default(),
        }
    }

    /// Appends a snapshot to the stream of each mailing whose counters moved lately (and each of
    /// `finished`) when its state changed since its last snapshot, a second ago or more; answers
    /// how many.
    async fn publish_progress(&self, now: DateTime<Utc>, finished: &[MailingId]) -> Result<usize, StoreError> {
        let since = bucket_of(now) - ACTIVE_BUCKETS * BUCKET_SECONDS;
        let mut followed: Vec<MailingId> =
            self.store.mailing_tallies(since, i64::MAX, FOLLOWED).await?.into_iter().map(|(id, _)| id).collect();
        let mut seen: HashSet<MailingId> = followed.iter().copied().collect();
        for id in finished {
            if seen.insert(*id) {
                followed.push(*id);
            }
        }
        let mut events = Vec::new();
        let mut snapshots = Vec::new();
        for id in &followed {
            let previous = self.published.lock().get(id).cloned();
            if previous.as_ref().is_some_and(|p| now - p.at < SNAPSHOT_EVERY) {
                continue;
            }
            let Some(mailing) = self.store.mailing(*id).await? else { continue };
            let totals = self.store.mailing_timeline(Some(*id), i64::MAX, 0, i64::MAX, 1).await?;
            let tally = totals.into_iter().next().map(|(_, t)| t).unwrap_or_default();
            let progress = Progress::of(*id, mailing.status, &tally, now, previous.as_ref());
            if previous.is_some_and(|p| p.same_state(&progress)) {
                continue;
            }
            let payload = serde_json::to_value(&progress).map_err(|e| StoreError::Other(Box::new(e)))?;
            events.push(ChangeEvent::on_stream(StreamName::Mailing(*id), PROGRESS_KIND, payload, now));
            snapshots.push(progress);
        }
        self.store.append_events(&events).await?;
        let mut published = self.published.lock();
        for progress in snapshots {
            published.insert(MailingId(progress.mailing_id), progress);
        }
        // Mailings whose counters stopped moving are no longer followed.
        published.retain(|id, _| seen.contains(id));
        Ok(events.len())
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
        let snapshots = self.publish_progress(now, &finished).await?;
        tracing::debug!(snapshots, "published mailing progress");
        if started == 0 && finished.is_empty() {
            return Ok(String::new());
        }
        Ok(format!("{started} started, {} finished", finished.len()))
    }
}
