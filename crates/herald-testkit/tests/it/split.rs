//! The split deployment end to end: the built binary as separate processes on loopback (api, and
//! two of every other role: gateways, relays, schedulers, senders) beside the mock provider, on
//! PostgreSQL with RabbitMQ, with NATS and with Redis. A task change reaches a Socket.io client and a
//! WebSocket client on different gateways, a calendar reminder reaches the log and the user's
//! channel, a mailing reaches the provider; one sender and one gateway are SIGKILLed mid-flow and
//! nothing is lost; the pairs did no double work (one relay published each event once, claims
//! never overlapped).

use std::time::Duration;

use herald_testkit::{
    Backend, TestStore,
    broker_suite::BrokerKind,
    cluster::{metric, wait_ready},
    mock_provider::MockProvider,
    node::SioClient,
    processes::{HeraldProcess, herald_bin},
    ws_client::WsClient,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const CLIENTS: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rabbitmq() {
    split_deployment(BrokerKind::Amqp, "split_postgres_rabbitmq").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_nats() {
    split_deployment(BrokerKind::Nats, "split_postgres_nats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_redis() {
    split_deployment(BrokerKind::Redis, "split_postgres_redis").await;
}

struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let reply = req.send().await.expect("request");
        let status = reply.status();
        (status, reply.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body)).await
    }

    async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) =
            self.post("/api/v1/auth/login", None, &json!({"email": email, "password": password})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().expect("token").to_owned()
    }
}

