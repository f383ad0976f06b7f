//! Campaigns: clients, mailings, their messages and the mailing timeline.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::store_error::StoreError;
use crate::{
    campaign::{Client, ClientFilter, ClientId, FirstAttempts, Mailing, MailingId, MailingStatus, MessageCounts},
    delivery::{Delivery, DeliveryId, DeliveryStatus},
};

/// Campaigns: clients, mailings, and their messages: deliveries whose `source_id` is the mailing
/// and `recipient_id` the client, of kind [`crate::campaign::MESSAGE_KIND`].
#[async_trait]
pub trait CampaignStore: Send + Sync {
    /// Stores a client. A taken phone is `Conflict` on [`Constraint::ClientsPhone`].
    ///
    /// [`Constraint::ClientsPhone`]: super::Constraint::ClientsPhone
    async fn create_client(&self, client: &Client) -> Result<(), StoreError>;

    /// Stores many clients in one transaction, skipping each whose phone is taken (stored
    /// already, or earlier in `clients`). Returns the indexes in `clients` of those skipped.
    async fn insert_clients(&self, clients: &[Client]) -> Result<Vec<usize>, StoreError>;

    async fn client(&self, id: ClientId) -> Result<Option<Client>, StoreError>;

    /// Clients that `filter` admits, in id order after `after`, at most `limit`.
    async fn list_clients(
        &self,
        filter: &ClientFilter,
        after: Option<ClientId>,
        limit: u32,
    ) -> Result<Vec<Client>, StoreError>;

    /// Replaces a stored client. `NotFound` when it is gone; `Conflict` on [`Constraint::ClientsPhone`]
    /// when its new phone is taken.
    ///
    /// [`Constraint::ClientsPhone`]: super::Constraint::ClientsPhone
    async fn update_client(&self, client: &Client) -> Result<(), StoreError>;

