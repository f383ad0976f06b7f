//! Herald as an attacker meets it: password-check storms against the built binary (its own
//! process, whose memory is read from /proc), throttling with `Retry-After` that a polite client
//! waits out, slow-loris connections, the connection cap, security headers, redaction, and the
//! per-user and per-session limits of the gateway. Webhook destinations are in
//! `security_webhooks`; signed broker envelopes in the broker suite.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use herald_testkit::{
    Backend, TestApp,
    cluster::wait_ready,
    processes::{HeraldProcess, herald_bin},
    ws_client::WsClient,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

const MIB: u64 = 1 << 20;
/// The most a `herald serve` may hold at its peak through every storm here.
const PEAK_BOUND: u64 = 512 * MIB;

/// `herald serve` on a fresh SQLite data dir as its own process, with `extra` settings.
async fn serve(test: &str, extra: &[(&str, &str)]) -> (HeraldProcess, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("data dir");
    let mut env: Vec<(String, String)> = vec![
        ("HERALD_HTTP_ADDR".into(), "127.0.0.1:0".into()),
        ("HERALD_GRPC_ADDR".into(), "127.0.0.1:0".into()),
        ("HERALD_DATA_DIR".into(), dir.path().display().to_string()),
        ("HERALD_JWT_SECRET".into(), herald_testkit::app::TEST_JWT_SECRET.into()),
    ];
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let mut process = HeraldProcess::start(test, &["serve"], &env);
    let base = format!("http://{}", process.http_addr().await);
    let client = herald_testkit::http::client();
    wait_ready(&client, &base).await;
    (process, base, dir)
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let reply = client.post(url).json(&body).send().await.expect("request");
    let (status, headers) = (reply.status(), reply.headers().clone());
    (status, headers, reply.json().await.unwrap_or(Value::Null))
}

async fn register(client: &reqwest::Client, base: &str, email: &str) {
    let body = json!({"email": email, "password": "correct horse", "name": "T"});
    let (status, _, body) = post(client, format!("{base}/api/v1/auth/register"), body).await;
    assert_eq!(status, StatusCode::CREATED, "register {email}: {body}");
}

async fn login(client: &reqwest::Client, base: &str, email: &str) -> String {
    let body = json!({"email": email, "password": "correct horse"});
    let (status, _, body) = post(client, format!("{base}/api/v1/auth/login"), body).await;
    assert_eq!(status, StatusCode::OK, "login {email}: {body}");
    body["access_token"].as_str().expect("token").to_owned()
}

fn ws_url(base: &str) -> String {
    format!("{}/ws", base.replacen("http://", "ws://", 1))
}

