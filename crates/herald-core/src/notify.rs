//! Reaching a person: the channels a notice may take, and what the person wants of them — which
//! channels are on (for every notice, or for one type) and when they are not to be disturbed.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::delivery::{DailyWindow, LocalTime};

/// Most notice types one person may set preferences for.
pub const TYPES_MAX: usize = 100;

text_type!(
    /// A notice's type, chosen by the sender (`comment.reply`, `invoice-due`): 1 to 64 characters
    /// among lower-case letters, digits, `.`, `_` and `-`.
    NoticeType,
    |raw| {
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
        if (1..=64).contains(&raw.len()) && raw.bytes().all(allowed) {
            Ok(())
        } else {
            Err("must be 1 to 64 characters among a-z, 0-9, '.', '_' and '-'")
        }
    }
);

string_enum!(
    /// Where a notice can reach its person.
    #[derive(Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    NoticeChannel {
        /// An event on the person's `user:<id>` stream and an inbox entry.
        Realtime => "realtime",
        Email => "email",
        Sms => "sms",
        Webhook => "webhook",
    }
);

fn on() -> bool {
    true
}

/// Which channels are on for every notice; the in-app one always is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSwitches {
    #[serde(default = "on")]
    pub email: bool,
    #[serde(default = "on")]
    pub sms: bool,
    #[serde(default = "on")]
    pub webhook: bool,
}

impl Default for ChannelSwitches {
    fn default() -> Self {
        Self { email: true, sms: true, webhook: true }
    }
}

/// Channels turned on or off for one type of notice; an absent one follows the global switch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypeSwitches {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<bool>,
}

/// The preferences for one type of notice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypePreference {
    #[serde(default)]
    pub channels: TypeSwitches,
}

/// A person's quiet hours as the API shows them: `{"start": "22:00", "end": "07:00"}`, the
/// daily hours, in the person's zone, in which nothing but in-app notices (and urgent ones)
/// reach them; in Rust a [`DailyWindow`] (`start` after `end` spans midnight; they must differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"start": "22:00", "end": "07:00"}))]
pub struct QuietHours {
    /// Local time, `HH:MM`.
    #[schema(value_type = String, pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "22:00")]
    pub start: LocalTime,
    /// Local time, `HH:MM` (the first minute that is not quiet).
    #[schema(value_type = String, pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "07:00")]
    pub end: LocalTime,
}

/// Quiet hours in their `{"start", "end"}` shape, for `#[serde(with)]` on an
/// `Option<DailyWindow>`.
mod quiet_hours {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::QuietHours;
    use crate::delivery::DailyWindow;

    pub fn serialize<S: Serializer>(window: &Option<DailyWindow>, s: S) -> Result<S::Ok, S::Error> {
        window.map(|w| QuietHours { start: w.start, end: w.end }).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DailyWindow>, D::Error> {
        let Some(shape) = Option::<QuietHours>::deserialize(d)? else { return Ok(None) };
        DailyWindow::new(shape.start, shape.end)
            .map(Some)
            .map_err(|_| serde::de::Error::custom("the quiet hours' start and end must differ"))
    }
}

/// What a person wants: `PUT /api/v1/me/preferences` replaces it whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "RawPreferences")]
#[schema(example = json!({"quiet_hours": {"start": "22:00", "end": "07:00"}, "channels": {"email": true, "sms": false, "webhook": true}, "types": {"marketing": {"channels": {"email": false}}}}))]
pub struct Preferences {
    /// Null: no quiet hours.
    #[serde(default, with = "quiet_hours")]
    #[schema(value_type = Option<QuietHours>)]
    pub quiet_hours: Option<DailyWindow>,
    #[serde(default)]
    pub channels: ChannelSwitches,
    /// Overrides by notice type (at most 100 types).
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, TypePreference>)]
    pub types: BTreeMap<NoticeType, TypePreference>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreferences {
    #[serde(default, with = "quiet_hours")]
    quiet_hours: Option<DailyWindow>,
    #[serde(default)]
    channels: ChannelSwitches,
    #[serde(default)]
    types: BTreeMap<NoticeType, TypePreference>,
}

