//! `mailings.*`: a text sent to every matching client between a start and an end, for
//! administrators. A mailing whose start has come is started at once by the command that
//! creates or moves it; the scheduler's `mailings` job starts the rest at their `start_at`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    campaign::{Mailing, MailingFilter, MailingId, MailingStatus, MessageCounts, MessageText},
    command::{Access, Command, Ctx},
    delivery::{DailyWindow, SendWindow},
    error::{ApiError, ErrorCode},
    page::{self, Page},
    services::Services,
    store::{Constraint, StoreError},
};

use crate::shapes::{Deleted, present};

mod lifecycle;
mod messages;
pub mod timeline;

pub use lifecycle::{CHUNK, FIRST_CHUNK, materialize, start, start_due};
pub use messages::{MessagePage, MessageStatus, MessageView, Messages, MessagesInput};

/// A mailing as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "start_at": "2026-11-22T10:00:00Z", "end_at": "2026-11-23T10:00:00Z", "text": "Sale today", "filter": {"operator_codes": ["916"]}, "window": {"from": "09:00", "to": "21:00"}, "status": "running", "created_at": "2026-11-22T09:00:00Z", "updated_at": "2026-11-22T10:00:00Z"}))]
pub struct MailingView {
    pub id: Uuid,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub text: String,
    pub filter: MailingFilter,
    /// Sending hours in each client's local time; absent: any time.
    #[schema(value_type = Option<SendWindow>)]
    pub window: Option<DailyWindow>,
    pub status: MailingStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Mailing> for MailingView {
    fn from(m: &Mailing) -> Self {
        Self {
            id: m.id.0,
            start_at: m.start_at,
            end_at: m.end_at,
            text: m.text.as_str().to_owned(),
            filter: m.filter.clone(),
            window: m.window,
            status: m.status,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such mailing")
}

/// Checks the period: the end after the start.
fn check_period(start_at: DateTime<Utc>, end_at: DateTime<Utc>) -> Result<(), ApiError> {
    if end_at <= start_at {
        return Err(ApiError::invalid_field("end_at", "must be after start_at"));
    }
    Ok(())
}

/// Starts `mailing` if it is scheduled and due, then reads it back as it now stands.
async fn start_if_due(svc: &Services, mailing: Mailing) -> Result<Mailing, ApiError> {
    let now = svc.clock.now();
    if mailing.status != MailingStatus::Scheduled || mailing.start_at > now {
        return Ok(mailing);
    }
    start(svc.store.as_ref(), &svc.metrics, &mailing, now).await?;
    Ok(svc.store.mailing(mailing.id).await?.unwrap_or(mailing))
}

/// Input of `mailings.create`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"start_at": "2026-11-22T10:00:00Z", "end_at": "2026-11-23T10:00:00Z", "text": "Sale today", "filter": {"operator_codes": ["916"], "tags": ["vip"]}, "window": {"from": "09:00", "to": "21:00"}}))]
#[schema(as = mailings::CreateInput)]
pub struct CreateInput {
    /// When sending starts; now or earlier starts at once.
    pub start_at: DateTime<Utc>,
    /// Nothing is sent at or after this instant.
    pub end_at: DateTime<Utc>,
    #[schema(value_type = String, min_length = 1, max_length = 1000)]
    pub text: MessageText,
    /// Which clients receive it; absent: every client.
    pub filter: Option<MailingFilter>,
    /// Sending hours in each client's local time.
    #[schema(value_type = Option<SendWindow>)]
    pub window: Option<DailyWindow>,
}

/// Creates a mailing; one whose period has begun starts at once.
#[derive(Debug)]
pub struct Create;

#[async_trait]
impl Command for Create {
    const NAME: &'static str = "mailings.create";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "Create a mailing (admin)";
    type Input = CreateInput;
    type Output = MailingView;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: CreateInput) -> Result<MailingView, ApiError> {
        let now = svc.clock.now();
        check_period(input.start_at, input.end_at)?;
        if input.end_at <= now {
            return Err(ApiError::invalid_field("end_at", "must be in the future"));
        }
        let mailing = Mailing {
            id: MailingId::new(),
            start_at: input.start_at,
            end_at: input.end_at,
            text: input.text,
            filter: input.filter.unwrap_or_default(),
            window: input.window,
            status: MailingStatus::Scheduled,
            created_at: now,
            updated_at: now,
        };
        svc.store.create_mailing(&mailing).await?;
        tracing::info!(mailing_id = %mailing.id, start_at = %mailing.start_at, "mailing created");
        Ok(MailingView::from(&start_if_due(svc, mailing).await?))
    }
}

/// Input naming one mailing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailingRef {
    /// The mailing's id.
    pub id: Uuid,
}

/// Reads one mailing.
#[derive(Debug)]
pub struct Get;

#[async_trait]
impl Command for Get {
    const NAME: &'static str = "mailings.get";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "Read a mailing (admin)";
    type Input = MailingRef;
    type Output = MailingView;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: MailingRef) -> Result<MailingView, ApiError> {
        let mailing = svc.store.mailing(MailingId(input.id)).await?.ok_or_else(not_found)?;
        Ok(MailingView::from(&mailing))
    }
}

