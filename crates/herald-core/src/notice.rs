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
    notify::{NoticeChannel, NoticeType, Preferences},
    user::{ContactPhone, Email, WebhookUrl},
};

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
        !matches!(self, Self::Pending | Self::Deferred)
    }
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
        let until = quiet.defer(now, tz);
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
