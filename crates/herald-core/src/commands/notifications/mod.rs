//! `notifications.*`: notices that reach a person and escalate until someone acknowledges, and
//! the person's inbox of in-app notices. Admins and API keys with the `notify` scope send them;
//! each person reads and marks their own. The rules of a step are in [`crate::notice`]; the
//! escalation pass runs with the delivery scheduler.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    command::{Access, Command, Ctx},
    error::{ApiError, ErrorCode},
    identity::Caller,
    notice::{Notice, NoticeFilter, NoticeId, NoticeStatus, NoticeStep, StepStatus},
    notify::{NoticeChannel, NoticeType},
    page::{self, Page},
    services::Services,
    store::{Constraint, StoreError},
    user::{Role, UserId},
};

mod input;

pub use input::{NotifyInput, StepInput};
use input::{checked, request_hash};

/// One step of a notice, as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepView {
    pub channel: NoticeChannel,
    /// Seconds after the notice was made that it is due.
    pub after: u32,
    /// `pending`, `deferred`, `sending` (handed to its channel), `sent`, `skipped`, `cancelled`,
    /// `failed` or `expired`.
    pub status: StepStatus,
    /// When it is due; for a deferred step, the end of the quiet hours.
    pub due_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// Why it was skipped, deferred, cancelled or failed.
    pub reason: Option<String>,
}

impl From<&NoticeStep> for StepView {
    fn from(step: &NoticeStep) -> Self {
        Self {
            channel: step.channel,
            after: step.after,
            status: step.status,
            due_at: step.due_at,
            sent_at: step.sent_at,
            reason: step.reason.clone(),
        }
    }
}

/// A notice as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoticeView {
    pub id: Uuid,
    pub user_id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: Option<serde_json::Value>,
    pub urgent: bool,
    /// `pending` (steps to come), `acknowledged`, `delivered` (every step ended, one at least
    /// sent, no acknowledgement), `expired` or `failed` (nothing could be sent).
    pub status: NoticeStatus,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When a session acknowledged its in-app event, or the person marked it read.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// When the person marked it read.
    pub read_at: Option<DateTime<Utc>>,
    pub steps: Vec<StepView>,
}

impl From<&Notice> for NoticeView {
    fn from(n: &Notice) -> Self {
        Self {
            id: n.id.0,
            user_id: n.user_id.0,
            kind: n.kind.as_str().to_owned(),
            title: n.title.clone(),
            body: n.body.clone(),
            data: n.data.clone(),
            urgent: n.urgent,
            status: n.status,
            created_at: n.created_at,
            expires_at: n.expires_at,
            acknowledged_at: n.acknowledged_at,
            read_at: n.read_at,
            steps: n.steps.iter().map(StepView::from).collect(),
        }
    }
}

/// A notice made, or found by its idempotency key.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotifyOutput {
    #[serde(flatten)]
    pub notice: NoticeView,
    /// False when the idempotency key named a notice made before (answered 200, not 201).
    pub created: bool,
}

/// The caller's own scope for idempotency keys.
fn caller_of(cx: &Ctx) -> Result<String, ApiError> {
    match &cx.caller {
        Caller::Key(key) => Ok(format!("key:{}", key.id)),
        _ => Ok(format!("user:{}", cx.identity()?.user_id)),
    }
}

/// Makes a notice: its in-app first step goes at once, the others when due unless acknowledged.
#[derive(Debug)]
pub struct Create;

impl Create {
    /// The notice `key` names for this caller, if the request is the same one.
    async fn repeat(svc: &Services, caller: &str, key: &str, hash: &str) -> Result<Option<NotifyOutput>, ApiError> {
        let Some(found) = svc.store.notice_by_key(caller, key).await? else { return Ok(None) };
        if found.request_hash.as_deref() != Some(hash) {
            return Err(ApiError::new(
                ErrorCode::IdempotencyConflict,
                "this idempotency key was used for a different notice",
            ));
        }
        Ok(Some(NotifyOutput { notice: NoticeView::from(&found), created: false }))
    }
}

