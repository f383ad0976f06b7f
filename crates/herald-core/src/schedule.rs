//! When periodic jobs run: a cron schedule, in UTC or in a time zone.
//!
//! Accepted forms:
//! - five cron fields, `minute hour day-of-month month day-of-week`, as Vixie cron reads them
//!   (`*`, numbers, ranges, steps, lists, month and weekday names; 0 and 7 are Sunday; when both
//!   day fields are restricted a day matching either runs), parsed and evaluated by `croner`;
//!   prefixed with `CRON_TZ=<zone> ` (an IANA name) they are read at that zone's local time, so a
//!   job at 03:00 stays at 03:00 across daylight-saving changes;
//! - `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`;
//! - `@every <n><unit>` with `s`, `m`, `h` or `d` (at least one second): a fixed interval from the
//!   previous run (ours: cron has no such form);
//! - `off`: never (ours).

use std::{fmt, str::FromStr, time::Duration};

use chrono::{DateTime, Duration as TimeDelta, Utc};
use chrono_tz::Tz;
use croner::{
    Cron,
    parser::{CronParser, Seconds, Year},
};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    text: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Off,
    Every(Duration),
    Cron { cron: Box<Cron>, zone: Tz },
}

impl Eq for Schedule {}

impl Schedule {
    /// A schedule that never fires.
    pub fn off() -> Self {
        Self { text: "off".into(), kind: Kind::Off }
    }

    /// Every `interval` (at least a second; a zero interval never fires).
    pub fn every(interval: Duration) -> Self {
        if interval.is_zero() {
            return Self::off();
        }
        let secs = interval.as_secs().max(1);
        Self { text: format!("@every {secs}s"), kind: Kind::Every(Duration::from_secs(secs)) }
    }

    /// The first instant strictly after `after` at which the job is due, or `None` when never.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Off => None,
            Kind::Every(interval) => after.checked_add_signed(TimeDelta::from_std(*interval).ok()?),
            Kind::Cron { cron, zone } => {
                // In a repeated hour (daylight saving ending) croner may answer the earlier of two
                // instants with the same local time, one before `after`: search on from there.
                let mut from = after.with_timezone(zone);
                for _ in 0..4 {
                    let next = cron.find_next_occurrence(&from, false).ok()?;
                    if next.with_timezone(&Utc) > after {
                        return Some(next.with_timezone(&Utc));
                    }
                    from = next;
                }
                None
            }
        }
    }
}

fn every(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("@every: {text:?} is not <number><s|m|h|d>"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("@every: {text:?} is not <number><s|m|h|d>")),
    };
    if secs == 0 {
        return Err("@every: the interval must be at least 1s".into());
    }
    if secs > 10 * 366 * 86_400 {
        return Err("@every: the interval must be at most ten years".into());
    }
    Ok(Duration::from_secs(secs))
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text == "off" {
            return Ok(Self::off());
        }
        if let Some(interval) = text.strip_prefix("@every ") {
            return Ok(Self { text: text.to_owned(), kind: Kind::Every(every(interval)?) });
        }
        let (zone, pattern) = match text.strip_prefix("CRON_TZ=") {
            Some(rest) => {
                let (zone, pattern) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                let zone: Tz = zone.parse().map_err(|_| format!("CRON_TZ: {zone:?} is not an IANA time zone"))?;
                (zone, pattern.trim())
            }
            None => (Tz::UTC, text),
        };
        if !pattern.starts_with('@') && pattern.split_whitespace().count() != 5 {
            return Err(format!(
                "{text:?} is not a schedule: use five cron fields (optionally after CRON_TZ=<zone>), @hourly, \
                 @daily, @weekly, @monthly, @yearly, @every <n><s|m|h|d> or off"
            ));
        }
        let parser = CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build();
        let cron = parser.parse(pattern).map_err(|err| {
            match culprit(&parser, pattern).filter(|_| !pattern.starts_with('@')) {
                Some((name, field)) => format!("{text:?}: the {name} field {field:?} is not valid ({err})"),
                None => format!("{text:?} is not a valid cron schedule: {err}"),
            }
        })?;
        let schedule = Self { text: text.to_owned(), kind: Kind::Cron { cron: Box::new(cron), zone } };
        if schedule.next_after(DateTime::<Utc>::UNIX_EPOCH).is_none() {
            return Err(format!("{text:?} never fires"));
        }
        Ok(schedule)
    }
}