/// Input of `mailings.list` and `mailings.stats`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = mailings::ListInput)]
pub struct ListInput {
    /// Only mailings with this status.
    pub status: Option<MailingStatus>,
    /// Items per page (default 50).
    #[schema(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[schema(max_length = 64)]
    pub cursor: Option<String>,
}

async fn list_page(svc: &Services, input: &ListInput) -> Result<(Vec<Mailing>, u32), ApiError> {
    let (limit, after) = page::request::<MailingId>(input.limit, input.cursor.as_deref())?;
    Ok((svc.store.list_mailings(input.status, after, limit + 1).await?, limit))
}

/// Lists mailings, oldest first.
#[derive(Debug)]
pub struct List;

#[async_trait]
impl Command for List {
    const NAME: &'static str = "mailings.list";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "List mailings (admin)";
    type Input = ListInput;
    type Output = Page<MailingView>;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: ListInput) -> Result<Page<MailingView>, ApiError> {
        let (rows, limit) = list_page(svc, &input).await?;
        Ok(Page::from_rows(rows, limit, |m| m.id.0, |m| MailingView::from(&m)))
    }
}

/// Input of `mailings.update`: only the fields present change. Before the start anything may
/// change; once running, only `end_at` and the `text` of what is unsent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "end_at": "2026-11-24T10:00:00Z"}))]
#[schema(as = mailings::UpdateInput)]
pub struct UpdateInput {
    pub id: Uuid,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, min_length = 1, max_length = 1000)]
    pub text: Option<MessageText>,
    /// Replaces the whole filter.
    pub filter: Option<MailingFilter>,
    /// Replaces the window; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<SendWindow>)]
    pub window: Option<Option<DailyWindow>>,
}

/// Changes a mailing.
#[derive(Debug)]
pub struct Update;

/// A change raced with the mailing's start this often before the caller is told to retry.
const UPDATE_ATTEMPTS: usize = 3;

#[async_trait]
impl Command for Update {
    const NAME: &'static str = "mailings.update";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "Change a mailing (admin): anything before its start, then only end_at and text";
    type Input = UpdateInput;
    type Output = MailingView;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: UpdateInput) -> Result<MailingView, ApiError> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = svc.store.mailing(MailingId(input.id)).await?.ok_or_else(not_found)?;
            let next = apply(&current, &input)?;
            if next == current {
                return Ok(MailingView::from(&current));
            }
            let now = svc.clock.now();
            let next = Mailing { updated_at: now, ..next };
            match svc.store.update_mailing(&next, current.status, now).await {
                Ok(()) => {
                    tracing::info!(mailing_id = %next.id, status = next.status.as_str(), "mailing changed");
                    return Ok(MailingView::from(&start_if_due(svc, next).await?));
                }
                Err(err) if err.is_conflict_on(Constraint::MailingStatus) => continue,
                Err(StoreError::NotFound) => return Err(not_found()),
                Err(err) => return Err(err.into()),
            }
        }
        Err(ApiError::new(ErrorCode::Conflict, "the mailing changed status meanwhile; read it and retry"))
    }
}

