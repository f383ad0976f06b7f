//! Notices over REST on every store: made by admins and `notify` keys, idempotent per caller,
//! read from the person's inbox (which acknowledges them), refused field by field when bad.

use herald_testkit::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

api_tests! {
    a_notice_is_made_once_per_key_and_read_from_the_inbox,
    bad_notices_are_refused_with_field_errors,
    a_notify_key_sends_notices_until_it_is_revoked,
}

async fn user_id(app: &TestApp, token: &str) -> String {
    app.get("/api/v1/me", Some(token)).await.body["id"].as_str().expect("id").to_owned()
}

fn notice(user: &str) -> Value {
    json!({
        "user_id": user,
        "type": "invoice.due",
        "title": "Your invoice is due",
        "body": "Invoice 42 is due tomorrow.",
        "data": {"invoice": 42},
        "steps": [{"channel": "realtime", "after": 0}, {"channel": "email", "after": 60}],
        "idempotency_key": "invoice-42",
    })
}

fn step_statuses(body: &Value) -> Vec<&str> {
    body["steps"].as_array().map(|s| s.iter().filter_map(|s| s["status"].as_str()).collect()).unwrap_or_default()
}

async fn a_notice_is_made_once_per_key_and_read_from_the_inbox(app: &TestApp) {
    let admin = app.admin("root@example.org").await;
    let ada = app.user("ada@example.org").await;
    let bob = app.user("bob@example.org").await;
    let ada_id = user_id(app, &ada).await;

    let made = app.post("/api/v1/notifications", Some(&admin), &notice(&ada_id)).await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let id = made.body["id"].as_str().expect("id").to_owned();
    assert_eq!((&made.body["status"], &made.body["created"]), (&json!("pending"), &json!(true)));
    assert_eq!(step_statuses(&made.body), ["sent", "pending"], "the in-app step went with the notice");
    assert_eq!(made.body["steps"][1]["channel"], "email");

    // The same key and request: the first notice, 200. The same key, another request: 409.
    let again = app.post("/api/v1/notifications", Some(&admin), &notice(&ada_id)).await;
    assert_eq!((again.status, &again.body["id"], &again.body["created"]), (StatusCode::OK, &json!(id), &json!(false)));
    let mut other = notice(&ada_id);
    other["title"] = json!("Something else");
    let conflict = app.post("/api/v1/notifications", Some(&admin), &other).await;
    assert_eq!(
        (conflict.status, conflict.code()),
        (StatusCode::CONFLICT, "idempotency_conflict"),
        "{:?}",
        conflict.body
    );

    // Admins and the person see it; others do not.
    let path = format!("/api/v1/notifications/{id}");
    assert_eq!(app.get(&path, Some(&admin)).await.body["user_id"], json!(ada_id));
    assert_eq!(app.get(&path, Some(&ada)).await.status, StatusCode::OK);
    assert_eq!(app.get(&path, Some(&bob)).await.code(), "not_found");
    let listed = app.get(&format!("/api/v1/notifications?user_id={ada_id}&status=pending"), Some(&admin)).await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1), "{:?}", listed.body);
    assert_eq!(app.get("/api/v1/notifications", Some(&ada)).await.code(), "forbidden", "only admins list");

    // The inbox: Ada's unread notice; Bob's is empty; Bob cannot read Ada's.
    let inbox = app.get("/api/v1/me/notifications?unread=true", Some(&ada)).await;
    assert_eq!(inbox.status, StatusCode::OK, "{:?}", inbox.body);
    assert_eq!(inbox.body["items"][0]["id"], json!(id));
    assert_eq!(inbox.body["items"][0]["read_at"], Value::Null);
    assert_eq!(app.get("/api/v1/me/notifications", Some(&bob)).await.body["items"], json!([]));
    let read_path = format!("/api/v1/me/notifications/{id}/read");
    assert_eq!(app.post(&read_path, Some(&bob), &json!({})).await.code(), "not_found");

    // Reading acknowledges: the email is cancelled.
    let read = app.post(&read_path, Some(&ada), &json!({})).await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(read.body["status"], "acknowledged");
    assert!(read.body["read_at"].is_string() && read.body["acknowledged_at"].is_string(), "{:?}", read.body);
    assert_eq!(step_statuses(&read.body), ["sent", "cancelled"]);
    assert_eq!(app.get("/api/v1/me/notifications?unread=true", Some(&ada)).await.body["items"], json!([]));

    // Read-all marks the rest.
    let mut second = notice(&ada_id);
    second["idempotency_key"] = json!("invoice-43");
    app.post("/api/v1/notifications", Some(&admin), &second).await;
    let all = app.post("/api/v1/me/notifications/read-all", Some(&ada), &json!({})).await;
    assert_eq!((all.status, &all.body["read"]), (StatusCode::OK, &json!(1)), "{:?}", all.body);
    let acknowledged =
        app.get(&format!("/api/v1/notifications?user_id={ada_id}&status=acknowledged"), Some(&admin)).await;
    assert_eq!(acknowledged.body["items"].as_array().map(Vec::len), Some(2));

    // Made, then acknowledged by reading: both counted, and how long it took.
    let metrics = app.client.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    for line in ["herald_notices_total{status=\"pending\"} 2", "herald_notices_total{status=\"acknowledged\"} 2"] {
        assert!(metrics.contains(line), "{line} not in /metrics");
    }
    assert!(metrics.contains("herald_notice_ack_seconds_count 2"), "time to acknowledge is measured");
}

