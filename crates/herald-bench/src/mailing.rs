//! `herald-bench mailing`: one mailing to many clients, end to end, from the mailing's start to
//! every message final, through the configured store and broker, a scheduler and senders in
//! this process, and the provider at `HERALD_PROVIDER_URL` (the mock provider, run apart).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chrono::Utc;
use herald_core::{
    campaign::{
        Client, ClientId, Mailing, MailingFilter, MailingId, MailingStatus, MessageCounts, MessageText, Tag, TimeZone,
    },
    clock::{Clock, SystemClock},
    commands::mailings,
    metrics::{Metrics, OutcomeLabels},
    store::Store,
};
use tokio_util::sync::CancellationToken;

use herald::{app, config::Config};

/// Clients stored per store call while loading.
const LOAD_BATCH: usize = 5000;
/// How long the provider's own rate is measured.
const PROBE: Duration = Duration::from_secs(5);

/// What `herald-bench mailing` measured.
#[derive(Debug)]
pub struct MailingReport {
    pub clients: u64,
    pub load_seconds: f64,
    /// Creating every message (one set-based statement).
    pub start_seconds: f64,
    /// From the mailing's start until every message is final.
    pub total_seconds: f64,
    /// From the start call's return until the first message was sent.
    pub first_send_seconds: f64,
    /// Messages final per second between 20 % and 80 % of them final.
    pub steady_rate: f64,
    /// Deliveries the sender kept in flight at the end (its adaptive limit).
    pub final_concurrency: i64,
    pub counts: MessageCounts,
    /// Channel calls made (first attempts and retries).
    pub attempts: u64,
    /// The provider's own rate, probed with 64 concurrent requests from this process.
    pub provider_rate: f64,
    /// Peak resident memory of this process (VmHWM), in MiB.
    pub peak_rss_mib: f64,
    pub senders: usize,
    pub schedulers: usize,
}

impl MailingReport {
    pub fn print(&self, config: &Config) {
        crate::print_backends(config);
        println!(
            "clients    {} (loaded in {:.1} s, {:.0}/s)",
            self.clients,
            self.load_seconds,
            self.clients as f64 / self.load_seconds
        );
        println!("start      {:.2} s for the start call", self.start_seconds);
        println!("first send {:.3} s after the start call returned", self.first_send_seconds);
        println!(
            "delivery   {:.1} s start -> all final: {:.0} messages/s ({} schedulers, {} senders, {}..{} in flight, {} at the end)",
            self.total_seconds,
            self.counts.total as f64 / self.total_seconds,
            self.schedulers,
            self.senders,
            config.sender_min_concurrency.0.min(config.sender_concurrency.0),
            config.sender_concurrency.0,
            self.final_concurrency
        );
        println!("steady     {:.0} messages/s (from 20 % to 80 % final)", self.steady_rate);
        println!(
            "outcome    {} sent, {} failed, {} expired, {} attempts ({} retries)",
            self.counts.sent,
            self.counts.failed,
            self.counts.expired,
            self.attempts,
            self.attempts.saturating_sub(self.counts.total)
        );
        println!(
            "provider   {:.0} requests/s alone (64 concurrent requests for {} s)",
            self.provider_rate,
            PROBE.as_secs()
        );
        println!("peak RSS   {:.0} MiB", self.peak_rss_mib);
    }
}

