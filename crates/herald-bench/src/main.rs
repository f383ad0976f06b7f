//! `herald-bench`: measurements of Herald against the configured backends, beside the server
//! rather than inside it. It reads the same settings as `herald` (file, `HERALD_*` variables,
//! flags); the realtime and soak benches start the `herald` binary (`--server`) as a child.
//! Run them on a scratch database and broker namespace: they write synthetic rows.

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use herald::config::{self, Flags};
use herald_bench::{broadcast, mailing, me, notify, realtime, refusals, soak};

/// Measure Herald against the configured backends (use a scratch database: it writes rows).
#[derive(Debug, Parser)]
#[command(name = "herald-bench", version, propagate_version = true, max_term_width = 110)]
struct Cli {
    /// TOML file of settings (`setting_name = value`); also HERALD_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The `herald` binary the realtime and soak benches start; by default the one beside this
    /// binary, else `herald` on the PATH.
    #[arg(long, global = true, value_name = "PATH")]
    server: Option<PathBuf>,
    #[command(flatten)]
    flags: Flags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Relay throughput: write N outbox events, then time the relay publishing them to a subscriber.
    Relay {
        #[arg(long, default_value_t = 100_000)]
        events: usize,
    },
    /// The broker's topic path alone: broadcast a batch every 10 ms on one connection, receive it
    /// on another; time each broadcast and each batch's arrival.
    Broadcast {
        /// Messages per batch (the relay publishes in batches).
        #[arg(long, default_value_t = 20)]
        batch: usize,
        #[arg(long, default_value_t = 1_000)]
        batches: usize,
    },
    /// One mailing end to end: load N clients, start a mailing to them all, time it until every
    /// message is final. Needs HERALD_PROVIDER_URL (run the mock provider apart).
    Mailing {
        #[arg(long, default_value_t = 1_000_000)]
        clients: u64,
        /// Senders in this process (each with HERALD_SENDER_CONCURRENCY in flight).
        #[arg(long, default_value_t = 1)]
        senders: usize,
        /// Schedulers in this process (they claim side by side, as separate processes would).
        #[arg(long, default_value_t = 1)]
        schedulers: usize,
    },
    /// Notices through the public API: start `herald serve` in this process, POST N notices
    /// (an in-app step, then an SMS step --after seconds later) with a `notify` API key, nobody
    /// acknowledging; time their creation, their escalation, and each SMS step from due to sent.
    /// Needs HERALD_PROVIDER_URL (run the mock provider apart).
    Notify {
        #[arg(long, default_value_t = 10_000)]
        notices: usize,
        /// People they go to.
        #[arg(long, default_value_t = 1_000)]
        users: usize,
        /// Seconds from each notice to its SMS step.
        #[arg(long, default_value_t = 5)]
        after: u32,
    },
    /// Real-time sessions: start `herald serve` (the binary at --server) as a child on HERALD_HTTP_ADDR, open N WebSocket
    /// sessions to it (memory per idle session), then write events at a steady rate and time
    /// each from its write to its arrival at the client.
    Realtime {
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
        /// Sessions of one user (each event of that user reaches all of them). Not
        /// `--sessions-per-user`: that is the server's own limit, a setting like any other.
        #[arg(long, default_value_t = 1)]
        per_user: usize,
        /// Events written per second.
        #[arg(long, default_value_t = 2_000)]
        rate: u32,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// How the events are written: through the store port, or as users do, over REST.
        #[arg(long, value_enum, default_value = "store")]
        via: realtime::Via,
    },
    /// A token's cost: start `herald serve` in this process, make one account, and call
    /// `GET /api/v1/me` with its token from N clients for S seconds (requests/s, p50, p99).
    Me {
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// What a refused request costs: start `herald serve` in this process and POST four bodies
    /// to /api/v1/auth/login, each refused before any password check: 1 MiB of unknown keys,
    /// 1 MiB failing one field (an object of as many keys, or a string), a small body failing one
    /// field; time the JSON parse and the input check alone (in process) and each request over
    /// HTTP, and size each answer.
    Refusals {
        #[arg(long, default_value_t = 100)]
        rounds: usize,
    },
    /// A long run under churn: start `herald serve` (the binary at --server) as a child on HERALD_HTTP_ADDR; keep N
    /// WebSocket sessions open, each subscribing, receiving and acking events and dropping after
    /// a random lifetime (then replaced), while events are written at a steady rate; sample the
    /// server's RSS, open sockets, threads and live tasks, and print their slope per hour.
    Soak {
        /// Sessions open at any moment.
        #[arg(long, default_value_t = 200)]
        sessions: usize,
        #[arg(long, default_value_t = 20)]
        users: usize,
        /// Events written per second.
        #[arg(long, default_value_t = 50)]
        rate: u32,
        #[arg(long, default_value_t = 900)]
        seconds: u64,
        /// Longest life of one session, in seconds.
        #[arg(long, default_value_t = 20)]
        lifetime: u64,
        /// Seconds between samples.
        #[arg(long, default_value_t = 30)]
        sample: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    herald_egress::install_ring_provider();
    let cli = Cli::parse();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let file = cli.config.clone().or_else(|| env.get("HERALD_CONFIG").map(PathBuf::from));
    let config = match config::load(file.as_deref(), &env, &cli.flags) {
        Ok(loaded) => loaded.config,
        Err(err) => {
            eprint!("{err}");
            return ExitCode::from(2);
        }
    };
    herald::logging::init(config.log_format, &config.log_level, None);
    let server = cli.server.clone().unwrap_or_else(default_server);
    match run(cli.command, &config, &server).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: &config::Config, server: &std::path::Path) -> anyhow::Result<()> {
    match command {
        Command::Relay { events } => herald_bench::relay(config, events).await?.print(config),
        Command::Realtime { sessions, per_user, rate, seconds, via } => {
            let options = realtime::RealtimeOptions { sessions, sessions_per_user: per_user, rate, seconds, via };
            realtime::realtime(config, server, options).await?.print(config);
        }
        Command::Soak { sessions, users, rate, seconds, lifetime, sample } => {
            let options = soak::SoakOptions { sessions, users, rate, seconds, lifetime, sample };
            soak::soak(config, server, options).await?.print(config);
        }
        Command::Me { concurrency, seconds } => me::me(config, concurrency, seconds).await?.print(config),
        Command::Broadcast { batch, batches } => broadcast::broadcast(config, batch, batches).await?.print(config),
        Command::Notify { notices, users, after } => {
            notify::notify(config, notices, users, after).await?.print(config);
        }
        Command::Refusals { rounds } => refusals::refusals(config, rounds).await?.print(config),
        Command::Mailing { clients, senders, schedulers } => {
            mailing::mailing(config, clients, senders, schedulers).await?.print(config);
        }
    }
    Ok(())
}

/// `herald` beside this executable (both are built into the same target directory), else the
/// one on the PATH.
fn default_server() -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(format!("herald{}", std::env::consts::EXE_SUFFIX))));
    match beside {
        Some(path) if path.is_file() => path,
        _ => PathBuf::from("herald"),
    }
}
