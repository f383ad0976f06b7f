//! The `notices.retention` periodic job: notices that settled (acknowledged, delivered, expired
//! or failed) and were made longer ago than the retention are deleted with their steps.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::store::Store;

use crate::scheduler::PeriodicJob;

/// Notices deleted per statement.
const BATCH: u32 = 1000;

/// Deletes settled notices made more than `retention` ago.
#[derive(Debug)]
pub struct NoticeRetentionJob {
    store: Arc<dyn Store>,
    retention: Duration,
}

impl NoticeRetentionJob {
    pub fn new(store: Arc<dyn Store>, retention: Duration) -> Self {
        Self { store, retention }
    }
}

#[async_trait]
impl PeriodicJob for NoticeRetentionJob {
    fn name(&self) -> &str {
        "notices.retention"
    }

    async fn run(&self, now: DateTime<Utc>) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let before = now - chrono::Duration::from_std(self.retention)?;
        let mut deleted = 0;
        loop {
            let n = self.store.delete_notices_settled_before(before, BATCH).await?;
            deleted += n;
            if n < u64::from(BATCH) {
                break;
            }
        }
        if deleted == 0 {
            return Ok(String::new());
        }
        tracing::info!(deleted, made_before = %before, "deleted settled notices past retention");
        Ok(format!("{deleted} notices deleted"))
    }
}