/// 300 logins over HTTP (100 at a time) and 300 `call auth.login` frames pipelined on one socket,
/// with the per-account and per-address limits lifted so that every attempt reaches the hasher:
/// the answers are 200, 401 or 429, never 5xx, and the process's peak RSS stays under 512 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_storm_stays_within_a_memory_bound() {
    let lifted = [("HERALD_AUTH_ACCOUNT_RATE", "unlimited"), ("HERALD_AUTH_ADDRESS_RATE", "unlimited")];
    let (process, base, _dir) = serve("login_storm", &lifted).await;
    let client = herald_testkit::http::client();
    register(&client, &base, "ada@example.org").await;
    let token = login(&client, &base, "ada@example.org").await;
    let (start, _) = process.memory();

    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for round in 0..3 {
        let attempts = (0..100).map(|n| {
            let (client, base) = (client.clone(), base.clone());
            let password = if n % 10 == 0 { "correct horse".to_owned() } else { format!("wrong {round} {n}") };
            async move {
                let body = json!({"email": "ada@example.org", "password": password});
                post(&client, format!("{base}/api/v1/auth/login"), body).await
            }
        });
        for (status, headers, body) in futures::future::join_all(attempts).await {
            assert!(!status.is_server_error(), "a login answered {status}: {body}");
            if status == StatusCode::TOO_MANY_REQUESTS {
                assert!(headers.contains_key("retry-after"), "429 without Retry-After: {body}");
            }
            *statuses.entry(status.as_u16()).or_default() += 1;
        }
    }
    assert!(statuses.keys().all(|s| [200, 401, 429].contains(s)), "{statuses:?}");

    // One socket, 300 login calls written at once without waiting for answers.
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url(&base)).await.expect("ws");
    let hello = json!({"op": "hello", "token": token, "session": "storm"}).to_string();
    socket.send(tokio_tungstenite::tungstenite::Message::Text(hello.into())).await.expect("hello");
    for id in 0..300 {
        let frame = json!({"op": "call", "id": id, "command": "auth.login",
            "input": {"email": "ada@example.org", "password": format!("wrong {id}")}});
        socket.send(tokio_tungstenite::tungstenite::Message::Text(frame.to_string().into())).await.expect("send");
    }
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    let mut replies = 0;
    while replies < 300 {
        let next = tokio::time::timeout(Duration::from_secs(60), socket.next()).await.expect("an answer in time");
        let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = next else { panic!("socket closed") };
        let frame: Value = serde_json::from_str(text.as_str()).expect("json frame");
        if frame["op"] == "reply" {
            replies += 1;
            let code = frame["error"]["code"].as_str().unwrap_or("ok").to_owned();
            *codes.entry(code).or_default() += 1;
        }
    }
    assert!(codes.keys().all(|c| c == "invalid_credentials" || c == "too_many_requests"), "{codes:?}");
    assert!(codes.contains_key("too_many_requests"), "calls in flight are bounded: {codes:?}");

    let (end, peak) = process.memory();
    println!(
        "login storm: RSS {} MiB at start, {} MiB after, peak {} MiB; HTTP {statuses:?}; socket {codes:?}",
        start / MIB,
        end / MIB,
        peak / MIB
    );
    assert!(peak < PEAK_BOUND, "peak RSS {} MiB is over the bound of {} MiB", peak / MIB, PEAK_BOUND / MIB);
}

/// 100 ordinary registrations and logins, 8 at a time: hashing reuses its memory, so the
/// process's RSS comes back near where it started (it grows by at most the hasher's blocks,
/// 19 MiB per core, and some page cache of the database).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_returns_after_ordinary_registrations() {
    let lifted = [("HERALD_AUTH_ACCOUNT_RATE", "unlimited"), ("HERALD_AUTH_ADDRESS_RATE", "unlimited")];
    let (process, base, _dir) = serve("registrations", &lifted).await;
    let client = herald_testkit::http::client();
    let (start, _) = process.memory();
    for batch in 0..13 {
        let users = (batch * 8..(batch * 8 + 8).min(100)).map(|n| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let email = format!("user{n}@example.org");
                register(&client, &base, &email).await;
                login(&client, &base, &email).await;
            }
        });
        futures::future::join_all(users).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (end, peak) = process.memory();
    println!("100 registrations: RSS {} MiB at start, {} MiB after, peak {} MiB", start / MIB, end / MIB, peak / MIB);
    assert!(end < start + 64 * MIB, "RSS went from {} MiB to {} MiB", start / MIB, end / MIB);
}

