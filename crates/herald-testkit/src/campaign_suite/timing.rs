//! The campaign suite's timing: start and end times, send windows per zone, a provider outage.

#[allow(unused_imports, reason = "the suite's helpers and imports, shared")]
use super::*;

/// A mailing in the future waits for its start and then starts by itself; nothing is attempted
/// at or after `end_at`: what is still undelivered then expires.
pub async fn a_future_mailing_starts_by_itself_and_stops_at_its_end(
    store: Arc<dyn herald_core::store::Store>,
    broker: &TestBroker,
) {
    let rig = Campaign::new(store, broker, 100).await;
    let admin = rig.token(Role::Admin).await;
    rig.bulk(&admin, &ndjson(&[("79160000001", "", "UTC"), ("79160000002", "", "UTC")])).await;
    let later = rig
        .mailing(&admin, json!({"start_at": "2026-11-22T10:00:00Z", "end_at": "2026-11-22T10:00:30Z", "text": "later"}))
        .await;
    assert_eq!(rig.stats(&admin, &later).await["mailing"]["status"], "scheduled");
    assert_eq!(rig.run_job().await, "", "nothing is due before the start");
    assert_eq!(rig.stats(&admin, &later).await["messages"]["total"], 0);

    // Before its start anything may change; the provider is down from the start.
    let reply = rig
        .send(Method::PATCH, &format!("/api/v1/mailings/{later}"), &admin, Some(&json!({"text": "later, changed"})))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    rig.pipe.provider.outage(true);
    rig.pipe.clock.set(at("2026-11-22T10:00:00Z"));
    assert_eq!(rig.run_job().await, "1 started, 0 finished");
    let stats = rig.stats(&admin, &later).await;
    assert_eq!(
        (stats["mailing"]["status"].as_str(), stats["messages"]["pending"].as_u64()),
        (Some("running"), Some(2))
    );

    // Once running only end_at and the text may change.
    let reply = rig
        .send(Method::PATCH, &format!("/api/v1/mailings/{later}"), &admin, Some(&json!({"filter": {"tags": ["vip"]}})))
        .await;
    assert_eq!((reply.status, reply.code()), (StatusCode::CONFLICT, "conflict"), "{:?}", reply.body);

    let sender = rig.spawn_sender(Pipeline::options());
    // Retries at +1 s, +2 s, +4 s, +8 s, +16 s: the one due at 10:00:31 is past the end.
    for _ in 0..8 {
        rig.drain().await;
        rig.settle(&admin, &later).await;
        rig.pipe.advance(chrono::Duration::seconds(8));
    }
    let stats = rig.settle(&admin, &later).await;
    assert_eq!(stats["messages"]["expired"], 2, "{stats}");
    let attempts_at_end = rig.pipe.provider.stats().requests;
    assert!(attempts_at_end >= 2, "the provider was tried before the end");
    rig.pipe.provider.outage(false);
    rig.pipe.advance(chrono::Duration::minutes(5));
    rig.drain().await;
    assert_eq!(rig.pipe.provider.stats().requests, attempts_at_end, "an attempt was made after end_at");
    for m in rig.messages(&admin, &later, "", 50).await {
        assert_eq!(m["status"], "expired", "{m}");
        assert!(m["last_error"].as_str().is_some_and(|e| e.contains("deadline")), "{m}");
    }
    assert_eq!(rig.run_job().await, "0 started, 1 finished");
    sender.stop().await;
    rig.finish().await;
}