    /// Deletes a client and cancels its pending messages, together; false when there was none.
    async fn delete_client(&self, id: ClientId, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Stores a mailing.
    async fn create_mailing(&self, mailing: &Mailing) -> Result<(), StoreError>;

    async fn mailing(&self, id: MailingId) -> Result<Option<Mailing>, StoreError>;

    /// Mailings in id order after `after`, optionally of one status, at most `limit`.
    async fn list_mailings(
        &self,
        status: Option<MailingStatus>,
        after: Option<MailingId>,
        limit: u32,
    ) -> Result<Vec<Mailing>, StoreError>;

    /// Replaces a mailing whose stored status is still `expected`: `Conflict` on [`Constraint::MailingStatus`]
    /// when it moved on, `NotFound` when it is gone. When it is `running`, the same transaction
    /// moves the deadline of its live messages to the new `end_at` (a pending message due at or
    /// after it expires) and gives its pending messages the new text.
    ///
    /// [`Constraint::MailingStatus`]: super::Constraint::MailingStatus
    async fn update_mailing(
        &self,
        mailing: &Mailing,
        expected: MailingStatus,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Starts a `scheduled` mailing. In one transaction: marks it `running`, fixes its clients as
    /// those stored now, and creates, in one set-based statement, a pending `provider` message
    /// for each of its first `chunk` matching clients by id: recipient the phone, payload `{phone,
    /// text, mailing_id, client_id, window?}` (the window with the client's zone), deadline
    /// `end_at`, first attempt from `plan` by the client's zone. A message whose first attempt
    /// would fall at or after `end_at` is stored `expired`. The rest of its clients get theirs
    /// from [`CampaignStore::continue_mailing`], chunk by chunk; a mailing is never finished while
    /// some are still to be made, and one that got no live message once all are made is
    /// `finished` at once. Wakes schedulers waiting in [`DeliveryStore::wait_for_due`].
    ///
    /// Returns how many messages this call created, or `None` (nothing done) when the mailing is
    /// not `scheduled`: gone, started already by another scheduler, or cancelled.
    ///
    /// [`DeliveryStore::wait_for_due`]: super::DeliveryStore::wait_for_due
    async fn start_mailing(
        &self,
        id: MailingId,
        plan: &FirstAttempts,
        now: DateTime<Utc>,
        chunk: u32,
    ) -> Result<Option<u64>, StoreError>;

    /// Creates the messages of the next `chunk` clients of a `running` mailing whose messages are
    /// still being made, as [`CampaignStore::start_mailing`] does, in one transaction that holds
    /// the mailing (so two schedulers never make one client's message twice, and a cancel or an
    /// end-time change waits or wins). Returns how many were created, or `None` when the mailing
    /// is not running or has all its messages.
    async fn continue_mailing(
        &self,
        id: MailingId,
        plan: &FirstAttempts,
        now: DateTime<Utc>,
        chunk: u32,
    ) -> Result<Option<u64>, StoreError>;

    /// `running` mailings whose messages are still being made, in id order, at most `limit`.
    async fn materializing_mailings(&self, limit: u32) -> Result<Vec<Mailing>, StoreError>;

    /// Cancels a `scheduled` or `running` mailing and its pending messages, together; returns
    /// how many messages were cancelled. `NotFound` when it is gone; a cancelled one answers
    /// `Ok(0)`; a finished one is `Conflict` on [`Constraint::MailingStatus`].
    ///
    /// [`Constraint::MailingStatus`]: super::Constraint::MailingStatus
    async fn cancel_mailing(&self, id: MailingId, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// `scheduled` mailings whose `start_at` is at or before `now`, earliest first, at most `limit`.
    async fn due_mailings(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<MailingId>, StoreError>;

    /// Marks `finished` every `running` mailing that has no pending or sending message left;
    /// returns their ids.
    async fn finish_mailings(&self, now: DateTime<Utc>) -> Result<Vec<MailingId>, StoreError>;

    /// Message counts by status of each of `mailings` (absent ones count nothing): from the
    /// timeline's counters (see [`CampaignStore::mailing_timeline`]) and the messages being sent
    /// now, so as cheap at a million messages as at ten.
    async fn message_counts(
        &self,
        mailings: &[MailingId],
    ) -> Result<std::collections::HashMap<MailingId, MessageCounts>, StoreError>;

    /// A mailing's messages in id order after `after`, optionally of one status, at most `limit`.
    async fn list_messages(
        &self,
        mailing: MailingId,
        status: Option<DeliveryStatus>,
        after: Option<DeliveryId>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// The timeline's counters summed into buckets of `width` seconds (a multiple of
    /// [`crate::timeline::BUCKET_SECONDS`]) over the stored buckets starting in `[from, to)` (Unix
    /// seconds): of mailing `mailing`, or of every mailing when `None`. Each sum comes with the
    /// start of its bucket (a multiple of `width`), earliest first, at most `limit`; buckets with
    /// nothing counted are absent.
    ///
    /// Contract: every change of a mailing message's status is counted, in the transaction
    /// that makes it, in the bucket of the change's `now` — `created` (and `expired`, for a
    /// message stored expired) by [`CampaignStore::start_mailing`] and
    /// [`CampaignStore::continue_mailing`]; `expired` by [`CampaignStore::update_mailing`];
    /// `cancelled` by [`CampaignStore::cancel_mailing`] and [`CampaignStore::delete_client`];
    /// and by [`DeliveryStore::record_deliveries`], for each report applied: its final status,
    /// `retried` for a report back to pending after a call, and a call (`attempts`, and its time
    /// in `calls`) for each report with a `call_time`.
    ///
    /// [`DeliveryStore::record_deliveries`]: super::DeliveryStore::record_deliveries
    async fn mailing_timeline(
        &self,
        mailing: Option<MailingId>,
        width: i64,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<(i64, crate::timeline::Tally)>, StoreError>;

    /// The timeline's counters over the stored buckets starting in `[from, to)`, summed per
    /// mailing, in mailing id order, at most `limit`; mailings with nothing counted are absent.
    async fn mailing_tallies(
        &self,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<(MailingId, crate::timeline::Tally)>, StoreError>;
}
