//! `herald-bench soak`: a `herald serve` child under churn for a long time. Sessions connect over
//! `/ws`, subscribe, receive and ack events and drop after a random lifetime, each replaced at
//! once, while events are written at a steady rate. Every sample the server's RSS, open sockets,
//! threads and live tasks are read, and at the end their slope per hour: a flat line is a
//! server that can run for weeks.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chrono::Utc;
use herald_core::{identity::Identity, user::Role};
use rand::Rng as _;

use crate::{
    bench_task, bench_user,
    realtime::{Server, Session, rss, stamped_events},
};
use herald::config::Config;

/// What `herald-bench soak` runs.
#[derive(Debug, Clone, Copy)]
pub struct SoakOptions {
    /// Sessions open at any moment.
    pub sessions: usize,
    pub users: usize,
    /// Events written per second.
    pub rate: u32,
    pub seconds: u64,
    /// Longest life of a session, in seconds (each lives 1 s to this).
    pub lifetime: u64,
    /// Seconds between samples.
    pub sample: u64,
}

/// One sample of the server.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: f64,
    pub rss: u64,
    pub sockets: u64,
    pub threads: u64,
    pub tasks: u64,
    pub sessions_opened: u64,
    pub events_received: u64,
}

/// What it measured.
#[derive(Debug)]
pub struct SoakReport {
    pub options: SoakOptions,
    pub samples: Vec<Sample>,
    pub written: u64,
    pub failed_sessions: u64,
}

impl SoakReport {
    pub fn print(&self, config: &Config) {
        let o = self.options;
        let mib = crate::mib;
        crate::print_backends(config);
        println!(
            "churn      {} sessions of {} users open at once, each living 1-{} s; {} events/s for {} s",
            o.sessions, o.users, o.lifetime, o.rate, o.seconds
        );
        println!(
            "{:>8} {:>10} {:>8} {:>8} {:>8} {:>10} {:>10}",
            "t (s)", "RSS (MiB)", "sockets", "threads", "tasks", "sessions", "events"
        );
        for s in &self.samples {
            println!(
                "{:>8.0} {:>10.1} {:>8} {:>8} {:>8} {:>10} {:>10}",
                s.at,
                mib(s.rss),
                s.sockets,
                s.threads,
                s.tasks,
                s.sessions_opened,
                s.events_received
            );
        }
        let (first, last) = (self.samples.first(), self.samples.last());
        if let (Some(first), Some(last)) = (first, last) {
            println!("RSS        {:.1} MiB at the start, {:.1} MiB at the end", mib(first.rss), mib(last.rss));
        }
        // The first sample is before the churn settled; the slope is over the rest.
        let steady = if self.samples.len() > 2 { &self.samples[1..] } else { &self.samples[..] };
        println!("slope/hour {}", slopes(steady));
        // A cache that warms levels off; a leak keeps its slope in the second half too.
        let half = &self.samples[self.samples.len() / 2..];
        if half.len() >= 2 {
            println!("slope/hour over the second half: {}", slopes(half));
        }
        println!(
            "written    {} events; {} sessions opened, {} failed to open",
            self.written,
            self.samples.last().map_or(0, |s| s.sessions_opened),
            self.failed_sessions
        );
    }
}

/// The slopes per hour of RSS, sockets, threads and tasks over `samples`.
fn slopes(samples: &[Sample]) -> String {
    let slope = |f: fn(&Sample) -> f64| slope_per_hour(samples, f);
    format!(
        "RSS {:+.2} MiB, sockets {:+.1}, threads {:+.1}, tasks {:+.1}",
        slope(|s| crate::mib(s.rss)),
        slope(|s| s.sockets as f64),
        slope(|s| s.threads as f64),
        slope(|s| s.tasks as f64)
    )
}

/// The least-squares slope of `f` over time, per hour.
fn slope_per_hour(samples: &[Sample], f: fn(&Sample) -> f64) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean_t = samples.iter().map(|s| s.at).sum::<f64>() / n;
    let mean_y = samples.iter().map(f).sum::<f64>() / n;
    let cov: f64 = samples.iter().map(|s| (s.at - mean_t) * (f(s) - mean_y)).sum();
    let var: f64 = samples.iter().map(|s| (s.at - mean_t).powi(2)).sum();
    if var == 0.0 { 0.0 } else { cov / var * 3600.0 }
}