/// A send window is in each client's own zone: at 09:00 UTC a 09:00–18:00 window is open in
/// Moscow (12:00), opens at 14:00 UTC in New York (09:00 EST) and at 23:00 UTC in Vladivostok
/// (09:00 the next day); a client whose window opens only after the end is expired at once.
pub async fn send_windows_follow_each_clients_zone(store: Arc<dyn herald_core::store::Store>, broker: &TestBroker) {
    let rig = Campaign::new(store, broker, 100).await;
    let admin = rig.token(Role::Admin).await;
    let clients = [
        ("79160000001", "", "Europe/Moscow"),
        ("79160000002", "", "America/New_York"),
        ("79160000003", "", "Asia/Vladivostok"),
    ];
    rig.bulk(&admin, &ndjson(&clients)).await;
    let mailing = rig
        .mailing(
            &admin,
            json!({"start_at": t0().to_rfc3339(), "end_at": "2026-11-23T09:00:00Z", "text": "windowed",
                   "window": {"from": "09:00", "to": "18:00"}}),
        )
        .await;
    let mut due: Vec<(String, String)> = rig
        .messages(&admin, &mailing, "", 50)
        .await
        .iter()
        .map(|m| (m["client_id"].as_str().unwrap_or_default().to_owned(), m["next_attempt_at"].to_string()))
        .collect();
    due.sort_by(|a, b| a.1.cmp(&b.1));
    let times: Vec<&str> = due.iter().map(|(_, t)| t.trim_matches('"')).collect();
    assert_eq!(times, ["2026-11-22T09:00:00Z", "2026-11-22T14:00:00Z", "2026-11-22T23:00:00Z"]);

    let sender = rig.spawn_sender(Pipeline::options());
    rig.drain().await;
    rig.settle(&admin, &mailing).await;
    assert_eq!(accepted_phones(&rig.pipe, "windowed"), ["79160000001"]);
    rig.pipe.clock.set(at("2026-11-22T13:59:59Z"));
    assert_eq!(rig.drain().await, 0, "New York's window is not open yet");
    rig.pipe.clock.set(at("2026-11-22T14:00:00Z"));
    rig.drain().await;
    rig.settle(&admin, &mailing).await;
    assert_eq!(accepted_phones(&rig.pipe, "windowed"), ["79160000001", "79160000002"]);
    rig.pipe.clock.set(at("2026-11-22T23:00:00Z"));
    rig.drain().await;
    let stats = rig.settle(&admin, &mailing).await;
    assert_eq!(accepted_phones(&rig.pipe, "windowed"), ["79160000001", "79160000002", "79160000003"]);
    assert_eq!(stats["messages"]["sent"], 3, "{stats}");

    // Ending at 13:00 UTC: New York's window (14:00 UTC) never opens before the end.
    rig.pipe.clock.set(at("2026-11-24T09:00:00Z"));
    let short = rig
        .mailing(
            &admin,
            json!({"start_at": "2026-11-24T09:00:00Z", "end_at": "2026-11-24T13:00:00Z", "text": "short",
                   "window": {"from": "09:00", "to": "18:00"}}),
        )
        .await;
    let stats = rig.stats(&admin, &short).await;
    assert_eq!((stats["messages"]["pending"].as_u64(), stats["messages"]["expired"].as_u64()), (Some(1), Some(2)));
    sender.stop().await;
    rig.finish().await;
}

