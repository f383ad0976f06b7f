//! The `reports.daily` periodic job: the previous day's mailing report (see
//! [`herald_core::commands::reports::DailyReport`]) to every administrator, as a delivery —
//! by email when the email channel is configured, else to the administrator's webhook.
//! Idempotent: a report's deliveries are keyed by day, administrator and channel, so a second
//! run (or a second scheduler) stores none.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    campaign::TimeZone,
    commands::reports::{DailyReport, yesterday},
    store::Store,
    user::{Role, UserId},
};

use crate::scheduler::PeriodicJob;

/// Users looked through for administrators per run, a page at a time.
const MAX_USERS_SCANNED: u32 = 100_000;
const PAGE: u32 = 500;

/// Sends administrators yesterday's report.
#[derive(Debug)]
pub struct DailyReportJob {
    store: Arc<dyn Store>,
    zone: TimeZone,
    /// Whether the email channel is configured: reports go by email, else to webhooks.
    email: bool,
}

impl DailyReportJob {
    pub fn new(store: Arc<dyn Store>, zone: TimeZone, email: bool) -> Self {
        Self { store, zone, email }
    }
}

#[async_trait]
impl PeriodicJob for DailyReportJob {
    fn name(&self) -> &str {
        "reports.daily"
    }

    async fn run(&self, now: DateTime<Utc>) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let date = yesterday(self.zone.0, now);
        let report = DailyReport::of(self.store.as_ref(), self.zone.0, date).await?;
        let mut admins = Vec::new();
        let mut after: Option<UserId> = None;
        let mut scanned = 0;
        while scanned < MAX_USERS_SCANNED {
            let page = self.store.list_users(after, PAGE).await?;
            scanned += page.len() as u32;
            after = page.last().map(|u| u.id);
            for user in page.iter().filter(|u| u.role == Role::Admin) {
                let webhook = if self.email { None } else { self.store.webhook(user.id).await? };
                admins.push((user.clone(), webhook));
            }
            if page.len() < PAGE as usize {
                break;
            }
        }
        let deliveries = report.deliveries(&admins, self.email, now);
        let created = self.store.create_deliveries(&deliveries).await?;
        let unreachable = admins.len() - deliveries.len();
        if unreachable > 0 {
            tracing::warn!(
                date = %date,
                unreachable,
                "administrators without a webhook get no daily report; set HERALD_SMTP_URL to send it by email"
            );
        }
        Ok(format!("the report of {date} queued for {created} administrators"))
    }
}