#[derive(Debug, Default)]
struct Counters {
    opened: AtomicU64,
    failed: AtomicU64,
    received: AtomicU64,
}

/// Runs the soak against the configured store and broker (use scratch ones).
pub async fn soak(config: &Config, server: &Path, options: SoakOptions) -> anyhow::Result<SoakReport> {
    if options.sessions == 0 || options.users == 0 || options.lifetime == 0 || options.sample == 0 {
        bail!("--sessions, --users, --lifetime and --sample must be at least 1");
    }
    let Server { tokens, store, mut child, pid, base } =
        Server::start(config, server, chrono::Duration::hours(48), &[]).await?;
    let mut owners = Vec::with_capacity(options.users);
    for i in 0..options.users {
        owners.push(bench_user(store.as_ref(), 1_000_000 + i, Role::User).await?);
    }

    let counters = Arc::new(Counters::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let url = format!("ws://{}/ws", config.http_addr);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);

    // Each slot keeps one session open: open, live a random while, close, open the next.
    let mut slots = tokio::task::JoinSet::new();
    for slot in 0..options.sessions {
        let (url, counters, stop, tokens, owners) =
            (url.clone(), counters.clone(), stop.clone(), tokens.clone(), owners.clone());
        slots.spawn(async move {
            let mut n = 0u64;
            while !stop.is_cancelled() {
                n += 1;
                let owner = owners[(slot + n as usize) % owners.len()];
                let token = tokens.issue(Identity { user_id: owner, role: Role::User }, Utc::now()).access_token;
                let life = Duration::from_millis(rand::rng().random_range(1_000..=options.lifetime * 1_000));
                match Session::open(&url, &token, &format!("soak-{slot}-{n}"), owner).await {
                    Ok(session) => {
                        counters.opened.fetch_add(1, Ordering::Relaxed);
                        let until = stop.child_token();
                        let timer = until.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(life).await;
                            timer.cancel();
                        });
                        let received = session.run_counted(until).await;
                        counters.received.fetch_add(received, Ordering::Relaxed);
                    }
                    Err(err) => {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %err, "a soak session could not open");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
    }

    // Events at the rate, in transactions every 100 ms; samples on their own schedule.
    let client = reqwest::Client::new();
    let per_tick = f64::from(options.rate) / 10.0;
    let (mut owed, mut written) = (0.0, 0u64);
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next_sample = started;
    let mut samples = Vec::new();
    while Instant::now() < deadline {
        ticks.tick().await;
        owed += per_tick;
        let n = owed.floor() as usize;
        owed -= n as f64;
        if n > 0 {
            let events = stamped_events(&owners, n, "bench.soak");
            store.create_task(&bench_task(owners[0]), &events).await?;
            written += n as u64;
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(options.sample);
            samples.push(sample(pid, &client, &base, started, &counters).await?);
        }
    }
    if samples.last().is_none_or(|last: &Sample| started.elapsed().as_secs_f64() - last.at >= 1.0) {
        samples.push(sample(pid, &client, &base, started, &counters).await?);
    }
    stop.cancel();
    while slots.join_next().await.is_some() {}
    let _ = child.kill().await;
    store.close().await;
    Ok(SoakReport { options, samples, written, failed_sessions: counters.failed.load(Ordering::Relaxed) })
}

async fn sample(
    pid: u32,
    client: &reqwest::Client,
    base: &str,
    started: Instant,
    counters: &Counters,
) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading the server's status")?;
    let threads =
        status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok()).unwrap_or_default();
    let sockets = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(Result::ok)
                .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")))
                .count() as u64
        })
        .unwrap_or_default();
    let metrics = client.get(format!("{base}/metrics")).send().await?.text().await?;
    let tasks = metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_runtime_alive_tasks "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(-1.0) as u64;
    Ok(Sample {
        at: started.elapsed().as_secs_f64(),
        rss: rss(pid)?,
        sockets,
        threads,
        tasks,
        sessions_opened: counters.opened.load(Ordering::Relaxed),
        events_received: counters.received.load(Ordering::Relaxed),
    })
}
