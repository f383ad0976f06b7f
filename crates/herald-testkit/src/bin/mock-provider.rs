//! `mock-provider`: the mock SMS provider as its own process, for benchmarks and split-process
//! tests. It prints `listening on <addr>` as one line on stdout once it accepts connections, serves
//! until Ctrl-C or SIGTERM, and prints its totals on stderr as it exits.
//!
//! The flags set the starting behaviour. While it runs, commands on stdin (one a line) change it:
//! `latency <ms> [<jitter-ms>]`, `failure-rate <r>`, `throttle-rate <r> [<retry-after-s>]`,
//! `throttle-next <n> [<retry-after-s>]`, `malformed-rate <r> [not-json|truncated|teapot]`,
//! `outage on|off|<ms>`, `outage-mode unavailable|close|hang [<ms>]`, `seed <n>`, `heal`, and `stats`,
//! which prints the totals as one line on stdout. Stdin closing changes nothing.
//!
//! With no latency and no faults, a client loop against it measures the mock's own ceiling.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use herald_testkit::mock_provider::{DEFAULT_SEED, Malformed, MockProvider, OutageMode};

/// A mock SMS gateway: `POST /v1/send/{msgId}` with a bearer token, programmable faults.
#[derive(Debug, Parser)]
#[command(name = "mock-provider")]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// The bearer token requests must carry.
    #[arg(long)]
    token: String,
    /// Fixed latency before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Extra uniform random latency, 0 to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Fraction of valid requests answered 500.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    failure_rate: f64,
    /// Fraction of valid requests answered 429.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    throttle_rate: f64,
    /// Answer the first N valid requests 429.
    #[arg(long, default_value_t = 0)]
    throttle_first: u32,
    /// The `Retry-After` of 429 answers, in seconds.
    #[arg(long, default_value_t = 1)]
    retry_after: u32,
    /// Fraction of valid requests given a malformed answer.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    malformed_rate: f64,
    /// Which malformed answer.
    #[arg(long, value_enum, default_value_t = MalformedArg::NotJson)]
    malformed: MalformedArg,
    /// What an outage does to requests.
    #[arg(long, value_enum, default_value_t = OutageArg::Unavailable)]
    outage_mode: OutageArg,
    /// How long `--outage-mode hang` holds a request before its 503, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    hang_ms: u64,
    /// Start in an outage that lasts this many milliseconds.
    #[arg(long)]
    outage_for_ms: Option<u64>,
    /// Seed of the fault RNG.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MalformedArg {
    NotJson,
    Truncated,
    Teapot,
}

impl From<MalformedArg> for Malformed {
    fn from(arg: MalformedArg) -> Self {
        match arg {
            MalformedArg::NotJson => Self::NotJson,
            MalformedArg::Truncated => Self::Truncated,
            MalformedArg::Teapot => Self::Teapot,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutageArg {
    Unavailable,
    Close,
    Hang,
}

fn outage_mode(arg: OutageArg, hang: Duration) -> OutageMode {
    match arg {
        OutageArg::Unavailable => OutageMode::Unavailable,
        OutageArg::Close => OutageMode::Close,
        OutageArg::Hang => OutageMode::Hang(hang),
    }
}

fn parse_rate(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("{raw:?} is not a fraction between 0 and 1")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mock = MockProvider::bind(args.addr, &args.token).await.with_context(|| format!("binding {}", args.addr))?;
    mock.set_seed(args.seed);
    mock.set_latency(Duration::from_millis(args.latency_ms), Duration::from_millis(args.jitter_ms));
    mock.set_failure_rate(args.failure_rate);
    mock.set_throttle_rate(args.throttle_rate, args.retry_after);
    mock.throttle_next(args.throttle_first, args.retry_after);
    mock.set_malformed_rate(args.malformed_rate, args.malformed.into());
    mock.set_outage_mode(outage_mode(args.outage_mode, Duration::from_millis(args.hang_ms)));
    if let Some(ms) = args.outage_for_ms {
        mock.outage_for(Duration::from_millis(ms));
    }
    println!("listening on {}", mock.addr());

    // A plain thread: a blocking stdin read cannot be cancelled and would hold up the runtime's shutdown.
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            line = lines.recv() => match line {
                Some(line) => {
                    if let Err(e) = apply(&mock, &line) {
                        eprintln!("mock-provider: {line:?}: {e:#}");
                    }
                }
                None => {
                    (&mut shutdown).await;
                    break;
                }
            },
        }
    }
    eprintln!("mock-provider: {:?}", mock.stats());
    mock.stop().await;
    Ok(())
}

/// Applies one stdin command.
fn apply(mock: &MockProvider, line: &str) -> anyhow::Result<()> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize, default: Option<u64>| -> anyhow::Result<u64> {
        match (words.get(i), default) {
            (Some(word), _) => word.parse().with_context(|| format!("{word:?} is not a whole number")),
            (None, Some(default)) => Ok(default),
            (None, None) => bail!("missing argument {i}"),
        }
    };
    let rate = |i: usize| -> anyhow::Result<f64> {
        parse_rate(words.get(i).copied().unwrap_or_default()).map_err(anyhow::Error::msg)
    };
    let secs = |i: usize| -> anyhow::Result<u32> { Ok(u32::try_from(number(i, Some(1))?)?) };
    match words.first().copied().unwrap_or_default() {
        "" => {}
        "latency" => {
            mock.set_latency(Duration::from_millis(number(1, None)?), Duration::from_millis(number(2, Some(0))?));
        }
        "failure-rate" => mock.set_failure_rate(rate(1)?),
        "throttle-rate" => mock.set_throttle_rate(rate(1)?, secs(2)?),
        "throttle-next" => mock.throttle_next(u32::try_from(number(1, None)?)?, secs(2)?),
        "malformed-rate" => {
            let kind = match words.get(2) {
                Some(word) => MalformedArg::from_str(word, true).map_err(anyhow::Error::msg)?,
                None => MalformedArg::NotJson,
            };
            mock.set_malformed_rate(rate(1)?, kind.into());
        }
        "outage" => match words.get(1).copied() {
            Some("on") => mock.outage(true),
            Some("off") => mock.outage(false),
            _ => mock.outage_for(Duration::from_millis(number(1, None)?)),
        },
        "outage-mode" => {
            let arg =
                OutageArg::from_str(words.get(1).copied().unwrap_or_default(), true).map_err(anyhow::Error::msg)?;
            mock.set_outage_mode(outage_mode(arg, Duration::from_millis(number(2, Some(30_000))?)));
        }
        "seed" => mock.set_seed(number(1, None)?),
        "heal" => mock.heal(),
        "stats" => println!("{:?}", mock.stats()),
        other => bail!("unknown command {other:?}"),
    }
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            tokio::signal::ctrl_c().await.ok();
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.ok();
}