async fn split_deployment(broker: BrokerKind, test: &str) {
    let var = match broker {
        BrokerKind::Amqp => "HERALD_TEST_AMQP_URL",
        BrokerKind::Redis => "HERALD_TEST_REDIS_URL",
        BrokerKind::Memory | BrokerKind::Nats => "HERALD_TEST_NATS_URL",
    };
    let Some(broker_url) = herald_testkit::backend_url(var, test) else { return };
    let Some(store) = TestStore::new(Backend::Postgres, test).await else { return };
    let Some(mut sio) = SioClient::spawn() else { return };
    herald_bin();
    let provider = MockProvider::start("split-token").await;
    provider.set_latency(Duration::from_millis(100), Duration::from_millis(50));
    let data = tempfile::tempdir().expect("data dir");
    // Hundreds of clients register from loopback: the shared settings lift the login limits.
    let mut env = herald_testkit::processes::deployment_env(&store.url, &broker_url, data.path());
    let provider_url = provider.base_url();
    env.extend(
        [
            ("HERALD_ADMIN_ADDR", "127.0.0.1:0"),
            ("HERALD_PROVIDER_URL", provider_url.as_str()),
            ("HERALD_PROVIDER_TOKEN", "split-token"),
            ("HERALD_SENDER_CONCURRENCY", "8"),
            ("HERALD_DELIVERY_LEASE", "8s"),
            ("HERALD_PROVIDER_TIMEOUT", "2s"),
            ("HERALD_WEBHOOK_TIMEOUT", "2s"),
            ("HERALD_SCHEDULER_INTERVAL", "100ms"),
            ("HERALD_MAILINGS_SCHEDULE", "@every 1s"),
            ("HERALD_RELAY_POLL_INTERVAL", "100ms"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );

    let mut migrate = HeraldProcess::start("migrate", &["migrate"], &env);
    migrate.wait_success().await;
    let mut admin = HeraldProcess::start(
        "users create",
        &["users", "create", "--email", "ops@example.org", "--password", "ops-password-1", "--admin"],
        &env,
    );
    admin.wait_success().await;

    let mut api = HeraldProcess::start("api", &["api"], &env);
    let mut gateways =
        [HeraldProcess::start("gateway-1", &["gateway"], &env), HeraldProcess::start("gateway-2", &["gateway"], &env)];
    let mut relays =
        [HeraldProcess::start("relay-1", &["relay"], &env), HeraldProcess::start("relay-2", &["relay"], &env)];
    let mut schedulers = [
        HeraldProcess::start("scheduler-1", &["scheduler"], &env),
        HeraldProcess::start("scheduler-2", &["scheduler"], &env),
    ];
    let mut senders =
        [HeraldProcess::start("sender-1", &["sender"], &env), HeraldProcess::start("sender-2", &["sender"], &env)];
    let client = herald_testkit::http::client();
    let api_addr = api.http_addr().await;
    let gateway_addrs = [gateways[0].http_addr().await, gateways[1].http_addr().await];
    wait_ready(&client, &format!("http://{api_addr}")).await;
    for addr in &gateway_addrs {
        wait_ready(&client, &format!("http://{addr}")).await;
    }
    let mut admin_addrs = Vec::new();
    for process in relays.iter_mut().chain(schedulers.iter_mut()).chain(senders.iter_mut()) {
        let addr = process.admin_addr().await;
        wait_ready(&client, &format!("http://{addr}")).await;
        admin_addrs.push(addr);
    }
    let http = Http { client: client.clone(), base: format!("http://{api_addr}") };

    // A person with a Socket.io client on gateway 1 and a WebSocket client on gateway 2.
    let (status, ada) = http
        .post(
            "/api/v1/auth/register",
            None,
            &json!({"email": "ada@example.org", "password": "password123", "name": "Ada"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ada}");
    let channel = format!("user:{}", ada["id"].as_str().expect("id"));
    let token = http.login("ada@example.org", "password123").await;
    sio.connect(&format!("http://{}", gateway_addrs[0]), &token, "browser").await.expect("socket.io connect");
    let head = sio.subscribe(&channel, None).await["offset"].as_i64().expect("offset");
    let mut ws =
        WsClient::connect(&format!("ws://{}/ws", gateway_addrs[1]), &token, "phone").await.expect("ws connect");
    ws.subscribe(&channel, None).await;

    let (status, task) = http.post("/api/v1/tasks", Some(&token), &json!({"title": "split"})).await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    let on_sio = sio.next_event(WAIT).await.expect("the task reaches the Socket.io client");
    let on_ws = ws.next_event(WAIT).await.expect("the task reaches the WebSocket client");
    for event in [&on_sio, &on_ws] {
        assert_eq!((event["type"].as_str(), event["data"]["id"].as_str()), (Some("task.created"), task["id"].as_str()));
        assert_eq!(event["offset"], head + 1);
    }

    // A calendar event whose reminder is due now: the log of a sender and the user's channel.
    let starts = chrono::Utc::now() + chrono::Duration::seconds(62);
    let body = json!({"title": "Standup", "starts_at": starts, "duration": 600, "remind_before": 60});
    let (status, event) = http.post("/api/v1/events", Some(&token), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    let created = ws.next_event(WAIT).await.expect("event.created");
    assert_eq!(created["type"], "event.created");
    let reminder = loop {
        let Some(e) = ws.next_event(WAIT).await else {
            for p in schedulers.iter().chain(&senders).chain(&relays) {
                eprintln!("--- {}\n{}", p.name, p.log_text());
            }
            panic!("the reminder never reached the user's channel");
        };
        if e["type"] == "event.reminder" {
            break e;
        }
    };
    assert_eq!(reminder["data"]["event_id"], event["id"], "{reminder}");
    let logged = |l: &Value| l["message"] == "delivered" && l["kind"] == "calendar.notification";
    let deadline = tokio::time::Instant::now() + WAIT;
    while senders.iter().all(|s| s.logs_matching(logged).is_empty()) {
        assert!(tokio::time::Instant::now() < deadline, "no sender logged the reminder");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A mailing to CLIENTS clients; one sender is SIGKILLed while it runs.
    let ops = http.login("ops@example.org", "ops-password-1").await;
    let ndjson: String = (0..CLIENTS).map(|i| format!("{{\"phone\": \"7916{i:07}\"}}\n")).collect();
    let reply = client
        .post(format!("{}/api/v1/clients/bulk", http.base))
        .bearer_auth(&ops)
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .expect("bulk");
    let bulk: Value = reply.json().await.expect("bulk answer");
    assert_eq!(bulk["created"], CLIENTS, "{bulk}");
    let start = chrono::Utc::now();
    let body = json!({"start_at": start, "end_at": start + chrono::Duration::hours(1), "text": "split test"});
    let (status, mailing) = http.post("/api/v1/mailings", Some(&ops), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{mailing}");
    provider.wait_accepted(CLIENTS / 4, WAIT).await.expect("the mailing is under way");
    senders[0].kill().await;
    let accepted_before_kill = provider.stats().accepted;

    // Gateway 1 dies too, with the Socket.io client's events unacknowledged; changes go on.
    gateways[0].kill().await;
    for title in ["after one", "after two"] {
        let (status, _) = http.post("/api/v1/tasks", Some(&token), &json!({"title": title})).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    // What gateway 1 delivered before it died, none of it acknowledged.
    let mut before = vec![on_sio["offset"].as_i64().expect("offset")];
    while let Some(e) = sio.next_event(Duration::from_millis(300)).await {
        before.push(e["offset"].as_i64().expect("offset"));
    }
    assert_eq!(before.first(), Some(&(head + 1)), "{before:?}");
    let _ = sio.disconnect().await;
    sio.connect(&format!("http://{}", gateway_addrs[1]), &token, "browser").await.expect("reconnect to gateway 2");
    let resumed = sio.subscribe(&channel, None).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    let now_head = resumed["offset"].as_i64().expect("offset");
    let mut offsets = Vec::new();
    while offsets.last() != Some(&now_head) {
        let e = sio.next_event(WAIT).await.unwrap_or_else(|| panic!("missing events after {offsets:?}"));
        offsets.push(e["offset"].as_i64().expect("offset"));
    }
    let expected: Vec<i64> = (head + 1..=now_head).collect();
    assert_eq!(offsets, expected, "every unacknowledged event, in order, through the other gateway");

    // Nothing lost: every client got the text once, the statistics add up.
    provider.wait_accepted(CLIENTS, Duration::from_secs(60)).await.expect("every message reaches the provider");
    let mailing_id = mailing["id"].as_str().expect("mailing id");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, stats) =
            http.call(reqwest::Method::GET, &format!("/api/v1/mailings/{mailing_id}/stats"), Some(&ops), None).await;
        if stats["mailing"]["status"] == "finished" {
            assert_eq!(stats["messages"]["sent"], CLIENTS, "{stats}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the mailing never finished: {stats}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(provider.accepted_ids().len(), CLIENTS, "each message accepted under one id");

    // No double work: every outbox event published once in all (one relay at a time), and
    // every claim of a delivery either reported or rescued, never two at once.
    let metric = |text: &str, name: &str| metric(text, name.trim_end()).unwrap_or(0.0);
    let scrape = |addr: String| {
        let client = client.clone();
        async move {
            client.get(format!("http://{addr}/metrics")).send().await.expect("metrics").text().await.expect("text")
        }
    };
    // The mailings job may still append a last progress snapshot of the finished mailing: wait
    // for the relays to publish everything there is, never more than once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (relay_1, relay_2) = (scrape(admin_addrs[0].clone()).await, scrape(admin_addrs[1].clone()).await);
        let published =
            metric(&relay_1, "herald_relay_published_total ") + metric(&relay_2, "herald_relay_published_total ");
        let events = store.store.read_outbox(0, 100_000).await.expect("outbox").len();
        assert!(published as usize <= events, "an outbox event was published twice: {published} of {events}");
        if published as usize == events {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "each outbox event published once, by one relay or the other: {published} of {events}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A message is sent twice only when the killed sender called the provider and died before
    // its report was written: never more than it had sent. Two schedulers claiming one delivery
    // would have both senders send every message.
    let stats = provider.stats();
    let duplicates = stats.accepted - stats.distinct_accepted as u64;
    assert!(
        duplicates <= accepted_before_kill,
        "{duplicates} duplicate sends, more than the {accepted_before_kill} made before the kill"
    );

    sio.disconnect().await;
    ws.close().await;
    let [_, gateway_2] = &mut gateways;
    let [_, sender_2] = &mut senders;
    api.terminate().await;
    gateway_2.terminate().await;
    sender_2.terminate().await;
    for process in relays.iter_mut().chain(schedulers.iter_mut()) {
        process.terminate().await;
    }
    provider.stop().await;
    store.finish().await;
}
