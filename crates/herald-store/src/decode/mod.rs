//! Rows of both adapters: one struct of columns per table, decoded by sqlx from a PostgreSQL or a
//! SQLite row (the storage that differs is in [`crate::columns`]), and one conversion to the domain
//! value, which checks what the database cannot.
//!
//! Campaign rows are in [`campaigns`], notice and step rows in [`notices`]; both are re-exported
//! here, so callers name them `decode::…` as the rest.

mod campaigns;
mod notices;

use herald_core::{
    apikey::{ApiKey, ApiKeyId, KeyName},
    calendar::{CalendarEvent, CalendarEventId},
    change::{ChangeEvent, OutboxEvent},
    delivery::{Delivery, DeliveryId},
    notify::Preferences,
    room::{MessageBody, Room, RoomId, RoomMessage, RoomMessageId, RoomName},
    store::StoreError,
    task::{Attachment, AttachmentId, Description, Task, TaskId, Title},
    user::{ContactPhone, Email, User, UserId, UserName},
};
use sqlx::{FromRow, Row, types::Json};
use uuid::Uuid;

pub(crate) use self::{
    campaigns::{client, mailing},
    notices::{
        NoticeCols, StepCols, notice, notice_columns, notice_step, reach, step_change, step_columns, with_steps,
    },
};
use crate::{
    columns::{Stamp, Texts},
    error::corrupt,
};

/// A row that sqlx could not decode into its columns' types: a schema the code does not expect.
fn undecodable(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| corrupt(what, e)
}

/// Reads a domain value from a row of either database: its columns `C` as sqlx decodes them (a
/// row that does not decode is corrupt, named by `what`), then the value `make` makes of them,
/// checking what the database cannot.
pub(crate) fn read<'r, C, T, R>(
    row: &'r R,
    what: &'static str,
    make: fn(C) -> Result<T, StoreError>,
) -> Result<T, StoreError>
where
    R: Row,
    C: FromRow<'r, R>,
{
    make(C::from_row(row).map_err(undecodable(what))?)
}

/// Defines, for each entry, `$name(row)`: a reader of rows of either database through their
/// columns `$cols` into a `$value` made by `$make` (see [`read`]); `$what` names a row that does
/// not decode.
macro_rules! readers {
    ($($(#[$attr:meta])* $name:ident($cols:ty) -> $value:ty = $make:ident, $what:literal;)+) => {$(
        $(#[$attr])*
        pub(crate) fn $name<'r, R: sqlx::Row>(row: &'r R) -> Result<$value, herald_core::store::StoreError>
        where
            $cols: sqlx::FromRow<'r, R>,
        {
            $crate::decode::read(row, $what, $make)
        }
    )+};
}
pub(crate) use readers;

readers! {
    user(UserCols) -> User = user_of, "user row";
    api_key(ApiKeyCols) -> ApiKey = api_key_of, "API key row";
    task(TaskCols) -> Task = task_of, "task row";
    room(RoomCols) -> Room = room_of, "room row";
    room_message(RoomMessageCols) -> RoomMessage = room_message_of, "room message row";
    calendar_event(CalendarEventCols) -> CalendarEvent = calendar_event_of, "calendar event row";
    attachment(AttachmentCols) -> Attachment = attachment_of, "attachment row";
    delivery(DeliveryCols) -> Delivery = delivery_of, "delivery row";
    outbox_event(OutboxCols) -> OutboxEvent = outbox_event_of, "outbox row";
}

/// The columns [`user`] reads, for both adapters' queries (a macro, so that a query built with
/// `concat!` stays a static string).
macro_rules! user_columns {
    () => {
        "id, email, name, role, created_at, phone, timezone"
    };
}
pub(crate) use user_columns;

#[derive(FromRow)]
pub(crate) struct UserCols {
    id: Uuid,
    email: String,
    name: String,
    role: String,
    created_at: Stamp,
    phone: Option<String>,
    timezone: Option<String>,
}

fn user_of(c: UserCols) -> Result<User, StoreError> {
    Ok(User {
        id: UserId(c.id),
        email: Email::parse(&c.email).map_err(|e| corrupt("user email", e))?,
        name: UserName::parse(&c.name).map_err(|e| corrupt("user name", e))?,
        role: c.role.parse().map_err(|e| corrupt("user role", e))?,
        created_at: c.created_at.0,
        phone: c.phone.map(|p| ContactPhone::parse(&p).map_err(|e| corrupt("user phone", e))).transpose()?,
        timezone: c.timezone.map(|tz| tz.parse().map_err(|e| corrupt("user timezone", e))).transpose()?,
    })
}

/// The columns [`api_key`] reads.
macro_rules! api_key_columns {
    () => {
        "id, name, scopes, created_by, created_at, revoked_at"
    };
}
pub(crate) use api_key_columns;

#[derive(FromRow)]
pub(crate) struct ApiKeyCols {
    id: Uuid,
    name: String,
    scopes: Texts,
    created_by: Uuid,
    created_at: Stamp,
    revoked_at: Option<Stamp>,
}

fn api_key_of(c: ApiKeyCols) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: ApiKeyId(c.id),
        name: KeyName::parse(&c.name).map_err(|e| corrupt("API key name", e))?,
        scopes: c
            .scopes
            .0
            .iter()
            .map(|s| s.parse().map_err(|e| corrupt("API key scope", e)))
            .collect::<Result<_, _>>()?,
        created_by: UserId(c.created_by),
        created_at: c.created_at.0,
        revoked_at: c.revoked_at.map(|s| s.0),
    })
}

