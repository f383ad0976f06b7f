//! The sender's concurrency slots: taking one, holding some back for the adaptive limit, and
//! aborting the reporter when the consumer is dropped.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::limit;

/// A slot for one job; a job that has to wait for one tells the limit it is the bound.
pub(super) async fn take_slot(
    slots: &Arc<Semaphore>,
    limit: &limit::Limit,
) -> Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError> {
    match slots.clone().try_acquire_owned() {
        Ok(slot) => Ok(slot),
        Err(_) => {
            limit.saturated();
            slots.clone().acquire_owned().await
        }
    }
}

/// Holds `held` slots back in `reserve`: releases the extra ones, or takes free ones (what is
/// busy now is taken on a later call, as jobs finish).
pub(super) fn hold_back(slots: &Arc<Semaphore>, reserve: &mut Vec<tokio::sync::OwnedSemaphorePermit>, held: usize) {
    reserve.truncate(held);
    while reserve.len() < held {
        match slots.clone().try_acquire_owned() {
            Ok(slot) => reserve.push(slot),
            Err(_) => break,
        }
    }
}

pub(super) struct AbortOnDrop(pub(super) tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
