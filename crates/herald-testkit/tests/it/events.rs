//! The calendar over real HTTP, on every store.

use std::time::Duration;

use chrono::{DateTime, SubsecRound as _, Utc};
use herald_testkit::TestApp;
use herald_workers::scheduler::PeriodicJob as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

api_tests! {
    events_are_created_read_replaced_and_deleted,
    overlapping_events_are_date_busy,
    periods_are_local_to_the_callers_zone,
    event_input_is_validated_field_by_field,
    other_users_events_do_not_exist_for_them,
    a_reminder_goes_out_once_to_the_log_and_the_owners_channel,
    events_past_retention_are_deleted_by_the_job,
    an_owner_sets_and_clears_their_reminder_webhook,
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let reply = app.post("/api/v1/events", Some(token), &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body
}

fn titles(list: &Value) -> Vec<&str> {
    list["items"].as_array().expect("items").iter().filter_map(|e| e["title"].as_str()).collect()
}

async fn events_are_created_read_replaced_and_deleted(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let event = create(
        app,
        &token,
        json!({"title": " Stand-up ", "starts_at": "2026-12-01T09:00:00Z", "duration": 900, "description": "daily"}),
    )
    .await;
    assert_eq!((event["title"].as_str(), event["duration"].as_i64()), (Some("Stand-up"), Some(900)));
    assert_eq!((event["ends_at"].as_str(), &event["remind_before"]), (Some("2026-12-01T09:15:00Z"), &Value::Null));
    let id = event["id"].as_str().expect("id").to_owned();
    let got = app.get(&format!("/api/v1/events/{id}"), Some(&token)).await;
    assert_eq!((got.status, &got.body), (StatusCode::OK, &event));

    // PUT replaces the whole event: an absent description is empty again.
    let body = json!({"title": "Stand-up", "starts_at": "2026-12-01T09:30:00Z", "duration": 600, "remind_before": 300});
    let replaced = app.send(Method::PUT, &format!("/api/v1/events/{id}"), Some(&token), Some(&body)).await;
    assert_eq!(replaced.status, StatusCode::OK, "{:?}", replaced.body);
    assert_eq!((replaced.body["description"].as_str(), replaced.body["remind_before"].as_i64()), (Some(""), Some(300)));
    assert_eq!(replaced.body["created_at"], event["created_at"]);

    let deleted = app.send(Method::DELETE, &format!("/api/v1/events/{id}"), Some(&token), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/api/v1/events/{id}"), Some(&token)).await.code(), "not_found");
    let again = app.send(Method::DELETE, &format!("/api/v1/events/{id}"), Some(&token), None).await;
    assert_eq!(again.code(), "not_found");
    let put = app.send(Method::PUT, &format!("/api/v1/events/{id}"), Some(&token), Some(&body)).await;
    assert_eq!(put.code(), "not_found");

    // Times finer than the store keeps are cut to the microsecond: the answer and a read agree.
    let body = json!({"title": "Fine", "starts_at": "2026-12-02T09:00:00.123456789Z", "duration": 60});
    let fine = create(app, &token, body).await;
    assert_eq!(fine["starts_at"], "2026-12-02T09:00:00.123456Z");
    let read = app.get(&format!("/api/v1/events/{}", fine["id"].as_str().expect("id")), Some(&token)).await;
    assert_eq!(read.body, fine);

    // Every change left its event on the owner's channel, in order.
    let outbox = app.store().read_outbox(0, 100).await.expect("outbox");
    let kinds: Vec<_> =
        outbox.iter().filter(|o| o.event.kind.starts_with("event.")).map(|o| o.event.kind.as_str()).collect();
    assert_eq!(kinds, ["event.created", "event.updated", "event.deleted", "event.created"]);
    assert!(
        outbox
            .iter()
            .filter(|o| o.event.kind.starts_with("event."))
            .all(|o| matches!(o.event.stream, herald_core::stream::StreamName::User(_)))
    );
}

async fn overlapping_events_are_date_busy(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let other = app.user("bob@example.org").await;
    let first = create(app, &token, json!({"title": "A", "starts_at": "2026-12-01T09:00:00Z", "duration": 3600})).await;
    let busy = app
        .post(
            "/api/v1/events",
            Some(&token),
            &json!({"title": "B", "starts_at": "2026-12-01T09:59:59Z", "duration": 60}),
        )
        .await;
    assert_eq!((busy.status, busy.code()), (StatusCode::CONFLICT, "date_busy"));
    create(app, &token, json!({"title": "C", "starts_at": "2026-12-01T10:00:00Z", "duration": 60})).await;
    create(app, &other, json!({"title": "D", "starts_at": "2026-12-01T09:00:00Z", "duration": 3600})).await;
    // Moving the first event onto the second is refused too, and changes nothing.
    let id = first["id"].as_str().expect("id");
    let body = json!({"title": "A", "starts_at": "2026-12-01T09:30:00Z", "duration": 3600});
    let moved = app.send(Method::PUT, &format!("/api/v1/events/{id}"), Some(&token), Some(&body)).await;
    assert_eq!((moved.status, moved.code()), (StatusCode::CONFLICT, "date_busy"));
    assert_eq!(app.get(&format!("/api/v1/events/{id}"), Some(&token)).await.body, first);
}

async fn periods_are_local_to_the_callers_zone(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    for (title, at) in [
        ("late in Moscow's 1 Dec", "2026-11-30T21:30:00Z"),
        ("UTC 1 Dec", "2026-12-01T12:00:00Z"),
        ("a week on", "2026-12-07T23:00:00Z"),
        ("next month", "2027-01-01T00:00:00Z"),
        ("Berlin's short day", "2026-03-28T23:30:00Z"),
    ] {
        create(app, &token, json!({"title": title, "starts_at": at, "duration": 1800})).await;
    }
    let day = |date: &str, tz: &str| format!("/api/v1/events?period=day&date={date}&tz={tz}");
    let moscow = app.get(&day("2026-12-01", "Europe/Moscow"), Some(&token)).await;
    assert_eq!(moscow.status, StatusCode::OK, "{:?}", moscow.body);
    assert_eq!(titles(&moscow.body), ["late in Moscow's 1 Dec", "UTC 1 Dec"]);
    assert_eq!(moscow.body["from"], "2026-11-30T21:00:00Z");
    let utc = app.get("/api/v1/events?period=day&date=2026-12-01", Some(&token)).await;
    assert_eq!(titles(&utc.body), ["UTC 1 Dec"], "UTC by default");
    let week = app.get("/api/v1/events?period=week&date=2026-12-01", Some(&token)).await;
    assert_eq!(titles(&week.body), ["UTC 1 Dec", "a week on"]);
    assert!(week.body.get("next_cursor").is_none(), "one page");
    // Page by page.
    let first = app.get("/api/v1/events?period=week&date=2026-12-01&limit=1", Some(&token)).await;
    assert_eq!(titles(&first.body), ["UTC 1 Dec"]);
    let cursor = first.body["next_cursor"].as_str().expect("more");
    let path = format!("/api/v1/events?period=week&date=2026-12-01&limit=1&cursor={cursor}");
    let second = app.get(&path, Some(&token)).await;
    assert_eq!(titles(&second.body), ["a week on"]);
    assert!(second.body.get("next_cursor").is_none(), "the last page");
    let month = app.get("/api/v1/events?period=month&date=2026-12-15&tz=UTC", Some(&token)).await;
    assert_eq!(titles(&month.body), ["UTC 1 Dec", "a week on"]);
    assert_eq!(
        (month.body["from"].as_str(), month.body["to"].as_str()),
        (Some("2026-12-01T00:00:00Z"), Some("2027-01-01T00:00:00Z"))
    );
    // Berlin springs forward on 29 March 2026: that day starts at 23:00 UTC and lasts 23 hours.
    let berlin = app.get(&day("2026-03-29", "Europe/Berlin"), Some(&token)).await;
    assert_eq!(titles(&berlin.body), ["Berlin's short day"]);
    assert_eq!(
        (berlin.body["from"].as_str(), berlin.body["to"].as_str()),
        (Some("2026-03-28T23:00:00Z"), Some("2026-03-29T22:00:00Z"))
    );
}

async fn event_input_is_validated_field_by_field(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let long = "x".repeat(201);
    for (body, field) in [
        (json!({"title": "A", "starts_at": "2026-12-01T09:00:00Z", "duration": -60}), "duration"),
        (json!({"title": "A", "starts_at": "2026-12-01T09:00:00Z", "duration": 0}), "duration"),
        (json!({"title": "A", "starts_at": "2026-12-01T09:00:00Z", "duration": 2_678_401}), "duration"),
        (json!({"title": long, "starts_at": "2026-12-01T09:00:00Z", "duration": 60}), "title"),
        (json!({"title": "A", "starts_at": "tomorrow", "duration": 60}), "starts_at"),
        (
            json!({"title": "A", "starts_at": "2026-12-01T09:00:00Z", "duration": 60, "remind_before": -1}),
            "remind_before",
        ),
        (json!({"title": "A", "starts_at": "2026-12-01T09:00:00Z", "duration": 60, "colour": "red"}), "colour"),
    ] {
        let reply = app.post("/api/v1/events", Some(&token), &body).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{body}");
        assert_eq!(reply.fields(), [field], "{body}: {:?}", reply.body);
    }
    for (query, field) in [
        ("period=day&date=2026-12-01&tz=Mars/Olympus", "tz"),
        ("period=fortnight&date=2026-12-01", "period"),
        ("period=day&date=2026-02-30", "date"),
        ("period=day&date=2026-12-01&cursor=bogus", "cursor"),
        ("period=day&date=2026-12-01&limit=501", "limit"),
    ] {
        let reply = app.get(&format!("/api/v1/events?{query}"), Some(&token)).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{query}");
        assert_eq!(reply.fields(), [field], "{query}: {:?}", reply.body);
    }
    let anonymous = app.get("/api/v1/events?period=day&date=2026-12-01", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let outbox = app.store().read_outbox(0, 100).await.expect("outbox");
    assert!(outbox.iter().all(|o| !o.event.kind.starts_with("event.")), "nothing was half-written");
}

async fn other_users_events_do_not_exist_for_them(app: &TestApp) {
    let ada = app.user("ada@example.org").await;
    let bob = app.user("bob@example.org").await;
    let event =
        create(app, &ada, json!({"title": "Private", "starts_at": "2026-12-01T09:00:00Z", "duration": 60})).await;
    let id = event["id"].as_str().expect("id");
    for (method, path) in [
        (Method::GET, format!("/api/v1/events/{id}")),
        (Method::DELETE, format!("/api/v1/events/{id}")),
        (Method::GET, format!("/api/v1/events/{id}/notifications")),
    ] {
        assert_eq!(app.send(method.clone(), &path, Some(&bob), None).await.code(), "not_found", "{method} {path}");
    }
    let listed = app.get("/api/v1/events?period=day&date=2026-12-01", Some(&bob)).await;
    assert!(titles(&listed.body).is_empty());
    assert_eq!(app.get(&format!("/api/v1/events/{id}"), Some(&ada)).await.status, StatusCode::OK, "still there");
}

async fn a_reminder_goes_out_once_to_the_log_and_the_owners_channel(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    // Due in a second: the serving scheduler (every second) and sender deliver it.
    let starts_at = (Utc::now() + chrono::Duration::seconds(61)).trunc_subsecs(0);
    let body = json!({"title": "Call", "starts_at": starts_at, "duration": 600, "remind_before": 60});
    let event = create(app, &token, body).await;
    let id = event["id"].as_str().expect("id");
    let path = format!("/api/v1/events/{id}/notifications");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let items = loop {
        let reply = app.get(&path, Some(&token)).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        let items = reply.body["items"].as_array().expect("items").clone();
        if items.len() == 3 && items.iter().all(|n| n["status"] == "sent") {
            break items;
        }
        assert!(tokio::time::Instant::now() < deadline, "not sent: {items:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut channels: Vec<_> = items.iter().filter_map(|n| n["channel"].as_str()).collect();
    channels.sort_unstable();
    assert_eq!(channels, ["log", "queue", "realtime"], "published on the queue, then to the log and the owner");
    assert!(items.iter().all(|n| n["attempts"] == 1));
    let outbox = app.store().read_outbox(0, 100).await.expect("outbox");
    let reminders: Vec<_> = outbox.iter().filter(|o| o.event.kind == "event.reminder").collect();
    assert_eq!(reminders.len(), 1, "one reminder on the owner's channel");
    let data = &reminders[0].event.payload;
    assert_eq!((data["event_id"].as_str(), data["title"].as_str()), (Some(id), Some("Call")));
    let sent_at: DateTime<Utc> = data["starts_at"].as_str().expect("starts_at").parse().expect("instant");
    assert_eq!(sent_at, starts_at);

    // Moving the event schedules new reminders; the sent ones stay as they were.
    let later = starts_at + chrono::Duration::hours(1);
    let body = json!({"title": "Call", "starts_at": later, "duration": 600, "remind_before": 60});
    let moved = app.send(Method::PUT, &format!("/api/v1/events/{id}"), Some(&token), Some(&body)).await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    let after = app.get(&path, Some(&token)).await.body;
    let statuses: Vec<_> =
        after["items"].as_array().expect("items").iter().filter_map(|n| n["status"].as_str()).collect();
    assert_eq!(statuses, ["sent", "sent", "sent", "pending"], "the sent ones stay, the new one waits");
}

async fn events_past_retention_are_deleted_by_the_job(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let old = create(app, &token, json!({"title": "Old", "starts_at": "2024-01-10T09:00:00Z", "duration": 60})).await;
    let recent = create(app, &token, json!({"title": "Recent", "starts_at": Utc::now(), "duration": 60})).await;
    let store = app.herald().services.store.clone();
    let job = herald_workers::retention::RetentionJob::events(store, Duration::from_secs(365 * 24 * 3600));
    let summary = job.run(Utc::now()).await.expect("run");
    assert_eq!(summary, "1 calendar events deleted");
    let gone = app.get(&format!("/api/v1/events/{}", old["id"].as_str().expect("id")), Some(&token)).await;
    assert_eq!(gone.code(), "not_found");
    let kept = app.get(&format!("/api/v1/events/{}", recent["id"].as_str().expect("id")), Some(&token)).await;
    assert_eq!(kept.status, StatusCode::OK);
}

async fn an_owner_sets_and_clears_their_reminder_webhook(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let path = "/api/v1/me/webhook";
    assert_eq!(app.get(path, Some(&token)).await.body, json!({"url": null}));
    // Loopback, which test apps allow; a name would be looked up, and refused if it did not resolve.
    let set = app.send(Method::PUT, path, Some(&token), Some(&json!({"url": "http://127.0.0.1:8000/r"}))).await;
    assert_eq!((set.status, &set.body["url"]), (StatusCode::OK, &json!("http://127.0.0.1:8000/r")));
    assert!(set.body["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")), "{:?}", set.body);
    assert_eq!(app.get(path, Some(&token)).await.body["url"], "http://127.0.0.1:8000/r");
    for body in [
        json!({"url": "https:///nohost"}),
        json!({"url": "ftp://hooks.internal/r"}),
        json!({"url": "http:///nohost"}),
        json!({"url": "x".repeat(2100)}),
        json!({"url": 5}),
        json!({"url": "http://a/b", "secret": "no"}),
    ] {
        let reply = app.send(Method::PUT, path, Some(&token), Some(&body)).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{body}");
    }
    assert_eq!(app.get(path, Some(&token)).await.body["url"], "http://127.0.0.1:8000/r", "unchanged");
    let cleared = app.send(Method::PUT, path, Some(&token), Some(&json!({"url": null}))).await;
    assert_eq!(cleared.body, json!({"url": null}));
    assert_eq!(app.get(path, None).await.status, StatusCode::UNAUTHORIZED);
}
