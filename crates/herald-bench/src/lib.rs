//! `herald-bench`: measurements against the configured backends. Run them on a scratch
//! database and broker namespace: they write synthetic rows.

use std::{collections::HashSet, sync::Arc, time::Instant};

use anyhow::Context as _;
use chrono::Utc;
use herald_core::{
    change::ChangeEvent,
    metrics::Metrics,
    store::Store,
    task::{Description, Task, TaskId, TaskStatus, Title},
    user::{Email, NewUser, Role, User, UserId, UserName},
    wire::{EVENTS_TOPIC, EventEnvelope},
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use herald::{app, config::Config};

/// What `herald-bench relay` measured.
#[derive(Debug)]
pub struct RelayReport {
    pub events: usize,
    pub write_seconds: f64,
    pub relay_seconds: f64,
}

impl RelayReport {
    pub fn print(&self, config: &Config) {
        println!("store   {}", config.store_url);
        println!("broker  {}", config.broker_url);
        println!("events  {}", self.events);
        println!(
            "write   {:.2} s  {:.0} events/s (8 writers, 100 events per transaction)",
            self.write_seconds,
            self.events as f64 / self.write_seconds
        );
        println!(
            "relay   {:.2} s  {:.0} events/s (committed outbox -> subscriber, batch {})",
            self.relay_seconds,
            self.events as f64 / self.relay_seconds,
            config.relay_batch.0
        );
    }
}

/// Writes `events` outbox events from 8 concurrent writers, then times one relay publishing them
/// all to a subscriber of the events topic (unique ids counted, so duplicates do not flatter it).
pub async fn relay(config: &Config, events: usize) -> anyhow::Result<RelayReport> {
    const WRITERS: usize = 8;
    const PER_TX: usize = 100;
    let store = app::open_store(config).await?;
    let broker = app::open_broker(config, &Arc::new(Metrics::default())).await?;
    let mut owners = Vec::new();
    for i in 0..64 {
        owners.push(bench_user(store.as_ref(), i, Role::User).await?);
    }

    let started = Instant::now();
    let transactions = events.div_ceil(PER_TX);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            let owners = owners.clone();
            tokio::spawn(async move {
                for t in (w..transactions).step_by(WRITERS) {
                    let owner = owners[t % owners.len()];
                    let task = bench_task(owner);
                    let now = task.created_at;
                    let batch: Vec<ChangeEvent> = (0..PER_TX)
                        .map(|i| ChangeEvent::for_user(owner, "bench.event", json!({"n": i, "t": t}), now))
                        .collect();
                    store.create_task(&task, &batch).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in writers {
        w.await.context("writer panicked")??;
    }
    let write_seconds = started.elapsed().as_secs_f64();
    let total = transactions * PER_TX;

    let mut sub = broker.subscribe(EVENTS_TOPIC).await.context("subscribing to the events topic")?;
    let relay = app::relay(config, store.clone(), broker.clone(), Arc::new(Metrics::default()));
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { relay.run(shutdown).await }
    });
    let mut seen = HashSet::with_capacity(total);
    while seen.len() < total {
        let message = tokio::time::timeout(std::time::Duration::from_secs(30), sub.next())
            .await
            .context("no event for 30 s")?
            .context("subscription closed")?;
        if let Ok(EventEnvelope::V1 { id, .. }) = EventEnvelope::decode(&message.payload) {
            seen.insert(id);
        }
    }
    let relay_seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    running.await.context("relay panicked")?;
    broker.close().await;
    store.close().await;
    Ok(RelayReport { events: total, write_seconds, relay_seconds })
}

/// A synthetic account (nobody can log in as it: its password hash is no hash).
pub(crate) async fn bench_user(store: &dyn Store, i: usize, role: Role) -> anyhow::Result<UserId> {
    let id = UserId::new();
    let user = User {
        id,
        email: Email::parse(&format!("bench-{}-{i}@example.org", id.0.simple())).map_err(anyhow::Error::msg)?,
        name: UserName::parse("Bench").map_err(anyhow::Error::msg)?,
        role,
        created_at: Utc::now(),
        phone: None,
        timezone: None,
    };
    store.create_user(&NewUser { user, password_hash: "bench".into() }).await?;
    Ok(id)
}

#[allow(clippy::expect_used, reason = "a constant, valid title")]
fn bench_task(owner: UserId) -> Task {
    let now = Utc::now();
    Task {
        id: TaskId::new(),
        owner,
        title: Title::parse("bench").expect("a valid title"),
        description: Description::default(),
        status: TaskStatus::Todo,
        due_at: None,
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

/// The store and broker a report was measured on, as its first two lines.
fn print_backends(config: &Config) {
    println!("store      {}", config.store_url);
    println!("broker     {}", config.broker_url);
}

/// Bytes in MiB.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The `p` quantile (0 to 1) of `sorted` microseconds, in milliseconds; NaN when empty.
fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(f64::NAN, |us| *us as f64 / 1000.0)
}

pub mod broadcast;
pub mod mailing;
pub mod me;
pub mod notify;
pub mod realtime;
pub mod refusals;
pub mod soak;