/// With the production limits, password checks are throttled per account (and per address)
/// on every transport, answered 429 with `Retry-After` before any hashing; a client that waits
/// as told gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_are_throttled_and_a_polite_client_gets_through() {
    let app = TestApp::start_with(Backend::Sqlite, "throttle", |env| {
        env.insert("HERALD_AUTH_ACCOUNT_RATE".into(), "30/m".into());
        env.insert("HERALD_AUTH_ADDRESS_RATE".into(), "600/m".into());
    })
    .await
    .expect("SQLite always runs");
    let token = app.user("ada@example.org").await;
    let wrong = json!({"email": "ada@example.org", "password": "wrong horse"});
    // A burst of a minute's worth (30, of which register and login took 2), then one per 2 s.
    let mut refused_after = None;
    for attempt in 0..40 {
        let reply = app.post("/api/v1/auth/login", None, &wrong).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            refused_after = Some((attempt, reply));
            break;
        }
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.body);
    }
    let (attempts, throttled) = refused_after.expect("the account is throttled");
    assert!((25..=32).contains(&attempts), "throttled after {attempts} wrong attempts");
    assert_eq!(throttled.code(), "too_many_requests");
    let wait: u64 = throttled.headers["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert_eq!(throttled.body["retry_after"], json!(wait), "the problem says it too");
    assert!((1..=2).contains(&wait), "one attempt refills in 2 s: {wait}");

    // Another account is not held back by ada's limit.
    app.user("bob@example.org").await;

    // The same limit on a socket `call`.
    let mut ws = WsClient::connect(&ws_url(&app.base), &token, "tab").await.expect("connect");
    let call = ws.call("auth.login", json!({"email": "ada@example.org", "password": "correct horse"})).await;
    assert_eq!(call["error"]["code"], "too_many_requests", "{call}");
    assert!(call["error"]["retry_after"].as_u64().is_some(), "{call}");
    ws.close().await;

    // Waiting as told lets the next attempt through.
    let again = loop {
        let reply =
            app.post("/api/v1/auth/login", None, &json!({"email": "ada@example.org", "password": "password123"})).await;
        if reply.status != StatusCode::TOO_MANY_REQUESTS {
            break reply;
        }
        let wait: u64 = reply.headers["retry-after"].to_str().expect("ascii").parse().expect("seconds");
        tokio::time::sleep(Duration::from_secs(wait)).await;
    };
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    app.stop().await;
}

/// Reads until the server closes the connection; how long that took.
async fn time_to_close(stream: &mut TcpStream, within: Duration) -> Duration {
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the connection was still open after {within:?}"),
        }
    }
}

/// A half-sent request head is cut at the header timeout; a request whose body stalls is cut at
/// the idle timeout; at the connection cap a new client waits until a slot frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_connections_are_capped() {
    let app = TestApp::start_with(Backend::Sqlite, "slowloris", |env| {
        env.insert("HERALD_HTTP_HEADER_TIMEOUT".into(), "1s".into());
        env.insert("HERALD_HTTP_IDLE_TIMEOUT".into(), "2s".into());
        env.insert("HERALD_HTTP_MAX_CONNECTIONS".into(), "3".into());
    })
    .await
    .expect("SQLite always runs");
    let addr = app.base.trim_start_matches("http://").to_owned();

    let mut half_head = TcpStream::connect(&addr).await.expect("connect");
    half_head.write_all(b"GET /healthz HTTP/1.1\r\nHost: herald\r\nX-Slow: ").await.expect("write");
    let took = time_to_close(&mut half_head, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(5), "a half-sent head stayed open {took:?}");

    let mut stalled_body = TcpStream::connect(&addr).await.expect("connect");
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":";
    stalled_body.write_all(head.as_bytes()).await.expect("write");
    let took = time_to_close(&mut stalled_body, Duration::from_secs(15)).await;
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "a stalled body was cut after {took:?}"
    );

    // The test app's own client may hold a pooled connection; take the remaining slots with
    // idle connections that have sent nothing (each is cut at the header timeout).
    let holders = futures::future::join_all((0..3).map(|_| TcpStream::connect(&addr))).await;
    let waited = std::time::Instant::now();
    let mut late = TcpStream::connect(&addr).await.expect("the kernel accepts into the backlog");
    late.write_all(b"GET /healthz HTTP/1.1\r\nHost: herald\r\nConnection: close\r\n\r\n").await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), late.read_to_end(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    assert!(waited.elapsed() >= Duration::from_millis(500), "served at once although every slot was taken");
    drop(holders);
    app.stop().await;
}