/// A key's scopes as stored.
pub(crate) fn scopes(key: &ApiKey) -> Texts {
    Texts(key.scopes.iter().map(|s| s.as_str().to_owned()).collect())
}

/// A user's stored preferences (NULL: the defaults).
pub(crate) fn preferences(stored: Option<String>) -> Result<Preferences, StoreError> {
    stored.map_or(Ok(Preferences::default()), |json| {
        serde_json::from_str(&json).map_err(|e| corrupt("user preferences", e))
    })
}

/// Preferences as stored.
pub(crate) fn preferences_json(preferences: &Preferences) -> Result<String, StoreError> {
    serde_json::to_string(preferences).map_err(|e| corrupt("user preferences", e))
}

#[derive(FromRow)]
pub(crate) struct TaskCols {
    id: Uuid,
    #[sqlx(rename = "owner_id")]
    owner: Uuid,
    title: String,
    description: String,
    status: String,
    due_at: Option<Stamp>,
    version: i64,
    created_at: Stamp,
    updated_at: Stamp,
}

fn task_of(c: TaskCols) -> Result<Task, StoreError> {
    Ok(Task {
        id: TaskId(c.id),
        owner: UserId(c.owner),
        title: Title::parse(&c.title).map_err(|e| corrupt("task title", e))?,
        description: Description::parse(&c.description).map_err(|e| corrupt("task description", e))?,
        status: c.status.parse().map_err(|e| corrupt("task status", e))?,
        due_at: c.due_at.map(Into::into),
        version: c.version,
        created_at: c.created_at.0,
        updated_at: c.updated_at.0,
    })
}

#[derive(FromRow)]
pub(crate) struct RoomCols {
    id: Uuid,
    name: String,
    #[sqlx(rename = "owner_id")]
    owner: Uuid,
    created_at: Stamp,
}

fn room_of(c: RoomCols) -> Result<Room, StoreError> {
    Ok(Room {
        id: RoomId(c.id),
        name: RoomName::parse(&c.name).map_err(|e| corrupt("room name", e))?,
        owner: UserId(c.owner),
        created_at: c.created_at.0,
    })
}

#[derive(FromRow)]
pub(crate) struct RoomMessageCols {
    id: Uuid,
    #[sqlx(rename = "room_id")]
    room: Uuid,
    #[sqlx(rename = "author_id")]
    author: Uuid,
    body: String,
    created_at: Stamp,
}

fn room_message_of(c: RoomMessageCols) -> Result<RoomMessage, StoreError> {
    Ok(RoomMessage {
        id: RoomMessageId(c.id),
        room: RoomId(c.room),
        author: UserId(c.author),
        body: MessageBody::parse(&c.body).map_err(|e| corrupt("room message body", e))?,
        created_at: c.created_at.0,
    })
}

