//! The Store port: Herald's durable state. Adapters live in `herald-store` (SQLite, PostgreSQL).
//!
//! Contract, for every adapter:
//! - Every method is atomic: it commits all of its writes or none of them.
//! - Unique-key violations are reported as [`StoreError::Conflict`] naming the constraint, never
//!   as `Other`, so use cases can turn them into client errors.
//! - [`StoreError::Unavailable`] means the backend could not be reached or timed out; the
//!   operation may be retried. Anything else is [`StoreError::Other`].
//! - Timestamps round-trip with microsecond precision; ids are UUIDv7 and list orders follow them.

use std::{collections::HashSet, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use crate::store_error::{Constraint, StoreError};
use crate::{
    apikey::{ApiKey, ApiKeyId},
    calendar::{CalendarEvent, CalendarEventId},
    campaign::{Client, ClientFilter, ClientId, FirstAttempts, Mailing, MailingId, MailingStatus, MessageCounts},
    change::{ChangeEvent, OutboxEvent, Unpublished},
    delivery::{Claimed, Delivery, DeliveryId, DeliveryReport, DeliveryStatus, NewDelivery},
    notice::{Acknowledged, DueStep, Escalation, Notice, NoticeFilter, NoticeId, StepMove},
    notify::Preferences,
    quarantine::QuarantineStore,
    room::{Room, RoomId, RoomMessage, RoomMessageId},
    stream::StreamStore,
    task::{Attachment, AttachmentId, Task, TaskId, TaskStatus},
    user::{Email, NewUser, ProfileChange, User, UserCredentials, UserId, WebhookUrl},
};

/// Herald's durable state: every focused store trait, plus lifecycle. See the module docs for
/// the contract every adapter keeps.
#[async_trait]
pub trait Store:
    UserStore
    + TaskStore
    + OutboxStore
    + DeliveryStore
    + CampaignStore
    + CalendarStore
    + StreamStore
    + RoomStore
    + NoticeStore
    + QuarantineStore
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
    /// Apply this backend's pending migrations. Idempotent; safe to run from several processes.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// A cheap round trip, for readiness probes.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Releases connections; later calls fail.
    async fn close(&self);
}

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

/// Campaigns: clients, mailings, and their messages: deliveries whose `source_id` is the mailing
/// and `recipient_id` the client, of kind [`crate::campaign::MESSAGE_KIND`].
#[async_trait]
pub trait CampaignStore: Send + Sync {
    /// Stores a client. A taken phone is `Conflict` on [`Constraint::ClientsPhone`].
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

/// Accounts.
#[async_trait]
pub trait UserStore: crate::accounts::AccountStore + Send + Sync {
    /// Stores a new user. A taken email is `Conflict { constraint: "users_email_key" }`.
    async fn create_user(&self, user: &NewUser) -> Result<(), StoreError>;

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;

    async fn credentials_by_email(&self, email: &Email) -> Result<Option<UserCredentials>, StoreError>;

    /// The account linked to `subject` at OpenID Connect provider `issuer`, if any.
    async fn user_by_identity(&self, issuer: &str, subject: &str) -> Result<Option<User>, StoreError>;

    /// The subject at `issuer` linked to account `user`, if any.
    async fn linked_subject(&self, issuer: &str, user: UserId) -> Result<Option<String>, StoreError>;

