//! Row-to-domain conversions shared by both adapters.

use chrono::{DateTime, Utc};
use herald_core::{
    calendar::{CalendarEvent, CalendarEventId},
    campaign::{Client, ClientId, Mailing, MailingFilter, MailingId, MessageText, OperatorCode, Phone, Tag},
    delivery::{Delivery, DeliveryId, LocalTime, SendWindow},
    room::{MessageBody, Room, RoomId, RoomMessage, RoomMessageId, RoomName},
    store::{Constraint, StoreError},
    task::{Attachment, AttachmentId, Description, Task, TaskId, Title},
    user::{Email, User, UserId, UserName},
};
use uuid::Uuid;

use crate::error::corrupt;

/// The rule of a conditional write that changed no row, in both adapters: the row is gone
/// (`NotFound`), or it is there and its condition no longer holds (a conflict on `condition`).
pub(crate) fn unchanged(still_there: bool, condition: Constraint) -> StoreError {
    if still_there { StoreError::conflict(condition) } else { StoreError::NotFound }
}

pub(crate) fn user(
    id: Uuid,
    email: &str,
    name: &str,
    role: &str,
    created_at: DateTime<Utc>,
) -> Result<User, StoreError> {
    Ok(User {
        id: UserId(id),
        email: Email::parse(email).map_err(|e| corrupt("user email", e))?,
        name: UserName::parse(name).map_err(|e| corrupt("user name", e))?,
        role: role.parse().map_err(|e| corrupt("user role", e))?,
        created_at,
    })
}

/// A task row's columns, already decoded to Rust types by the adapter.
pub(crate) struct TaskCols {
    pub id: Uuid,
    pub owner: Uuid,
    pub title: String,
    pub description: String,
    pub status: String,
    pub due_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) fn task(c: TaskCols) -> Result<Task, StoreError> {
    Ok(Task {
        id: TaskId(c.id),
        owner: UserId(c.owner),
        title: Title::parse(&c.title).map_err(|e| corrupt("task title", e))?,
        description: Description::parse(&c.description).map_err(|e| corrupt("task description", e))?,
        status: c.status.parse().map_err(|e| corrupt("task status", e))?,
        due_at: c.due_at,
        version: c.version,
        created_at: c.created_at,
        updated_at: c.updated_at,
    })
}

pub(crate) fn room(id: Uuid, name: &str, owner: Uuid, created_at: DateTime<Utc>) -> Result<Room, StoreError> {
    Ok(Room {
        id: RoomId(id),
        name: RoomName::parse(name).map_err(|e| corrupt("room name", e))?,
        owner: UserId(owner),
        created_at,
    })
}