/// The first of a five-field pattern's fields that fails to parse on its own, and its name.
fn culprit<'a>(parser: &CronParser, pattern: &'a str) -> Option<(&'static str, &'a str)> {
    const NAMES: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
    let fields: Vec<&str> = pattern.split_whitespace().collect();
    (0..fields.len().min(5)).find_map(|i| {
        let alone: Vec<&str> = (0..5).map(|j| if j == i { fields[i] } else { "*" }).collect();
        parser.parse(&alone.join(" ")).is_err().then(|| (NAMES[i], fields[i]))
    })
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn next(schedule: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        schedule.parse::<Schedule>().expect(schedule).next_after(after)
    }

    #[test]
    fn cron_fields_find_the_next_minute() {
        let t = at(2026, 11, 22, 10, 17);
        assert_eq!(next("* * * * *", t), Some(at(2026, 11, 22, 10, 18)));
        assert_eq!(next("*/15 * * * *", t), Some(at(2026, 11, 22, 10, 30)));
        assert_eq!(next("0 3 * * *", t), Some(at(2026, 11, 23, 3, 0)));
        assert_eq!(next("@hourly", t), Some(at(2026, 11, 22, 11, 0)));
        assert_eq!(next("@monthly", t), Some(at(2026, 12, 1, 0, 0)));
        assert_eq!(next("30 8 * * 1-5", at(2026, 11, 21, 9, 0)), Some(at(2026, 11, 23, 8, 30)), "Saturday → Monday");
        assert_eq!(next("0 0 29 2 *", t), Some(at(2028, 2, 29, 0, 0)), "the next leap day");
        assert_eq!(next("0 0 1,15 * 0", at(2026, 11, 2, 0, 0)), Some(at(2026, 11, 8, 0, 0)), "either day field");
        assert_eq!(next("0 0 * * 7", t), next("0 0 * * 0", t), "7 is Sunday too");
    }

    #[test]
    fn a_zoned_schedule_keeps_its_local_hour_across_daylight_saving() {
        // 03:00 in Paris is 01:00 UTC in summer (CEST) and 02:00 UTC in winter (CET).
        let paris = "CRON_TZ=Europe/Paris 0 3 * * *";
        assert_eq!(next(paris, at(2026, 7, 1, 12, 0)), Some(at(2026, 7, 2, 1, 0)), "CEST is UTC+2");
        assert_eq!(next(paris, at(2026, 12, 1, 12, 0)), Some(at(2026, 12, 2, 2, 0)), "CET is UTC+1");
        assert_eq!(paris.parse::<Schedule>().expect("zoned").to_string(), paris);
        assert_eq!(next("@yearly", at(2026, 3, 1, 0, 0)), Some(at(2027, 1, 1, 0, 0)));
        assert_eq!(next("0 9 * * MON-FRI", at(2026, 11, 21, 9, 0)), Some(at(2026, 11, 23, 9, 0)), "names");
    }

    #[test]
    fn a_repeated_hour_does_not_answer_the_past() {
        // Paris falls back on 2026-10-25: 02:30 local is 00:30 UTC (CEST) and again 01:30 UTC (CET).
        let after = at(2026, 10, 25, 1, 10);
        let next = next("CRON_TZ=Europe/Paris 30 2 * * *", after).expect("fires");
        assert!(next > after, "{next} is not after {after}");
    }

    #[test]
    fn a_run_exactly_on_the_minute_is_after_it_not_at_it() {
        assert_eq!(next("0 * * * *", at(2026, 1, 1, 10, 0)), Some(at(2026, 1, 1, 11, 0)));
    }

    #[test]
    fn intervals_and_off() {
        let t = at(2026, 1, 1, 0, 0);
        assert_eq!(next("@every 90s", t), Some(t + TimeDelta::seconds(90)));
        assert_eq!(next("@every 2h", t), Some(t + TimeDelta::hours(2)));
        assert_eq!(next("off", t), None);
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (text, says) in [
            ("* * * *", "five cron fields"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("*/0 * * * *", "minute"),
            ("* * 32 * *", "day-of-month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day-of-week"),
            ("5-1 * * * *", "minute"),
            ("CRON_TZ=Mars/Olympus 0 3 * * *", "time zone"),
            ("0 0 30 2 *", "never fires"),
            ("@every 0s", "at least 1s"),
            ("@every soon", "@every"),
            ("@every 100000d", "ten years"),
            ("@dailyy", "not a valid cron schedule"),
        ] {
            let err = text.parse::<Schedule>().expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