    /// Links `subject` at `issuer` to account `user`; `Conflict` when that identity is linked
    /// already.
    async fn link_identity(
        &self,
        issuer: &str,
        subject: &str,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Gives account `user` `role`; answers the account as it now is, `NotFound` when it is gone.
    async fn set_role(&self, user: UserId, role: crate::user::Role) -> Result<User, StoreError>;

    /// Users in id order, starting after `after`, at most `limit`.
    async fn list_users(&self, after: Option<UserId>, limit: u32) -> Result<Vec<User>, StoreError>;

    /// Sets or clears (`None`) a user's webhook; `NotFound` when the user is gone.
    async fn set_webhook(&self, user: UserId, url: Option<&WebhookUrl>) -> Result<(), StoreError>;

    /// A user's webhook, if they set one (`None` too when the user is gone).
    async fn webhook(&self, user: UserId) -> Result<Option<WebhookUrl>, StoreError>;

    /// Changes a user's own profile: the user as it is now; `NotFound` when the user is gone.
    async fn update_profile(&self, user: UserId, change: &ProfileChange) -> Result<User, StoreError>;

    /// A user's preferences (the defaults when they set none); `None` when the user is gone.
    async fn preferences(&self, user: UserId) -> Result<Option<Preferences>, StoreError>;

    /// Replaces a user's preferences; `NotFound` when the user is gone.
    async fn set_preferences(&self, user: UserId, preferences: &Preferences) -> Result<(), StoreError>;

    /// Stores a new API key with the hash of its secret.
    async fn create_api_key(&self, key: &ApiKey, hash: &str) -> Result<(), StoreError>;

    /// The key whose secret hashes to `hash`, revoked ones too (the caller refuses those).
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;

    /// Keys in id order, after `after`, at most `limit`.
    async fn list_api_keys(&self, after: Option<ApiKeyId>, limit: u32) -> Result<Vec<ApiKey>, StoreError>;

    /// Revokes a key at `at` (one revoked already keeps its first time): the key as it is now;
    /// `NotFound` when there is no such key.
    async fn revoke_api_key(&self, id: ApiKeyId, at: DateTime<Utc>) -> Result<ApiKey, StoreError>;
}

/// Tasks and attachments. Every write stores its events in the outbox in the same transaction.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Stores a new task and its events.
    async fn create_task(&self, task: &Task, events: &[ChangeEvent]) -> Result<(), StoreError>;

    /// The task `id` if `owner` owns it.
    async fn task(&self, owner: UserId, id: TaskId) -> Result<Option<Task>, StoreError>;

    /// `owner`'s tasks in id order after `after`, optionally of one status, at most `limit`.
    async fn list_tasks(
        &self,
        owner: UserId,
        status: Option<TaskStatus>,
        after: Option<TaskId>,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError>;

    /// Replaces a task whose stored version is still `expected_version`, with its events.
    /// `NotFound` when it is gone; `Conflict` on [`Constraint::TaskVersion`] when it changed.
    async fn update_task(&self, task: &Task, expected_version: i64, events: &[ChangeEvent]) -> Result<(), StoreError>;

    /// Deletes a task of `owner` and all its attachments, with the events `events` makes from
    /// them, in one transaction. Returns what was deleted (callers remove the files), or `None`.
    async fn delete_task(
        &self,
        owner: UserId,
        id: TaskId,
        events: &DeleteEvents<'_>,
    ) -> Result<Option<(Task, Vec<Attachment>)>, StoreError>;

    /// Stores an attachment of a task its owner owns, with its events. `NotFound` when the task
    /// is gone or not the attachment owner's.
    async fn add_attachment(&self, attachment: &Attachment, events: &[ChangeEvent]) -> Result<(), StoreError>;

    /// The attachment `id` if `owner` owns it.
    async fn attachment(&self, owner: UserId, id: AttachmentId) -> Result<Option<Attachment>, StoreError>;

    /// The attachments of a task in id order, or `None` when `owner` has no such task.
    async fn list_attachments(&self, owner: UserId, task: TaskId) -> Result<Option<Vec<Attachment>>, StoreError>;

    /// Deletes an attachment of `owner` with the events `events` makes from it; returns it.
    async fn delete_attachment(
        &self,
        owner: UserId,
        id: AttachmentId,
        events: &AttachmentEvents<'_>,
    ) -> Result<Option<Attachment>, StoreError>;

    /// Which of `keys` some attachment references.
    async fn referenced_storage_keys(&self, keys: &[String]) -> Result<HashSet<String>, StoreError>;
}

/// The transactional outbox, and leases for workers of which only one may be active.
///
/// Every event gets a gap-free offset within its channel in the transaction that writes it.
/// Within a channel, outbox order (`seq`) is commit order.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Unpublished events in `seq` order, at most `limit`, all committed and safe to publish in
    /// this order: on PostgreSQL only rows written by transactions older than every transaction
    /// still running (the visibility horizon), so a long transaction that commits late is never
    /// overtaken by a later one. Streams the relay holds back ([`QuarantineStore`]) are left out,
    /// and so is every event of a stream with a row in the batch that cannot be read (that row
    /// named, by its stream, in [`Unpublished::unreadable`]): a stream never skips an offset.
    async fn unpublished_events(&self, limit: u32) -> Result<Unpublished, StoreError>;

