//! Retention jobs: periodic deletes of what is kept for a while only (calendar events that
//! ended, settled notices, entries of records that stopped failing), a thousand rows per statement until none is left past retention.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use herald_core::store::{Store, StoreError};

use crate::scheduler::PeriodicJob;

/// Rows deleted per statement.
const BATCH: u32 = 1000;

/// Deletes up to a batch of rows older than a cut-off; how many went.
type Delete = for<'a> fn(&'a dyn Store, DateTime<Utc>, u32) -> BoxFuture<'a, Result<u64, StoreError>>;

/// Deletes what is older than `retention`, batch by batch.
pub struct RetentionJob {
    name: &'static str,
    /// What it deletes, for the log (`calendar events`).
    what: &'static str,
    store: Arc<dyn Store>,
    retention: Duration,
    delete: Delete,
}

impl std::fmt::Debug for RetentionJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionJob").field("name", &self.name).field("retention", &self.retention).finish()
    }
}

impl RetentionJob {
    /// `events.retention`: calendar events that ended more than `retention` ago.
    pub fn events(store: Arc<dyn Store>, retention: Duration) -> Self {
        let delete: Delete = |store, before, limit| store.delete_calendar_events_ended_before(before, limit);
        Self { name: "events.retention", what: "calendar events", store, retention, delete }
    }

    /// `notices.retention`: notices that settled (acknowledged, delivered, expired, failed) and
    /// were made more than `retention` ago, with their steps.
    pub fn notices(store: Arc<dyn Store>, retention: Duration) -> Self {
        let delete: Delete = |store, before, limit| store.delete_notices_settled_before(before, limit);
        Self { name: "notices.retention", what: "settled notices", store, retention, delete }
    }

    /// `held.retention`: entries of records that stopped failing (not quarantined, due again more
    /// than `retention` ago), so the table keeps only records that fail now.
    pub fn held(store: Arc<dyn Store>, retention: Duration) -> Self {
        let delete: Delete = |store, before, limit| store.prune_held(before, limit);
        Self { name: "held.retention", what: "entries of records that stopped failing", store, retention, delete }
    }
}

#[async_trait]
impl PeriodicJob for RetentionJob {
    fn name(&self) -> &str {
        self.name
    }

    async fn run(&self, now: DateTime<Utc>) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let before = now - chrono::Duration::from_std(self.retention)?;
        let mut deleted = 0;
        loop {
            let n = (self.delete)(self.store.as_ref(), before, BATCH).await?;
            deleted += n;
            if n < u64::from(BATCH) {
                break;
            }
        }
        if deleted == 0 {
            return Ok(String::new());
        }
        tracing::info!(deleted, before = %before, what = self.what, "deleted past retention");
        Ok(format!("{deleted} {} deleted", self.what))
    }
}
