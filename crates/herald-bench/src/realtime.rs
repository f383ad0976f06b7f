//! `herald-bench realtime`: many WebSocket sessions on a `herald serve` child process, the
//! memory each idle one costs that process, then events at a steady rate and the latency from
//! the event's write to its arrival at the client.
//!
//! The server runs as a child so that its memory is measured alone (`/proc/<pid>/status`); this
//! process is the clients and the writer. Events are written to the store directly, each
//! transaction carrying a batch for random users, and stamped with the time of the write.

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
use futures::{SinkExt as _, StreamExt as _};
use herald_core::{
    auth::TokenIssuer,
    change::ChangeEvent,
    identity::Identity,
    user::{Role, UserId},
};
use rand::Rng as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::{bench_task, bench_user};
use herald::{app, config::Config, secret};

/// How the load is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// Through the store port, in batches (the gateway's ceiling).
    Store,
    /// As users do: `POST /api/v1/tasks`, one task (one event) per request, 32 requests in flight.
    Rest,
}

/// What `herald-bench realtime` measures.
#[derive(Debug, Clone, Copy)]
pub struct RealtimeOptions {
    pub sessions: usize,
    pub sessions_per_user: usize,
    /// Events written per second during the load phase.
    pub rate: u32,
    pub seconds: u64,
    pub via: Via,
}

/// Requests in flight when the load goes through REST.
const REST_IN_FLIGHT: usize = 32;

/// What it measured.
#[derive(Debug)]
pub struct RealtimeReport {
    pub options: RealtimeOptions,
    pub connect_seconds: f64,
    pub rss_before: u64,
    pub rss_idle: u64,
    pub written: u64,
    /// How long writing took (longer than `seconds` when the store could not keep the rate).
    pub write_seconds: f64,
    pub delivered: u64,
    pub load_seconds: f64,
    /// Write-to-client latencies, sorted, in microseconds.
    latencies: Vec<u64>,
    pub rss_loaded: u64,
    /// Writes the API refused (REST only).
    pub refused: u64,
}

impl RealtimeReport {
    fn percentile(&self, p: f64) -> f64 {
        crate::percentile_ms(&self.latencies, p)
    }

    pub fn print(&self, config: &Config) {
        let o = self.options;
        let mib = crate::mib;
        crate::print_backends(config);
        println!(
            "sessions   {} ({} per user), connected in {:.1} s",
            o.sessions, o.sessions_per_user, self.connect_seconds
        );
        println!(
            "server RSS {:.1} MiB before, {:.1} MiB with every session idle: {:.1} KiB per idle session",
            mib(self.rss_before),
            mib(self.rss_idle),
            self.rss_idle.saturating_sub(self.rss_before) as f64 / 1024.0 / o.sessions.max(1) as f64
        );
        let expected = self.written * o.sessions_per_user as u64;
        println!(
            "via        {}; {} writes refused; {} deliveries lost",
            match o.via {
                Via::Store => "the store port, batched",
                Via::Rest => "POST /api/v1/tasks, one event a request",
            },
            self.refused,
            expected.saturating_sub(self.delivered)
        );
        println!(
            "load       {} events written in {:.1} s ({:.0}/s, {}/s asked); {} deliveries in {:.1} s: {:.0} delivered/s",
            self.written,
            self.write_seconds,
            self.written as f64 / self.write_seconds,
            o.rate,
            self.delivered,
            self.load_seconds,
            self.delivered as f64 / self.load_seconds
        );
        println!(
            "latency    write to client: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
            self.percentile(0.5),
            self.percentile(0.99),
            self.percentile(0.999),
            self.percentile(1.0)
        );
        println!("server RSS {:.1} MiB after the load", mib(self.rss_loaded));
    }
}

