//! Send windows: the hours of the day, in the recipient's own time zone, when a delivery may be
//! attempted. The sender asks for the next allowed instant before a first attempt and after
//! every back-off, so no attempt lands outside the window whatever the retry schedule says.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Days, LocalResult, NaiveTime, TimeDelta, TimeZone as _, Timelike as _, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A local time of day, `HH:MM` (00:00 to 23:59).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LocalTime(NaiveTime);

impl LocalTime {
    pub fn new(hour: u32, minute: u32) -> Option<Self> {
        NaiveTime::from_hms_opt(hour, minute, 0).map(Self)
    }

    pub fn time(self) -> NaiveTime {
        self.0
    }
}

impl FromStr for LocalTime {
    type Err = &'static str;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        const MSG: &str = "must be a time of day as HH:MM, from 00:00 to 23:59";
        let (h, m) = raw.split_once(':').ok_or(MSG)?;
        if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(MSG);
        }
        Self::new(h.parse().map_err(|_| MSG)?, m.parse().map_err(|_| MSG)?).ok_or(MSG)
    }
}

impl TryFrom<String> for LocalTime {
    type Error = &'static str;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        raw.parse()
    }
}

impl From<LocalTime> for String {
    fn from(t: LocalTime) -> Self {
        t.to_string()
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0.hour(), self.0.minute())
    }
}

/// A span of every day, in local time: `[start, end)`. `start` after `end` spans midnight
/// (`21:00`–`09:00` is the night); `start == end` is refused, as it says nothing clear. A
/// mailing's send window and a person's quiet hours are both one; on the wire each keeps its own
/// shape: [`SendWindow`] (`{"from", "to"}`, this type's serde form) and
/// [`crate::notify::QuietHours`] (`{"start", "end"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SendWindow", into = "SendWindow")]
pub struct DailyWindow {
    pub start: LocalTime,
    pub end: LocalTime,
}

/// A mailing's sending hours as the API shows them: `{"from": "09:00", "to": "21:00"}`, the
/// hours `[from, to)` of each client's day in which sending is allowed (see [`DailyWindow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"from": "09:00", "to": "21:00"}))]
pub struct SendWindow {
    /// Start of the allowed hours, local time, `HH:MM`.
    #[schema(value_type = String, pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "09:00")]
    pub from: LocalTime,
    /// End of the allowed hours (exclusive), local time, `HH:MM`.
    #[schema(value_type = String, pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "21:00")]
    pub to: LocalTime,
}

impl TryFrom<SendWindow> for DailyWindow {
    type Error = &'static str;
    fn try_from(shape: SendWindow) -> Result<Self, Self::Error> {
        Self::new(shape.from, shape.to).map_err(|_| "the window's from and to must differ")
    }
}

impl From<DailyWindow> for SendWindow {
    fn from(window: DailyWindow) -> Self {
        Self { from: window.start, to: window.end }
    }
}

impl DailyWindow {
    pub fn new(start: LocalTime, end: LocalTime) -> Result<Self, &'static str> {
        if start == end {
            return Err("start and end must differ");
        }
        Ok(Self { start, end })
    }

    /// Whether a local time of day is inside the window.
    pub fn contains(&self, t: NaiveTime) -> bool {
        let (start, end) = (self.start.time(), self.end.time());
        if start < end { start <= t && t < end } else { t >= start || t < end }
    }

    /// The first instant at or after `at` whose local time in `tz` is inside the window.
    ///
    /// Across a daylight-saving change the window's start may not exist that day (clocks jump
    /// over it): the first instant after the jump is used. When it exists twice, the earlier.
    pub fn next_inside(&self, at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let local = at.with_timezone(&tz);
        if self.contains(local.time()) {
            return at;
        }
        // Outside the window: it opens at `start`, today if that is still ahead, else tomorrow.
        let mut day = local.date_naive();
        if local.time() >= self.start.time() {
            day = day + Days::new(1);
        }
        let start = day.and_time(self.start.time());
        match tz.from_local_datetime(&start) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
            LocalResult::None => {
                // A gap: find the first existing minute after it (gaps last at most a few hours).
                (1..=24 * 60)
                    .find_map(|m| tz.from_local_datetime(&(start + TimeDelta::minutes(m))).earliest())
                    .map_or(at, |t| t.with_timezone(&Utc))
            }
        }
    }

    /// The first instant at or after `at` whose local time in `tz` is outside the window: `at`
    /// itself when it is outside, else the window's end (across a daylight-saving change, the
    /// first instant that exists after it).
    pub fn next_outside(&self, at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        Self { start: self.end, end: self.start }.next_inside(at, tz)
    }
}

/// A window in a recipient's time zone, as a delivery's payload carries it:
/// `"window": {"from": "09:00", "to": "21:00", "tz": "Europe/Moscow"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZonedWindow {
    pub from: LocalTime,
    pub to: LocalTime,
    #[serde(with = "tz_name")]
    pub tz: Tz,
}

impl ZonedWindow {
    pub fn new(window: DailyWindow, tz: Tz) -> Self {
        Self { from: window.start, to: window.end, tz }
    }

    /// The window a delivery payload carries, if any; an unreadable one is ignored (none).
    pub fn of_payload(payload: &serde_json::Value) -> Option<Self> {
        let zoned = Self::deserialize(payload.get("window")?).ok()?;
        DailyWindow::new(zoned.from, zoned.to).is_ok().then_some(zoned)
    }

