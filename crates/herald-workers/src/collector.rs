//! The orphan-file collector. The database wins over the file store: a file (in a directory, or
//! an object under the bucket's prefix) that no attachment references and that has not been
//! written for the grace period is removed. The grace period is what protects uploads in flight
//! (their file is written continuously, then renamed into place, or their multipart upload
//! completed, just before its row commits), so it must exceed the longest pause inside an upload.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{files::Files, metrics::Metrics, store::Store};

use crate::scheduler::PeriodicJob;

/// How many keys are checked against the store in one query.
const BATCH: usize = 500;

/// One pass's result.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// Files looked at.
    pub scanned: usize,
    /// Files younger than the grace period, left alone.
    pub fresh: usize,
    /// Files an attachment references, left alone.
    pub referenced: usize,
    /// Orphans removed.
    pub removed: usize,
    /// Removals that failed (logged).
    pub failed: usize,
}

/// Removes orphaned attachment files.
#[derive(Debug, Clone)]
pub struct FileCollector {
    pub store: Arc<dyn Store>,
    pub files: Arc<dyn Files>,
    pub metrics: Arc<Metrics>,
    pub grace: Duration,
}

impl FileCollector {
    /// One pass over the file store.
    pub async fn tick(&self) -> Result<Sweep, Box<dyn std::error::Error + Send + Sync>> {
        let now = SystemTime::now();
        let entries = self.files.scan().await?;
        let mut outcome = Sweep { scanned: entries.len(), ..Sweep::default() };
        let (old, fresh): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|e| now.duration_since(e.modified).is_ok_and(|age| age >= self.grace));
        outcome.fresh = fresh.len();

        let (partial, finished): (Vec<_>, Vec<_>) = old.into_iter().partition(|e| e.partial);
        // A partial upload untouched for the grace period is abandoned: no row can refer to it.
        let mut orphans: Vec<_> = partial.into_iter().map(|e| (e.key, true)).collect();
        for batch in finished.chunks(BATCH) {
            let keys: Vec<String> = batch.iter().map(|e| e.key.clone()).collect();
            let referenced = self.store.referenced_storage_keys(&keys).await?;
            outcome.referenced += referenced.len();
            orphans.extend(keys.into_iter().filter(|k| !referenced.contains(k)).map(|k| (k, false)));
        }
        for (key, partial) in orphans {
            match self.files.remove(&key, partial).await {
                Ok(true) => {
                    outcome.removed += 1;
                    self.metrics.files_collected.inc();
                    tracing::info!(%key, partial, "removed orphaned file");
                }
                Ok(false) => {}
                Err(err) => {
                    outcome.failed += 1;
                    self.metrics.files_collector_errors.inc();
                    tracing::warn!(%key, %err, "could not remove orphaned file");
                }
            }
        }
        Ok(outcome)
    }
}

/// As a periodic job (`files.collect`), it runs on the one scheduler holding the jobs lease: in
/// `herald serve`, and in a split deployment's `herald scheduler`. A failed pass is counted in
/// `herald_files_collector_errors_total` and logged by the scheduler.
#[async_trait]
impl PeriodicJob for FileCollector {
    fn name(&self) -> &str {
        "files.collect"
    }

    async fn run(&self, _now: DateTime<Utc>) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        match self.tick().await {
            Ok(sweep) => Ok(format!(
                "scanned {} files: removed {}, referenced {}, younger than the grace period {}, failed {}",
                sweep.scanned, sweep.removed, sweep.referenced, sweep.fresh, sweep.failed
            )),
            Err(err) => {
                self.metrics.files_collector_errors.inc();
                Err(err)
            }
        }
    }
}
