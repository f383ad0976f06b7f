//! Outbound TLS, over real handshakes on loopback: the provider and a webhook receiver behind a
//! TLS front whose certificates the test makes, trusted through `HERALD_HTTP_CA_FILE`; a
//! certificate for another name and one nobody signed both refused as `tls` (the user learns no
//! more); and the destination guard holding for `https://` as for `http://`, up to a name that
//! turns inward after it was set.

use std::{sync::Arc, time::Duration};

use herald_testkit::{
    Backend, TestApp,
    mock_provider::MockProvider,
    tls::{ServerCert, TestCa, TlsFront},
};
use reqwest::StatusCode;
use serde_json::json;

use crate::webhook_kit::{Names, PUBLIC, Receiver, remind_soon, set_webhook, start_trusting, webhook_notification};

/// The test CA, written where `HERALD_HTTP_CA_FILE` can name it.
fn ca_file(ca: &TestCa) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("CA file");
    ca.write(file.path());
    file
}

/// An app whose provider is `https://localhost:<port>`, trusted through `ca_file`.
async fn provider_app(test: &str, port: u16, ca_file: &tempfile::NamedTempFile) -> TestApp {
    let (url, path) = (format!("https://localhost:{port}"), ca_file.path().display().to_string());
    TestApp::start_with(Backend::Sqlite, test, |env| {
        env.insert("HERALD_PROVIDER_URL".into(), url);
        env.insert("HERALD_PROVIDER_TOKEN".into(), "tls-token".into());
        env.insert("HERALD_HTTP_CA_FILE".into(), path);
        env.insert("HERALD_SCHEDULER_INTERVAL".into(), "100ms".into());
        env.insert("HERALD_MAILINGS_SCHEDULE".into(), "@every 1s".into());
    })
    .await
    .expect("SQLite always runs")
}

