//! Poison records: a notice with two in-app steps (as stored before they were refused) and a
//! delivery row spoiled with raw SQL do not stop the scheduler; another person's text goes on
//! time, the spoiled row is quarantined, and an administrator retries it once it is mended.

use std::time::Duration;

use chrono::Utc;
use herald_core::{
    delivery::{Channel, DeliveryId, DeliveryStatus, NewDelivery},
    notice::{NoticeStatus, StepStatus},
    notify::NoticeChannel,
    user::UserId,
};
use herald_testkit::{Backend, TestApp, mock_provider::MockProvider, store_suite::new_notice};
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_records_are_held_while_others_go_sqlite() {
    poison_records_are_held_while_others_go(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_records_are_held_while_others_go_postgres() {
    poison_records_are_held_while_others_go(Backend::Postgres).await;
}

/// Polls `check` every 20 ms for up to 20 s.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn poison_records_are_held_while_others_go(backend: Backend) {
    let provider = MockProvider::start("poison-token").await;
    let url = provider.base_url();
    let Some(app) = TestApp::start_with(backend, "poison_records", |env| {
        env.insert("HERALD_PROVIDER_URL".into(), url);
        env.insert("HERALD_PROVIDER_TOKEN".into(), "poison-token".into());
        env.insert("HERALD_SCHEDULER_INTERVAL".into(), "50ms".into());
    })
    .await
    else {
        return;
    };
    let admin = app.admin("ops@example.org").await;

    // A notice with two in-app steps is refused now, naming the second.
    let ada_token = app.user("ada@example.org").await;
    let ada = app.get("/api/v1/me", Some(&ada_token)).await.body["id"].as_str().expect("id").to_owned();
    let steps = json!([{"channel": "realtime", "after": 0}, {"channel": "realtime", "after": 1}]);
    let refused = app
        .post(
            "/api/v1/notifications",
            Some(&admin),
            &json!({"user_id": ada, "type": "alert", "title": "Hi", "steps": steps}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", refused.body);
    assert_eq!(refused.fields(), ["steps.1.channel"]);

    // One stored by an older Herald goes: its in-app event once, the second step skipped.
    let now = Utc::now();
    let twice = new_notice(
        UserId(ada.parse().expect("uuid")),
        "user:admin",
        &[(NoticeChannel::Realtime, 0), (NoticeChannel::Realtime, 1)],
        now,
    );
    app.store().create_notice(&twice, None).await.expect("store the notice");

    // A delivery spoiled outside Herald: an attempt count no delivery can have.
    let spoiled = DeliveryId::new();
    let key = format!("poison:{spoiled}");
    let log = NewDelivery {
        id: spoiled,
        kind: "test.note".into(),
        source_key: key.clone(),
        recipient: "ops".into(),
        channel: Channel::Log,
        payload: json!({"note": "spoiled"}),
        source_id: None,
        recipient_id: None,
        next_attempt_at: now + chrono::Duration::hours(1),
        deadline: None,
        created_at: now,
        trace_context: None,
    };
    app.store().create_deliveries(&[log]).await.expect("create");
    app.raw_sql(&format!(
        "UPDATE deliveries SET attempts = -1, next_attempt_at = created_at WHERE source_key = '{key}'"
    ))
    .await;

    // Bob's text goes at once all the same.
    let bob_token = app.user("bob@example.org").await;
    let patched =
        app.send(Method::PATCH, "/api/v1/me", Some(&bob_token), Some(&json!({"phone": "+4915112345678"}))).await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    let bob = app.get("/api/v1/me", Some(&bob_token)).await.body["id"].as_str().expect("id").to_owned();
    let sms = json!({"user_id": bob, "type": "alert", "title": "Your code is 1234", "steps": [{"channel": "sms", "after": 0}]});
    let made = app.post("/api/v1/notifications", Some(&admin), &sms).await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let sms_id = made.body["id"].as_str().expect("id").to_owned();
    eventually("Bob's text is sent", async || {
        let notice = app.get(&format!("/api/v1/notifications/{sms_id}"), Some(&admin)).await;
        (notice.body["steps"][0]["status"] == "sent").then_some(())
    })
    .await;

    let handled = eventually("the notice with two in-app steps settles", async || {
        let n = app.store().notice(twice.id).await.expect("read").expect("stored");
        (n.status != NoticeStatus::Pending).then_some(n)
    })
    .await;
    assert_eq!(handled.status, NoticeStatus::Delivered);
    assert_eq!(handled.steps.iter().map(|s| s.status).collect::<Vec<_>>(), [StepStatus::Sent, StepStatus::Skipped]);

    // The spoiled row is quarantined at once, named with its worker and reason, and counted.
    let held = eventually("the spoiled delivery is quarantined", async || {
        let list = app.get("/api/v1/quarantine", Some(&admin)).await;
        assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
        list.body["items"].as_array().and_then(|items| items.first().cloned())
    })
    .await;
    assert_eq!((held["worker"].as_str(), held["reason"].as_str()), (Some("scheduler"), Some("unreadable")), "{held}");
    assert_eq!(held["record"], spoiled.to_string());
    assert!(held["quarantined_at"].is_string(), "{held}");
    let metrics = app.client.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(
        metrics.contains(r#"herald_worker_item_failures_total{worker="scheduler",reason="unreadable"} 1"#),
        "{metrics}"
    );
    // Left pending and unclaimed, not sent.
    let row = app.store().delivery(spoiled).await;
    assert!(row.is_err() || row.is_ok_and(|d| d.is_none_or(|d| d.status == DeliveryStatus::Pending)));

    // People other than administrators cannot see or retry it.
    assert_eq!(app.get("/api/v1/quarantine", Some(&bob_token)).await.status, StatusCode::FORBIDDEN);
    let id = held["id"].as_str().expect("id");
    let retry = format!("/api/v1/quarantine/{id}/retry");
    assert_eq!(app.post(&retry, Some(&bob_token), &json!({})).await.status, StatusCode::FORBIDDEN);

    // Mended and retried, it is sent; the entry is gone.
    app.raw_sql(&format!("UPDATE deliveries SET attempts = 0 WHERE source_key = '{key}'")).await;
    let retried = app.send(Method::POST, &retry, Some(&admin), None).await;
    assert_eq!(retried.status, StatusCode::OK, "{:?}", retried.body);
    eventually("the mended delivery is sent", async || {
        let d = app.store().delivery(spoiled).await.expect("read").expect("stored");
        (d.status == DeliveryStatus::Sent).then_some(())
    })
    .await;
    let list = app.get("/api/v1/quarantine", Some(&admin)).await;
    assert_eq!(list.body["items"], json!([]));
    let again = app.send(Method::POST, &retry, Some(&admin), None).await;
    assert_eq!((again.status, again.code()), (StatusCode::NOT_FOUND, "not_found"));
    let unknown =
        app.send(Method::POST, &format!("/api/v1/quarantine/{}/retry", Uuid::now_v7()), Some(&admin), None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    app.stop().await;
    provider.stop().await;
}
