//! Notices: one call that reaches a person and escalates until someone acknowledges — in-app
//! first, then email, text or webhook, each step only if nobody acknowledged the notice by its
//! time, within the person's preferences and quiet hours.
//!
//! This module holds the rules; the store keeps notices and their steps, and the escalation
//! worker asks [`next_move`] what a due step comes to.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    change::ChangeEvent,
    delivery::{Channel, DeliveryId, NewDelivery},
    notify::{NoticeChannel, NoticeType, Preferences},
    quarantine::ItemFailure,
    stream::StreamName,
    user::{ContactPhone, Email, UserId, WebhookUrl},
};

/// Whether the last of `channels` is a second in-app step: a notice has one in-app event (one
/// inbox entry, acknowledged once), so a second would have nothing to send.
pub fn second_in_app(channels: impl Iterator<Item = NoticeChannel>) -> bool {
    let mut seen = 0;
    let mut last = None;
    for channel in channels {
        seen += usize::from(channel == NoticeChannel::Realtime);
        last = Some(channel);
    }
    last == Some(NoticeChannel::Realtime) && seen > 1
}

/// The kind of the deliveries notice steps make.
pub const STEP_KIND: &str = "notice.step";
/// The type of the event an in-app step writes to the person's `user:` stream.
pub const EVENT_TYPE: &str = "notification";
/// Longest title, in characters.
pub const TITLE_MAX: usize = 200;
/// Longest body, in characters.
pub const BODY_MAX: usize = 4000;
/// Largest `data`, serialised, in bytes.
pub const DATA_MAX: usize = 8 * 1024;

id_type!(
    /// A notice's id (UUIDv7).
    NoticeId
);

/// Most steps one notice may have.
pub const MAX_STEPS: usize = 8;
/// The longest a step may wait after the notice is made: 30 days.
pub const MAX_AFTER_SECS: u32 = 30 * 24 * 3600;

string_enum!(
    /// Where a notice stands.
    #[derive(Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    NoticeStatus {
        /// Steps are still to come and nobody acknowledged it.
        Pending => "pending",
        /// Someone acknowledged it (a socket ack of its event, or marking it read).
        Acknowledged => "acknowledged",
        /// Every step ended, at least one was sent, and nobody acknowledged it.
        Delivered => "delivered",
        /// It expired before anything more could be sent.
        Expired => "expired",
        /// Every step ended and none was sent.
        Failed => "failed",
    }
);

string_enum!(
    /// Where one step stands.
    #[derive(Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    StepStatus {
        Pending => "pending",
        /// Handed to its channel, which has not reported yet.
        Sending => "sending",
        /// Due inside the person's quiet hours: moved to their end.
        Deferred => "deferred",
        Sent => "sent",
        /// Not sent: the person turned the channel off, or has no contact point for it.
        Skipped => "skipped",
        /// Not sent: the notice was acknowledged first.
        Cancelled => "cancelled",
        Failed => "failed",
        /// Not sent: the notice expired first.
        Expired => "expired",
    }
);

impl StepStatus {
    /// The step will not change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Deferred | Self::Sending)
    }
}

/// One step of a notice, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NoticeStep {
    pub channel: NoticeChannel,
    /// Seconds after the notice was made that the step is due.
    pub after: u32,
    pub status: StepStatus,
    /// When it is (or was) due; a deferred step's new time.
    pub due_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// Why it was skipped, deferred or failed.
    pub reason: Option<String>,
    /// The delivery that carries it, once handed to its channel (not for in-app steps).
    pub delivery_id: Option<DeliveryId>,
}

