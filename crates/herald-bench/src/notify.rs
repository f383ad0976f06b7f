//! `herald-bench notify`: notices through the public API. Starts `herald serve` in this process
//! on the configured store and broker, makes U people with phones, then POSTs N notices to
//! `/api/v1/notifications` with a `notify` API key (32 in flight), each with an in-app step at
//! once and an SMS step `--after` seconds later, nobody acknowledging. It reports notices made
//! per second, SMS steps escalated per second, and the time from each step's due time to the
//! provider call (the step's `sent_at`), read back from the store. Needs `HERALD_PROVIDER_URL`
//! (the mock provider, run apart).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chrono::Utc;
use herald_core::{
    apikey::{self, ApiKey, ApiKeyId, ApiScope, KeyName},
    notice::{NoticeFilter, NoticeId, NoticeStatus, StepStatus},
    notify::{NoticeChannel, NoticeType},
    store::Store,
    user::{ContactPhone, ProfileChange, Role, UserId},
};
use serde_json::json;

use herald::{app, config::Config};

/// Requests in flight.
const CONCURRENCY: usize = 32;

/// What `herald-bench notify` measured.
#[derive(Debug)]
pub struct NotifyReport {
    pub notices: usize,
    pub users: usize,
    pub after: u32,
    /// From the first POST to the last answer.
    pub create_seconds: f64,
    pub refused: usize,
    /// SMS steps sent, and the span from the first one due to the last one sent.
    pub escalated: usize,
    pub escalate_seconds: f64,
    /// Due to sent, in milliseconds, sorted.
    pub lags_ms: Vec<f64>,
    pub unsettled: usize,
}

impl NotifyReport {
    fn percentile(&self, p: f64) -> f64 {
        if self.lags_ms.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * (self.lags_ms.len() - 1) as f64).round() as usize;
        self.lags_ms[rank.min(self.lags_ms.len() - 1)]
    }

    pub fn print(&self, config: &Config) {
        crate::print_backends(config);
        println!(
            "create     {} notices to {} people in {:.1} s: {:.0}/s over REST ({CONCURRENCY} in flight), {} refused",
            self.notices,
            self.users,
            self.create_seconds,
            self.notices as f64 / self.create_seconds,
            self.refused
        );
        println!(
            "escalate   {} SMS steps (due {} s after each notice) in {:.1} s from the first due: {:.0}/s",
            self.escalated,
            self.after,
            self.escalate_seconds,
            self.escalated as f64 / self.escalate_seconds
        );
        println!(
            "due->sent  p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (scheduler interval {} ms)",
            self.percentile(50.0),
            self.percentile(99.0),
            self.lags_ms.last().copied().unwrap_or(f64::NAN),
            config.scheduler_interval.0.as_millis()
        );
        if self.unsettled > 0 {
            println!("unsettled  {} notices had not delivered when the bench stopped waiting", self.unsettled);
        }
    }
}

