//! The daily report, `reports.daily`, which the scheduler's `reports.daily` job also delivers
//! to administrators (a mailing's timeline, `mailings.timeline`, is in `mailings/timeline.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Datelike as _, Days, NaiveDate, TimeZone as _, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    campaign::MailingStatus,
    command::{Access, Command, Ctx},
    delivery::{Channel, DeliveryId, NewDelivery},
    error::ApiError,
    services::Services,
    store::{Store, StoreError},
    timeline::{TallyView, instant},
    user::User,
};

/// The kind of a daily report's deliveries.
pub const DAILY_REPORT_KIND: &str = "report.daily";

/// Mailings a daily report lists (the busiest by calls first, ranked among the first 10,000 by id
/// that had activity that day); beyond them `more_mailings` says so.
pub const REPORT_MAILINGS: u32 = 200;

/// Mailings with activity in one day that a report ranks to pick those it lists.
const MAX_RANKED: u32 = 10_000;

/// One mailing's day.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MailingDay {
    pub mailing_id: Uuid,
    /// The mailing's text, its first 80 characters.
    pub text: String,
    /// Where it stands now.
    pub status: MailingStatus,
    #[serde(flatten)]
    pub counts: TallyView,
}

/// The hour with the most provider calls.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BusiestHour {
    /// When it starts (a whole UTC hour).
    pub starts_at: DateTime<Utc>,
    /// Provider calls in it.
    pub attempts: u64,
    pub sent: u64,
}

/// A day of mailings: what each sent, failed and expired, the provider's error rate and the
/// busiest hour.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DailyReport {
    #[schema(value_type = String, format = Date, example = "2026-12-05")]
    pub date: NaiveDate,
    /// The zone whose day it is (`HERALD_REPORT_TIMEZONE`).
    pub timezone: String,
    /// The day's first instant.
    pub from: DateTime<Utc>,
    /// The next day's first instant.
    pub to: DateTime<Utc>,
    /// Every mailing's day, added up.
    pub totals: TallyView,
    /// Calls that did not end in a send, as a share of all calls; absent without calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_error_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busiest_hour: Option<BusiestHour>,
    /// The mailings with activity that day, the busiest first: at most 200, ranked among the first
    /// 10,000 by id (the totals count every mailing).
    pub mailings: Vec<MailingDay>,
    /// More mailings had activity than are listed.
    pub more_mailings: bool,
}

/// The first instant of `date` in `zone` (where midnight does not exist, the first that does).
pub fn start_of_day(zone: Tz, date: NaiveDate) -> DateTime<Utc> {
    (0..24)
        .find_map(|h| date.and_hms_opt(h, 0, 0).and_then(|t| zone.from_local_datetime(&t).earliest()))
        .map_or_else(|| Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN)), |t| t.with_timezone(&Utc))
}

/// The day before `now`'s in `zone`.
pub fn yesterday(zone: Tz, now: DateTime<Utc>) -> NaiveDate {
    let today = now.with_timezone(&zone).date_naive();
    today.checked_sub_days(Days::new(1)).unwrap_or(today)
}

impl DailyReport {
    /// The report of `date` in `zone`, from the timeline's counters.
    pub async fn of(store: &dyn Store, zone: Tz, date: NaiveDate) -> Result<Self, StoreError> {
        let from = start_of_day(zone, date);
        let to =
            date.checked_add_days(Days::new(1)).map_or(from + chrono::Duration::days(1), |d| start_of_day(zone, d));
        let (start, end) = (from.timestamp(), to.timestamp());
        let whole = store.mailing_timeline(None, i64::MAX, start, end, 1).await?;
        let totals = whole.into_iter().next().map(|(_, t)| t).unwrap_or_default();
        // The mailings of a day are ranked among the first MAX_RANKED by id.
        let mut tallies = store.mailing_tallies(start, end, MAX_RANKED).await?;
        tallies.sort_by(|a, b| b.1.attempts.cmp(&a.1.attempts).then(b.1.settled().cmp(&a.1.settled())));
        let more_mailings = tallies.len() > REPORT_MAILINGS as usize;
        let mut mailings = Vec::new();
        for (id, tally) in tallies.into_iter().take(REPORT_MAILINGS as usize) {
            let Some(m) = store.mailing(id).await? else { continue };
            mailings.push(MailingDay {
                mailing_id: id.0,
                text: m.text.as_str().chars().take(80).collect(),
                status: m.status,
                counts: TallyView::from(&tally),
            });
        }
        let hours = store.mailing_timeline(None, 3_600, start, end, 48).await?;
        let busiest_hour = hours
            .iter()
            .filter(|(_, t)| t.attempts > 0)
            .max_by_key(|(at, t)| (t.attempts, -at))
            .map(|(at, t)| BusiestHour { starts_at: instant(*at), attempts: t.attempts, sent: t.sent });
        Ok(Self {
            date,
            timezone: zone.name().to_owned(),
            from,
            to,
            provider_error_rate: totals.error_rate(),
            totals: TallyView::from(&totals),
            busiest_hour,
            mailings,
            more_mailings,
        })
    }

