//! When periodic jobs run: a cron-like schedule, in UTC.
//!
//! Accepted forms:
//! - five cron fields, `minute hour day-of-month month day-of-week`, each `*`, a number, a range
//!   `a-b`, a step `*/n` or `a-b/n`, or a comma-separated list of those (day-of-week 0–7, 0 and 7
//!   are Sunday). When both day fields are restricted, a day matching either runs, as in cron;
//! - `@hourly`, `@daily`, `@weekly`, `@monthly`;
//! - `@every <n><unit>` with `s`, `m`, `h` or `d` (at least one second): a fixed interval from the
//!   previous run;
//! - `off`: never.

use std::{fmt, str::FromStr, time::Duration};

use chrono::{DateTime, Datelike, Duration as TimeDelta, DurationRound, Timelike, Utc};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Off,
    Every(Duration),
    Cron(Box<Cron>),
}

/// Cron fields as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_restricted: bool,
    weekdays_restricted: bool,
}

impl Schedule {
    /// A schedule that never fires.
    pub fn off() -> Self {
        Self { text: "off".into(), kind: Kind::Off }
    }

    /// The first instant strictly after `after` at which the job is due, or `None` when never.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Off => None,
            Kind::Every(interval) => after.checked_add_signed(TimeDelta::from_std(*interval).ok()?),
            Kind::Cron(cron) => cron.next_after(after),
        }
    }
}

impl Cron {
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut t = after.duration_trunc(TimeDelta::minutes(1)).ok()? + TimeDelta::minutes(1);
        // Eight years covers every leap-day and weekday combination; an impossible schedule
        // (30 February) ends here instead of looping.
        let limit = after + TimeDelta::days(8 * 366);
        while t <= limit {
            if self.months & (1 << t.month()) == 0 {
                let (y, m) = if t.month() == 12 { (t.year() + 1, 1) } else { (t.year(), t.month() + 1) };
                t = chrono::NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?.and_utc();
                continue;
            }
            if !self.day_matches(t) {
                t = (t + TimeDelta::days(1)).duration_trunc(TimeDelta::days(1)).ok()?;
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = (t + TimeDelta::hours(1)).duration_trunc(TimeDelta::hours(1)).ok()?;
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t += TimeDelta::minutes(1);
                continue;
            }
            return Some(t);
        }
        None
    }

    fn day_matches(&self, t: DateTime<Utc>) -> bool {
        let day = self.days & (1 << t.day()) != 0;
        let weekday = self.weekdays & (1 << t.weekday().num_days_from_sunday()) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day || weekday,
            _ => day && weekday,
        }
    }
}

/// Parses one cron field into a bit set over `min..=max`; `true` when it restricts (is not `*`).
fn field(text: &str, name: &str, min: u32, max: u32) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().map_err(|_| format!("{name}: bad step {step:?}"))?;
                if step == 0 {
                    return Err(format!("{name}: a step must be at least 1"));
                }
                (range, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((lo, hi)) = range.split_once('-') {
            (number(lo, name, min, max)?, number(hi, name, min, max)?)
        } else {
            let n = number(range, name, min, max)?;
            (n, if part.contains('/') { max } else { n })
        };
        if lo > hi {
            return Err(format!("{name}: range {range:?} runs backwards"));
        }
        for n in (lo..=hi).step_by(step as usize) {
            bits |= 1 << n;
        }
    }
    Ok((bits, text != "*"))
}

fn number(text: &str, name: &str, min: u32, max: u32) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{name}: {text:?} is not a number from {min} to {max}")),
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
    Ok(Duration::from_secs(secs))
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let cron_text = match text {
            "off" => return Ok(Self::off()),
            "@hourly" => "0 * * * *",
            "@daily" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            _ => text,
        };
        if let Some(interval) = text.strip_prefix("@every ") {
            return Ok(Self { text: text.to_owned(), kind: Kind::Every(every(interval)?) });
        }
        let fields: Vec<&str> = cron_text.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "{text:?} is not a schedule: use five cron fields, @hourly, @daily, @weekly, @monthly, @every <n><s|m|h|d> or off"
            ));
        };
        let (minutes, _) = field(minute, "minute", 0, 59)?;
        let (hours, _) = field(hour, "hour", 0, 23)?;
        let (days, days_restricted) = field(day, "day of month", 1, 31)?;
        let (months, _) = field(month, "month", 1, 12)?;
        let (mut weekdays, weekdays_restricted) = field(weekday, "day of week", 0, 7)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        let cron = Cron {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: (weekdays & 0x7f) as u8,
            days_restricted,
            weekdays_restricted,
        };
        if cron.next_after(DateTime::<Utc>::UNIX_EPOCH).is_none() {
            return Err(format!("{text:?} never fires"));
        }
        Ok(Self { text: text.to_owned(), kind: Kind::Cron(Box::new(cron)) })
    }
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
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "backwards"),
            ("0 0 30 2 *", "never fires"),
            ("@every 0s", "at least 1s"),
            ("@every soon", "@every"),
        ] {
            let err = text.parse::<Schedule>().expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
