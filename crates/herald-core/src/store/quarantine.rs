//! The store port of held records: failures counted per record, back-off and quarantine.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::quarantine::{FailurePolicy, HeldId, HeldRecord, ItemFailure, Worker};
use crate::store_error::StoreError;

/// Failures of records that workers could not handle.
///
/// Contract: one entry per worker and record. [`record_failure`](Self::record_failure) counts a
/// failure in a row and sets when the worker may take the record again (the policy's delay
/// after that many failures), or quarantines it at the policy's count; the adapters' claims of
/// due deliveries, notice steps and outbox events leave out records whose entry is quarantined
/// or not yet due again. Entries of records that stopped failing are pruned.
#[async_trait]
pub trait QuarantineStore: Send + Sync {
    /// Counts one failure of a record and returns its entry as it now stands.
    async fn record_failure(
        &self,
        failure: &ItemFailure,
        policy: &FailurePolicy,
        now: DateTime<Utc>,
    ) -> Result<HeldRecord, StoreError>;

    /// The entry of `record` of `worker`, if it failed lately.
    async fn held_record(&self, worker: Worker, record: &str) -> Result<Option<HeldRecord>, StoreError>;

    /// Quarantined records, the latest to start failing first, before `before`, at most `limit`.
    async fn quarantined(&self, before: Option<HeldId>, limit: u32) -> Result<Vec<HeldRecord>, StoreError>;

    /// Deletes the entry `id` (its record is taken again at its worker's next pass, its failures
    /// counted from zero) and returns it; `None` when there is no such entry.
    async fn release_held(&self, id: HeldId) -> Result<Option<HeldRecord>, StoreError>;

    /// Deletes up to `limit` entries that are not quarantined and were due again before
    /// `before` (their records stopped failing); returns how many.
    async fn prune_held(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;
}
