//! Notices, their escalation steps and the inbox.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::store_error::StoreError;
use crate::{
    change::ChangeEvent,
    notice::{Acknowledged, DueStep, Escalation, Notice, NoticeFilter, NoticeId, StepMove},
    user::UserId,
};

/// Notices and their steps. A notice is acknowledged once, by whichever comes first: a cursor
/// of its person's stream reaching its in-app event ([`crate::store::StreamStore::advance_cursors`]),
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
    ///
    /// [`Constraint::NoticesIdempotency`]: super::Constraint::NoticesIdempotency
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