async fn bad_notices_are_refused_with_field_errors(app: &TestApp) {
    let admin = app.admin("root@example.org").await;
    let ada = app.user("ada@example.org").await;
    let ada_id = user_id(app, &ada).await;
    let post = |body: Value, token: String| async move { app.post("/api/v1/notifications", Some(&token), &body).await };

    let cases = [
        (json!({"steps": [{"channel": "pigeon", "after": 0}]}), "steps.0.channel"),
        (json!({"steps": []}), "steps"),
        (json!({"steps": [{"channel": "email", "after": -5}]}), "steps.0.after"),
        (json!({"title": ""}), "title"),
        (json!({"type": "Not A Type"}), "type"),
        (json!({"user_id": "not-a-uuid"}), "user_id"),
        (json!({"expires_at": "2001-01-01T00:00:00Z"}), "expires_at"),
        (json!({"urgent": "yes"}), "urgent"),
        (json!({"pigeon": true}), "pigeon"),
    ];
    for (change, field) in cases {
        let mut body = notice(&ada_id);
        body.as_object_mut().expect("object").extend(change.as_object().expect("object").clone());
        let bad = post(body.clone(), admin.clone()).await;
        assert_eq!(
            (bad.status, bad.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{body}: {:?}",
            bad.body
        );
        assert!(bad.fields().iter().any(|f| f == field), "{body}: expected {field} in {:?}", bad.body);
    }
    // Several at once, all named.
    let mut body = notice(&ada_id);
    body["title"] = json!("");
    body["steps"] = json!([]);
    assert_eq!(post(body, admin.clone()).await.fields().len(), 2);

    // Nobody to tell.
    let nobody = post(notice("0192f0c1-0000-7000-8000-000000000000"), admin.clone()).await;
    assert_eq!((nobody.status, nobody.fields()), (StatusCode::UNPROCESSABLE_ENTITY, vec!["user_id".to_owned()]));
    // A plain user notifying someone, and nobody at all.
    let plain = post(notice(&ada_id), ada.clone()).await;
    assert_eq!((plain.status, plain.code()), (StatusCode::FORBIDDEN, "forbidden"), "{:?}", plain.body);
    let anonymous = app.post("/api/v1/notifications", None, &notice(&ada_id)).await;
    assert_eq!(anonymous.code(), "unauthorized");
    // Nothing of it was stored.
    let listed = app.get("/api/v1/notifications", Some(&admin)).await;
    assert_eq!(listed.body["items"], json!([]), "refused notices leave nothing");
    // A step's `after` defaults to 0: the first step need not spell it.
    let mut body = notice(&ada_id);
    body["steps"] = json!([{"channel": "realtime"}, {"channel": "email", "after": 60}]);
    body.as_object_mut().expect("object").remove("idempotency_key");
    let made = post(body, admin.clone()).await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    assert_eq!(
        (made.body["steps"][0]["after"].as_u64(), made.body["steps"][0]["status"].as_str()),
        (Some(0), Some("sent"))
    );
    let garbage = app.get("/api/v1/notifications/not-a-uuid", Some(&admin)).await;
    assert!(garbage.status.is_client_error(), "{:?}", garbage.body);
}

async fn a_notify_key_sends_notices_until_it_is_revoked(app: &TestApp) {
    let admin = app.admin("root@example.org").await;
    let ada = app.user("ada@example.org").await;
    let ada_id = user_id(app, &ada).await;
    let made = app.post("/api/v1/api-keys", Some(&admin), &json!({"name": "billing", "scopes": ["notify"]})).await;
    let key = made.body["key"].as_str().expect("key").to_owned();
    let key_id = made.body["id"].as_str().expect("id").to_owned();

    let sent = app.post("/api/v1/notifications", Some(&key), &notice(&ada_id)).await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);
    // The key's idempotency keys are its own: the admin's same key makes another notice.
    let by_admin = app.post("/api/v1/notifications", Some(&admin), &notice(&ada_id)).await;
    assert_eq!(by_admin.status, StatusCode::CREATED);
    assert_ne!(by_admin.body["id"], sent.body["id"]);
    // Its scope is notices only.
    let clients = app.post("/api/v1/clients", Some(&key), &json!({"phone": "79161234567"})).await;
    assert_eq!(clients.code(), "forbidden", "{:?}", clients.body);

    let revoked = app.send(reqwest::Method::DELETE, &format!("/api/v1/api-keys/{key_id}"), Some(&admin), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let refused = app.post("/api/v1/notifications", Some(&key), &notice(&ada_id)).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::UNAUTHORIZED, "invalid_token"), "{:?}", refused.body);
}
