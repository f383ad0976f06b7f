//! The delivery suite's channel part: rate limits, malformed answers, the log, webhook and
//! realtime channels, and webhook breakers per host.

#[allow(unused_imports, reason = "the suite's helpers and imports, shared")]
use super::*;

/// 50/s with no burst: the provider never sees more than 50 calls in a second, and calls come
/// every 20 ms, within 5 % (the median gap, so a stall of a loaded machine does not move it).
pub async fn the_rate_limit_holds_within_five_percent(store: Arc<dyn Store>, broker: &TestBroker) {
    let p = Pipeline::new(store, broker).await;
    let mut options = Pipeline::options();
    options.concurrency = 32;
    options.rates = HashMap::from([(Channel::Provider, Rate { per_second: 50.0, burst: 1 })]);
    let sender = p.spawn(options);
    let ids = p.sms(201).await;
    assert_eq!(p.tick().await + p.tick().await + p.tick().await, 201);
    p.all_become(&ids, DeliveryStatus::Sent).await;
    let arrivals = p.provider.arrivals();
    assert_eq!(arrivals.len(), 201);
    let mut arrivals = arrivals;
    arrivals.sort();
    // Never much faster than the limit: 50 calls a second plus the one burst token, and a few
    // calls a stall of the test machine made late catching up on their reserved slots.
    let busiest = (0..arrivals.len())
        .map(|i| arrivals[i..].iter().take_while(|a| a.duration_since(arrivals[i]) < Duration::from_secs(1)).count())
        .max()
        .unwrap_or(0);
    assert!(busiest <= 55, "{busiest} calls within one second");
    // And not slower: slots are reserved exactly, so the typical gap is the limit's 20 ms.
    let mut gaps: Vec<f64> = arrivals.windows(2).map(|w| w[1].duration_since(w[0]).as_secs_f64()).collect();
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    assert!((0.019..=0.021).contains(&median), "median gap {:.2} ms", median * 1000.0);
    sender.stop().await;
    p.finish().await;
}

/// A provider answer the contract does not describe is a failure, never a crash; a 200 is a
/// send whatever its body; an unreadable queue message is dropped and counted.
pub async fn malformed_answers_are_failures_not_crashes(store: Arc<dyn Store>, broker: &TestBroker) {
    let p = Pipeline::new(store, broker).await;
    let sender = p.spawn(Pipeline::options());
    p.broker.enqueue(DELIVERY_QUEUE, Message::new(Uuid::now_v7(), b"\xff not json".to_vec())).await.expect("enqueue");

    for (reply, status, error) in [
        (Reply::Malformed(Malformed::Teapot), DeliveryStatus::Failed, Some("HTTP 418")),
        (Reply::Malformed(Malformed::NotJson), DeliveryStatus::Sent, None),
        (Reply::Malformed(Malformed::Truncated), DeliveryStatus::Sent, None),
        (Reply::Close, DeliveryStatus::Pending, Some("could not reach")),
        (
            Reply::Answer {
                status: 302,
                body: Bytes::new(),
                headers: vec![("Location".into(), "http://127.0.0.1:1/".into())],
            },
            DeliveryStatus::Failed,
            Some("HTTP 302"),
        ),
    ] {
        let id = p.sms(1).await[0];
        p.provider.then(reply.clone());
        p.tick().await;
        let d = &p.settled(&[id]).await[0];
        assert_eq!(d.status, status, "{reply:?}: {:?}", d.last_error);
        match error {
            Some(error) => {
                assert!(d.last_error.as_deref().is_some_and(|e| e.contains(error)), "{reply:?}: {:?}", d.last_error)
            }
            None => assert_eq!(d.last_error, None),
        }
    }
    let fine = p.sms(1).await[0];
    p.tick().await;
    assert_eq!(p.settled(&[fine]).await[0].status, DeliveryStatus::Sent, "the sender still works");
    assert!(p.metrics.encode().contains("herald_sender_errors_total 1"), "{}", p.metrics.encode());
    sender.stop().await;
    p.finish().await;
}