/// A mailing to one client that starts now: one provider call.
async fn text_one_client(app: &TestApp) {
    let admin = app.admin("ops@example.org").await;
    let reply = app.post("/api/v1/clients", Some(&admin), &json!({"phone": "79160000001"})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let start = chrono::Utc::now();
    let body = json!({"start_at": start, "end_at": start + chrono::Duration::hours(1), "text": "over TLS"});
    let reply = app.post("/api/v1/mailings", Some(&admin), &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_provider_is_reached_over_https_through_the_operators_ca() {
    let ca = TestCa::new();
    let ca_path = ca_file(&ca);
    let provider = MockProvider::start("tls-token").await;
    let front = TlsFront::start(provider.addr(), &ca.issue(&["localhost"])).await;
    let app = provider_app("provider_over_https", front.addr.port(), &ca_path).await;
    text_one_client(&app).await;
    provider.wait_accepted(1, Duration::from_secs(20)).await.expect("the text reaches the provider over TLS");
    assert!(front.handshakes() >= 1, "it went through the TLS front");
    assert_eq!(front.failed_handshakes(), 0);
    app.stop().await;
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_delivered_over_https_and_signed() {
    let ca = TestCa::new();
    let names = Arc::new(Names::default());
    names.point("hooks.example.test", &["127.0.0.1"]);
    let receiver = Receiver::start(200).await;
    let front = TlsFront::start(receiver.addr(), &ca.issue(&["hooks.example.test"])).await;
    let (app, _ca_file) = start_trusting("webhook_over_https", Some(names), &ca, |env| {
        env.insert("HERALD_WEBHOOK_ALLOWED_NETWORKS".into(), "127.0.0.0/8".into());
    })
    .await;
    let token = app.user("ada@example.org").await;
    let url = format!("https://hooks.example.test:{}/hook", front.addr.port());
    let set = set_webhook(&app, &token, &url).await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    let (event, _) = remind_soon(&app, &token, 0).await;
    let hook = webhook_notification(&app, &token, &event, |n| n["status"] == "sent").await;
    assert_eq!(hook["attempts"], 1, "{hook}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let signature = requests[0].header("herald-signature").expect("signed");
    assert!(
        herald_workers::channels::verify(
            crate::webhook_kit::SECRET,
            signature,
            &requests[0].body,
            chrono::Utc::now(),
            Duration::from_secs(300)
        ),
        "{signature}"
    );
    assert_eq!(front.handshakes(), 1, "one connection, one handshake");
    app.stop().await;
}

/// A certificate for another name and one nobody signed: the handshake fails, the delivery is
/// retried as for a host that is down, and the user sees `tls`, nothing of the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_or_from_nobody_is_refused_as_tls() {
    let ca = TestCa::new();
    let names = Arc::new(Names::default());
    names.point("hooks.example.test", &["127.0.0.1"]);
    let receiver = Receiver::start(200).await;
    let other_name = TlsFront::start(receiver.addr(), &ca.issue(&["other.example.test"])).await;
    let unsigned = TlsFront::start(receiver.addr(), &ServerCert::self_signed(&["hooks.example.test"])).await;
    let (app, _ca_file) = start_trusting("webhook_tls_refused", Some(names), &ca, |env| {
        env.insert("HERALD_WEBHOOK_ALLOWED_NETWORKS".into(), "127.0.0.0/8".into());
    })
    .await;
    for (who, front) in [("ada", &other_name), ("bob", &unsigned)] {
        let token = app.user(&format!("{who}@example.org")).await;
        let url = format!("https://hooks.example.test:{}/hook", front.addr.port());
        assert_eq!(set_webhook(&app, &token, &url).await.status, StatusCode::OK);
        let (event, _) = remind_soon(&app, &token, 0).await;
        let hook = webhook_notification(&app, &token, &event, |n| n["attempts"].as_u64() >= Some(1)).await;
        assert_eq!((&hook["status"], &hook["last_error"]), (&json!("pending"), &json!("tls")), "{who}: {hook}");
        assert!(front.failed_handshakes() >= 1, "{who}: the handshake was tried and failed");
    }
    assert!(receiver.requests().is_empty(), "nothing reached the receiver");
    app.stop().await;
}

/// The guard over `https://`: internal addresses are refused when set, and a name that turns
/// inward after it was set is refused before any connection, TLS or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_guard_holds_for_https() {
    let ca = TestCa::new();
    let names = Arc::new(Names::default());
    names.point("hooks.example.test", &[PUBLIC]);
    let receiver = Receiver::start(200).await;
    let front = TlsFront::start(receiver.addr(), &ca.issue(&["hooks.example.test", "127.0.0.1"])).await;
    let (app, _ca_file) = start_trusting("guard_over_https", Some(names.clone()), &ca, |_| {}).await;
    let token = app.user("ada@example.org").await;
    for host in ["127.0.0.1", "[::1]", "10.0.0.1", "169.254.169.254", "[::ffff:127.0.0.1]"] {
        let reply = set_webhook(&app, &token, &format!("https://{host}:{}/hook", front.addr.port())).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{host}");
    }
    let url = format!("https://hooks.example.test:{}/hook", front.addr.port());
    assert_eq!(set_webhook(&app, &token, &url).await.status, StatusCode::OK, "public when set");
    names.point("hooks.example.test", &["127.0.0.1"]);
    let (event, _) = remind_soon(&app, &token, 0).await;
    let hook = webhook_notification(&app, &token, &event, |n| n["attempts"].as_u64() >= Some(1)).await;
    assert_eq!((&hook["status"], &hook["last_error"]), (&json!("pending"), &json!("unreachable")), "{hook}");
    assert_eq!((front.handshakes(), front.failed_handshakes()), (0, 0), "no connection was made");
    app.stop().await;
}

/// A server that offers HTTP/2 by ALPN is called over HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_is_called_over_http2_when_it_offers_it() {
    let ca = TestCa::new();
    let ca_path = ca_file(&ca);
    let server = herald_testkit::h2_server::H2Server::start(&ca.issue(&["localhost"])).await;
    let app = provider_app("provider_over_http2", server.addr.port(), &ca_path).await;
    text_one_client(&app).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while server.seen().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the provider was never called");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (version, path) = server.seen()[0].clone();
    assert_eq!(version, reqwest::Version::HTTP_2, "{path}");
    assert!(path.starts_with("/v1/send/"), "{path}");
    app.stop().await;
}