    pub fn next_allowed(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        DailyWindow { start: self.from, end: self.to }.next_inside(at, self.tz)
    }
}

mod tz_name {
    use chrono_tz::Tz;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(tz.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("an RFC 3339 instant")
    }

    fn window(from: &str, to: &str) -> DailyWindow {
        DailyWindow::new(from.parse().expect("from"), to.parse().expect("to")).expect("window")
    }

    #[test]
    fn times_of_day_parse_strictly() {
        assert_eq!("09:05".parse::<LocalTime>().map(|t| t.to_string()), Ok("09:05".to_owned()));
        for bad in ["25:00", "9:00", "09:60", "09-00", "0900", "", "ab:cd", "+1:00", "23:59:00"] {
            assert!(bad.parse::<LocalTime>().is_err(), "{bad} was accepted");
        }
        assert!(DailyWindow::new("10:00".parse().expect("t"), "10:00".parse().expect("t")).is_err());
    }

    #[test]
    fn the_next_instant_inside_the_window_is_in_the_recipients_zone() {
        let day = window("09:00", "21:00");
        let moscow: Tz = "Europe/Moscow".parse().expect("zone");
        // 05:00 UTC is 08:00 in Moscow: the window opens an hour later.
        assert_eq!(day.next_inside(at("2026-11-22T05:00:00Z"), moscow), at("2026-11-22T06:00:00Z"));
        // 10:00 in Moscow: now.
        assert_eq!(day.next_inside(at("2026-11-22T07:00:00Z"), moscow), at("2026-11-22T07:00:00Z"));
        // 21:00 in Moscow is closed: tomorrow 09:00.
        assert_eq!(day.next_inside(at("2026-11-22T18:00:00Z"), moscow), at("2026-11-23T06:00:00Z"));
        let vladivostok: Tz = "Asia/Vladivostok".parse().expect("zone");
        // 05:00 UTC is 15:00 in Vladivostok (UTC+10): now.
        assert_eq!(day.next_inside(at("2026-11-22T05:00:00Z"), vladivostok), at("2026-11-22T05:00:00Z"));
    }

    #[test]
    fn a_window_across_midnight_allows_the_night() {
        let night = window("21:00", "09:00");
        let utc = Tz::UTC;
        assert_eq!(night.next_inside(at("2026-11-22T23:30:00Z"), utc), at("2026-11-22T23:30:00Z"));
        assert_eq!(night.next_inside(at("2026-11-22T03:00:00Z"), utc), at("2026-11-22T03:00:00Z"));
        assert_eq!(night.next_inside(at("2026-11-22T09:00:00Z"), utc), at("2026-11-22T21:00:00Z"));
    }

    #[test]
    fn a_start_skipped_by_daylight_saving_opens_after_the_jump() {
        // New York, 2026-03-08: clocks jump from 02:00 to 03:00.
        let ny: Tz = "America/New_York".parse().expect("zone");
        let w = window("02:30", "04:00");
        // 2026-03-08T06:00Z is 01:00 EST; 02:30 does not exist, so 03:00 EDT (07:00Z).
        assert_eq!(w.next_inside(at("2026-03-08T06:00:00Z"), ny), at("2026-03-08T07:00:00Z"));
        // In autumn 01:30 happens twice; the earlier (EDT, 05:30Z) is taken.
        let w = window("01:30", "04:00");
        assert_eq!(w.next_inside(at("2026-11-01T04:00:00Z"), ny), at("2026-11-01T05:30:00Z"));
    }

    #[test]
    fn a_payload_window_round_trips() {
        let zoned = ZonedWindow::new(window("09:00", "21:00"), "Asia/Tokyo".parse().expect("zone"));
        let json = serde_json::json!({"window": serde_json::to_value(zoned).expect("json")});
        assert_eq!(json["window"], serde_json::json!({"from": "09:00", "to": "21:00", "tz": "Asia/Tokyo"}));
        assert_eq!(ZonedWindow::of_payload(&json), Some(zoned));
        assert_eq!(ZonedWindow::of_payload(&serde_json::json!({"window": {"from": "x"}})), None);
    }

    #[test]
    fn a_window_reads_and_prints_as_from_and_to_and_ends_where_it_ends() {
        let w: DailyWindow =
            serde_json::from_value(serde_json::json!({"from": "22:00", "to": "07:00"})).expect("window");
        assert_eq!(w, window("22:00", "07:00"));
        assert_eq!(serde_json::to_value(w).expect("json"), serde_json::json!({"from": "22:00", "to": "07:00"}));
        let same = serde_json::from_value::<DailyWindow>(serde_json::json!({"from": "07:00", "to": "07:00"}));
        assert!(same.expect_err("equal").to_string().contains("from and to must differ"));
        assert!(serde_json::from_value::<DailyWindow>(serde_json::json!({"start": "22:00", "end": "07:00"})).is_err());
        // Inside the night it ends at 07:00; outside it, now.
        assert_eq!(w.next_outside(at("2026-11-22T23:00:00Z"), Tz::UTC), at("2026-11-23T07:00:00Z"));
        assert_eq!(w.next_outside(at("2026-11-22T12:00:00Z"), Tz::UTC), at("2026-11-22T12:00:00Z"));
    }
}