#[derive(FromRow)]
pub(crate) struct CalendarEventCols {
    id: Uuid,
    #[sqlx(rename = "owner_id")]
    owner: Uuid,
    title: String,
    description: String,
    starts_at: Stamp,
    ends_at: Stamp,
    /// Seconds.
    remind_before: Option<i64>,
    created_at: Stamp,
    updated_at: Stamp,
}

fn calendar_event_of(c: CalendarEventCols) -> Result<CalendarEvent, StoreError> {
    Ok(CalendarEvent {
        id: CalendarEventId(c.id),
        owner: UserId(c.owner),
        title: Title::parse(&c.title).map_err(|e| corrupt("event title", e))?,
        description: Description::parse(&c.description).map_err(|e| corrupt("event description", e))?,
        starts_at: c.starts_at.0,
        duration: c.ends_at.0 - c.starts_at.0,
        remind_before: c.remind_before.map(chrono::Duration::seconds),
        created_at: c.created_at.0,
        updated_at: c.updated_at.0,
    })
}

#[derive(FromRow)]
pub(crate) struct AttachmentCols {
    id: Uuid,
    task_id: Uuid,
    #[sqlx(rename = "owner_id")]
    owner: Uuid,
    file_name: String,
    content_type: String,
    size: i64,
    sha256: String,
    storage_key: String,
    created_at: Stamp,
}

fn attachment_of(c: AttachmentCols) -> Result<Attachment, StoreError> {
    Ok(Attachment {
        id: AttachmentId(c.id),
        task_id: TaskId(c.task_id),
        owner: UserId(c.owner),
        file_name: c.file_name,
        content_type: c.content_type,
        size: u64::try_from(c.size).map_err(|e| corrupt("attachment size", e))?,
        sha256: c.sha256,
        storage_key: c.storage_key,
        created_at: c.created_at.0,
    })
}

#[derive(FromRow)]
pub(crate) struct DeliveryCols {
    number: i64,
    id: Uuid,
    kind: String,
    source_key: String,
    recipient: String,
    channel: String,
    payload: Json<serde_json::Value>,
    source_id: Option<Uuid>,
    recipient_id: Option<Uuid>,
    status: String,
    /// `INTEGER` in both schemas: 32 bits in PostgreSQL.
    attempts: i32,
    next_attempt_at: Stamp,
    deadline: Option<Stamp>,
    last_error: Option<String>,
    lease_until: Option<Stamp>,
    sent_at: Option<Stamp>,
    created_at: Stamp,
    updated_at: Stamp,
    trace_context: Option<String>,
}

fn delivery_of(c: DeliveryCols) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id: DeliveryId(c.id),
        number: c.number,
        kind: c.kind,
        source_key: c.source_key,
        recipient: c.recipient,
        channel: c.channel.parse().map_err(|e| corrupt("delivery channel", e))?,
        payload: c.payload.0,
        source_id: c.source_id,
        recipient_id: c.recipient_id,
        status: c.status.parse().map_err(|e| corrupt("delivery status", e))?,
        attempts: u32::try_from(c.attempts).map_err(|e| corrupt("delivery attempts", e))?,
        next_attempt_at: c.next_attempt_at.0,
        deadline: c.deadline.map(Into::into),
        last_error: c.last_error,
        lease_until: c.lease_until.map(Into::into),
        sent_at: c.sent_at.map(Into::into),
        created_at: c.created_at.0,
        updated_at: c.updated_at.0,
        trace_context: c.trace_context,
    })
}

#[derive(FromRow)]
pub(crate) struct OutboxCols {
    seq: i64,
    channel_offset: i64,
    id: Uuid,
    kind: String,
    channel: String,
    payload: Json<serde_json::Value>,
    created_at: Stamp,
    trace_context: Option<String>,
    published_at: Option<Stamp>,
}

fn outbox_event_of(c: OutboxCols) -> Result<OutboxEvent, StoreError> {
    Ok(OutboxEvent {
        seq: c.seq,
        stream_offset: c.channel_offset,
        event: ChangeEvent {
            id: c.id,
            kind: c.kind,
            stream: c.channel.parse().map_err(|e| corrupt("event stream", e))?,
            payload: c.payload.0,
            created_at: c.created_at.0,
            trace_context: c.trace_context,
        },
        published_at: c.published_at.map(Into::into),
    })
}