#[async_trait]
impl Command for Create {
    const NAME: &'static str = "notifications.create";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str =
        "Notify a person: in-app, then email, SMS or webhook, each step only if nobody acknowledged it by then";
    type Input = NotifyInput;
    type Output = NotifyOutput;

    async fn run(&self, svc: &Services, cx: &Ctx, input: NotifyInput) -> Result<NotifyOutput, ApiError> {
        let now = svc.clock.now();
        checked(&input, now)?;
        let caller = caller_of(cx)?;
        let hash = request_hash(&input);
        if let Some(key) = &input.idempotency_key
            && let Some(repeat) = Self::repeat(svc, &caller, key, &hash).await?
        {
            return Ok(repeat);
        }
        let user = UserId(input.user_id);
        if svc.store.user_by_id(user).await?.is_none() {
            return Err(ApiError::invalid_field("user_id", "no such user"));
        }
        let steps = input
            .steps
            .iter()
            .map(|s| NoticeStep {
                channel: s.channel,
                after: s.after,
                status: StepStatus::Pending,
                due_at: now + chrono::Duration::seconds(i64::from(s.after)),
                sent_at: None,
                reason: None,
                delivery_id: None,
            })
            .collect();
        let notice = Notice {
            id: NoticeId::new(),
            user_id: user,
            caller: caller.clone(),
            kind: input.kind,
            title: input.title,
            body: input.body,
            data: input.data.map(serde_json::Value::Object),
            urgent: input.urgent,
            expires_at: input.expires_at,
            idempotency_key: input.idempotency_key,
            request_hash: Some(hash.clone()),
            status: NoticeStatus::Pending,
            created_at: now,
            acknowledged_at: None,
            read_at: None,
            event: None,
            steps,
        };
        // An in-app first step with no delay goes with the notice, in its transaction.
        let first_now = notice.steps.first().is_some_and(|s| s.channel == NoticeChannel::Realtime && s.after == 0);
        let event = first_now.then(|| notice.event(now));
        match svc.store.create_notice(&notice, event.as_ref()).await {
            Ok(()) => {}
            Err(err) if err.is_conflict_on(Constraint::NoticesIdempotency) => {
                // A racing request with the same key stored first.
                let key = notice.idempotency_key.as_deref().unwrap_or_default();
                return Self::repeat(svc, &caller, key, &hash).await?.ok_or_else(|| {
                    ApiError::new(ErrorCode::Conflict, "a notice with this idempotency key is being made")
                });
            }
            Err(StoreError::NotFound) => return Err(ApiError::invalid_field("user_id", "no such user")),
            Err(err) => return Err(err.into()),
        }
        svc.metrics.notices.reached(NoticeStatus::Pending);
        let mut stored = notice;
        if first_now && let Some(first) = stored.steps.first_mut() {
            first.status = StepStatus::Sent;
            first.sent_at = Some(now);
            svc.metrics.notices.step(NoticeChannel::Realtime, StepStatus::Sent);
        }
        tracing::info!(notice_id = %stored.id, user_id = %stored.user_id, steps = stored.steps.len(), "notice made");
        Ok(NotifyOutput { notice: NoticeView::from(&stored), created: true })
    }
}

/// Input naming one notice.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoticeRef {
    /// The notice's id.
    pub id: Uuid,
}

/// A notice and its steps: admins see any; a person sees their own.
#[derive(Debug)]
pub struct Get;

#[async_trait]
impl Command for Get {
    const NAME: &'static str = "notifications.get";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "A notice and where each of its steps stands";
    type Input = NoticeRef;
    type Output = NoticeView;

    async fn run(&self, svc: &Services, cx: &Ctx, input: NoticeRef) -> Result<NoticeView, ApiError> {
        let me = cx.identity()?;
        let found = svc.store.notice(NoticeId(input.id)).await?;
        match found {
            Some(n) if me.role == Role::Admin || n.user_id == me.user_id => Ok(NoticeView::from(&n)),
            _ => Err(ApiError::new(ErrorCode::NotFound, "no such notice")),
        }
    }
}

