//! The scheduler's side of a mailing's life, not commands: starting mailings whose start has come
//! and making their messages chunk by chunk.

use chrono::{DateTime, Utc};

use crate::{
    campaign::{FirstAttempts, Mailing},
    metrics::Metrics,
    store::{Store, StoreError},
};

/// Messages made when a mailing starts: few enough that the start call returns at once and the
/// first messages can go while the rest are made.
pub const FIRST_CHUNK: u32 = 1_000;
/// Messages made per later step (one statement, one transaction), chunk after chunk.
pub const CHUNK: u32 = 10_000;

/// Starts the scheduled mailing `mailing` (its start has come): creates the messages of its first
/// [`FIRST_CHUNK`] clients, first attempts in each client's send window; schedulers make the
/// rest ([`materialize`]). `None` when another scheduler or command started it first, or it was
/// cancelled meanwhile.
pub async fn start(
    store: &dyn Store,
    metrics: &Metrics,
    mailing: &Mailing,
    now: DateTime<Utc>,
) -> Result<Option<u64>, StoreError> {
    let plan = FirstAttempts::plan(mailing.window, now);
    let created = store.start_mailing(mailing.id, &plan, now, FIRST_CHUNK).await?;
    if let Some(messages) = created {
        metrics.mailings_started.inc();
        tracing::info!(mailing_id = %mailing.id, messages, "mailing started");
    }
    Ok(created)
}

/// Starts every scheduled mailing due at `now`; how many. Schedulers call it on each pass (and
/// sleep no longer than the next start), so a mailing starts at its `start_at`.
pub async fn start_due(store: &dyn Store, metrics: &Metrics, now: DateTime<Utc>) -> Result<usize, StoreError> {
    const BATCH: u32 = 100;
    let mut started = 0;
    loop {
        let due = store.due_mailings(now, BATCH).await?;
        for id in &due {
            let Some(mailing) = store.mailing(*id).await? else { continue };
            if start(store, metrics, &mailing, now).await?.is_some() {
                started += 1;
            }
        }
        if due.len() < BATCH as usize {
            return Ok(started);
        }
    }
}

/// Makes the next chunk of messages of the oldest running mailing that still has some to make
/// (first attempts planned from `now`): how many were made, or `None` when none was left to make.
pub async fn materialize(store: &dyn Store, now: DateTime<Utc>, chunk: u32) -> Result<Option<u64>, StoreError> {
    for mailing in store.materializing_mailings(1).await? {
        let plan = FirstAttempts::plan(mailing.window, now);
        if let Some(made) = store.continue_mailing(mailing.id, &plan, now, chunk).await? {
            tracing::debug!(mailing_id = %mailing.id, made, "made a chunk of a mailing's messages");
            return Ok(Some(made));
        }
    }
    Ok(None)
}