/// Runs the benchmark against the configured store and broker (use scratch ones).
pub async fn realtime(config: &Config, server: &Path, options: RealtimeOptions) -> anyhow::Result<RealtimeReport> {
    if options.sessions == 0 || options.sessions_per_user == 0 {
        bail!("--sessions and --sessions-per-user must be at least 1");
    }
    let Server { tokens, store, mut child, pid, .. } =
        Server::start(config, server, chrono::Duration::hours(2), &[("HERALD_SESSION_BUFFER", "4096")]).await?;

    let users = options.sessions.div_ceil(options.sessions_per_user);
    let mut owners = Vec::with_capacity(users);
    for i in 0..users {
        owners.push(bench_user(store.as_ref(), i, Role::User).await?);
    }
    let rss_before = rss(pid)?;

    let stats = Arc::new(Stats::default());
    let (latency_tx, mut latency_rx) = mpsc::unbounded_channel::<Vec<u64>>();
    let (ready_tx, mut ready_rx) = mpsc::channel::<anyhow::Result<()>>(options.sessions);
    let stop = tokio_util::sync::CancellationToken::new();
    let url = format!("ws://{}/ws", config.http_addr);
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    for s in 0..options.sessions {
        let owner = owners[s / options.sessions_per_user];
        let token = tokens.issue(Identity { user_id: owner, role: Role::User }, Utc::now()).access_token;
        let (url, stats, latency_tx, ready_tx, stop, gate) =
            (url.clone(), stats.clone(), latency_tx.clone(), ready_tx.clone(), stop.clone(), gate.clone());
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let session = Session::open(&url, &token, &format!("bench-{s}"), owner).await;
            drop(permit);
            match session {
                Ok(session) => {
                    let _ = ready_tx.send(Ok(())).await;
                    let _ = latency_tx.send(session.run(stats, stop).await);
                }
                Err(err) => {
                    let _ = ready_tx.send(Err(err)).await;
                }
            }
        });
    }
    drop((latency_tx, ready_tx));
    for _ in 0..options.sessions {
        ready_rx.recv().await.context("a session task ended")??;
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = rss(pid)?;

    // Load: a transaction every 10 ms with this tick's share of the rate.
    let ticks = options.seconds * 100;
    let per_tick = f64::from(options.rate) / 100.0;
    let mut written = 0u64;
    let refused = Arc::new(AtomicU64::new(0));
    let http = reqwest::Client::builder().pool_max_idle_per_host(REST_IN_FLIGHT).build()?;
    let owner_tokens: Vec<String> = owners
        .iter()
        .map(|owner| tokens.issue(Identity { user_id: *owner, role: Role::User }, Utc::now()).access_token)
        .collect();
    let tasks_url = format!("http://{}/api/v1/tasks", config.http_addr);
    let writers = Arc::new(tokio::sync::Semaphore::new(if options.via == Via::Rest { REST_IN_FLIGHT } else { 8 }));
    let mut pending = tokio::task::JoinSet::new();
    let mut owed = 0.0;
    let load_started = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..ticks {
        interval.tick().await;
        owed += per_tick;
        let n = owed.floor() as usize;
        owed -= n as f64;
        if n == 0 {
            continue;
        }
        if options.via == Via::Rest {
            // One request per event, as a user's client writes; the send time rides in the
            // task's description.
            for _ in 0..n {
                let permit = writers.clone().acquire_owned().await?;
                let token = owner_tokens[rand::rng().random_range(0..owner_tokens.len())].clone();
                let (http, url, refused) = (http.clone(), tasks_url.clone(), refused.clone());
                pending.spawn(async move {
                    let _permit = permit;
                    let body = json!({"title": "bench", "description": Utc::now().timestamp_micros().to_string()});
                    let answer = http.post(url).bearer_auth(token).json(&body).send().await;
                    if !answer.is_ok_and(|a| a.status().is_success()) {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                });
            }
            written += n as u64;
            continue;
        }
        let events = stamped_events(&owners, n, "bench.event");
        // Up to 8 transactions in flight, so one slow commit does not hold the rate back.
        let permit = writers.clone().acquire_owned().await?;
        let (store, task) = (store.clone(), bench_task(owners[0]));
        pending.spawn(async move {
            let _permit = permit;
            store.create_task(&task, &events).await
        });
        written += n as u64;
    }
    while let Some(done) = pending.join_next().await {
        done.context("a writer panicked")??;
    }
    let write_seconds = load_started.elapsed().as_secs_f64();
    let refused = refused.load(Ordering::Relaxed);
    written -= refused;
    let expected = written * options.sessions_per_user as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let load_seconds = load_started.elapsed().as_secs_f64();
    let delivered = stats.delivered.load(Ordering::Relaxed);
    let rss_loaded = rss(pid)?;
    stop.cancel();
    let mut latencies = Vec::with_capacity(usize::try_from(delivered).unwrap_or(0));
    while let Some(batch) = latency_rx.recv().await {
        latencies.extend(batch);
    }
    latencies.sort_unstable();
    let _ = child.kill().await;
    store.close().await;
    Ok(RealtimeReport {
        options,
        connect_seconds,
        rss_before,
        rss_idle,
        written,
        write_seconds,
        delivered,
        load_seconds,
        latencies,
        rss_loaded,
        refused,
    })
}

/// `n` events for random `owners`, each stamped with the time of the write (`data.sent_us`).
pub(crate) fn stamped_events(owners: &[UserId], n: usize, kind: &str) -> Vec<ChangeEvent> {
    let now = Utc::now();
    let mut rng = rand::rng();
    (0..n)
        .map(|_| {
            let owner = owners[rng.random_range(0..owners.len())];
            ChangeEvent::for_user(owner, kind, json!({"sent_us": now.timestamp_micros()}), now)
        })
        .collect()
}

/// A `herald serve` child on the configured backends, ready, with a token issuer and a store
/// handle of this process (the clients and the writer).
pub(crate) struct Server {
    pub tokens: TokenIssuer,
    pub store: std::sync::Arc<dyn herald_core::store::Store>,
    pub child: tokio::process::Child,
    pub pid: u32,
    /// `http://<http_addr>`.
    pub base: String,
}

impl Server {
    /// Starts the `herald` binary at `server` with `env` on top of the configuration; tokens
    /// live `ttl`.
    pub(crate) async fn start(
        config: &Config,
        server: &Path,
        ttl: chrono::Duration,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        // The secret first, so the child loads the same one instead of making its own.
        let secret = secret::load_or_generate(config)?;
        let tokens = TokenIssuer::new(&secret, ttl).map_err(|e| anyhow::anyhow!("JWT secret {e}"))?;
        let store = app::open_store(config).await?;
        let child = tokio::process::Command::new(server)
            .arg("serve")
            .env("HERALD_LOG", "warn")
            // The child's relay learns of this process's writes by polling on SQLite (PostgreSQL
            // wakes it with NOTIFY).
            .env("HERALD_RELAY_POLL_INTERVAL", "5ms")
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting `{} serve`", server.display()))?;
        let pid = child.id().context("the server's pid")?;
        let base = format!("http://{}", config.http_addr);
        wait_ready(&base).await?;
        Ok(Self { tokens, store, child, pid, base })
    }
}

#[derive(Debug, Default)]
struct Stats {
    delivered: AtomicU64,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One benchmark client session over `/ws`.
pub(crate) struct Session {
    socket: Socket,
}

impl Session {
    /// Connects, says hello and subscribes to the owner's channel.
    pub(crate) async fn open(url: &str, token: &str, id: &str, owner: UserId) -> anyhow::Result<Self> {
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.context("connecting")?;
        let hello = json!({"op": "hello", "token": token, "session": id});
        socket.send(Message::Text(hello.to_string().into())).await?;
        let subscribe = json!({"op": "subscribe", "id": 1, "channel": format!("user:{owner}")});
        socket.send(Message::Text(subscribe.to_string().into())).await?;
        loop {
            let frame = next_json(&mut socket).await.context("closed during the handshake")?;
            match frame["op"].as_str() {
                Some("welcome") => continue,
                Some("reply") if frame["ok"] == true => return Ok(Self { socket }),
                _ => bail!("unexpected answer: {frame}"),
            }
        }
    }

    /// Receives events, acks each, and records each one's latency until `stop`.
    async fn run(self, stats: Arc<Stats>, stop: tokio_util::sync::CancellationToken) -> Vec<u64> {
        let mut latencies = Vec::new();
        self.run_until(stop, |frame| {
            let now = Utc::now().timestamp_micros();
            // A store write stamps `sent_us`; a REST write, the task's description.
            let data = &frame["data"];
            let sent = data["sent_us"].as_i64().or_else(|| data["description"].as_str().and_then(|d| d.parse().ok()));
            if let Some(sent) = sent {
                latencies.push(u64::try_from(now - sent).unwrap_or(0));
            }
            stats.delivered.fetch_add(1, Ordering::Relaxed);
        })
        .await;
        latencies
    }

    /// Receives events and acks each until `stop`; how many came.
    pub(crate) async fn run_counted(self, stop: tokio_util::sync::CancellationToken) -> u64 {
        let mut received = 0;
        self.run_until(stop, |_| received += 1).await;
        received
    }

    /// Hands each event to `on_event` and acks it, until `stop` or the server closes; then closes.
    async fn run_until(mut self, stop: tokio_util::sync::CancellationToken, mut on_event: impl FnMut(&Value)) {
        loop {
            let frame = tokio::select! {
                () = stop.cancelled() => break,
                f = next_json(&mut self.socket) => match f { Some(f) => f, None => break },
            };
            if frame["op"] != "event" {
                continue;
            }
            on_event(&frame);
            let ack = json!({"op": "ack", "channel": frame["channel"], "offset": frame["offset"]});
            if self.socket.send(Message::Text(ack.to_string().into())).await.is_err() {
                break;
            }
        }
        let _ = self.socket.close(None).await;
    }
}

async fn next_json(socket: &mut Socket) -> Option<Value> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => return serde_json::from_str(text.as_str()).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

pub(crate) async fn wait_ready(base: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..400 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server at {base} never became ready")
}

/// A process's resident set size, in bytes.
pub(crate) fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading the server's status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    Ok(kib * 1024)
}
