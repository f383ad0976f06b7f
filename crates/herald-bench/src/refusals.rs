//! `herald-bench refusals`: what a refused request costs. Four bodies to `POST /api/v1/auth/login`,
//! none of which reaches the password check: 1 MiB of distinct unknown keys (the amplification of
//! issue 31: one field error each, until the answer is cut at 20); 1 MiB failing one field, twice
//! (a valid login beside one unknown key holding an object of as many keys, which parses alike,
//! or holding one long string, which parses far faster); and a small body failing one field (an
//! ordinary bad request). For each it times, in this process, the
//! JSON parse alone and the command's input check alone, then the whole request over HTTP to
//! `herald serve` started in this process on the configured store; and the answer's size.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use herald::{app, config::Config};

/// One body's figures.
#[derive(Debug)]
pub struct Refusal {
    pub name: &'static str,
    pub body_bytes: usize,
    /// Median microseconds of a `serde_json` parse into a `Value`.
    pub parse_us: f64,
    /// Median microseconds of `auth.login`'s schema and typed checks of the parsed value.
    pub check_us: f64,
    /// Median and 95th percentile microseconds of the request over HTTP, answer read whole.
    pub http_p50_us: f64,
    pub http_p95_us: f64,
    pub status: u16,
    pub answer_bytes: usize,
}

/// What `herald-bench refusals` measured.
#[derive(Debug)]
pub struct RefusalsReport {
    pub rounds: usize,
    pub bodies: Vec<Refusal>,
}

impl RefusalsReport {
    pub fn print(&self, config: &Config) {
        crate::print_backends(config);
        println!("rounds     {} of each body, one at a time (medians)", self.rounds);
        println!(
            "{:<22} {:>9} {:>10} {:>10} {:>10} {:>10} {:>6} {:>9}",
            "body", "bytes", "parse ms", "check ms", "http p50", "http p95", "status", "answer B"
        );
        for r in &self.bodies {
            println!(
                "{:<22} {:>9} {:>10.2} {:>10.3} {:>10.2} {:>10.2} {:>6} {:>9}",
                r.name,
                r.body_bytes,
                r.parse_us / 1000.0,
                r.check_us / 1000.0,
                r.http_p50_us / 1000.0,
                r.http_p95_us / 1000.0,
                r.status,
                r.answer_bytes
            );
        }
        if let [many, object, string, small] = self.bodies.as_slice() {
            for (name, other) in [("one bad object", object), ("one bad string", string), ("small", small)] {
                println!(
                    "unknown keys / {name:<15} http {:>6.2}x  parse {:>7.2}x  check {:>7.2}x",
                    many.http_p50_us / other.http_p50_us,
                    many.parse_us / other.parse_us.max(0.001),
                    many.check_us / other.check_us.max(0.001),
                );
            }
        }
    }
}

const LOGIN: &str = r#"{"email":"ada@example.org","password":"password123""#;

/// Characters of the unknown keys.
const ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Up to `size` bytes of a login followed by distinct unknown keys, `i` written in base 62
/// (1 to 3 characters for the first 238,328).
fn unknown_keys(size: usize) -> String {
    let mut body = String::from(LOGIN);
    for i in 0usize.. {
        let digits: Vec<u8> = std::iter::successors(Some(i), |rest| Some(rest / 62).filter(|r| *r > 0))
            .map(|d| ALPHABET[d % 62])
            .collect();
        if body.len() + digits.len() + ",\"\":0}".len() > size {
            break;
        }
        body.push_str(",\"");
        body.push_str(&String::from_utf8_lossy(&digits));
        body.push_str("\":0");
    }
    body.push('}');
    body
}

/// A login beside one unknown key holding the object of `unknown_keys(size - 8)`: it parses as
/// the unknown keys do, but fails on one field.
fn one_bad_object(size: usize) -> String {
    format!(r#"{LOGIN},"pad":{}}}"#, unknown_keys(size.saturating_sub(LOGIN.len() + 9)))
}

/// `size` bytes of a login beside one unknown key holding a string.
fn one_bad_field(size: usize) -> String {
    let fill = size.saturating_sub(LOGIN.len() + r#","pad":""}"#.len());
    format!(r#"{LOGIN},"pad":"{}"}}"#, "x".repeat(fill))
}

fn median(mut us: Vec<f64>) -> f64 {
    us.sort_by(f64::total_cmp);
    us.get(us.len() / 2).copied().unwrap_or(f64::NAN)
}

fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN)
}

/// Times `rounds` runs of `f`, in microseconds.
fn times(rounds: usize, mut f: impl FnMut()) -> Vec<f64> {
    (0..rounds)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

/// Runs the bench: `rounds` of each body.
pub async fn refusals(config: &Config, rounds: usize) -> anyhow::Result<RefusalsReport> {
    let size = usize::try_from(config.body_limit.0).unwrap_or(usize::MAX).min(1 << 20);
    let bodies = [
        ("unknown keys (1 MiB)", unknown_keys(size)),
        ("one bad object (1 MiB)", one_bad_object(size)),
        ("one bad string (1 MiB)", one_bad_field(size)),
        ("one bad field (small)", one_bad_field(LOGIN.len() + 20)),
    ];
    let registry = herald_core::commands::registry();
    let login = registry.get("auth.login").context("auth.login is registered")?;
    let running = app::start(config).await?;
    let url = format!("http://{}/api/v1/auth/login", running.http_addr);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;

    let mut report = RefusalsReport { rounds, bodies: Vec::new() };
    for (name, body) in bodies {
        let parse_us = median(times(rounds, || {
            std::hint::black_box(serde_json::from_str::<Value>(&body).ok());
        }));
        let value: Value = serde_json::from_str(&body)?;
        let check_us = median(times(rounds, || {
            std::hint::black_box(login.check_input(&value).is_err());
        }));
        let (mut http, mut status, mut answer_bytes) = (Vec::with_capacity(rounds), 0, 0);
        for _ in 0..rounds {
            let started = Instant::now();
            let reply = client.post(&url).header("content-type", "application/json").body(body.clone()).send().await?;
            status = reply.status().as_u16();
            answer_bytes = reply.bytes().await?.len();
            http.push(started.elapsed().as_secs_f64() * 1e6);
        }
        http.sort_by(f64::total_cmp);
        report.bodies.push(Refusal {
            name,
            body_bytes: body.len(),
            parse_us,
            check_us,
            http_p50_us: quantile(&http, 0.5),
            http_p95_us: quantile(&http, 0.95),
            status,
            answer_bytes,
        });
    }
    running.stop(Duration::from_secs(5)).await?;
    Ok(report)
}