/// The provider goes down in the middle of a mailing and comes back: every message is sent in
/// the end, none twice where the provider answered, and the statistics add up throughout.
pub async fn a_provider_outage_mid_mailing_loses_nothing(
    store: Arc<dyn herald_core::store::Store>,
    broker: &TestBroker,
) {
    let rig = Campaign::new(store, broker, 20).await;
    let admin = rig.token(Role::Admin).await;
    let clients: Vec<(String, &str, &str)> = (0..60).map(|i| (format!("7916{i:07}"), "", "UTC")).collect();
    let lines: Vec<(&str, &str, &str)> = clients.iter().map(|(p, t, z)| (p.as_str(), *t, *z)).collect();
    assert_eq!(rig.bulk(&admin, &ndjson(&lines)).await.body["created"], 60);
    let end = (t0() + chrono::Duration::hours(6)).to_rfc3339();
    let mailing = rig.mailing(&admin, json!({"start_at": t0().to_rfc3339(), "end_at": end, "text": "outage"})).await;

    let options = SenderOptions {
        breaker: BreakerConfig { failure_threshold: 3, ..BreakerConfig::default() },
        ..Pipeline::options()
    };
    let sender = rig.spawn_sender(options);
    // The first batch of 20 goes through.
    assert_eq!(rig.scheduler.tick().await.expect("pass").queued, 20);
    rig.settle(&admin, &mailing).await;
    rig.pipe.provider.outage(true);
    // The next batch meets the outage: a few attempts open the breaker, the rest are deferred.
    assert_eq!(rig.scheduler.tick().await.expect("pass").queued, 20);
    let stats = rig.settle(&admin, &mailing).await;
    assert_eq!(stats["messages"]["sent"], 20, "{stats}");
    let c = counts(&stats);
    assert_eq!(c["total"], c["pending"] + c["sending"] + c["sent"] + c["failed"] + c["expired"] + c["cancelled"]);
    assert!(rig.pipe.provider.stats().requests < 40, "the breaker did not spare the provider");

    // A minute later the provider is back; retries and the rest go out.
    rig.pipe.provider.outage(false);
    for _ in 0..20 {
        rig.pipe.advance(chrono::Duration::seconds(30));
        rig.drain().await;
        let stats = rig.settle(&admin, &mailing).await;
        if stats["messages"]["sent"] == 60 {
            break;
        }
    }
    let stats = rig.stats(&admin, &mailing).await;
    assert_eq!(stats["messages"]["sent"], 60, "{stats}");
    let accepted = rig.pipe.provider.accepted_messages();
    assert_eq!(accepted.len(), 60);
    assert!(accepted.iter().all(|m| m.times == 1), "a message the provider accepted was sent again");
    let sent = rig.messages(&admin, &mailing, "&status=sent", 7).await;
    assert_eq!(sent.len(), 60);
    let retried = sent.iter().filter(|m| m["attempts"].as_u64() > Some(1)).count();
    assert!(retried >= 1, "no message went through the outage");

    // All of /mailings/stats adds up too.
    let all = rig.send(Method::GET, "/api/v1/mailings/stats", &admin, None).await;
    let item = all.body["items"].as_array().expect("items").iter().find(|i| i["mailing"]["id"] == mailing.as_str());
    assert_eq!(item.map(|i| i["messages"]["sent"].clone()), Some(json!(60)));

    // The timeline's counters tell the same story: every message made and sent, every provider
    // call counted with its time, the calls the outage failed among the retries.
    let path = format!("/api/v1/mailings/{mailing}/timeline");
    let timeline = rig.send(Method::GET, &format!("{path}?bucket=1d"), &admin, None).await;
    assert_eq!(timeline.status, reqwest::StatusCode::OK, "{:?}", timeline.body);
    let totals = &timeline.body["totals"];
    assert_eq!((totals["created"].as_u64(), totals["sent"].as_u64()), (Some(60), Some(60)), "{totals}");
    assert_eq!(totals["attempts"].as_u64(), Some(rig.pipe.provider.stats().requests as u64), "{totals}");
    assert!(totals["retried"].as_u64() >= Some(1), "{totals}");
    assert!(totals["provider_latency_ms"]["p50"].as_u64().is_some(), "{totals}");
    let fine = rig.send(Method::GET, &path, &admin, None).await;
    assert_eq!(fine.body["bucket_seconds"], 10);
    let buckets = fine.body["buckets"].as_array().expect("buckets");
    let sent: u64 = buckets.iter().map(|b| b["sent"].as_u64().expect("sent")).sum();
    assert_eq!(sent, 60, "the ten-second buckets add up to the totals");
    assert_eq!(fine.body["totals"], *totals);
    for (query, status) in [
        ("?bucket=15s", 422),
        ("?bucket=2d", 422),
        ("?bucket=10s&from=2030-01-01T00:00:00Z&to=2029-01-01T00:00:00Z", 422),
    ] {
        let bad = rig.send(Method::GET, &format!("{path}{query}"), &admin, None).await;
        assert_eq!((bad.status.as_u16(), bad.body["code"].as_str()), (status, Some("validation_failed")), "{query}");
    }
    let unknown = format!("/api/v1/mailings/{}/timeline", uuid::Uuid::now_v7());
    assert_eq!(rig.send(Method::GET, &unknown, &admin, None).await.status, reqwest::StatusCode::NOT_FOUND);
    let user = rig.token(Role::User).await;
    assert_eq!(rig.send(Method::GET, &path, &user, None).await.status, reqwest::StatusCode::FORBIDDEN);
    sender.stop().await;
    rig.finish().await;
}