#[derive(Debug, Default, Clone)]
pub(super) struct Hooks(pub(super) Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

pub(super) async fn webhook_receiver() -> (String, Hooks, JoinHandle<()>) {
    let hooks = Hooks::default();
    let app = Router::new().route(
        "/hook",
        post({
            let hooks = hooks.clone();
            move |headers: HeaderMap, body: Bytes| async move {
                hooks.0.lock().expect("hooks").push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    (url, hooks, server)
}

/// `log`, `webhook` (signed, verifiable, refused with no secret to sign with) and `realtime` (one event on
/// the user's channel, carrying the delivery's id, however often it is tried).
pub async fn log_webhook_and_realtime_channels_deliver(store: Arc<dyn Store>, broker: &TestBroker) {
    let mut p = Pipeline::new(store, broker).await;
    let sender = p.spawn(Pipeline::options());
    let (url, hooks, server) = webhook_receiver().await;

    let logged = p.create(Channel::Log, "ops", json!({"note": "hello"}), None).await;
    let hooked = p.create(Channel::Webhook, &url, json!({"event_id": 7, "title": "Standup"}), None).await;
    let user = Uuid::now_v7();
    let live =
        p.create(Channel::Realtime, &user.to_string(), json!({"type": "reminder", "title": "Standup"}), None).await;
    let bad_url = p.create(Channel::Webhook, "file:///etc/passwd", json!({}), None).await;
    p.tick().await;
    let [logged, hooked, live, bad_url] =
        <[Delivery; 4]>::try_from(p.settled(&[logged, hooked, live, bad_url]).await).expect("4");
    assert_eq!((logged.status, logged.attempts), (DeliveryStatus::Sent, 1));
    assert_eq!((hooked.status, hooked.attempts), (DeliveryStatus::Sent, 1), "{:?}", hooked.last_error);
    assert_eq!((live.status, live.attempts), (DeliveryStatus::Sent, 1));
    assert_eq!(bad_url.status, DeliveryStatus::Failed);

    let received = hooks.0.lock().expect("hooks").clone();
    assert_eq!(received.len(), 1);
    let (headers, body) = &received[0];
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(body).expect("json"),
        json!({"event_id": 7, "title": "Standup"})
    );
    let signature = headers[SIGNATURE_HEADER].to_str().expect("ascii");
    // The signature is made with the sender's clock, so check it against that clock.
    assert!(verify(WEBHOOK_SECRET, signature, body, p.clock.now(), Duration::from_secs(300)), "{signature}");
    assert!(!verify("another-secret-of-at-least-32-bytes", signature, body, p.clock.now(), Duration::from_secs(300)));
    assert_eq!(headers["herald-delivery"].to_str().expect("ascii"), hooked.id.to_string());

    let events = p.store.read_outbox(0, 100).await.expect("outbox");
    let mine: Vec<_> = events.iter().filter(|e| e.event.stream.to_string() == format!("user:{user}")).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!((mine[0].event.id, mine[0].event.kind.as_str()), (live.id.0, "reminder"));
    assert_eq!(mine[0].event.payload["title"], "Standup");
    sender.stop().await;

    // With neither the recipient's own secret (no webhook of theirs) nor a server-wide one,
    // webhooks are refused rather than sent unsigned.
    p.webhook_secret = None;
    let unsigned_sender = p.spawn(Pipeline::options());
    let unsigned = p.create(Channel::Webhook, &url, json!({"x": 1}), None).await;
    p.tick().await;
    let d = &p.settled(&[unsigned]).await[0];
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert!(d.last_error.as_deref().is_some_and(|e| e.contains("no webhook")), "{:?}", d.last_error);
    assert_eq!(hooks.0.lock().expect("hooks").len(), 1);
    unsigned_sender.stop().await;
    server.abort();
    p.finish().await;
}

/// Webhook breakers are kept per destination host: a dead host opens its own breaker and
/// another host's deliveries go out meanwhile; the hosts kept are bounded. Destinations webhooks
/// may not reach are refused before any connection and shown as `unreachable`.
pub async fn webhook_breakers_are_kept_per_host(store: Arc<dyn Store>, broker: &TestBroker) {
    use herald_core::delivery::BreakerState;

    let p = Pipeline::new(store, broker).await;
    let mut options = Pipeline::options();
    options.breaker =
        BreakerConfig { failure_threshold: 2, open_for: Duration::from_secs(600), ..BreakerConfig::default() };
    options.max_hosts = 2;
    let sender = p.spawn(options);
    let (url, hooks, server) = webhook_receiver().await;
    // A port nothing listens on: connections are refused.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
    let dead_host = dead.to_string();

    let failing = [
        p.create(Channel::Webhook, &format!("http://{dead}/a"), json!({"n": 1}), None).await,
        p.create(Channel::Webhook, &format!("http://{dead}/b"), json!({"n": 2}), None).await,
    ];
    p.tick().await;
    for d in p.settled(&failing).await {
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, 1));
        assert_eq!(d.last_error.as_deref(), Some("unreachable"), "no detail for the user");
    }
    assert!(matches!(sender.sender.destination_breaker_state(&dead_host), BreakerState::Open { .. }));
    assert_eq!(sender.sender.breaker_state(Channel::Webhook), BreakerState::Closed, "not one breaker for all");
    assert!(!p.metrics.encode().contains(r#"herald_delivery_breaker_state{channel="webhook"}"#), "no gauge");

    // The dead host's next delivery is deferred without an attempt; the live host's goes out.
    let held = p.create(Channel::Webhook, &format!("http://{dead}/c"), json!({"n": 3}), None).await;
    let live = p.create(Channel::Webhook, &url, json!({"n": 4}), None).await;
    p.tick().await;
    let [held, live] = <[Delivery; 2]>::try_from(p.settled(&[held, live]).await).expect("2");
    assert_eq!((held.status, held.attempts), (DeliveryStatus::Pending, 0), "{:?}", held.last_error);
    assert!(held.last_error.as_deref().is_some_and(|e| e.contains("circuit")), "{:?}", held.last_error);
    assert_eq!((live.status, live.attempts), (DeliveryStatus::Sent, 1), "{:?}", live.last_error);
    assert_eq!(hooks.0.lock().expect("hooks").len(), 1);

    // Refused destinations: addresses outside the allowed loopback, and a name, which the
    // suite's resolver does not resolve. Each is checked before connecting, so nothing leaves
    // this machine.
    let refused = [
        p.create(Channel::Webhook, "http://169.254.169.254/latest/meta-data", json!({}), None).await,
        p.create(Channel::Webhook, "http://[::1]:9/x", json!({}), None).await,
        p.create(Channel::Webhook, "http://10.0.0.1:9/x", json!({}), None).await,
        p.create(Channel::Webhook, "http://hooks.example/x", json!({}), None).await,
    ];
    p.tick().await;
    for d in p.settled(&refused).await {
        assert_eq!((d.status, d.attempts, d.last_error.as_deref()), (DeliveryStatus::Pending, 1, Some("unreachable")));
    }
    // Four more hosts came through a map of two: the oldest went, the dead one among them.
    assert_eq!(sender.sender.webhook_hosts(), 2);
    assert_eq!(sender.sender.destination_breaker_state(&dead_host), BreakerState::Closed, "forgotten");
    sender.stop().await;
    server.abort();
    p.finish().await;
}

/// Email through a real SMTP server: a message with both bodies and the delivery's id as its
/// `Message-ID`; a 451 is retried on the policy's schedule and then sent, a 550 fails for good,
/// a recipient that is no address fails without a call; and one domain's failures open only
/// that domain's breaker.
pub async fn email_deliveries_follow_the_mail_servers_answers(store: Arc<dyn Store>, broker: &TestBroker) {
    let p = Pipeline::new(store, broker).await;
    let mut options = Pipeline::options();
    options.breaker = BreakerConfig { failure_threshold: 2, ..BreakerConfig::default() };
    let sender = p.spawn(options);
    let mail = json!({"subject": "Your report", "text": "Plain body", "html": "<p>HTML body</p>"});

    let sent = p.create(Channel::Email, "ada@example.org", mail.clone(), None).await;
    p.tick().await;
    let d = &p.settled(&[sent]).await[0];
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Sent, 1), "{:?}", d.last_error);
    let received = p.smtp.mails();
    assert_eq!(received.len(), 1);
    let m = &received[0];
    assert_eq!(
        (m.from.as_str(), m.to.as_slice(), m.user.as_deref()),
        ("noreply@herald.test", &["ada@example.org".to_owned()][..], Some("mailer"))
    );
    assert!(m.data.contains("Subject: Your report"), "{}", m.data);
    assert!(m.data.contains("Plain body") && m.data.contains("<p>HTML body</p>"), "both bodies: {}", m.data);
    assert!(m.data.contains(&format!("Message-ID: <{sent}@herald>")), "{}", m.data);

    // Try later: retried after 1 s, then sent.
    p.smtp.answer(crate::smtp::SmtpAnswer::TryLater);
    let later = p.create(Channel::Email, "bob@example.net", mail.clone(), None).await;
    p.tick().await;
    let d = &p.settled(&[later]).await[0];
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, 1));
    assert!(d.last_error.as_deref().is_some_and(|e| e.contains("451")), "{:?}", d.last_error);
    p.smtp.answer(crate::smtp::SmtpAnswer::Accept);
    p.advance(chrono::Duration::seconds(1));
    p.tick().await;
    let d = &p.all_become(&[later], DeliveryStatus::Sent).await[0];
    assert_eq!(d.attempts, 2);

    // Never: final at once.
    p.smtp.answer(crate::smtp::SmtpAnswer::Refuse);
    let refused = p.create(Channel::Email, "nobody@example.net", mail.clone(), None).await;
    let not_an_address = p.create(Channel::Email, "not an address", mail.clone(), None).await;
    p.tick().await;
    let [refused, not_an_address] = <[Delivery; 2]>::try_from(p.settled(&[refused, not_an_address]).await).expect("2");
    assert_eq!((refused.status, refused.attempts), (DeliveryStatus::Failed, 1));
    assert!(refused.last_error.as_deref().is_some_and(|e| e.contains("550")), "{:?}", refused.last_error);
    assert_eq!(not_an_address.status, DeliveryStatus::Failed);
    assert_eq!(p.smtp.mails().len(), 2, "nothing more was accepted");

    // Two transient failures for one domain open its breaker only.
    p.smtp.answer(crate::smtp::SmtpAnswer::TryLater);
    let flaky: Vec<_> = [
        p.create(Channel::Email, "a@flaky.example", mail.clone(), None).await,
        p.create(Channel::Email, "b@flaky.example", mail.clone(), None).await,
    ]
    .into();
    p.tick().await;
    p.settled(&flaky).await;
    let flaky_state = sender.sender.destination_breaker_state("email:flaky.example");
    assert!(matches!(flaky_state, herald_core::delivery::BreakerState::Open { .. }), "{flaky_state:?}");
    assert_eq!(
        sender.sender.destination_breaker_state("email:example.org"),
        herald_core::delivery::BreakerState::Closed
    );
    sender.stop().await;
    p.finish().await;
}

