//! Webhooks a receiver can verify, to the Standard Webhooks specification, checked by its
//! reference library (PyPI's `standardwebhooks`, in the test command's virtualenv) and not only
//! by Herald's code: the secret is given once when a webhook is set, kept when the URL changes,
//! and rotated with the old secret signing beside the new one; webhooks work without the
//! server-wide `HERALD_WEBHOOK_SECRET`; webhooks set before secrets existed get one on migrating.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::webhook_kit::{Names, Received, Receiver, WEBHOOK, remind_soon, set_webhook, start, webhook_notification};

/// Whether the reference library verifies `call` under `secret`.
async fn verifies(python: &str, secret: &str, call: &Received) -> Result<(), String> {
    let headers: serde_json::Map<String, Value> =
        call.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), Value::from(v.as_str()))).collect();
    let body = String::from_utf8(call.body.clone()).expect("a JSON body");
    let file = tempfile::NamedTempFile::new().expect("call file");
    std::fs::write(file.path(), json!({"headers": headers, "body": body}).to_string()).expect("write");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/verify_webhook.py");
    let output = tokio::process::Command::new(python)
        .args([script, secret, &file.path().display().to_string()])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {python} {script}: {e}"));
    if output.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&output.stderr).into_owned()) }
}

/// Waits for the receiver's `n`th call.
async fn call(receiver: &Receiver, n: usize) -> Received {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(call) = receiver.requests().get(n - 1) {
            return call.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no call {n}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_verifies_each_call_with_the_reference_library_through_a_rotation() {
    let test = "a_receiver_verifies_each_call_with_the_reference_library";
    let Some(python) = herald_testkit::backend_url("HERALD_TEST_PYTHON", test) else { return };
    let receiver = Receiver::start(200).await;
    let names = Arc::new(Names::default());
    let app = start("standard_webhooks", Some(names), |env| {
        env.insert("HERALD_WEBHOOK_ALLOWED_NETWORKS".into(), "127.0.0.0/8".into());
        // Webhooks need no server-wide secret.
        env.remove("HERALD_WEBHOOK_SECRET");
    })
    .await;
    let token = app.user("ada@example.org").await;
    let url = format!("http://127.0.0.1:{}/hook", receiver.port);
    let set = set_webhook(&app, &token, &url).await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    let secret = set.body["secret"].as_str().expect("the secret, given once").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(app.get(WEBHOOK, Some(&token)).await.body, json!({"url": url}), "not shown again");
    let moved = set_webhook(&app, &token, &format!("{url}?v=2")).await;
    assert_eq!(moved.body, json!({"url": format!("{url}?v=2")}), "another URL keeps the secret");

    let (event, _) = remind_soon(&app, &token, 0).await;
    webhook_notification(&app, &token, &event, |n| n["status"] == "sent").await;
    let first = call(&receiver, 1).await;
    assert!(first.header("herald-signature").is_none(), "no deprecated header without HERALD_WEBHOOK_SECRET");
    assert_eq!(first.header("webhook-signature").map(|s| s.split(' ').count()), Some(1));
    verifies(&python, &secret, &first).await.expect("the reference library verifies it");
    assert!(verifies(&python, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &first).await.is_err(), "not another's");
    let mut forged = first.clone();
    forged.body = br#"{"forged":true}"#.to_vec();
    assert!(verifies(&python, &secret, &forged).await.is_err(), "nor another body");

    let rotated = app.send(Method::POST, &format!("{WEBHOOK}/rotate-secret"), Some(&token), None).await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let new_secret = rotated.body["secret"].as_str().expect("the new secret").to_owned();
    assert_ne!(new_secret, secret);
    let (event, _) = remind_soon(&app, &token, 1).await;
    webhook_notification(&app, &token, &event, |n| n["status"] == "sent").await;
    let second = call(&receiver, 2).await;
    assert_eq!(second.header("webhook-signature").map(|s| s.split(' ').count()), Some(2), "both sign");
    verifies(&python, &new_secret, &second).await.expect("a receiver that switched verifies");
    verifies(&python, &secret, &second).await.expect("a receiver that did not yet verifies too");
    assert_eq!(first.header("webhook-id").map(str::len), Some(36), "the delivery's id");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_without_a_webhook_is_not_found_and_removing_forgets_the_secret() {
    let app = start("rotate_without_webhook", Some(Arc::new(Names::default())), |env| {
        env.insert("HERALD_WEBHOOK_ALLOWED_NETWORKS".into(), "127.0.0.0/8".into());
    })
    .await;
    let token = app.user("ada@example.org").await;
    let rotate = format!("{WEBHOOK}/rotate-secret");
    let none = app.send(Method::POST, &rotate, Some(&token), None).await;
    assert_eq!((none.status, none.code()), (StatusCode::NOT_FOUND, "not_found"), "{:?}", none.body);
    let first = set_webhook(&app, &token, "http://127.0.0.1:9/a").await.body["secret"].clone();
    assert!(set_webhook(&app, &token, &Value::Null.to_string()).await.status.is_client_error(), "not a URL");
    let removed = app.send(Method::PUT, WEBHOOK, Some(&token), Some(&json!({"url": null}))).await;
    assert_eq!(removed.body, json!({"url": null}));
    let again = set_webhook(&app, &token, "http://127.0.0.1:9/a").await.body["secret"].clone();
    assert!(again.is_string() && again != first, "set anew, a new secret: {first} {again}");
    app.stop().await;
}

/// Webhooks set before webhooks had secrets get one when the store migrates, on each store.
#[tokio::test]
async fn webhooks_set_before_secrets_existed_get_one_on_migrating() {
    use herald_core::{user::WebhookUrl, webhook::WebhookSecret};
    let stores = [
        Some(herald_testkit::TestStore::sqlite().await),
        herald_testkit::TestStore::postgres("webhooks_set_before_secrets").await,
    ];
    for db in stores.into_iter().flatten() {
        let store = db.store.clone();
        let ada = herald_testkit::store_suite::owner(store.as_ref(), "ada@example.org").await;
        let url = WebhookUrl::parse("https://hooks.example.org/a").expect("url");
        store.set_webhook(ada, Some(&url), &WebhookSecret::generate()).await.expect("set");
        db.raw_sql("UPDATE users SET webhook_secret = NULL").await;
        let now = chrono::Utc::now();
        assert_eq!(store.webhook_keys(ada, now).await.expect("keys"), None, "as before the migration");
        store.migrate().await.expect("migrate again");
        let keys = store.webhook_keys(ada, now).await.expect("keys").expect("a secret now");
        assert!(keys.current.expose().starts_with("whsec_"));
        assert_eq!(store.fill_webhook_secrets().await.expect("fill"), 0, "once");
        db.finish().await;
    }
}