/// Every page and asset carries the security headers; a path that is not UTF-8 is a problem.
/// The demo's modules (the entry and those it imports) are JavaScript revalidated on each load,
/// and a module name the page does not have is the usual 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_security_headers_and_bad_paths_are_problems() {
    let app = TestApp::start(Backend::Sqlite, "headers").await.expect("SQLite always runs");
    for path in ["/demo/", "/demo/demo.js", "/demo/realtime.js", "/docs/", "/openapi.json", "/api/v1/me", "/healthz"] {
        let reply = app.client.get(app.url(path)).send().await.expect("get");
        let headers = reply.headers();
        assert_eq!(headers.get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]), "{path}");
        let csp = headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(headers.contains_key("referrer-policy"), "{path}");
    }
    for path in ["/demo/demo.js", "/demo/realtime.js"] {
        let reply = app.get(path, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.headers["content-type"], "text/javascript; charset=utf-8", "{path}");
        assert_eq!(reply.headers["cache-control"], "no-cache", "{path}");
    }
    let unknown = app.get("/demo/nothing.js", None).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "not_found"));
    for path in ["/api/v1/tasks/%FF", "/%C3", "/demo/%80"] {
        let reply = app.get(path, None).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "malformed_request"), "{path}");
        assert_eq!(reply.headers["content-type"], "application/problem+json", "{path}");
    }
    app.stop().await;
}

/// Secrets in store and provider URLs (userinfo and query) never reach `herald config` or the
/// start-up error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_urls_are_never_printed() {
    let dir = tempfile::tempdir().expect("data dir");
    let env = [
        ("HERALD_DATA_DIR", dir.path().display().to_string()),
        ("HERALD_STORE_URL", "postgres://app:topsecret@127.0.0.1:1/h?password=hunter2&sslmode=disable".to_owned()),
        ("HERALD_PROVIDER_URL", "http://sms.local/?api_key=k3y".to_owned()),
        ("HERALD_BROKER_URL", "amqp://mq:mqsecret@127.0.0.1:1/%2f".to_owned()),
    ];
    for args in [&["config"][..], &["serve"][..]] {
        let output = tokio::process::Command::new(herald_bin())
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .await
            .expect("run herald");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        for secret in ["topsecret", "hunter2", "k3y", "mqsecret"] {
            assert!(!text.contains(secret), "herald {args:?} printed {secret}:\n{text}");
        }
        assert!(text.contains("127.0.0.1:1"), "herald {args:?} says which store: {text}");
    }
}

