//! Campaigns (clients, mailings, messages, statistics) over real HTTP, on every store and broker.

store_broker_suite! {
    campaign_suite {
        sqlite_memory: Sqlite + Memory,
        postgres_amqp: Postgres + Amqp,
        postgres_nats: Postgres + Nats,
        postgres_redis: Postgres + Redis,
    }
    {
        filters_pick_clients_by_code_tag_and_both,
        a_future_mailing_starts_by_itself_and_stops_at_its_end,
        send_windows_follow_each_clients_zone,
        a_provider_outage_mid_mailing_loses_nothing,
        bad_input_is_refused_and_cancelling_stops_what_is_pending,
        a_large_mailing_is_made_in_chunks_while_it_sends,
        the_daily_report_sums_a_day_and_reaches_each_administrator_once,
    }
}

/// `herald serve` starts a future mailing by itself (the scheduler's `mailings` job) and sends
/// it through the provider, with the real clock and no other process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_starts_a_future_mailing_and_sends_it() {
    use std::time::Duration;

    use herald_testkit::mock_provider::MockProvider;
    use reqwest::StatusCode;
    use serde_json::json;

    let provider = MockProvider::start("serve-token").await;
    let url = provider.base_url();
    let app = herald_testkit::TestApp::start_with(herald_testkit::Backend::Sqlite, "serve_mailing", |env| {
        env.insert("HERALD_PROVIDER_URL".into(), url);
        env.insert("HERALD_PROVIDER_TOKEN".into(), "serve-token".into());
        env.insert("HERALD_SCHEDULER_INTERVAL".into(), "100ms".into());
        env.insert("HERALD_MAILINGS_SCHEDULE".into(), "@every 1s".into());
    })
    .await
    .expect("sqlite is always there");
    let admin = app.admin("ops@example.org").await;
    for phone in ["79160000001", "79160000002", "79030000003"] {
        let reply = app.post("/api/v1/clients", Some(&admin), &json!({"phone": phone})).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    }
    let start = chrono::Utc::now() + chrono::Duration::seconds(1);
    let end = start + chrono::Duration::hours(1);
    let body = json!({"start_at": start, "end_at": end, "text": "served", "filter": {"operator_codes": ["916"]}});
    let reply = app.post("/api/v1/mailings", Some(&admin), &body).await;
    assert_eq!(
        (reply.status, reply.body["status"].as_str()),
        (StatusCode::CREATED, Some("scheduled")),
        "{:?}",
        reply.body
    );
    let id = reply.body["id"].as_str().expect("id").to_owned();
    // An administrator follows its progress live on its stream.
    let ws_url = format!("{}/ws", app.base.replacen("http://", "ws://", 1));
    let mut ws = herald_testkit::ws_client::WsClient::connect(&ws_url, &admin, "console").await.expect("connect");
    let subscribed = ws.subscribe(&format!("mailing:{id}"), None).await;
    assert_eq!(subscribed["offset"], 0, "{subscribed}");
    provider.wait_accepted(2, Duration::from_secs(20)).await.expect("both 916 clients get the text");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stats = app.get(&format!("/api/v1/mailings/{id}/stats"), Some(&admin)).await;
        if stats.body["mailing"]["status"] == "finished" {
            assert_eq!(stats.body["messages"]["sent"], 2, "{:?}", stats.body);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the mailing never finished: {:?}", stats.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Snapshots, each a second or more after the one before, until the last says finished.
    let mut snapshots: Vec<serde_json::Value> = Vec::new();
    while snapshots.last().is_none_or(|s| s["status"] != "finished") {
        let event = ws.next_event(Duration::from_secs(10)).await;
        let event = event.unwrap_or_else(|| panic!("no finished snapshot: {snapshots:?}"));
        assert_eq!(
            (event["channel"].as_str(), event["type"].as_str()),
            (Some(format!("mailing:{id}").as_str()), Some("mailing.progress"))
        );
        ws.ack(&format!("mailing:{id}"), event["offset"].as_i64().expect("offset")).await;
        snapshots.push(event["data"].clone());
    }
    let last = snapshots.last().expect("a snapshot");
    assert_eq!(
        last["messages"],
        json!({"total": 2, "pending": 0, "sent": 2, "failed": 0, "expired": 0, "cancelled": 0})
    );
    assert_eq!(last["attempts"], 2);
    let at = |s: &serde_json::Value| s["at"].as_str().and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok());
    for pair in snapshots.windows(2) {
        assert!(at(&pair[1]) >= at(&pair[0]).map(|t| t + chrono::Duration::seconds(1)), "{snapshots:?}");
    }
    ws.close().await;
    app.stop().await;
    provider.stop().await;
}

/// With default settings a later mailing starts at its `start_at`, not at the scheduler's next
/// pass: the scheduler sleeps no longer than the next start, and the first text goes out after
/// `start_at` and well within a second of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_later_mailing_starts_at_its_time_with_default_settings() {
    use std::time::Duration;

    use herald_testkit::mock_provider::MockProvider;
    use reqwest::StatusCode;
    use serde_json::json;

    let provider = MockProvider::start("serve-token").await;
    let url = provider.base_url();
    let app = herald_testkit::TestApp::start_with(herald_testkit::Backend::Sqlite, "later_mailing", |env| {
        env.insert("HERALD_PROVIDER_URL".into(), url);
        env.insert("HERALD_PROVIDER_TOKEN".into(), "serve-token".into());
    })
    .await
    .expect("sqlite is always there");
    let admin = app.admin("ops@example.org").await;
    let reply = app.post("/api/v1/clients", Some(&admin), &json!({"phone": "79160000001"})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let start = chrono::Utc::now() + chrono::Duration::milliseconds(2500);
    let body = json!({"start_at": start, "end_at": start + chrono::Duration::hours(1), "text": "on time"});
    assert_eq!(app.post("/api/v1/mailings", Some(&admin), &body).await.status, StatusCode::CREATED);
    provider.wait_accepted(1, Duration::from_secs(10)).await.expect("the client gets the text");
    let sent = chrono::Utc::now();
    assert!(sent >= start, "sent before its start: {sent} < {start}");
    assert!(sent - start < chrono::Duration::milliseconds(1500), "sent {} after its start", sent - start);
    app.stop().await;
    provider.stop().await;
}
