//! The transactional outbox and single-holder worker leases.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::change::{ChangeEvent, OutboxEvent, Unpublished};
use crate::store_error::StoreError;

/// The transactional outbox, and leases for workers of which only one may be active.
///
/// Every event gets a gap-free offset within its stream in the transaction that writes it.
/// Within a stream, outbox order (`seq`) is commit order.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Unpublished events in `seq` order, at most `limit`, all committed and safe to publish in
    /// this order: on PostgreSQL only rows written by transactions older than every transaction
    /// still running (the visibility horizon), so a long transaction that commits late is never
    /// overtaken by a later one. Streams the relay holds back ([`QuarantineStore`]) are left out,
    /// and so is every event of a stream with a row in the batch that cannot be read (that row
    /// named, by its stream, in [`Unpublished::unreadable`]): a stream never skips an offset.
    ///
    /// [`QuarantineStore`]: crate::store::QuarantineStore
    async fn unpublished_events(&self, limit: u32) -> Result<Unpublished, StoreError>;

    /// Appends events that stand alone (no other write goes with them, like a mailing's progress
    /// snapshot) to their streams, in one transaction.
    async fn append_events(&self, events: &[ChangeEvent]) -> Result<(), StoreError>;

    /// Marks events published.
    async fn mark_published(&self, seqs: &[i64], at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Deletes up to `limit` events published before `before`; returns how many.
    async fn prune_published(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;

    /// When the oldest unpublished event was created, if any.
    async fn oldest_unpublished(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Waits until events may have been committed, or `timeout`. A wake-up is only a hint
    /// (coalesced, possibly spurious); callers read the outbox to find out.
    async fn wait_for_outbox(&self, timeout: Duration);

    /// Takes or renews the lease `name` for `holder` for `ttl`; false while another holder's
    /// lease is unexpired. Lease time is the store's clock.
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Gives up `holder`'s lease `name`, so another holder need not wait for it to expire.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// Outbox events after `after_seq`, in `seq` order, at most `limit`.
    async fn read_outbox(&self, after_seq: i64, limit: u32) -> Result<Vec<OutboxEvent>, StoreError>;
}