    /// The report as plain text, for an email.
    pub fn text(&self) -> String {
        let t = &self.totals;
        let mut out = format!(
            "Mailings on {} ({}): {} sent, {} failed, {} expired, {} cancelled; {} provider calls, {} retried.\n",
            self.date, self.timezone, t.sent, t.failed, t.expired, t.cancelled, t.attempts, t.retried
        );
        if let Some(rate) = self.provider_error_rate {
            out.push_str(&format!("Provider error rate: {:.2}%.\n", rate * 100.0));
        }
        if let Some(h) = &self.busiest_hour {
            out.push_str(&format!(
                "Busiest hour: {} UTC, {} calls, {} sent.\n",
                h.starts_at.format("%Y-%m-%d %H:00"),
                h.attempts,
                h.sent
            ));
        }
        for m in &self.mailings {
            let c = &m.counts;
            out.push_str(&format!(
                "\n{} ({}) {:?}: {} sent, {} failed, {} expired",
                m.mailing_id, m.status, m.text, c.sent, c.failed, c.expired
            ));
        }
        if self.more_mailings {
            out.push_str(&format!("\n… and more mailings than the {REPORT_MAILINGS} listed."));
        }
        out
    }

    /// Its deliveries to `admins`: by email when `email` (the email channel is configured), else
    /// to each one's webhook (`webhooks`, in `admins` order); one per administrator and day
    /// whatever the number of runs (keyed by both). Administrators it cannot reach are skipped.
    pub fn deliveries(
        &self,
        admins: &[(User, Option<crate::user::WebhookUrl>)],
        email: bool,
        now: DateTime<Utc>,
    ) -> Vec<NewDelivery> {
        let subject = format!("Herald daily report for {}", self.date);
        admins
            .iter()
            .filter_map(|(admin, webhook)| {
                let (channel, recipient, payload) = if email {
                    let payload = serde_json::json!({"subject": subject, "text": self.text()});
                    (Channel::Email, admin.email.as_str().to_owned(), payload)
                } else {
                    let payload = serde_json::json!({"type": DAILY_REPORT_KIND, "report": self});
                    (Channel::Webhook, webhook.as_ref()?.as_str().to_owned(), payload)
                };
                Some(NewDelivery {
                    id: DeliveryId::new(),
                    kind: DAILY_REPORT_KIND.to_owned(),
                    source_key: format!("report:daily:{}:{}:{}", self.date, admin.id, channel.as_str()),
                    recipient,
                    channel,
                    payload,
                    source_id: None,
                    recipient_id: Some(admin.id.0),
                    next_attempt_at: now,
                    deadline: Some(now + chrono::Duration::days(1)),
                    created_at: now,
                    trace_context: None,
                })
            })
            .collect()
    }
}

/// Input of `reports.daily`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = reports::DailyInput)]
pub struct DailyInput {
    /// The day, in the report's zone (`HERALD_REPORT_TIMEZONE`); absent: yesterday.
    #[schema(value_type = Option<String>, format = Date, example = "2026-12-05")]
    pub date: Option<NaiveDate>,
}

/// The daily report of one day: per mailing sent, failed and expired, the provider's error rate
/// and the busiest hour.
#[derive(Debug)]
pub struct Daily;

#[async_trait]
impl Command for Daily {
    const NAME: &'static str = "reports.daily";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "A day of mailings: sent, failed, expired, provider error rate, busiest hour (admin)";
    type Input = DailyInput;
    type Output = DailyReport;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: DailyInput) -> Result<DailyReport, ApiError> {
        let zone = svc.report_zone;
        let date = input.date.unwrap_or_else(|| yesterday(zone, svc.clock.now()));
        if !(1970..=9999).contains(&date.year()) {
            return Err(ApiError::invalid_field("date", "a day between 1970-01-01 and 9999-12-31"));
        }
        Ok(DailyReport::of(svc.store.as_ref(), zone, date).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_start_at_local_midnight_or_the_first_instant_after() {
        let date = NaiveDate::from_ymd_opt(2026, 12, 5).expect("date");
        assert_eq!(start_of_day(Tz::UTC, date).to_rfc3339(), "2026-12-05T00:00:00+00:00");
        assert_eq!(start_of_day(chrono_tz::Europe::Moscow, date).to_rfc3339(), "2026-12-04T21:00:00+00:00");
        // Santiago's clocks skipped midnight on 2026-09-06.
        let skipped = NaiveDate::from_ymd_opt(2026, 9, 6).expect("date");
        assert_eq!(start_of_day(chrono_tz::America::Santiago, skipped).to_rfc3339(), "2026-09-06T04:00:00+00:00");
        let now = Utc.with_ymd_and_hms(2026, 12, 5, 22, 30, 0).single().expect("now");
        assert_eq!(yesterday(Tz::UTC, now), NaiveDate::from_ymd_opt(2026, 12, 4).expect("date"));
        assert_eq!(yesterday(chrono_tz::Europe::Moscow, now), date, "already the 6th in Moscow");
    }
}
