//! Webhook destinations, over real HTTP: internal addresses are refused when a webhook is set and
//! again when it is called, a user learns nothing about the network from `last_error`, and one
//! user's dead webhook does not hold back another's.
//!
//! Nothing here leaves loopback: names resolve through `Names`, and every refused address is
//! refused before a connection is tried.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::webhook_kit::{Names, PUBLIC, Receiver, WEBHOOK, remind_soon, set_webhook, start, webhook_notification};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_addresses_are_refused_when_a_webhook_is_set() {
    let app = start("internal_addresses_refused", Some(Arc::new(Names::default())), |_| {}).await;
    let token = app.user("ada@example.org").await;
    let previous = format!("http://{PUBLIC}/hook");
    let set = set_webhook(&app, &token, &previous).await;
    assert_eq!(set.status, StatusCode::OK, "a public address is accepted: {:?}", set.body);
    for (host, class) in [
        ("127.0.0.1", "loopback"),
        ("127.1.2.3", "loopback"),
        ("[::1]", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("[::]", "unspecified"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared"),
        ("169.254.169.254", "link-local"),
        ("[fe80::1]", "link-local"),
        ("[fd00::1]", "unique-local"),
        ("224.0.0.1", "multicast"),
        ("[::ffff:127.0.0.1]", "loopback"),
        // IPv6 forms that embed an IPv4 address are that address; 6to4, Teredo and local-use
        // NAT64 are refused whole.
        ("[::ffff:0:10.0.0.1]", "private"),
        ("[::127.0.0.1]", "loopback"),
        ("[64:ff9b::169.254.169.254]", "link-local"),
        ("[64:ff9b:1::a00:1]", "local-use NAT64"),
        ("[2002:7f00:1::1]", "6to4"),
        ("[2001:0:4136:e378:8000:63bf:a247:d8dd]", "Teredo"),
        // Forms a URL parser reads as an address, and userinfo in front of one.
        ("user:pass@127.0.0.1", "loopback"),
        ("127.1", ""),
        ("2130706433", ""),
        ("0x7f.0.0.1", ""),
    ] {
        let reply = set_webhook(&app, &token, &format!("http://{host}:18999/internal/admin/delete-all")).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{host}");
        assert_eq!(reply.body["errors"][0]["field"], "url", "{host}: {:?}", reply.body);
        let message = reply.body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(class), "{host}: {message:?} names the class");
        assert_eq!(app.get(WEBHOOK, Some(&token)).await.body["url"], previous, "{host}: nothing stored");
    }
    let public = format!("http://[64:ff9b::{PUBLIC}]/hook");
    let set = set_webhook(&app, &token, &public).await;
    assert_eq!(set.status, StatusCode::OK, "a public address through NAT64 is accepted: {:?}", set.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_is_refused_when_set_and_its_listener_is_never_called() {
    // The system resolver, as in production: `localhost` resolves from the hosts file.
    let app = start("localhost_refused", None, |_| {}).await;
    let token = app.user("ada@example.org").await;
    let listener = Receiver::start(200).await;
    let reply = set_webhook(&app, &token, &format!("http://localhost:{}/hook", listener.port)).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    assert_eq!(reply.fields(), ["url"]);
    assert_eq!(app.get(WEBHOOK, Some(&token)).await.body["url"], Value::Null);
    assert_eq!(listener.connections(), 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_or_points_inward_is_refused_alike() {
    let names = Arc::new(Names::default());
    names.point("db.corp.example", &["10.1.2.3"]);
    names.point("mixed.example", &[PUBLIC, "192.168.0.9"]);
    let app = start("names_refused", Some(names), |_| {}).await;
    let token = app.user("ada@example.org").await;
    let mut messages = Vec::new();
    for url in ["http://nowhere.example/hook", "http://db.corp.example/hook", "http://mixed.example:8080/hook"] {
        let reply = set_webhook(&app, &token, url).await;
        assert_eq!((reply.status, reply.fields()), (StatusCode::UNPROCESSABLE_ENTITY, vec!["url".to_owned()]), "{url}");
        messages.push(reply.body["errors"][0]["message"].clone());
    }
    assert!(
        messages.windows(2).all(|m| m[0] == m[1]),
        "one message, so internal names are not told apart: {messages:?}"
    );
    assert_eq!(app.get(WEBHOOK, Some(&token)).await.body["url"], Value::Null);
    app.stop().await;
}

/// Each name a user sets costs a look-up the user chooses: an account gets only so many, then a
/// 429 with `Retry-After` before the resolver is asked; literal addresses cost none, and another
/// account is not held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_names_are_looked_up_only_so_often_per_account() {
    let names = Arc::new(Names::default());
    names.point("hooks.example", &[PUBLIC]);
    let app = start("lookup_rate", Some(names.clone()), |env| {
        env.insert("HERALD_WEBHOOK_LOOKUP_RATE".into(), "3/m".into());
    })
    .await;
    let ada = app.user("ada@example.org").await;
    for n in 0..3 {
        let reply = set_webhook(&app, &ada, &format!("http://hooks.example/{n}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    }
    let refused = set_webhook(&app, &ada, "http://hooks.example/3").await;
    assert_eq!((refused.status, refused.code()), (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"));
    assert!(refused.headers.contains_key("retry-after"), "{:?}", refused.headers);
    assert_eq!(app.get(WEBHOOK, Some(&ada)).await.body["url"], "http://hooks.example/2", "nothing stored");
    assert_eq!(names.lookups(), 3, "the refused name was never looked up");

    let literal = format!("http://{PUBLIC}/hook");
    assert_eq!(set_webhook(&app, &ada, &literal).await.status, StatusCode::OK, "an address needs no look-up");
    let bob = app.user("bob@example.org").await;
    assert_eq!(set_webhook(&app, &bob, "http://hooks.example/bob").await.status, StatusCode::OK);
    assert_eq!(names.lookups(), 4);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_network_is_accepted() {
    let app = start("allowed_network", Some(Arc::new(Names::default())), |env| {
        env.insert("HERALD_WEBHOOK_ALLOWED_NETWORKS".into(), "127.0.0.0/8".into());
    })
    .await;
    let token = app.user("ada@example.org").await;
    let url = "http://127.0.0.1:18999/hook";
    let reply = set_webhook(&app, &token, url).await;
    assert_eq!((reply.status, &reply.body["url"]), (StatusCode::OK, &json!(url)));
    assert_eq!(app.get(WEBHOOK, Some(&token)).await.body["url"], url);
    let v6 = set_webhook(&app, &token, "http://[::1]:18999/hook").await;
    assert_eq!(v6.status, StatusCode::UNPROCESSABLE_ENTITY, "::1 is not in 127.0.0.0/8");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_points_inward_after_it_was_set_is_refused_at_connect_time() {
    let names = Arc::new(Names::default());
    names.point("hooks.example.test", &[PUBLIC]);
    let app = start("inward_at_connect_time", Some(names.clone()), |_| {}).await;
    let token = app.user("ada@example.org").await;
    let listener = Receiver::start(200).await;
    let url = format!("http://hooks.example.test:{}/hook", listener.port);
    let set = set_webhook(&app, &token, &url).await;
    assert_eq!(set.status, StatusCode::OK, "public when set: {:?}", set.body);

    // Rebound: the name now points at the loopback listener.
    names.point("hooks.example.test", &["127.0.0.1"]);
    let (event, _) = remind_soon(&app, &token, 0).await;
    let hook = webhook_notification(&app, &token, &event, |n| n["attempts"].as_u64() >= Some(1)).await;
    assert_eq!(hook["status"], "pending", "retried, as a host that is down: {hook}");
    assert_eq!(hook["last_error"], "unreachable", "{hook}");
    assert_eq!(listener.connections(), 0, "no connection was made");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_error_says_only_unreachable_or_the_status() {
    let app = start("last_error_terse", Some(Arc::new(Names::default())), |env| {
        env.insert("HERALD_WEBHOOK_ALLOWED_NETWORKS".into(), "127.0.0.0/8".into());
    })
    .await;
    let missing = Receiver::start(404).await;
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr").port();
    for (port, status, error) in
        [(missing.port, "failed", "rejected with HTTP 404"), (closed, "pending", "unreachable")]
    {
        let token = app.user(&format!("u{port}@example.org")).await;
        assert_eq!(set_webhook(&app, &token, &format!("http://127.0.0.1:{port}/x")).await.status, StatusCode::OK);
        let (event, _) = remind_soon(&app, &token, 0).await;
        let hook = webhook_notification(&app, &token, &event, |n| n["attempts"].as_u64() >= Some(1)).await;
        assert_eq!((&hook["status"], &hook["last_error"]), (&json!(status), &json!(error)), "{hook}");
    }
    app.stop().await;
}

/// Two users, two loopback hosts; one answers 500. Once its breaker is open (threshold 2, open
/// for 10 minutes), the other user's reminder still goes out on time. With one breaker for the
/// whole webhook channel the second user's delivery would be deferred for those 10 minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_does_not_hold_back_another_users_reminder() {
    let app = start("noisy_neighbour", Some(Arc::new(Names::default())), |env| {
        env.insert("HERALD_WEBHOOK_ALLOWED_NETWORKS".into(), "127.0.0.0/8".into());
        env.insert("HERALD_BREAKER_THRESHOLD".into(), "2".into());
        env.insert("HERALD_BREAKER_OPEN".into(), "10m".into());
    })
    .await;
    let dead = Receiver::start(500).await;
    let alive = Receiver::start(200).await;
    let noisy = app.user("noisy@example.org").await;
    let victim = app.user("victim@example.org").await;
    assert_eq!(set_webhook(&app, &noisy, &format!("http://127.0.0.1:{}/hook", dead.port)).await.status, StatusCode::OK);
    assert_eq!(
        set_webhook(&app, &victim, &format!("http://127.0.0.1:{}/hook", alive.port)).await.status,
        StatusCode::OK
    );

    let (first, _) = remind_soon(&app, &noisy, 0).await;
    let (second, _) = remind_soon(&app, &noisy, 1).await;
    // The breaker is open once a retry is deferred rather than tried.
    let circuit_open = |n: &Value| n["last_error"].as_str().is_some_and(|e| e.contains("circuit"));
    tokio::select! {
        _ = webhook_notification(&app, &noisy, &first, circuit_open) => {}
        _ = webhook_notification(&app, &noisy, &second, circuit_open) => {}
    }
    let calls = dead.arrivals().len();
    assert!((2..=3).contains(&calls), "the breaker opened after its threshold: {calls} calls");

    let (reminder, due) = remind_soon(&app, &victim, 0).await;
    // `sending` (claimed, its outcome not yet reported) passes on its way to the outcome.
    let sent = webhook_notification(&app, &victim, &reminder, |n| {
        !matches!(n["status"].as_str(), Some("pending" | "sending"))
    })
    .await;
    assert_eq!((&sent["status"], &sent["attempts"]), (&json!("sent"), &json!(1)), "{sent}");
    let arrived = alive.arrivals();
    assert_eq!(arrived.len(), 1);
    let late = arrived[0] - due;
    assert!(late < chrono::Duration::seconds(5), "arrived {late} after it was due");
    assert_eq!(dead.arrivals().len(), calls, "the dead host is still left alone");
    app.stop().await;
}