/// A room message row's columns.
pub(crate) struct RoomMessageCols {
    pub id: Uuid,
    pub room: Uuid,
    pub author: Uuid,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

pub(crate) fn room_message(c: RoomMessageCols) -> Result<RoomMessage, StoreError> {
    Ok(RoomMessage {
        id: RoomMessageId(c.id),
        room: RoomId(c.room),
        author: UserId(c.author),
        body: MessageBody::parse(&c.body).map_err(|e| corrupt("room message body", e))?,
        created_at: c.created_at,
    })
}

/// A calendar event row's columns.
pub(crate) struct EventCols {
    pub id: Uuid,
    pub owner: Uuid,
    pub title: String,
    pub description: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Seconds.
    pub remind_before: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) fn event(c: EventCols) -> Result<CalendarEvent, StoreError> {
    Ok(CalendarEvent {
        id: CalendarEventId(c.id),
        owner: UserId(c.owner),
        title: Title::parse(&c.title).map_err(|e| corrupt("event title", e))?,
        description: Description::parse(&c.description).map_err(|e| corrupt("event description", e))?,
        starts_at: c.starts_at,
        duration: c.ends_at - c.starts_at,
        remind_before: c.remind_before.map(chrono::Duration::seconds),
        created_at: c.created_at,
        updated_at: c.updated_at,
    })
}

/// An attachment row's columns.
pub(crate) struct AttachmentCols {
    pub id: Uuid,
    pub task_id: Uuid,
    pub owner: Uuid,
    pub file_name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub storage_key: String,
    pub created_at: DateTime<Utc>,
}

pub(crate) fn attachment(c: AttachmentCols) -> Result<Attachment, StoreError> {
    Ok(Attachment {
        id: AttachmentId(c.id),
        task_id: TaskId(c.task_id),
        owner: UserId(c.owner),
        file_name: c.file_name,
        content_type: c.content_type,
        size: u64::try_from(c.size).map_err(|e| corrupt("attachment size", e))?,
        sha256: c.sha256,
        storage_key: c.storage_key,
        created_at: c.created_at,
    })
}

/// A delivery row's columns.
pub(crate) struct DeliveryCols {
    pub number: i64,
    pub id: Uuid,
    pub kind: String,
    pub source_key: String,
    pub recipient: String,
    pub channel: String,
    pub payload: serde_json::Value,
    pub source_id: Option<Uuid>,
    pub recipient_id: Option<Uuid>,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub deadline: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub trace_context: Option<String>,
}

pub(crate) fn delivery(c: DeliveryCols) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id: DeliveryId(c.id),
        number: c.number,
        kind: c.kind,
        source_key: c.source_key,
        recipient: c.recipient,
        channel: c.channel.parse().map_err(|e| corrupt("delivery channel", e))?,
        payload: c.payload,
        source_id: c.source_id,
        recipient_id: c.recipient_id,
        status: c.status.parse().map_err(|e| corrupt("delivery status", e))?,
        attempts: u32::try_from(c.attempts).map_err(|e| corrupt("delivery attempts", e))?,
        next_attempt_at: c.next_attempt_at,
        deadline: c.deadline,
        last_error: c.last_error,
        lease_until: c.lease_until,
        sent_at: c.sent_at,
        created_at: c.created_at,
        updated_at: c.updated_at,
        trace_context: c.trace_context,
    })
}

/// A client row's columns.
pub(crate) struct ClientCols {
    pub id: Uuid,
    pub phone: String,
    pub operator_code: String,
    pub tag: String,
    pub timezone: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) fn client(c: ClientCols) -> Result<Client, StoreError> {
    Ok(Client {
        id: ClientId(c.id),
        phone: Phone::parse(&c.phone).map_err(|e| corrupt("client phone", e))?,
        operator_code: OperatorCode::parse(&c.operator_code).map_err(|e| corrupt("client operator code", e))?,
        tag: Tag::parse(&c.tag).map_err(|e| corrupt("client tag", e))?,
        timezone: c.timezone.parse().map_err(|e| corrupt("client timezone", e))?,
        created_at: c.created_at,
        updated_at: c.updated_at,
    })
}

/// A mailing row's columns; filter parts as lists of strings, the window as `HH:MM` texts.
pub(crate) struct MailingCols {
    pub id: Uuid,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub text: String,
    pub operator_codes: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub window_from: Option<String>,
    pub window_to: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) fn mailing(c: MailingCols) -> Result<Mailing, StoreError> {
    let window = match (c.window_from, c.window_to) {
        (Some(from), Some(to)) => {
            let time = |t: &str| t.parse::<LocalTime>().map_err(|e| corrupt("mailing window", e));
            Some(SendWindow::new(time(&from)?, time(&to)?).map_err(|e| corrupt("mailing window", e))?)
        }
        (None, None) => None,
        _ => return Err(corrupt("mailing window", "one end of the window is missing")),
    };
    let codes = c.operator_codes.map(|codes| {
        codes.iter().map(|code| OperatorCode::parse(code).map_err(|e| corrupt("mailing operator code", e))).collect()
    });
    let tags =
        c.tags.map(|tags| tags.iter().map(|tag| Tag::parse(tag).map_err(|e| corrupt("mailing tag", e))).collect());
    Ok(Mailing {
        id: MailingId(c.id),
        start_at: c.start_at,
        end_at: c.end_at,
        text: MessageText::parse(&c.text).map_err(|e| corrupt("mailing text", e))?,
        filter: MailingFilter { operator_codes: codes.transpose()?, tags: tags.transpose()? },
        window,
        status: c.status.parse().map_err(|e| corrupt("mailing status", e))?,
        created_at: c.created_at,
        updated_at: c.updated_at,
    })
}