/// Runs the bench: `notices` notices to `users` people, the SMS step `after` seconds in.
pub async fn notify(config: &Config, notices: usize, users: usize, after: u32) -> anyhow::Result<NotifyReport> {
    config
        .provider_url
        .0
        .as_ref()
        .context("set HERALD_PROVIDER_URL (and HERALD_PROVIDER_TOKEN) to a provider, e.g. `mock-provider --token t`")?;
    let running = app::start(config).await?;
    let svc = &running.herald.services;
    let store = svc.store.clone();
    let base = format!("http://{}", running.http_addr);
    let run = uuid::Uuid::now_v7().simple().to_string();
    let kind = NoticeType::parse(&format!("bench-{}", &run[run.len() - 12..])).map_err(anyhow::Error::msg)?;

    let people = make_people(store.as_ref(), users.max(1)).await?;
    let key = make_key(store.as_ref(), people[0]).await?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let url = format!("{base}/api/v1/notifications");

    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (client, url, key, next, people, kind) =
            (client.clone(), url.clone(), key.clone(), next.clone(), people.clone(), kind.clone());
        writers.spawn(async move {
            let mut refused = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= notices {
                    return refused;
                }
                let body = json!({
                    "user_id": people[i % people.len()].0,
                    "type": kind.as_str(),
                    "title": format!("Bench notice {i}"),
                    "body": "Nobody acknowledges this one.",
                    "steps": [{"channel": "realtime", "after": 0}, {"channel": "sms", "after": after}],
                });
                let sent = client.post(&url).bearer_auth(&key).json(&body).send().await;
                if !sent.is_ok_and(|r| r.status() == reqwest::StatusCode::CREATED) {
                    refused += 1;
                }
            }
        });
    }
    let mut refused = 0;
    while let Some(n) = writers.join_next().await {
        refused += n.context("a writer panicked")?;
    }
    let create_seconds = started.elapsed().as_secs_f64();
    eprintln!("made {notices} notices in {create_seconds:.1} s; waiting for their SMS steps");

    // Wait until every notice settled (the SMS steps' deliveries reported), or give up after a while.
    let made = notices - refused;
    let deadline = Instant::now() + Duration::from_secs(u64::from(after) + 120);
    let mut found;
    loop {
        found = all_notices(store.as_ref(), &kind).await?;
        let settled = found.iter().filter(|n| n.status != NoticeStatus::Pending).count();
        if settled >= made || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut lags_ms = Vec::with_capacity(found.len());
    let (mut first_due, mut last_sent) = (None, None);
    for notice in &found {
        let Some(step) =
            notice.steps.get(1).filter(|s| s.status == StepStatus::Sent && s.channel == NoticeChannel::Sms)
        else {
            continue;
        };
        let Some(sent_at) = step.sent_at else { continue };
        lags_ms.push((sent_at - step.due_at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        first_due = Some(first_due.map_or(step.due_at, |d: chrono::DateTime<Utc>| d.min(step.due_at)));
        last_sent = Some(last_sent.map_or(sent_at, |s: chrono::DateTime<Utc>| s.max(sent_at)));
    }
    lags_ms.sort_by(f64::total_cmp);
    let escalate_seconds = match (first_due, last_sent) {
        (Some(due), Some(sent)) => (sent - due).num_milliseconds().max(1) as f64 / 1000.0,
        _ => f64::NAN,
    };
    let unsettled = found.iter().filter(|n| n.status == NoticeStatus::Pending).count();
    running.stop(Duration::from_secs(5)).await?;
    Ok(NotifyReport {
        notices,
        users: people.len(),
        after,
        create_seconds,
        refused,
        escalated: lags_ms.len(),
        escalate_seconds,
        lags_ms,
        unsettled,
    })
}

/// `n` people with phones, the first an admin.
async fn make_people(store: &dyn Store, n: usize) -> anyhow::Result<Vec<UserId>> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let role = if i == 0 { Role::Admin } else { Role::User };
        let id = crate::bench_user(store, i, role).await?;
        let phone = ContactPhone::parse(&format!("7999{:07}", i % 10_000_000)).map_err(anyhow::Error::msg)?;
        let change = ProfileChange { name: None, phone: Some(Some(phone)), timezone: None };
        store.update_profile(id, &change).await?;
        ids.push(id);
    }
    Ok(ids)
}

/// A `notify` key made by `admin`; its secret.
async fn make_key(store: &dyn Store, admin: UserId) -> anyhow::Result<String> {
    let key = ApiKey {
        id: ApiKeyId::new(),
        name: KeyName::parse("herald-bench notify").map_err(anyhow::Error::msg)?,
        scopes: vec![ApiScope::Notify],
        created_by: admin,
        created_at: Utc::now(),
        revoked_at: None,
    };
    let secret = apikey::new_secret();
    store.create_api_key(&key, &secret.hash).await?;
    Ok(secret.key)
}

/// Every notice of this run's type.
async fn all_notices(store: &dyn Store, kind: &NoticeType) -> anyhow::Result<Vec<herald_core::notice::Notice>> {
    let filter = NoticeFilter { user: None, status: None, kind: Some(kind.clone()) };
    let mut all = Vec::new();
    let mut before: Option<NoticeId> = None;
    loop {
        let page = store.list_notices(&filter, before, 500).await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        let full = page.len() == 500;
        all.extend(page);
        if !full {
            break;
        }
    }
    Ok(all)
}