/// A notice, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub id: NoticeId,
    pub user_id: UserId,
    /// Who made it: `user:<id>` or `key:<id>`; idempotency keys are this caller's own.
    pub caller: String,
    pub kind: NoticeType,
    pub title: String,
    pub body: String,
    pub data: Option<serde_json::Value>,
    pub urgent: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    /// A digest of the request, to tell a repeat from a reused key.
    pub request_hash: Option<String>,
    pub status: NoticeStatus,
    pub created_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// When the person marked it read (in-app notices only).
    pub read_at: Option<DateTime<Utc>>,
    /// The in-app event's stream and offset, once an in-app step went: acknowledging that
    /// offset on that stream acknowledges the notice.
    pub event: Option<(StreamName, i64)>,
    pub steps: Vec<NoticeStep>,
}

impl Notice {
    /// The in-app event of this notice: type [`EVENT_TYPE`], `data.id` the notice's id.
    pub fn event(&self, now: DateTime<Utc>) -> ChangeEvent {
        ChangeEvent {
            // One event per notice, however often the step is tried.
            id: Uuid::new_v5(&self.id.0, b"realtime"),
            kind: EVENT_TYPE.to_owned(),
            stream: StreamName::User(self.user_id),
            // The frame's `data`: `data.id` is the notice's id.
            payload: serde_json::json!({
                "id": self.id.0,
                "type": self.kind.as_str(),
                "title": self.title,
                "body": self.body,
                "data": self.data,
                "urgent": self.urgent,
                "created_at": self.created_at,
            }),
            created_at: now,
            trace_context: crate::trace::current(),
        }
    }

    /// The delivery that carries step `index` on `channel` to `recipient`.
    fn delivery(&self, index: usize, channel: NoticeChannel, recipient: String, now: DateTime<Utc>) -> NewDelivery {
        let (channel, payload) = match channel {
            NoticeChannel::Email => {
                (Channel::Email, serde_json::json!({"subject": self.title, "text": self.body, "notice_id": self.id.0}))
            }
            NoticeChannel::Sms => (
                Channel::Provider,
                serde_json::json!({"phone": recipient, "text": self.text(), "notice_id": self.id.0}),
            ),
            NoticeChannel::Webhook | NoticeChannel::Realtime => (
                Channel::Webhook,
                serde_json::json!({
                    "type": EVENT_TYPE,
                    "id": self.id.0,
                    "user_id": self.user_id.0,
                    "notice_type": self.kind.as_str(),
                    "title": self.title,
                    "body": self.body,
                    "data": self.data,
                    "urgent": self.urgent,
                    "created_at": self.created_at,
                }),
            ),
        };
        NewDelivery {
            id: DeliveryId::new(),
            kind: STEP_KIND.to_owned(),
            source_key: format!("notice:{}:step:{index}", self.id),
            recipient,
            channel,
            payload,
            source_id: Some(self.id.0),
            recipient_id: Some(self.user_id.0),
            next_attempt_at: now,
            deadline: self.expires_at,
            created_at: now,
            trace_context: crate::trace::current(),
        }
    }

    /// The text of a message: the title, then the body.
    fn text(&self) -> String {
        if self.body.is_empty() { self.title.clone() } else { format!("{}\n{}", self.title, self.body) }
    }
}

/// A step that is due, with what the store knows of its person.
#[derive(Debug, Clone)]
pub struct DueStep {
    pub notice: Notice,
    pub index: usize,
    pub reach: Reach,
}

/// What the store is to do with a due step, in the transaction that holds its notice.
#[derive(Debug, Clone, PartialEq)]
pub enum StepMove {
    /// Write the in-app event; the step is `sent` and the notice is in the inbox.
    InApp(ChangeEvent),
    /// Store this delivery; the step is `sending` until its channel reports.
    Dispatch(NewDelivery),
    /// The step is `skipped`, for this reason.
    Skip(String),
    /// The step is `deferred` to this time, for this reason.
    Defer(DateTime<Utc>, String),
    /// The notice is `expired`, with every step still to come.
    Expire,
}

