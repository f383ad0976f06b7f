//! `herald-bench me`: what checking a token against its account costs. Starts `herald serve` in
//! this process on the configured store and broker, makes one account, logs in over REST, then
//! sends `GET /api/v1/me` with that token from N clients for S seconds (a cheap authenticated
//! call: a token check, the account read that checks the token's account and role, the
//! command's own read of the account) and reports requests per second and latency percentiles.

use std::time::{Duration, Instant};

use herald::{app, config::Config};
use herald_core::{
    auth::PasswordHasher,
    new_account::{NewAccount, create_user},
    user::{Email, Password, Role, UserName},
};
use serde_json::json;

/// What `herald-bench me` measured.
#[derive(Debug)]
pub struct MeReport {
    pub concurrency: usize,
    pub seconds: f64,
    /// Latencies of the answered calls, in microseconds, sorted.
    pub latencies_us: Vec<u64>,
    pub failed: usize,
}

impl MeReport {
    pub fn print(&self, config: &Config) {
        crate::print_backends(config);
        let answered = self.latencies_us.len();
        println!(
            "GET /me    {answered} calls in {:.1} s: {:.0}/s ({} in flight), {} failed",
            self.seconds,
            answered as f64 / self.seconds,
            self.concurrency,
            self.failed
        );
        println!(
            "latency    p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            crate::percentile_ms(&self.latencies_us, 0.50),
            crate::percentile_ms(&self.latencies_us, 0.99),
            crate::percentile_ms(&self.latencies_us, 1.0)
        );
    }
}

/// Runs the bench: `concurrency` clients calling `GET /api/v1/me` for `seconds`.
pub async fn me(config: &Config, concurrency: usize, seconds: u64) -> anyhow::Result<MeReport> {
    let running = app::start(config).await?;
    let svc = &running.herald.services;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let email =
        Email::parse(&format!("me-{}@bench.example.org", &run[run.len() - 12..])).map_err(anyhow::Error::msg)?;
    let account = NewAccount {
        email: email.clone(),
        name: UserName::parse("Bench").map_err(anyhow::Error::msg)?,
        password: Password::new_secret("bench-password".into()).map_err(anyhow::Error::msg)?,
        role: Role::User,
    };
    create_user(svc.store.as_ref(), &PasswordHasher::default(), svc.clock.as_ref(), account)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.public_detail().to_owned()))?;
    let base = format!("http://{}", running.http_addr);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let login = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email.as_str(), "password": "bench-password"}))
        .send()
        .await?
        .json::<serde_json::Value>()
        .await?;
    let token = login["access_token"].as_str().ok_or_else(|| anyhow::anyhow!("login failed: {login}"))?.to_owned();
    let url = format!("{base}/api/v1/me");

    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        callers.spawn(async move {
            let (mut latencies, mut failed) = (Vec::new(), 0usize);
            while Instant::now() < until {
                let sent = Instant::now();
                let answered = match client.get(&url).bearer_auth(&token).send().await {
                    Ok(reply) => reply.status().is_success() && reply.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if answered {
                    latencies.push(sent.elapsed().as_micros() as u64);
                } else {
                    failed += 1;
                }
            }
            (latencies, failed)
        });
    }
    let (mut latencies_us, mut failed) = (Vec::new(), 0);
    while let Some(done) = callers.join_next().await {
        let (latencies, f) = done?;
        latencies_us.extend(latencies);
        failed += f;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    running.stop(Duration::from_secs(5)).await?;
    Ok(MeReport { concurrency, seconds, latencies_us, failed })
}