/// `current` with the changes of `input`, if its status allows them.
fn apply(current: &Mailing, input: &UpdateInput) -> Result<Mailing, ApiError> {
    let mut next = current.clone();
    match current.status {
        MailingStatus::Scheduled => {
            next.start_at = input.start_at.unwrap_or(current.start_at);
            if let Some(filter) = &input.filter {
                next.filter = filter.clone();
            }
            if let Some(window) = input.window {
                next.window = window;
            }
        }
        MailingStatus::Running => {
            let fixed = [
                ("start_at", input.start_at.is_some()),
                ("filter", input.filter.is_some()),
                ("window", input.window.is_some()),
            ];
            if let Some((field, _)) = fixed.iter().find(|(_, given)| *given) {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("the mailing has started: {field} can no longer change, only end_at and text"),
                ));
            }
        }
        MailingStatus::Finished | MailingStatus::Cancelled => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("the mailing is {} and can no longer change", current.status.as_str()),
            ));
        }
    }
    next.end_at = input.end_at.unwrap_or(current.end_at);
    if let Some(text) = &input.text {
        next.text = text.clone();
    }
    check_period(next.start_at, next.end_at)?;
    Ok(next)
}

/// Cancels a mailing: what is pending is never sent.
#[derive(Debug)]
pub struct Delete;

#[async_trait]
impl Command for Delete {
    const NAME: &'static str = "mailings.delete";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "Cancel a mailing and its pending messages (admin)";
    type Input = MailingRef;
    type Output = Deleted;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: MailingRef) -> Result<Deleted, ApiError> {
        match svc.store.cancel_mailing(MailingId(input.id), svc.clock.now()).await {
            Ok(cancelled) => {
                tracing::info!(mailing_id = %input.id, cancelled, "mailing cancelled");
                Ok(Deleted {})
            }
            Err(StoreError::NotFound) => Err(not_found()),
            Err(err) if err.is_conflict_on(Constraint::MailingStatus) => {
                Err(ApiError::new(ErrorCode::Conflict, "the mailing is finished; there is nothing left to cancel"))
            }
            Err(err) => Err(err.into()),
        }
    }
}

/// A mailing with its message counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct MailingStats {
    pub mailing: MailingView,
    pub messages: MessageCounts,
}

/// Every mailing with its message counts by status, a page at a time.
#[derive(Debug)]
pub struct Stats;

#[async_trait]
impl Command for Stats {
    const NAME: &'static str = "mailings.stats";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "Mailings with their message counts by status (admin)";
    type Input = ListInput;
    type Output = Page<MailingStats>;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: ListInput) -> Result<Page<MailingStats>, ApiError> {
        let (rows, limit) = list_page(svc, &input).await?;
        let ids: Vec<MailingId> = rows.iter().map(|m| m.id).collect();
        let counts = svc.store.message_counts(&ids).await?;
        Ok(Page::from_rows(
            rows,
            limit,
            |m| m.id.0,
            |m| MailingStats {
                messages: counts.get(&m.id).copied().unwrap_or_default(),
                mailing: MailingView::from(&m),
            },
        ))
    }
}

/// One mailing's message counts by status.
#[derive(Debug)]
pub struct StatsOne;

#[async_trait]
impl Command for StatsOne {
    const NAME: &'static str = "mailings.stats_one";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "A mailing with its message counts by status (admin)";
    type Input = MailingRef;
    type Output = MailingStats;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: MailingRef) -> Result<MailingStats, ApiError> {
        let mailing = svc.store.mailing(MailingId(input.id)).await?.ok_or_else(not_found)?;
        let counts = svc.store.message_counts(&[mailing.id]).await?;
        Ok(MailingStats {
            messages: counts.get(&mailing.id).copied().unwrap_or_default(),
            mailing: MailingView::from(&mailing),
        })
    }
}