    /// Appends events that stand alone (no other write goes with them, like a mailing's progress
    /// snapshot) to their channels, in one transaction.
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

/// The calendar: events, their change events and their reminder deliveries, written together.
///
/// An owner's writes take turns (each locks the owner first), so the overlap check and the write
/// are one step: two events of one owner never overlap, however many requests race.
#[async_trait]
pub trait CalendarStore: Send + Sync {
    /// Stores an event with its change events and reminders. An overlap with another event of
    /// the owner is `Conflict` on [`Constraint::EventsOverlap`] and writes nothing.
    async fn create_calendar_event(
        &self,
        event: &CalendarEvent,
        events: &[ChangeEvent],
        reminders: &[NewDelivery],
    ) -> Result<(), StoreError>;

    /// The event `id` if `owner` owns it.
    async fn calendar_event(&self, owner: UserId, id: CalendarEventId) -> Result<Option<CalendarEvent>, StoreError>;

    /// Replaces an event of its owner: cancels its pending reminders, stores `reminders` (a
    /// reminder stored before under the same key is kept as it is), writes `events`. `NotFound`
    /// when it is gone; `Conflict` on [`Constraint::EventsOverlap`] on an overlap.
    async fn update_calendar_event(
        &self,
        event: &CalendarEvent,
        events: &[ChangeEvent],
        reminders: &[NewDelivery],
    ) -> Result<(), StoreError>;

    /// Deletes an event of `owner`, cancels its pending reminders and notifications (at `now`)
    /// and writes the events `events` makes from it; returns it, or `None`.
    async fn delete_calendar_event(
        &self,
        owner: UserId,
        id: CalendarEventId,
        now: DateTime<Utc>,
        events: &EventDeleteEvents<'_>,
    ) -> Result<Option<CalendarEvent>, StoreError>;

    /// `owner`'s events overlapping `[from, to)`, by start (then id), after `after` (the start
    /// and id of the last one seen), at most `limit`.
    async fn list_calendar_events(
        &self,
        owner: UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<(DateTime<Utc>, CalendarEventId)>,
        limit: u32,
    ) -> Result<Vec<CalendarEvent>, StoreError>;

    /// Deletes up to `limit` events that ended before `before`; returns how many.
    async fn delete_calendar_events_ended_before(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;

    /// The reminder deliveries of an event of `owner` and the notifications they led to, oldest
    /// first, or `None` for no such event.
    async fn calendar_event_reminders(
        &self,
        owner: UserId,
        id: CalendarEventId,
    ) -> Result<Option<Vec<Delivery>>, StoreError>;
}

/// Chat rooms, their members and messages. Every write stores its events in the outbox in the
/// same transaction, each with the next offset of its channel. Rooms are never deleted.
///
/// Membership is the only access rule the store keeps itself: a message is stored only for a
/// member of its room. Who may add members is the use case's to decide.
#[async_trait]
pub trait RoomStore: Send + Sync {
    /// Stores a room, makes its owner its first member (joined at `created_at`) and writes
    /// `events`. `NotFound` when the owner is not a user.
    async fn create_room(&self, room: &Room, events: &[ChangeEvent]) -> Result<(), StoreError>;

    /// The rooms `user` is a member of, in id order after `after`, at most `limit`.
    async fn rooms_of(&self, user: UserId, after: Option<RoomId>, limit: u32) -> Result<Vec<Room>, StoreError>;

    /// The room `id`, whoever asks (callers check membership).
    async fn room(&self, id: RoomId) -> Result<Option<Room>, StoreError>;

    /// Whether `user` is a member of `room` (false too when either is unknown).
    async fn is_member(&self, room: RoomId, user: UserId) -> Result<bool, StoreError>;

