//! Rows of notices and their steps: the columns both adapters select, each row decoded, steps put
//! under their notices, and a recipient's reach from their stored columns.

use herald_core::{
    delivery::DeliveryId,
    notice::{Notice, NoticeId, NoticeStep, Reach, StepStatus},
    notify::{NoticeChannel, NoticeType},
    store::StoreError,
    user::{ContactPhone, Email, UserId, WebhookUrl},
};
use sqlx::{FromRow, Row, types::Json};
use uuid::Uuid;

use super::{preferences, undecodable};
use crate::{columns::Stamp, error::corrupt};

/// The columns [`notice`] reads.
macro_rules! notice_columns {
    () => {
        "id, user_id, caller, type, title, body, data, urgent, expires_at, idempotency_key, request_hash, status, \
         created_at, acknowledged_at, read_at, event_channel, event_offset"
    };
}
pub(crate) use notice_columns;

super::readers! {
    /// A notice without its steps (see [`notice_step`]).
    notice(NoticeCols) -> Notice = notice_of, "notice row";
}

#[derive(FromRow)]
pub(crate) struct NoticeCols {
    id: Uuid,
    user_id: Uuid,
    caller: String,
    #[sqlx(rename = "type")]
    kind: String,
    title: String,
    body: String,
    data: Option<Json<serde_json::Value>>,
    urgent: bool,
    expires_at: Option<Stamp>,
    idempotency_key: Option<String>,
    request_hash: Option<String>,
    status: String,
    created_at: Stamp,
    acknowledged_at: Option<Stamp>,
    read_at: Option<Stamp>,
    event_channel: Option<String>,
    event_offset: Option<i64>,
}

fn notice_of(c: NoticeCols) -> Result<Notice, StoreError> {
    Ok(Notice {
        id: NoticeId(c.id),
        user_id: UserId(c.user_id),
        caller: c.caller,
        kind: NoticeType::parse(&c.kind).map_err(|e| corrupt("notice type", e))?,
        title: c.title,
        body: c.body,
        data: c.data.map(|d| d.0),
        urgent: c.urgent,
        expires_at: c.expires_at.map(Into::into),
        idempotency_key: c.idempotency_key,
        request_hash: c.request_hash,
        status: c.status.parse().map_err(|e| corrupt("notice status", e))?,
        created_at: c.created_at.0,
        acknowledged_at: c.acknowledged_at.map(Into::into),
        read_at: c.read_at.map(Into::into),
        event: match c.event_channel {
            Some(stream) => Some(stream.parse().map_err(|e| corrupt("notice event stream", e))?).zip(c.event_offset),
            None => None,
        },
        steps: Vec::new(),
    })
}

/// The columns [`notice_step`] reads.
macro_rules! step_columns {
    () => {
        "notice_id, idx, channel, after_secs, status, due_at, sent_at, reason, delivery_id"
    };
}
pub(crate) use step_columns;

#[derive(FromRow)]
pub(crate) struct StepCols {
    notice_id: Uuid,
    idx: i32,
    channel: String,
    after_secs: i32,
    status: String,
    due_at: Stamp,
    sent_at: Option<Stamp>,
    reason: Option<String>,
    delivery_id: Option<Uuid>,
}

/// A step, with its notice's id and its place among the notice's steps.
pub(crate) fn notice_step<'r, R: Row>(row: &'r R) -> Result<(NoticeId, usize, NoticeStep), StoreError>
where
    StepCols: FromRow<'r, R>,
{
    let c = StepCols::from_row(row).map_err(undecodable("notice step row"))?;
    let step = NoticeStep {
        channel: c.channel.parse().map_err(|e| corrupt("notice step channel", e))?,
        after: u32::try_from(c.after_secs).map_err(|e| corrupt("notice step delay", e))?,
        status: c.status.parse().map_err(|e| corrupt("notice step status", e))?,
        due_at: c.due_at.0,
        sent_at: c.sent_at.map(Into::into),
        reason: c.reason,
        delivery_id: c.delivery_id.map(DeliveryId),
    };
    let index = usize::try_from(c.idx).map_err(|e| corrupt("notice step index", e))?;
    Ok((NoticeId(c.notice_id), index, step))
}

/// Puts each step under its notice, in order.
pub(crate) fn with_steps(mut notices: Vec<Notice>, steps: Vec<(NoticeId, usize, NoticeStep)>) -> Vec<Notice> {
    let mut by_id: std::collections::HashMap<NoticeId, Vec<(usize, NoticeStep)>> = std::collections::HashMap::new();
    for (id, index, step) in steps {
        by_id.entry(id).or_default().push((index, step));
    }
    for notice in &mut notices {
        if let Some(mut steps) = by_id.remove(&notice.id) {
            steps.sort_by_key(|(index, _)| *index);
            notice.steps = steps.into_iter().map(|(_, step)| step).collect();
        }
    }
    notices
}

/// A step change read back from a statement.
pub(crate) fn step_change(channel: String, status: String) -> Result<(NoticeChannel, StepStatus), StoreError> {
    Ok((
        channel.parse().map_err(|e| corrupt("notice step channel", e))?,
        status.parse().map_err(|e| corrupt("notice step status", e))?,
    ))
}

/// A person's reach from their stored columns.
pub(crate) fn reach(
    email: String,
    phone: Option<String>,
    timezone: Option<String>,
    stored_preferences: Option<String>,
    webhook: Option<String>,
) -> Result<Reach, StoreError> {
    Ok(Reach {
        email: Some(Email::parse(&email).map_err(|e| corrupt("user email", e))?),
        phone: phone.map(|p| ContactPhone::parse(&p).map_err(|e| corrupt("user phone", e))).transpose()?,
        webhook: webhook.map(|w| WebhookUrl::parse(&w).map_err(|e| corrupt("webhook url", e))).transpose()?,
        timezone: timezone.map(|tz| tz.parse().map_err(|e| corrupt("user timezone", e))).transpose()?,
        preferences: self::preferences(stored_preferences)?,
    })
}
