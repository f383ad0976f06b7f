//! The delivery jobs: storing, claiming under leases, reporting and waiting for due ones.

use std::{collections::HashSet, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::store_error::StoreError;
use crate::{
    change::ChangeEvent,
    delivery::{Claimed, Delivery, DeliveryId, DeliveryReport, NewDelivery},
};

/// Deliveries: durable jobs, claimed under leases.
///
/// A claim moves due `pending` deliveries to `sending` with a lease; concurrent claimers never
/// get the same delivery (PostgreSQL: `FOR UPDATE SKIP LOCKED`). A lapsed lease is returned to
/// `pending` by the rescuer. A sender's report applies only while its lease is still the current
/// one, so a report from a sender whose lease was rescued and handed out again changes nothing.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Stores deliveries; one whose `source_key` is stored already is skipped. Returns how many
    /// were new.
    async fn create_deliveries(&self, deliveries: &[NewDelivery]) -> Result<u64, StoreError>;

    async fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError>;

    /// Claims up to `limit` pending deliveries due at `now`, earliest first, leased until
    /// `now + lease`, leaving out those the scheduler holds back ([`QuarantineStore`]). A due
    /// row that cannot be read is not claimed: it comes back in [`Claimed::unreadable`] for the
    /// scheduler to hold back, and every other row is claimed as usual.
    ///
    /// [`QuarantineStore`]: crate::store::QuarantineStore
    async fn claim_due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
    ) -> Result<Claimed, StoreError>;

    /// Returns `sending` deliveries whose lease lapsed before `now` to `pending`; how many.
    async fn rescue_expired_leases(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Applies senders' reports in one transaction, skipping those whose lease is no longer
    /// current; returns how many applied.
    async fn record_deliveries(&self, reports: &[DeliveryReport], now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Applies one report and writes `events` in the same transaction, only if the claim is still
    /// current; false (and nothing written) otherwise. A channel that writes to the store (the
    /// `realtime` channel) delivers exactly once through this.
    async fn record_delivery_with_events(
        &self,
        report: &DeliveryReport,
        events: &[ChangeEvent],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Which of `claims` (delivery id, lease) are still current: `sending` under that lease. A
    /// sender checks before calling a channel, so a queue message redelivered after its claim
    /// was settled or rescued is not sent again.
    async fn current_claims(&self, claims: &[(DeliveryId, DateTime<Utc>)]) -> Result<HashSet<DeliveryId>, StoreError>;

    /// How many pending deliveries are due at `now`.
    async fn count_due_deliveries(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// When the next pending delivery or notice step falls due, or the next scheduled mailing
    /// starts, if any: a scheduler sleeps no longer than that, so retries, escalations and starts
    /// go on time rather than at its next pass.
    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Waits until deliveries may have become due (a mailing started, deliveries were stored due
    /// now), or `timeout`. A wake-up is only a hint (coalesced, possibly spurious, possibly from
    /// another process); schedulers claim to find out.
    async fn wait_for_due(&self, timeout: Duration);

    /// How many deliveries are claimed (`sending`) now: handed to senders and not yet reported.
    /// Schedulers stop claiming above a bound, so the work queue never holds more than senders
    /// can finish within a lease.
    async fn count_claimed_deliveries(&self) -> Result<u64, StoreError>;
}