/// The sender's in-flight limit follows the provider: it climbs while every slot is busy and
/// answers come back healthy, and falls when a third of them fail, never outside its bounds.
pub async fn the_sender_adapts_its_concurrency_to_the_provider(store: Arc<dyn Store>, broker: &TestBroker) {
    let p = Pipeline::new(store, broker).await;
    let options = SenderOptions { concurrency: 64, min_concurrency: 4, ..Pipeline::options() };
    let sender = p.spawn(options);
    let gauge = |p: &Pipeline| p.metrics.sender_concurrency.get();
    assert_eq!(gauge(&p), 16, "it starts at a quarter of its bound");
    // Slow enough that every slot is busy: healthy answers raise the limit.
    p.provider.set_latency(Duration::from_millis(20), Duration::ZERO);
    let healthy = p.sms(600).await;
    while p.tick().await > 0 {}
    p.all_become(&healthy, DeliveryStatus::Sent).await;
    let raised = gauge(&p);
    assert!(raised > 16 && raised <= 64, "healthy and busy: {raised}");
    // A third failing: the limit falls, not below its floor.
    p.provider.set_failure_rate(0.33);
    let failing = p.sms(600).await;
    while p.tick().await > 0 {}
    p.settled(&failing).await;
    let lowered = gauge(&p);
    assert!(lowered < raised && lowered >= 4, "failing: {lowered} (was {raised})");
    sender.stop().await;
    p.finish().await;
}