impl TryFrom<RawPreferences> for Preferences {
    type Error = &'static str;
    fn try_from(raw: RawPreferences) -> Result<Self, Self::Error> {
        if raw.types.len() > TYPES_MAX {
            return Err("at most 100 notice types may have their own preferences");
        }
        Ok(Self { quiet_hours: raw.quiet_hours, channels: raw.channels, types: raw.types })
    }
}

impl Preferences {
    /// Whether `channel` is on for notices of type `kind`: the type's switch when it has one,
    /// else the global one. The in-app channel is always on.
    pub fn allows(&self, channel: NoticeChannel, kind: &NoticeType) -> bool {
        let specific = self.types.get(kind).map(|t| t.channels);
        let pick = |global: bool, specific: Option<bool>| specific.unwrap_or(global);
        match channel {
            NoticeChannel::Realtime => true,
            NoticeChannel::Email => pick(self.channels.email, specific.and_then(|s| s.email)),
            NoticeChannel::Sms => pick(self.channels.sms, specific.and_then(|s| s.sms)),
            NoticeChannel::Webhook => pick(self.channels.webhook, specific.and_then(|s| s.webhook)),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use serde_json::json;

    use super::*;
    use chrono::Utc;
    use chrono_tz::Tz;

    fn prefs(value: serde_json::Value) -> Result<Preferences, String> {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    #[test]
    fn channels_follow_the_type_then_the_global_switch() {
        let p = prefs(
            json!({"channels": {"sms": false}, "types": {"marketing": {"channels": {"email": false, "sms": true}}}}),
        )
        .expect("valid");
        let (marketing, other) = (NoticeType::parse("marketing").expect("t"), NoticeType::parse("alert").expect("t"));
        assert!(!p.allows(NoticeChannel::Email, &marketing) && p.allows(NoticeChannel::Email, &other));
        assert!(p.allows(NoticeChannel::Sms, &marketing) && !p.allows(NoticeChannel::Sms, &other));
        assert!(p.allows(NoticeChannel::Webhook, &marketing));
        assert!(p.allows(NoticeChannel::Realtime, &marketing), "in-app is always on");
        assert_eq!(prefs(json!({})).expect("empty is the default"), Preferences::default());
    }

    #[test]
    fn bad_preferences_are_refused() {
        assert!(prefs(json!({"quiet_hours": {"start": "25:00", "end": "07:00"}})).is_err());
        assert!(prefs(json!({"quiet_hours": {"start": "07:00", "end": "07:00"}})).is_err());
        assert!(prefs(json!({"channels": {"pigeon": true}})).is_err());
        assert!(prefs(json!({"types": {"Bad Type": {}}})).is_err());
        let many: serde_json::Map<_, _> = (0..=TYPES_MAX).map(|i| (format!("t{i}"), json!({}))).collect();
        assert!(prefs(json!({"types": many})).is_err());
    }

    #[test]
    fn quiet_hours_defer_to_their_end_in_the_persons_zone_across_dst() {
        let quiet = DailyWindow { start: "22:00".parse().expect("t"), end: "07:00".parse().expect("t") };
        let tz: Tz = "Europe/Berlin".parse().expect("zone");
        // 23:30 on 2026-03-28 in Berlin (UTC+1): the night the clocks go forward at 02:00.
        let at = Utc.with_ymd_and_hms(2026, 3, 28, 22, 30, 0).single().expect("time");
        assert!(quiet.contains(at.with_timezone(&tz).time()));
        // 07:00 on the 29th is UTC+2 by then: 05:00 UTC, not 06:00.
        assert_eq!(quiet.next_outside(at, tz), Utc.with_ymd_and_hms(2026, 3, 29, 5, 0, 0).single().expect("time"));
        let noon = Utc.with_ymd_and_hms(2026, 3, 29, 11, 0, 0).single().expect("time");
        assert_eq!(quiet.next_outside(noon, tz), noon, "outside the quiet hours nothing waits");
    }
}