/// Loads `clients` clients, probes the provider, then sends them one mailing and waits until
/// every message is final.
pub async fn mailing(
    config: &Config,
    clients: u64,
    senders: usize,
    schedulers: usize,
) -> anyhow::Result<MailingReport> {
    let provider = config.provider_url.0.as_ref().context(
        "set HERALD_PROVIDER_URL (and HERALD_PROVIDER_TOKEN) to a provider, e.g. `mock-provider --token t --failure-rate 0.02`",
    )?;
    let token = config.provider_token.0.as_ref().map(|t| t.expose().to_owned()).unwrap_or_default();
    let store = app::open_store(config).await?;
    let metrics = Arc::new(Metrics::default());
    let broker = app::open_broker(config, &metrics).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    // This run's clients carry a tag of their own, so a reused database does not widen the mailing.
    let run = uuid::Uuid::now_v7().simple().to_string();
    let tag = Tag::parse(&format!("bench-{}", &run[run.len() - 12..])).map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let loaded = load_clients(store.as_ref(), clients, &tag).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    eprintln!("loaded {loaded} clients in {load_seconds:.1} s; probing the provider");
    let provider_rate = probe(&provider.0, &token).await?;

    let shutdown = CancellationToken::new();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..senders.max(1) {
        let sender = app::sender(config, store.clone(), broker.clone(), clock.clone(), metrics.clone());
        let stop = shutdown.clone();
        workers.spawn(async move { sender.run(stop).await });
    }
    // Schedulers run, idle, before the mailing exists: as in a deployment, the first send waits
    // for whatever wakes them.
    for _ in 0..schedulers.max(1) {
        let scheduler = app::scheduler(config, store.clone(), broker.clone(), clock.clone(), metrics.clone());
        let stop = shutdown.clone();
        workers.spawn(async move { scheduler.run(stop).await });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let now = clock.now();
    let mailing = Mailing {
        id: MailingId::new(),
        start_at: now,
        end_at: now + chrono::Duration::hours(1),
        text: MessageText::parse("Herald bench: your weekly offer").map_err(anyhow::Error::msg)?,
        filter: MailingFilter { operator_codes: None, tags: Some(vec![tag]) },
        window: None,
        status: MailingStatus::Scheduled,
        created_at: now,
        updated_at: now,
    };
    let started = Instant::now();
    store.create_mailing(&mailing).await?;
    // As `mailings.create` does for a mailing that starts now (a scheduler's job may start it first).
    mailings::start(store.as_ref(), &metrics, &mailing, clock.now()).await?;
    let start_seconds = started.elapsed().as_secs_f64();

    // Progress comes from this process's own counters: counting a million rows in the store
    // every second would load the database the run is measuring. The store has the last word.
    let outcomes = |outcome: &str| {
        let labels = OutcomeLabels { channel: "provider".into(), outcome: outcome.into() };
        metrics.deliveries.get_or_create(&labels).get()
    };
    let mut printed = Instant::now();
    let returned = Instant::now();
    let mut first_send = None;
    let (mut at20, mut at80) = (None, None);
    let counts = loop {
        tokio::time::sleep(Duration::from_millis(if first_send.is_none() { 5 } else { 100 })).await;
        let sent = outcomes("sent");
        if first_send.is_none() && sent > 0 {
            first_send = Some(returned.elapsed().as_secs_f64());
        }
        let decided = sent + outcomes("failed") + outcomes("expired");
        if at20.is_none() && decided * 5 >= loaded {
            at20 = Some((Instant::now(), decided));
        }
        if at80.is_none() && decided * 5 >= loaded * 4 {
            at80 = Some((Instant::now(), decided));
        }
        if decided < loaded {
            if printed.elapsed() >= Duration::from_secs(5) {
                printed = Instant::now();
                eprintln!("{:>6.1} s  {decided} of {loaded} final", started.elapsed().as_secs_f64());
            }
            continue;
        }
        let counts = store.message_counts(&[mailing.id]).await?.remove(&mailing.id).unwrap_or_default();
        if counts.pending + counts.sending == 0 {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
    };
    let steady_rate = match (at20, at80) {
        (Some((t20, n20)), Some((t80, n80))) if t80 > t20 => (n80 - n20) as f64 / (t80 - t20).as_secs_f64(),
        _ => f64::NAN,
    };
    let total_seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
    let attempts = metric(&metrics.encode(), "herald_delivery_attempts_total{channel=\"provider\"}");
    broker.close().await;
    store.close().await;
    Ok(MailingReport {
        clients: loaded,
        load_seconds,
        start_seconds,
        total_seconds,
        first_send_seconds: first_send.unwrap_or(f64::NAN),
        steady_rate,
        final_concurrency: metrics.sender_concurrency.get(),
        counts,
        attempts,
        provider_rate,
        peak_rss_mib: peak_rss_mib(),
        senders: senders.max(1),
        schedulers: schedulers.max(1),
    })
}

/// Stores `n` clients tagged `tag`, with phones from a random base; returns how many were new.
async fn load_clients(store: &dyn Store, n: u64, tag: &Tag) -> anyhow::Result<u64> {
    let base: u64 = rand::random_range(0..1_000_000_000 - n.min(999_999_999));
    let zones = ["Europe/Moscow", "Europe/Samara", "Asia/Yekaterinburg", "Asia/Novosibirsk", "Asia/Vladivostok"];
    let mut created = 0;
    let mut i = 0;
    while i < n {
        let now = Utc::now();
        let batch: Vec<Client> = (i..(i + LOAD_BATCH as u64).min(n))
            .map(|k| {
                let phone =
                    herald_core::campaign::Phone::parse(&format!("79{:09}", base + k)).map_err(anyhow::Error::msg)?;
                let timezone: TimeZone = zones[(k % 5) as usize].parse().map_err(anyhow::Error::msg)?;
                Ok(Client {
                    id: ClientId::new(),
                    operator_code: phone.operator_code(),
                    phone,
                    tag: tag.clone(),
                    timezone,
                    created_at: now,
                    updated_at: now,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let skipped = store.insert_clients(&batch).await?;
        created += (batch.len() - skipped.len()) as u64;
        i += batch.len() as u64;
    }
    Ok(created)
}

/// The provider's own rate: 64 concurrent request loops for [`PROBE`], every answer counted.
async fn probe(url: &str, token: &str) -> anyhow::Result<f64> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let deadline = Instant::now() + PROBE;
    let mut loops = tokio::task::JoinSet::new();
    for worker in 0..64u64 {
        let (client, url, token) = (client.clone(), url.trim_end_matches('/').to_owned(), token.to_owned());
        loops.spawn(async move {
            let mut answered = 0u64;
            let mut n = 0u64;
            while Instant::now() < deadline {
                // Ids far above any delivery number, so the probe never looks like a duplicate.
                let id = (1 << 50) + worker * 10_000_000 + n;
                n += 1;
                let body = serde_json::json!({"id": id, "phone": 79_000_000_000u64 + n, "text": "probe"});
                let sent = client.post(format!("{url}/v1/send/{id}")).bearer_auth(&token).json(&body).send().await;
                if sent.is_ok() {
                    answered += 1;
                }
            }
            answered
        });
    }
    let mut answered = 0;
    while let Some(n) = loops.join_next().await {
        answered += n.context("probe loop panicked")?;
    }
    Ok(answered as f64 / PROBE.as_secs_f64())
}

/// The value of one sample in a Prometheus text exposition (0 when absent).
fn metric(text: &str, sample: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(sample).map(|v| v.trim().parse::<f64>().unwrap_or(0.0)))
        .unwrap_or(0.0) as u64
}

/// This process's peak resident set, from `/proc/self/status` (0 where there is none).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
