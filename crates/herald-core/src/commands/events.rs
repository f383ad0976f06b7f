//! `events.*`: a person's calendar. Events of one owner never overlap (`date_busy`); every change
//! writes an `event.*` change event to the owner's stream and keeps the event's reminder
//! deliveries in step, in the same transaction. Another user's event answers `not_found`.

use async_trait::async_trait;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, Duration, NaiveDate, SubsecRound as _, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::Instrument as _;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::shapes::Deleted;
use crate::{
    calendar::{CalendarEvent, CalendarEventId, MAX_SPAN_SECONDS, Period},
    campaign::TimeZone,
    change::ChangeEvent,
    command::{Access, Command, Ctx},
    delivery::Delivery,
    error::{ApiError, ErrorCode, FieldError},
    services::Services,
    store::{Constraint, StoreError},
    task::{Description, Title},
    trace,
    user::UserId,
};

/// An event as the API shows it. Durations are whole seconds.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "title": "Stand-up", "description": "", "starts_at": "2026-12-01T09:00:00Z", "duration": 900, "ends_at": "2026-12-01T09:15:00Z", "remind_before": 600, "created_at": "2026-11-30T10:00:00Z", "updated_at": "2026-11-30T10:00:00Z"}))]
pub struct EventView {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub starts_at: DateTime<Utc>,
    /// Seconds.
    pub duration: i64,
    pub ends_at: DateTime<Utc>,
    /// Seconds before the start the owner is reminded; null for no reminder.
    pub remind_before: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&CalendarEvent> for EventView {
    fn from(e: &CalendarEvent) -> Self {
        Self {
            id: e.id.0,
            title: e.title.as_str().to_owned(),
            description: e.description.as_str().to_owned(),
            starts_at: e.starts_at,
            duration: e.duration.num_seconds(),
            ends_at: e.ends_at(),
            remind_before: e.remind_before.map(|d| d.num_seconds()),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

fn changed(e: &CalendarEvent, kind: &str, now: DateTime<Utc>) -> ChangeEvent {
    ChangeEvent::for_user(e.owner, kind, json!(EventView::from(e)), now)
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such event")
}

/// A store error of a write, with an overlap told as `date_busy`.
fn write_error(err: StoreError) -> ApiError {
    match err {
        ref err if err.is_conflict_on(Constraint::EventsOverlap) => {
            ApiError::new(ErrorCode::DateBusy, "another of your events overlaps this time")
        }
        StoreError::NotFound => not_found(),
        other => other.into(),
    }
}

/// An event's fields as a client sends them (create, and update's full replacement).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "Stand-up", "starts_at": "2026-12-01T09:00:00Z", "duration": 900, "remind_before": 600}))]
pub struct EventFields {
    #[schema(value_type = String, min_length = 1, max_length = 200)]
    pub title: Title,
    #[schema(value_type = Option<String>, max_length = 10000)]
    pub description: Option<Description>,
    pub starts_at: DateTime<Utc>,
    /// Seconds, at least 1, at most 31 days.
    #[schema(minimum = 1, maximum = 2678400)]
    pub duration: i64,
    /// Seconds before the start to remind the owner, at most 31 days; absent or null for none.
    #[schema(minimum = 0, maximum = 2678400)]
    pub remind_before: Option<i64>,
}

impl EventFields {
    /// The event these fields describe; the schema bounds the numbers, this checks them again
    /// for transports that skip it.
    fn into_event(
        self,
        id: CalendarEventId,
        owner: UserId,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<CalendarEvent, ApiError> {
        let mut errors = Vec::new();
        if !(1..=MAX_SPAN_SECONDS).contains(&self.duration) {
            errors.push(FieldError::new("duration", "must be between 1 and 2678400 seconds"));
        }
        if self.remind_before.is_some_and(|r| !(0..=MAX_SPAN_SECONDS).contains(&r)) {
            errors.push(FieldError::new("remind_before", "must be between 0 and 2678400 seconds"));
        }
        if self.starts_at.checked_add_signed(Duration::seconds(MAX_SPAN_SECONDS)).is_none()
            || self.starts_at.checked_sub_signed(Duration::seconds(MAX_SPAN_SECONDS)).is_none()
        {
            errors.push(FieldError::new("starts_at", "is out of range"));
        }
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        Ok(CalendarEvent {
            id,
            owner,
            title: self.title,
            description: self.description.unwrap_or_default(),
            // The store keeps microseconds: an answer, a reminder and a later read agree.
            starts_at: self.starts_at.trunc_subsecs(6),
            duration: Duration::seconds(self.duration),
            remind_before: self.remind_before.map(Duration::seconds),
            created_at,
            updated_at: now,
        })
    }
}

/// Creates an event in the caller's calendar.
#[derive(Debug)]
pub struct Create;

#[async_trait]
impl Command for Create {
    const NAME: &'static str = "events.create";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Create a calendar event (date_busy when it overlaps another of yours)";
    type Input = EventFields;
    type Output = EventView;

    async fn run(&self, svc: &Services, cx: &Ctx, input: EventFields) -> Result<EventView, ApiError> {
        let now = svc.clock.now();
        let event = input.into_event(CalendarEventId::new(), cx.identity()?.user_id, now, now)?;
        let changes = [changed(&event, "event.created", now)];
        let reminders = event.reminders(now);
        let write = svc.store.create_calendar_event(&event, &changes, &reminders);
        write.instrument(trace::store_span("create_calendar_event")).await.map_err(write_error)?;
        Ok(EventView::from(&event))
    }
}

/// Input naming one event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRef {
    /// The event's id.
    pub id: Uuid,
}

/// Reads one event.
#[derive(Debug)]
pub struct Get;

#[async_trait]
impl Command for Get {
    const NAME: &'static str = "events.get";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Read a calendar event";
    type Input = EventRef;
    type Output = EventView;

    async fn run(&self, svc: &Services, cx: &Ctx, input: EventRef) -> Result<EventView, ApiError> {
        let event =
            svc.store.calendar_event(cx.identity()?.user_id, CalendarEventId(input.id)).await?.ok_or_else(not_found)?;
        Ok(EventView::from(&event))
    }
}

/// Input of `events.update`: the event's id and all of its fields (a full replacement).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "title": "Stand-up", "starts_at": "2026-12-01T09:30:00Z", "duration": 900}))]
#[schema(as = events::UpdateInput)]
pub struct UpdateInput {
    pub id: Uuid,
    #[schema(value_type = String, min_length = 1, max_length = 200)]
    pub title: Title,
    #[schema(value_type = Option<String>, max_length = 10000)]
    pub description: Option<Description>,
    pub starts_at: DateTime<Utc>,
    /// Seconds, at least 1, at most 31 days.
    #[schema(minimum = 1, maximum = 2678400)]
    pub duration: i64,
    /// Seconds before the start to remind the owner, at most 31 days; absent or null for none.
    #[schema(minimum = 0, maximum = 2678400)]
    pub remind_before: Option<i64>,
}

impl UpdateInput {
    fn split(self) -> (Uuid, EventFields) {
        let fields = EventFields {
            title: self.title,
            description: self.description,
            starts_at: self.starts_at,
            duration: self.duration,
            remind_before: self.remind_before,
        };
        (self.id, fields)
    }
}

/// Replaces an event; its reminder moves with it.
#[derive(Debug)]
pub struct Update;

#[async_trait]
impl Command for Update {
    const NAME: &'static str = "events.update";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Replace a calendar event (its reminder moves with it)";
    type Input = UpdateInput;
    type Output = EventView;

    async fn run(&self, svc: &Services, cx: &Ctx, input: UpdateInput) -> Result<EventView, ApiError> {
        let owner = cx.identity()?.user_id;
        let (id, fields) = input.split();
        let current = svc.store.calendar_event(owner, CalendarEventId(id)).await?.ok_or_else(not_found)?;
        let now = svc.clock.now();
        let event = fields.into_event(current.id, owner, current.created_at, now)?;
        let changes = [changed(&event, "event.updated", now)];
        let reminders = event.reminders(now);
        let write = svc.store.update_calendar_event(&event, &changes, &reminders);
        write.instrument(trace::store_span("update_calendar_event")).await.map_err(write_error)?;
        Ok(EventView::from(&event))
    }
}

/// Deletes an event and cancels its pending reminder.
#[derive(Debug)]
pub struct Delete;

#[async_trait]
impl Command for Delete {
    const NAME: &'static str = "events.delete";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Delete a calendar event (its pending reminder is cancelled)";
    type Input = EventRef;
    type Output = Deleted;

    async fn run(&self, svc: &Services, cx: &Ctx, input: EventRef) -> Result<Deleted, ApiError> {
        let now = svc.clock.now();
        let changes =
            |e: &CalendarEvent| vec![ChangeEvent::for_user(e.owner, "event.deleted", json!({"id": e.id}), now)];
        svc.store
            .delete_calendar_event(cx.identity()?.user_id, CalendarEventId(input.id), now, &changes)
            .await?
            .ok_or_else(not_found)?;
        Ok(Deleted {})
    }
}

/// Input of `events.list`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = events::ListInput)]
pub struct ListInput {
    /// `day`, `week` (seven days from the date) or `month` (the month the date is in).
    pub period: Period,
    /// A local date, `YYYY-MM-DD`.
    #[schema(value_type = String, format = Date, example = "2026-12-01")]
    pub date: NaiveDate,
    /// The IANA time zone the period is in (default UTC).
    #[schema(value_type = Option<String>, example = "Europe/Moscow")]
    pub tz: Option<TimeZone>,
    /// Items per page (default and most: 500).
    #[schema(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[schema(max_length = 64)]
    pub cursor: Option<String>,
}

/// Events per page of a period.
const LIST_LIMIT: u32 = 500;

/// A page cursor: the URL-safe base64 of the last event's start (Unix microseconds, 8 bytes) and
/// id (16 bytes).
fn encode_cursor(event: &CalendarEvent) -> String {
    let mut bytes = event.starts_at.timestamp_micros().to_be_bytes().to_vec();
    bytes.extend_from_slice(event.id.0.as_bytes());
    B64.encode(bytes)
}

fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, CalendarEventId), ApiError> {
    let bytes = B64.decode(cursor).ok().filter(|b| b.len() == 24);
    let decoded = bytes.and_then(|b| {
        let micros = i64::from_be_bytes(b[..8].try_into().ok()?);
        Some((DateTime::from_timestamp_micros(micros)?, CalendarEventId(Uuid::from_slice(&b[8..]).ok()?)))
    });
    decoded.ok_or_else(|| ApiError::invalid_field("cursor", "not a cursor returned by this list"))
}

/// The events of a period.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    /// The period's first instant.
    pub from: DateTime<Utc>,
    /// The instant after the period.
    pub to: DateTime<Utc>,
    /// The events overlapping the period, by start.
    pub items: Vec<EventView>,
    /// Pass as `cursor` for the rest of the period; absent on its last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Lists the caller's events in a day, week or month of their time zone.
#[derive(Debug)]
pub struct List;

#[async_trait]
impl Command for List {
    const NAME: &'static str = "events.list";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "List your events of a day, a week or a month";
    type Input = ListInput;
    type Output = EventList;

    async fn run(&self, svc: &Services, cx: &Ctx, input: ListInput) -> Result<EventList, ApiError> {
        let tz = input.tz.map_or(chrono_tz::UTC, |tz| tz.0);
        let (from, to) =
            input.period.range(input.date, tz).ok_or_else(|| ApiError::invalid_field("date", "is out of range"))?;
        let limit = input.limit.unwrap_or(LIST_LIMIT).min(LIST_LIMIT);
        let after = input.cursor.as_deref().map(decode_cursor).transpose()?;
        let mut events = svc.store.list_calendar_events(cx.identity()?.user_id, from, to, after, limit + 1).await?;
        let more = events.len() > limit as usize;
        events.truncate(limit as usize);
        let next_cursor = if more { events.last().map(encode_cursor) } else { None };
        Ok(EventList { from, to, items: events.iter().map(EventView::from).collect(), next_cursor })
    }
}

/// One reminder delivery of an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationView {
    pub id: Uuid,
    /// Where it goes: `log` or `realtime` (the owner's `user:` stream).
    pub channel: String,
    pub status: String,
    pub attempts: u32,
    /// When it is (or was last) due.
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl From<&Delivery> for NotificationView {
    fn from(d: &Delivery) -> Self {
        Self {
            id: d.id.0,
            channel: d.channel.as_str().to_owned(),
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_error: d.last_error.clone(),
            sent_at: d.sent_at,
        }
    }
}

/// An event's reminders.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationList {
    pub items: Vec<NotificationView>,
}

/// Lists an event's reminder deliveries and their outcomes.
#[derive(Debug)]
pub struct Notifications;

#[async_trait]
impl Command for Notifications {
    const NAME: &'static str = "events.notifications";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "List an event's reminders and what became of them";
    type Input = EventRef;
    type Output = NotificationList;

    async fn run(&self, svc: &Services, cx: &Ctx, input: EventRef) -> Result<NotificationList, ApiError> {
        let reminders = svc
            .store
            .calendar_event_reminders(cx.identity()?.user_id, CalendarEventId(input.id))
            .await?
            .ok_or_else(not_found)?;
        Ok(NotificationList { items: reminders.iter().map(NotificationView::from).collect() })
    }
}