    /// Makes `user` a member of `room` (joined at `now`) and writes `events`. Idempotent: false,
    /// and no events written, when they are a member already. `NotFound` when the room or the
    /// user does not exist.
    async fn add_member(
        &self,
        room: RoomId,
        user: UserId,
        events: &[ChangeEvent],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Ends `user`'s membership of `room` and writes `events`. False, and no events written, when
    /// they are not a member (or either is unknown). Their messages stay.
    async fn remove_member(&self, room: RoomId, user: UserId, events: &[ChangeEvent]) -> Result<bool, StoreError>;

    /// Stores a message and writes `events`, only if its author is a member of its room:
    /// `NotFound` (nothing written) otherwise.
    async fn post_message(&self, message: &RoomMessage, events: &[ChangeEvent]) -> Result<(), StoreError>;

    /// A room's messages **newest first**: those before `before` (the oldest id of the previous
    /// page), at most `limit`.
    async fn room_messages(
        &self,
        room: RoomId,
        before: Option<RoomMessageId>,
        limit: u32,
    ) -> Result<Vec<RoomMessage>, StoreError>;
}

/// Notices and their steps. A notice is acknowledged once, by whichever comes first: a cursor
/// of its person's stream reaching its in-app event ([`crate::stream::StreamStore::advance_cursors`]),
/// or the person marking it read. Acknowledging cancels every step still to come, and the
/// deliveries of its steps not yet claimed, in the same transaction. An escalation pass holds
/// each notice it moves (PostgreSQL: `FOR UPDATE … SKIP LOCKED`), so of a racing
/// acknowledgement and due step exactly one wins: the step goes and the acknowledgement comes
/// after it, or the acknowledgement cancels the step.
#[async_trait]
pub trait NoticeStore: Send + Sync {
    /// Stores a notice and its steps. With `event`, its first step is in-app and went at once:
    /// the event is written, the step `sent`, the notice in the inbox. `Conflict` on
    /// [`Constraint::NoticesIdempotency`] when its caller used its idempotency key already;
    /// `NotFound` when its person is not a user.
    async fn create_notice(&self, notice: &Notice, event: Option<&ChangeEvent>) -> Result<(), StoreError>;

    async fn notice(&self, id: NoticeId) -> Result<Option<Notice>, StoreError>;

    /// The notice `caller` made with idempotency key `key`.
    async fn notice_by_key(&self, caller: &str, key: &str) -> Result<Option<Notice>, StoreError>;

    /// Notices matching `filter`, newest first, before `before`, at most `limit`.
    async fn list_notices(
        &self,
        filter: &NoticeFilter,
        before: Option<NoticeId>,
        limit: u32,
    ) -> Result<Vec<Notice>, StoreError>;

    /// `user`'s inbox: the notices whose in-app step went, newest first, before `before`, only
    /// the unread ones with `unread`, at most `limit`.
    async fn inbox(
        &self,
        user: UserId,
        unread: bool,
        before: Option<NoticeId>,
        limit: u32,
    ) -> Result<Vec<Notice>, StoreError>;

    /// Marks `user`'s inbox notice `id` read (every unread one with `None`) at `now`, which
    /// acknowledges those still pending. Returns the notices acknowledged and how many were
    /// marked; `NotFound` when `id` is not in `user`'s inbox.
    async fn read_notices(
        &self,
        user: UserId,
        id: Option<NoticeId>,
        now: DateTime<Utc>,
    ) -> Result<(u64, Vec<Acknowledged>), StoreError>;

    /// One escalation pass at `now`: settles the steps whose deliveries reported, then takes up
    /// to `limit` due steps of unacknowledged notices, earliest first, and applies what `plan`
    /// makes of each (with its person's contact points and preferences read in the same
    /// transaction); a notice whose every step ended settles. Notices the escalation worker
    /// holds back are left out; a notice that cannot be read, or whose step's writes fail with
    /// an error other than [`StoreError::Unavailable`], is left as it was and named in
    /// [`Escalation::failed`], and the pass goes on with the others.
    async fn escalate_notices(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        plan: &StepPlan<'_>,
    ) -> Result<Escalation, StoreError>;

    /// Deletes up to `limit` notices made before `before` that no longer wait for anything (every
    /// status but `pending`), with their steps; returns how many.
    async fn delete_notices_settled_before(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;
}

/// What an escalation pass makes of a due step.
pub type StepPlan<'a> = dyn Fn(&DueStep) -> StepMove + Sync + 'a;

/// Builds the change events of a calendar event's deletion.
pub type EventDeleteEvents<'a> = dyn Fn(&CalendarEvent) -> Vec<ChangeEvent> + Sync + 'a;

/// Builds the events of a task deletion from the task and the attachments deleted with it.
pub type DeleteEvents<'a> = dyn Fn(&Task, &[Attachment]) -> Vec<ChangeEvent> + Sync + 'a;

/// Builds the events of an attachment deletion.
pub type AttachmentEvents<'a> = dyn Fn(&Attachment) -> Vec<ChangeEvent> + Sync + 'a;