/// A user has at most `HERALD_SESSIONS_PER_USER` sessions open (resuming one is not another), a
/// session at most `HERALD_SUBSCRIPTIONS_PER_SESSION` subscriptions and
/// `HERALD_SESSION_CALLS_IN_FLIGHT` unanswered requests; every request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_subscriptions_and_calls_are_capped() {
    let app = TestApp::start_with(Backend::Sqlite, "session_caps", |env| {
        env.insert("HERALD_SESSIONS_PER_USER".into(), "2".into());
        env.insert("HERALD_SUBSCRIPTIONS_PER_SESSION".into(), "2".into());
        env.insert("HERALD_SESSION_CALLS_IN_FLIGHT".into(), "2".into());
    })
    .await
    .expect("SQLite always runs");
    let token = app.user("ada@example.org").await;
    let me = app.get("/api/v1/me", Some(&token)).await.body["id"].as_str().expect("id").to_owned();
    let url = ws_url(&app.base);
    let mut first = WsClient::connect(&url, &token, "a").await.expect("first session");
    let second = WsClient::connect(&url, &token, "b").await.expect("second session");
    let Err(refused) = WsClient::connect(&url, &token, "c").await else { panic!("a third session is refused") };
    assert_eq!(refused["code"], "too_many_sessions", "{refused}");
    let resumed = WsClient::connect(&url, &token, "b").await.expect("resuming an open session is no new one");
    second.close().await;
    let other = app.user("bob@example.org").await;
    WsClient::connect(&url, &other, "c").await.expect("another user has room").close().await;

    let rooms: Vec<String> =
        futures::future::join_all(
            (0..2).map(|n| {
                let app = &app;
                let token = &token;
                async move {
                    app.post("/api/v1/rooms", Some(token), &json!({"name": format!("r{n}")})).await.body["id"].clone()
                }
            }),
        )
        .await
        .into_iter()
        .map(|id| format!("room:{}", id.as_str().expect("room id")))
        .collect();
    assert_eq!(first.subscribe(&format!("user:{me}"), None).await["ok"], true);
    assert_eq!(first.subscribe(&rooms[0], None).await["ok"], true);
    let over = first.subscribe(&rooms[1], None).await;
    assert_eq!(over["error"]["code"], "too_many_subscriptions", "{over}");
    assert_eq!(first.subscribe(&rooms[0], None).await["ok"], true, "subscribing again is no new subscription");
    first.request(json!({"op": "unsubscribe", "channel": rooms[0]})).await;
    assert_eq!(first.subscribe(&rooms[1], None).await["ok"], true, "room again after an unsubscribe");

    // Twenty slow calls at once (each checks a password): two run, the rest are refused at once.
    for id in 0..20 {
        first
            .send(json!({"op": "call", "id": 1000 + id, "command": "auth.login",
                "input": {"email": "ada@example.org", "password": "wrong horse"}}))
            .await;
    }
    let mut codes = Vec::new();
    while codes.len() < 20 {
        let frame = first.next_frame(Duration::from_secs(30)).await.expect("every call is answered");
        if frame["op"] == "reply" && frame["id"].as_u64().is_some_and(|id| id >= 1000) {
            codes.push(frame["error"]["code"].as_str().unwrap_or("ok").to_owned());
        }
    }
    assert!(codes.iter().all(|c| c == "invalid_credentials" || c == "too_many_requests"), "{codes:?}");
    assert!(codes.iter().filter(|c| *c == "too_many_requests").count() >= 10, "{codes:?}");
    assert!(codes.iter().any(|c| c == "invalid_credentials"), "{codes:?}");
    first.close().await;
    resumed.close().await;
    app.stop().await;
}

/// A gateway holds at most `max_sessions` connections, across users and counting handshakes in
/// progress: the next is refused (a 503 before the `/ws` upgrade, `unavailable` on Socket.io)
/// until one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_holds_at_most_max_sessions_connections() {
    let app = TestApp::start_with(Backend::Sqlite, "max_sessions", |env| {
        env.insert("HERALD_MAX_SESSIONS".into(), "2".into());
    })
    .await
    .expect("SQLite always runs");
    let (ada, bob) = (app.user("ada@example.org").await, app.user("bob@example.org").await);
    let url = ws_url(&app.base);
    let first = WsClient::connect(&url, &ada, "a").await.expect("first");
    // A connection that has not said hello yet holds its place too.
    let (pending, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("upgrade");
    let refused = herald_testkit::http::client()
        .get(format!("{}/ws", app.base))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem: Value = refused.json().await.expect("problem");
    assert_eq!(problem["code"], "unavailable", "{problem}");
    if let Some(mut sio) = herald_testkit::node::SioClient::spawn() {
        let refused = sio.connect(&app.base, &bob, "tab").await.expect_err("full");
        assert!(refused.to_string().contains("unavailable"), "{refused}");
        drop(sio);
    }
    // One leaves: another user's session gets its place.
    drop(pending);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let second = loop {
        match WsClient::connect(&url, &bob, "b").await {
            Ok(second) => break second,
            Err(err) => {
                assert!(tokio::time::Instant::now() < deadline, "the place never came back: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    first.close().await;
    second.close().await;
    app.stop().await;
}