/// Input of `notifications.list`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListNoticesInput {
    /// Only this person's.
    pub user_id: Option<Uuid>,
    /// Only those in this status.
    pub status: Option<NoticeStatus>,
    /// Only those of this type.
    #[serde(rename = "type")]
    #[schema(value_type = Option<String>, pattern = "^[a-z0-9._-]{1,64}$")]
    pub kind: Option<NoticeType>,
    /// Items per page (default 50).
    #[schema(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[schema(max_length = 64)]
    pub cursor: Option<String>,
}

/// Notices, newest first, for admins.
#[derive(Debug)]
pub struct List;

#[async_trait]
impl Command for List {
    const NAME: &'static str = "notifications.list";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "List notices, newest first, by person, status or type";
    type Input = ListNoticesInput;
    type Output = Page<NoticeView>;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: ListNoticesInput) -> Result<Page<NoticeView>, ApiError> {
        let (limit, before) = page::request::<NoticeId>(input.limit, input.cursor.as_deref())?;
        let filter = NoticeFilter { user: input.user_id.map(UserId), status: input.status, kind: input.kind };
        let rows = svc.store.list_notices(&filter, before, limit + 1).await?;
        Ok(Page::from_rows(rows, limit, |n| n.id.0, |n| NoticeView::from(&n)))
    }
}

/// Input of `notifications.inbox`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboxInput {
    /// Only the unread ones.
    #[serde(default)]
    pub unread: Option<bool>,
    /// Items per page (default 50).
    #[schema(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[schema(max_length = 64)]
    pub cursor: Option<String>,
}

/// The caller's inbox: their in-app notices, newest first.
#[derive(Debug)]
pub struct Inbox;

#[async_trait]
impl Command for Inbox {
    const NAME: &'static str = "notifications.inbox";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Your inbox: your in-app notices, newest first";
    type Input = InboxInput;
    type Output = Page<NoticeView>;

    async fn run(&self, svc: &Services, cx: &Ctx, input: InboxInput) -> Result<Page<NoticeView>, ApiError> {
        let me = cx.identity()?;
        let (limit, before) = page::request::<NoticeId>(input.limit, input.cursor.as_deref())?;
        let rows = svc.store.inbox(me.user_id, input.unread.unwrap_or(false), before, limit + 1).await?;
        Ok(Page::from_rows(rows, limit, |n| n.id.0, |n| NoticeView::from(&n)))
    }
}

/// Marks one of the caller's notices read, which acknowledges it.
#[derive(Debug)]
pub struct Read;

#[async_trait]
impl Command for Read {
    const NAME: &'static str = "notifications.read";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Mark one of your notices read (it is acknowledged: nothing more is sent)";
    type Input = NoticeRef;
    type Output = NoticeView;

    async fn run(&self, svc: &Services, cx: &Ctx, input: NoticeRef) -> Result<NoticeView, ApiError> {
        let me = cx.identity()?;
        let now = svc.clock.now();
        let id = NoticeId(input.id);
        match svc.store.read_notices(me.user_id, Some(id), now).await {
            Ok((_, acked)) => svc.metrics.notices.acknowledged(&acked, now),
            Err(StoreError::NotFound) => return Err(ApiError::new(ErrorCode::NotFound, "no such notice")),
            Err(err) => return Err(err.into()),
        }
        let notice = svc.store.notice(id).await?.ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such notice"))?;
        Ok(NoticeView::from(&notice))
    }
}

/// Input of `notifications.read_all`: nothing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadAllInput {}

/// How many notices were marked read.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadAllOutput {
    pub read: u64,
}

/// Marks every unread notice of the caller read.
#[derive(Debug)]
pub struct ReadAll;

#[async_trait]
impl Command for ReadAll {
    const NAME: &'static str = "notifications.read_all";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Mark all your notices read (each is acknowledged)";
    type Input = ReadAllInput;
    type Output = ReadAllOutput;

    async fn run(&self, svc: &Services, cx: &Ctx, _input: ReadAllInput) -> Result<ReadAllOutput, ApiError> {
        let me = cx.identity()?;
        let now = svc.clock.now();
        let (read, acked) = svc.store.read_notices(me.user_id, None, now).await?;
        svc.metrics.notices.acknowledged(&acked, now);
        Ok(ReadAllOutput { read })
    }
}