/// What a due step comes to at `now`.
pub fn plan(due: &DueStep, now: DateTime<Utc>) -> StepMove {
    let notice = &due.notice;
    let Some(step) = notice.steps.get(due.index) else {
        return StepMove::Skip("the notice has no such step".into());
    };
    match next_move(step.channel, &notice.kind, notice.urgent, notice.expires_at, &due.reach, now) {
        // Its one in-app event went already (a notice stored before a second in-app step was
        // refused): a second copy would collide with it.
        NextMove::Send { channel: NoticeChannel::Realtime, .. } if notice.event.is_some() => {
            StepMove::Skip("the notice's in-app event went already".into())
        }
        NextMove::Send { channel: NoticeChannel::Realtime, .. } => StepMove::InApp(notice.event(now)),
        NextMove::Send { channel, recipient } => {
            StepMove::Dispatch(notice.delivery(due.index, channel, recipient, now))
        }
        NextMove::Skip(reason) => StepMove::Skip(reason),
        NextMove::Defer(until) => StepMove::Defer(until, "inside the person's quiet hours".into()),
        NextMove::Expire => StepMove::Expire,
    }
}

/// A notice that was just acknowledged, for the time-to-acknowledge metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Acknowledged {
    pub id: NoticeId,
    pub created_at: DateTime<Utc>,
}

/// What one escalation pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Escalation {
    /// Each step that moved: its channel and its new status.
    pub steps: Vec<(NoticeChannel, StepStatus)>,
    /// Each notice that settled, with its final status.
    pub settled: Vec<NoticeStatus>,
    /// Whether a pass found as many due steps as it could take.
    pub full: bool,
    /// Notices a step of which could not be moved (an error retrying does not mend): left as
    /// they were, for the worker to back off.
    pub failed: Vec<ItemFailure>,
}

/// Which notices an admin lists.
#[derive(Debug, Clone, Default)]
pub struct NoticeFilter {
    pub user: Option<UserId>,
    pub status: Option<NoticeStatus>,
    pub kind: Option<NoticeType>,
}

/// What the person a notice is for can be reached by.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    pub email: Option<Email>,
    pub phone: Option<ContactPhone>,
    pub webhook: Option<WebhookUrl>,
    /// Their zone (UTC when unset), for quiet hours.
    pub timezone: Option<Tz>,
    pub preferences: Preferences,
}

/// What a due step comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextMove {
    /// Send it now on `channel` to `recipient`.
    Send { channel: NoticeChannel, recipient: String },
    /// Not sent, for this reason; the next step goes at its own time.
    Skip(String),
    /// Inside the quiet hours: due again at their end.
    Defer(DateTime<Utc>),
    /// The notice expired: nothing more is sent.
    Expire,
}

/// What a step due `now` comes to, for a notice of type `kind` (urgent or not, expiring at
/// `expires_at`) to a person with `reach`. The in-app step always goes; the others follow the
/// person's switches, their contact points and, unless urgent, their quiet hours.
pub fn next_move(
    channel: NoticeChannel,
    kind: &NoticeType,
    urgent: bool,
    expires_at: Option<DateTime<Utc>>,
    reach: &Reach,
    now: DateTime<Utc>,
) -> NextMove {
    if expires_at.is_some_and(|at| now >= at) {
        return NextMove::Expire;
    }
    if channel == NoticeChannel::Realtime {
        return NextMove::Send { channel, recipient: String::new() };
    }
    if !reach.preferences.allows(channel, kind) {
        return NextMove::Skip(format!("{} is turned off for {} notices", channel.as_str(), kind.as_str()));
    }
    let recipient = match channel {
        NoticeChannel::Email => reach.email.as_ref().map(|e| e.as_str().to_owned()),
        NoticeChannel::Sms => reach.phone.as_ref().map(|p| p.as_str().trim_start_matches('+').to_owned()),
        NoticeChannel::Webhook => reach.webhook.as_ref().map(|w| w.as_str().to_owned()),
        NoticeChannel::Realtime => None,
    };
    let Some(recipient) = recipient else {
        return NextMove::Skip(format!("the person has no {} to reach", contact_point(channel)));
    };
    if !urgent && let Some(quiet) = reach.preferences.quiet_hours {
        let tz = reach.timezone.unwrap_or(chrono_tz::UTC);
        let until = quiet.next_outside(now, tz);
        if until > now {
            // Quiet until after the notice expires: nothing more will go.
            if expires_at.is_some_and(|at| until >= at) {
                return NextMove::Expire;
            }
            return NextMove::Defer(until);
        }
    }
    NextMove::Send { channel, recipient }
}

