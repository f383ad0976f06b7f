//! The calendar: a person's events, the periods they are listed by, and the reminders they get.
//!
//! An event occupies `[starts_at, starts_at + duration)`; two events of one owner never overlap
//! (the store refuses the second with [`Constraint::EventsOverlap`](crate::store::Constraint::EventsOverlap)). Periods
//! are computed in the caller's time zone, so a day is a local day, 23 or 25 hours long across a
//! DST change.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Datelike, Duration, LocalResult, Months, NaiveDate, NaiveDateTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    delivery::{Channel, DeliveryId, NewDelivery},
    task::{Description, Title},
    user::{UserId, WebhookUrl},
};

id_type!(
    /// A calendar event's id (UUIDv7).
    CalendarEventId
);

/// Longest event, and longest reminder lead, in seconds: 31 days.
pub const MAX_SPAN_SECONDS: i64 = 31 * 24 * 3600;

/// The delivery kind of a reminder coming due: at its time the [`Reminder`] is published on
/// [`REMINDERS_QUEUE`] (the stored string stays `calendar.reminder`).
pub const REMINDER_DUE_KIND: &str = "calendar.reminder";

/// The delivery kind of a reminder taken from [`REMINDERS_QUEUE`] and sent on one of
/// [`REMINDER_CHANNELS`] or to the owner's webhook. The string, stored in rows and sent as
/// `Herald-Kind`, stays `calendar.notification` (a public name).
pub const REMINDER_SENT_KIND: &str = "calendar.notification";

/// The work queue reminders are published on, as [`Reminder`] JSON (its name stays
/// `notifications`: old and new processes share it during a rolling restart).
pub const REMINDERS_QUEUE: &str = "notifications";

/// Where a reminder is always sent (and to the owner's webhook, when they set one).
pub const REMINDER_CHANNELS: [Channel; 2] = [Channel::Log, Channel::Realtime];

/// A reminder as it travels on [`REMINDERS_QUEUE`]: `{event_id, title, starts_at, user_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reminder {
    pub event_id: Uuid,
    pub title: String,
    pub starts_at: DateTime<Utc>,
    pub user_id: Uuid,
}

impl Reminder {
    /// Its deliveries to the owner for the queue message `message_id`: one per channel, and one
    /// to the owner's `webhook` if they set one. Keyed by the message, so a message taken twice
    /// is delivered once. They continue the current span's trace.
    pub fn deliveries(&self, message_id: Uuid, webhook: Option<&WebhookUrl>, now: DateTime<Utc>) -> Vec<NewDelivery> {
        let mut payload = json!(self);
        payload["type"] = json!("event.reminder");
        let user = self.user_id.to_string();
        let webhook = webhook.map(|url| (Channel::Webhook, url.as_str().to_owned()));
        let trace_context = crate::trace::current();
        REMINDER_CHANNELS
            .iter()
            .map(|&channel| (channel, user.clone()))
            .chain(webhook)
            .map(|(channel, recipient)| NewDelivery {
                id: DeliveryId::new(),
                kind: REMINDER_SENT_KIND.to_owned(),
                source_key: format!("notification:{message_id}:{}", channel.as_str()),
                recipient,
                channel,
                payload: payload.clone(),
                source_id: Some(self.event_id),
                recipient_id: Some(self.user_id),
                next_attempt_at: now,
                deadline: None,
                created_at: now,
                trace_context: trace_context.clone(),
            })
            .collect()
    }
}

/// A calendar event.
#[derive(Debug, Clone, PartialEq)]
pub struct CalendarEvent {
    pub id: CalendarEventId,
    pub owner: UserId,
    pub title: Title,
    pub description: Description,
    pub starts_at: DateTime<Utc>,
    pub duration: Duration,
    /// How long before the start the owner is reminded; `None` for no reminder.
    pub remind_before: Option<Duration>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl CalendarEvent {
    pub fn ends_at(&self) -> DateTime<Utc> {
        self.starts_at + self.duration
    }

    /// When the reminder is due, if there is one.
    pub fn remind_at(&self) -> Option<DateTime<Utc>> {
        self.remind_before.map(|before| self.starts_at - before)
    }

    /// The reminder this event publishes when it comes due.
    pub fn reminder(&self) -> Reminder {
        Reminder {
            event_id: self.id.0,
            title: self.title.as_str().to_owned(),
            starts_at: self.starts_at,
            user_id: self.owner.0,
        }
    }

    /// The reminder of this event as it is now, created at `now`: a delivery that publishes the
    /// [`Reminder`] on [`REMINDERS_QUEUE`] at `starts_at - remind_before`.
    ///
    /// It is keyed by the event and the instant it is due, so storing it twice stores one, and a
    /// moved event gets a new one (the store cancels the old one if it is still pending). It
    /// continues the current span's trace (the request that created or moved the event).
    pub fn reminders(&self, now: DateTime<Utc>) -> Vec<NewDelivery> {
        let Some(at) = self.remind_at() else { return Vec::new() };
        vec![NewDelivery {
            id: DeliveryId::new(),
            kind: REMINDER_DUE_KIND.to_owned(),
            source_key: format!("event:{}:reminder:{}", self.id, at.timestamp_micros()),
            recipient: REMINDERS_QUEUE.to_owned(),
            channel: Channel::Queue,
            payload: json!(self.reminder()),
            source_id: Some(self.id.0),
            recipient_id: Some(self.owner.0),
            next_attempt_at: at,
            // A reminder that could not go out before the event ended is of no use.
            deadline: Some(self.ends_at()),
            created_at: now,
            trace_context: crate::trace::current(),
        }]
    }
}

/// A listing period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// The local day of the date.
    Day,
    /// Seven local days from the date.
    Week,
    /// The calendar month the date falls in, from its first day.
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// The period around `date` in `tz` as UTC instants `[from, to)`.
    pub fn range(self, date: NaiveDate, tz: Tz) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let (first, next) = match self {
            Self::Day => (date, date.checked_add_days(chrono::Days::new(1))?),
            Self::Week => (date, date.checked_add_days(chrono::Days::new(7))?),
            Self::Month => {
                let first = date.with_day(1)?;
                (first, first.checked_add_months(Months::new(1))?)
            }
        };
        Some((local_midnight(first, tz)?, local_midnight(next, tz)?))
    }
}

