//! A gateway that runs for weeks: sessions that come and go leave no memory behind (the built
//! binary as its own process, its RSS read from /proc), every subscribe is answered however many
//! sessions connect at once, and `/readyz` means every transport serves.

use std::time::Duration;

use futures::StreamExt as _;
use herald_testkit::{
    Backend, TestApp,
    cluster::{metric, wait_ready},
    node::sio_churn,
    processes::HeraldProcess,
    ws_client::WsClient,
};
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

/// Registers `n` users through `base` and returns (token, id) pairs.
async fn users(client: &reqwest::Client, base: &str, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        let email = format!("user{i}@example.org");
        let body = json!({"email": email, "password": "correct horse", "name": "T"});
        let created: Value = client
            .post(format!("{base}/api/v1/auth/register"))
            .json(&body)
            .send()
            .await
            .expect("register")
            .json()
            .await
            .expect("json");
        let login = json!({"email": email, "password": "correct horse"});
        let token: Value = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&login)
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        out.push((
            token["access_token"].as_str().expect("token").to_owned(),
            created["id"].as_str().expect("id").to_owned(),
        ));
    }
    out
}

/// `total` `/ws` sessions, `concurrency` at a time: hello, subscribe to the user channel, close.
async fn ws_churn(base: &str, users: &[(String, String)], total: usize, concurrency: usize, prefix: &str) -> usize {
    let url = format!("{}/ws", base.replacen("http://", "ws://", 1));
    futures::stream::iter(0..total)
        .map(|n| {
            let (token, id) = &users[n % users.len()];
            let url = url.clone();
            async move {
                let mut ws = WsClient::connect(&url, token, &format!("{prefix}-{n}")).await.expect("ws session");
                let answer = ws.subscribe(&format!("user:{id}"), None).await;
                ws.close().await;
                usize::from(answer["ok"] == true)
            }
        })
        .buffer_unordered(concurrency)
        .fold(0, |sum, ok| async move { sum + ok })
        .await
}

async fn sessions_gauge(client: &reqwest::Client, base: &str) -> f64 {
    let exposition = client.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    metric(&exposition, "herald_realtime_sessions").unwrap_or(-1.0)
}

/// After a warm-up round, 3,000 Socket.io and 3,000 `/ws` sessions open, subscribe and close;
/// the server's RSS ends within 24 MiB (8 KiB a session) of where the warm-up left it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closed_sessions_leave_no_memory_behind() {
    let dir = tempfile::tempdir().expect("data dir");
    let env: Vec<(String, String)> = [
        ("HERALD_HTTP_ADDR", "127.0.0.1:0"),
        ("HERALD_GRPC_ADDR", "127.0.0.1:0"),
        ("HERALD_JWT_SECRET", herald_testkit::app::TEST_JWT_SECRET),
        ("HERALD_AUTH_ACCOUNT_RATE", "unlimited"),
        ("HERALD_AUTH_ADDRESS_RATE", "unlimited"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([("HERALD_DATA_DIR".to_owned(), dir.path().display().to_string())])
    .collect();
    let mut process = HeraldProcess::start("churn", &["serve"], &env);
    let base = format!("http://{}", process.http_addr().await);
    let client = herald_testkit::http::client();
    wait_ready(&client, &base).await;
    let users = users(&client, &base, 10).await;

    let round = |total: usize, prefix: &'static str| {
        let (base, users) = (base.clone(), users.clone());
        async move {
            let sio = sio_churn(&base, &users, total, 100, prefix).await?;
            assert_eq!(sio["answered"], json!(total), "every Socket.io subscribe answered: {sio}");
            assert_eq!(ws_churn(&base, &users, total, 100, prefix).await, total, "every /ws subscribe answered");
            Some(sio)
        }
    };
    if round(1_000, "warm").await.is_none() {
        return;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (warm, _) = process.memory();
    let sio = round(3_000, "churn").await.expect("node ran before");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (end, peak) = process.memory();
    println!(
        "session churn: RSS {} MiB after 2,000 warm-up sessions, {} MiB after 6,000 more (peak {} MiB); sio {sio}",
        warm / MIB,
        end / MIB,
        peak / MIB
    );
    assert_eq!(sessions_gauge(&client, &base).await, 0.0, "every session was closed");
    assert!(end <= warm + 24 * MIB, "RSS grew from {} MiB to {} MiB over 6,000 closed sessions", warm / MIB, end / MIB);
}

/// 500 Socket.io sessions of 10 users connecting at once: every subscribe gets its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_subscribe_is_answered_when_500_sessions_connect_at_once() {
    let app = TestApp::start(Backend::Sqlite, "connect_storm").await.expect("SQLite always runs");
    let users = users(&app.client, &app.base, 10).await;
    for attempt in 0..3 {
        let Some(summary) = sio_churn(&app.base, &users, 500, 500, &format!("storm{attempt}")).await else { return };
        assert_eq!(summary["opened"], json!(500), "{summary}");
        assert_eq!(summary["answered"], json!(500), "{summary}");
    }
    app.stop().await;
}

/// `herald serve` on NATS: the moment `/readyz` first answers 200, a command sent over NATS
/// request-reply is answered (before, it got "no responders" for about 100 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ready_means_nats_commands_are_answered() {
    let Some(nats) = herald_testkit::backend_url("HERALD_TEST_NATS_URL", "ready_means_nats_commands_are_answered")
    else {
        return;
    };
    let client = herald_testkit::http::client();
    let nats_client = async_nats::connect(nats.as_str()).await.expect("connect to NATS");
    for attempt in 0..3 {
        let namespace = format!("t_{}", uuid::Uuid::now_v7().simple());
        let dir = tempfile::tempdir().expect("data dir");
        let env: Vec<(String, String)> = [
            ("HERALD_HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("HERALD_GRPC_ADDR", "127.0.0.1:0".to_owned()),
            ("HERALD_JWT_SECRET", herald_testkit::app::TEST_JWT_SECRET.to_owned()),
            ("HERALD_BROKER_URL", nats.clone()),
            ("HERALD_BROKER_NAMESPACE", namespace.clone()),
            ("HERALD_DATA_DIR", dir.path().display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut process = HeraldProcess::start("ready", &["serve"], &env);
        let base = format!("http://{}", process.http_addr().await);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client.get(format!("{base}/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
            if ready == 200 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "never ready:\n{}", process.log_text());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let subject = format!("{namespace}.cmd.users.me");
        let answer = tokio::time::timeout(Duration::from_secs(5), nats_client.request(subject, "{}".into()))
            .await
            .expect("an answer in time")
            .unwrap_or_else(|e| panic!("attempt {attempt}: the command was not served although ready: {e}"));
        let body: Value = serde_json::from_slice(&answer.payload).expect("json answer");
        assert_eq!(body["error"]["code"], "unauthorized", "an anonymous users.me is answered: {body}");
        process.terminate().await;
    }
}