fn contact_point(channel: NoticeChannel) -> &'static str {
    match channel {
        NoticeChannel::Email => "email address",
        NoticeChannel::Sms => "phone number",
        NoticeChannel::Webhook => "webhook",
        NoticeChannel::Realtime => "session",
    }
}

/// The status a notice ends with once every step ended and nobody acknowledged it.
pub fn settled_status(steps: &[StepStatus]) -> Option<NoticeStatus> {
    if steps.iter().any(|s| !s.is_final()) {
        return None;
    }
    if steps.contains(&StepStatus::Sent) {
        Some(NoticeStatus::Delivered)
    } else if steps.contains(&StepStatus::Expired) {
        Some(NoticeStatus::Expired)
    } else {
        Some(NoticeStatus::Failed)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use serde_json::json;

    use super::*;

    fn reach(prefs: serde_json::Value) -> Reach {
        Reach {
            email: Some(Email::parse("ada@example.org").expect("email")),
            phone: Some(ContactPhone::parse("+4915112345678").expect("phone")),
            webhook: None,
            timezone: Some("Europe/Berlin".parse().expect("zone")),
            preferences: serde_json::from_value(prefs).expect("preferences"),
        }
    }

    #[test]
    fn steps_follow_switches_contact_points_quiet_hours_and_expiry() {
        let kind = NoticeType::parse("alert").expect("type");
        let noon = Utc.with_ymd_and_hms(2026, 12, 3, 11, 0, 0).single().expect("time");
        let night = Utc.with_ymd_and_hms(2026, 12, 3, 22, 30, 0).single().expect("time"); // 23:30 in Berlin
        let r = reach(json!({"quiet_hours": {"start": "22:00", "end": "07:00"}, "channels": {"sms": false}}));
        let email = |urgent, at, expires| next_move(NoticeChannel::Email, &kind, urgent, expires, &r, at);
        assert_eq!(
            email(false, noon, None),
            NextMove::Send { channel: NoticeChannel::Email, recipient: "ada@example.org".into() }
        );
        // 07:00 in Berlin on the 4th is 06:00 UTC.
        let morning = Utc.with_ymd_and_hms(2026, 12, 4, 6, 0, 0).single().expect("time");
        assert_eq!(email(false, night, None), NextMove::Defer(morning));
        assert!(matches!(email(true, night, None), NextMove::Send { .. }), "urgent ignores quiet hours");
        assert_eq!(email(false, night, Some(night + chrono::Duration::hours(1))), NextMove::Expire);
        assert_eq!(email(false, noon, Some(noon)), NextMove::Expire);
        assert!(
            matches!(next_move(NoticeChannel::Sms, &kind, false, None, &r, noon), NextMove::Skip(why) if why.contains("turned off"))
        );
        assert!(
            matches!(next_move(NoticeChannel::Webhook, &kind, false, None, &r, noon), NextMove::Skip(why) if why.contains("no webhook"))
        );
        assert!(
            matches!(next_move(NoticeChannel::Realtime, &kind, false, None, &r, night), NextMove::Send { .. }),
            "in-app always goes"
        );
    }

    #[test]
    fn a_notice_settles_by_its_steps() {
        use StepStatus::*;
        assert_eq!(settled_status(&[Sent, Pending]), None);
        assert_eq!(settled_status(&[Sent, Skipped]), Some(NoticeStatus::Delivered));
        assert_eq!(settled_status(&[Skipped, Expired]), Some(NoticeStatus::Expired));
        assert_eq!(settled_status(&[Skipped, Failed]), Some(NoticeStatus::Failed));
    }
}