impl FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            "month" => Ok(Self::Month),
            other => Err(format!("unknown period {other:?}")),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first instant of `date` in `tz`: midnight, or the end of a DST gap that swallows it.
fn local_midnight(date: NaiveDate, tz: Tz) -> Option<DateTime<Utc>> {
    let midnight: NaiveDateTime = date.and_hms_opt(0, 0, 0)?;
    // A gap is at most a few hours; the day starts when local time resumes.
    (0..=24 * 4).find_map(|quarter| match tz.from_local_datetime(&(midnight + Duration::minutes(15 * quarter))) {
        LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(earliest, _) => Some(earliest.with_timezone(&Utc)),
        LocalResult::None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("instant")
    }

    #[test]
    fn periods_are_local_days_weeks_and_months() {
        let moscow: Tz = "Europe/Moscow".parse().expect("zone");
        assert_eq!(
            Period::Day.range(day("2026-03-10"), moscow),
            Some((utc("2026-03-09T21:00:00Z"), utc("2026-03-10T21:00:00Z")))
        );
        assert_eq!(
            Period::Week.range(day("2026-03-10"), Tz::UTC),
            Some((utc("2026-03-10T00:00:00Z"), utc("2026-03-17T00:00:00Z")))
        );
        assert_eq!(
            Period::Month.range(day("2026-02-17"), Tz::UTC),
            Some((utc("2026-02-01T00:00:00Z"), utc("2026-03-01T00:00:00Z"))),
            "the month the date falls in"
        );
    }

    #[test]
    fn a_day_across_a_dst_change_is_23_or_25_hours() {
        let berlin: Tz = "Europe/Berlin".parse().expect("zone");
        let (from, to) = Period::Day.range(day("2026-03-29"), berlin).expect("range");
        assert_eq!((from, to - from), (utc("2026-03-28T23:00:00Z"), Duration::hours(23)));
        let (from, to) = Period::Day.range(day("2026-10-25"), berlin).expect("range");
        assert_eq!((from, to - from), (utc("2026-10-24T22:00:00Z"), Duration::hours(25)));
        // Where midnight itself is skipped (Santiago springs forward at 00:00), the day starts at 01:00.
        let santiago: Tz = "America/Santiago".parse().expect("zone");
        let (from, _) = Period::Day.range(day("2026-09-06"), santiago).expect("range");
        assert_eq!(from, utc("2026-09-06T04:00:00Z"));
    }

    #[test]
    fn reminders_are_keyed_by_their_time_and_channel() {
        let now = utc("2026-11-30T10:00:00Z");
        let event = CalendarEvent {
            id: CalendarEventId::new(),
            owner: UserId::new(),
            title: Title::parse("Stand-up").expect("title"),
            description: Description::default(),
            starts_at: utc("2026-12-01T09:00:00Z"),
            duration: Duration::minutes(15),
            remind_before: Some(Duration::minutes(10)),
            created_at: now,
            updated_at: now,
        };
        let reminders = event.reminders(now);
        assert_eq!(reminders.len(), 1);
        let reminder = &reminders[0];
        assert_eq!((reminder.channel, reminder.recipient.as_str()), (Channel::Queue, REMINDERS_QUEUE));
        assert_eq!(reminder.next_attempt_at, utc("2026-12-01T08:50:00Z"));
        assert_eq!(reminder.deadline, Some(utc("2026-12-01T09:15:00Z")));
        let expected = json!({"event_id": event.id.0, "title": "Stand-up", "starts_at": "2026-12-01T09:00:00Z", "user_id": event.owner.0});
        assert_eq!(reminder.payload, expected, "the notification exactly as the queue carries it");
        let notification: Reminder = serde_json::from_value(reminder.payload.clone()).expect("decodes");
        let message = Uuid::now_v7();
        let deliveries = notification.deliveries(message, None, now);
        assert_eq!(deliveries.iter().map(|d| d.channel).collect::<Vec<_>>(), REMINDER_CHANNELS);
        assert!(deliveries.iter().all(|d| d.payload["type"] == "event.reminder" && d.source_id == Some(event.id.0)));
        assert_eq!(
            notification.deliveries(message, None, now)[0].source_key,
            deliveries[0].source_key,
            "once per message"
        );
        let hook = WebhookUrl::parse("http://hooks.internal/herald").expect("url");
        let with_hook = notification.deliveries(message, Some(&hook), now);
        assert_eq!((with_hook[2].channel, with_hook[2].recipient.as_str()), (Channel::Webhook, hook.as_str()));
        let moved = CalendarEvent { starts_at: utc("2026-12-01T10:00:00Z"), ..event.clone() };
        assert_ne!(moved.reminders(now)[0].source_key, reminders[0].source_key, "a moved reminder is a new one");
        assert!(CalendarEvent { remind_before: None, ..event }.reminders(now).is_empty());
    }
}
