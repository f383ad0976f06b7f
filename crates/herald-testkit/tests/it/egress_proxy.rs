//! Egress through the operator's proxy (`HERALD_HTTPS_PROXY`): `https://` webhook calls go through
//! it by `CONNECT`, the destination guard checks the name at Herald's side before the proxy is
//! asked (so a name that turned inward is refused without reaching the proxy), and
//! `HERALD_NO_PROXY` names hosts reached directly.

use std::sync::Arc;

use herald_testkit::{
    connect_proxy::ConnectProxy,
    tls::{TestCa, TlsFront},
};
use reqwest::StatusCode;
use serde_json::json;

use crate::webhook_kit::{Names, PUBLIC, Receiver, remind_soon, set_webhook, start_trusting, webhook_notification};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhooks_go_through_the_proxy_after_the_guard_checked_them() {
    let ca = TestCa::new();
    let receiver = Receiver::start(200).await;
    let front = TlsFront::start(receiver.addr(), &ca.issue(&["hooks.example.test", "inward.example.test"])).await;
    let loopback = "127.0.0.1".parse().expect("ip");
    // The proxy would reach both names: only the guard keeps the second from it.
    let proxy = ConnectProxy::start(&[("hooks.example.test", loopback), ("inward.example.test", loopback)]).await;
    let names = Arc::new(Names::default());
    names.point("hooks.example.test", &["127.0.0.1"]);
    names.point("inward.example.test", &[PUBLIC]);
    let proxy_url = proxy.url();
    let (app, _ca_file) = start_trusting("webhooks_through_a_proxy", Some(names.clone()), &ca, |env| {
        env.insert("HERALD_WEBHOOK_ALLOWED_NETWORKS".into(), "127.0.0.0/8".into());
        env.insert("HERALD_HTTPS_PROXY".into(), proxy_url);
    })
    .await;
    let port = front.addr.port();

    let ada = app.user("ada@example.org").await;
    let url = format!("https://hooks.example.test:{port}/hook");
    assert_eq!(set_webhook(&app, &ada, &url).await.status, StatusCode::OK);
    let (event, _) = remind_soon(&app, &ada, 0).await;
    webhook_notification(&app, &ada, &event, |n| n["status"] == "sent").await;
    assert_eq!(proxy.asked(), [format!("hooks.example.test:{port}")], "through the proxy, by name");
    assert_eq!(receiver.requests().len(), 1);

    let bob = app.user("bob@example.org").await;
    let url = format!("https://inward.example.test:{port}/hook");
    assert_eq!(set_webhook(&app, &bob, &url).await.status, StatusCode::OK, "public when set");
    names.point("inward.example.test", &["169.254.169.254"]);
    let (event, _) = remind_soon(&app, &bob, 0).await;
    let hook = webhook_notification(&app, &bob, &event, |n| n["attempts"].as_u64() >= Some(1)).await;
    assert_eq!((&hook["status"], &hook["last_error"]), (&json!("pending"), &json!("unreachable")), "{hook}");
    assert_eq!(proxy.asked().len(), 1, "the proxy was never asked for the refused name");
    assert_eq!(receiver.requests().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_in_no_proxy_are_reached_directly() {
    let ca = TestCa::new();
    let receiver = Receiver::start(200).await;
    let front = TlsFront::start(receiver.addr(), &ca.issue(&["hooks.example.test"])).await;
    let proxy = ConnectProxy::start(&[]).await;
    let names = Arc::new(Names::default());
    names.point("hooks.example.test", &["127.0.0.1"]);
    let proxy_url = proxy.url();
    let (app, _ca_file) = start_trusting("no_proxy_hosts", Some(names), &ca, |env| {
        env.insert("HERALD_WEBHOOK_ALLOWED_NETWORKS".into(), "127.0.0.0/8".into());
        env.insert("HERALD_HTTPS_PROXY".into(), proxy_url);
        env.insert("HERALD_NO_PROXY".into(), "intranet.example, .example.test".into());
    })
    .await;
    let ada = app.user("ada@example.org").await;
    let url = format!("https://hooks.example.test:{}/hook", front.addr.port());
    assert_eq!(set_webhook(&app, &ada, &url).await.status, StatusCode::OK);
    let (event, _) = remind_soon(&app, &ada, 0).await;
    webhook_notification(&app, &ada, &event, |n| n["status"] == "sent").await;
    assert!(proxy.asked().is_empty(), "{:?}", proxy.asked());
    assert_eq!(front.handshakes(), 1);
    app.stop().await;
}
