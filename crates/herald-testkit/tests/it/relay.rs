//! The outbox relay over every store and broker.

use std::sync::Arc;

use herald_testkit::{TestStore, broker_suite::TestBroker};

store_broker_suite! {
    relay_suite {
        sqlite_memory: Sqlite + Memory,
        postgres_memory: Postgres + Memory,
        postgres_amqp: Postgres + Amqp,
        postgres_nats: Postgres + Nats,
        postgres_redis: Postgres + Redis,
    }
    {
        committed_events_are_published_in_order_and_marked,
        a_relay_killed_before_marking_republishes_and_loses_nothing,
        only_the_lease_holder_publishes,
        a_relay_whose_lease_lapsed_stands_by,
        many_writers_and_a_killed_relay_lose_nothing(10_000),
    }
}

/// A transaction that started earlier but commits later is never overtaken or skipped: the relay
/// waits at the visibility horizon until it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_relay_waits_for_a_long_transaction_below_the_horizon() {
    use sqlx::Connection as _;
    let Some(db) = TestStore::postgres("postgres_relay_waits_for_a_long_transaction").await else { return };
    let broker = TestBroker::memory();
    let ada = herald_testkit::store_suite::owner(db.store.as_ref(), "ada@example.org").await;

    let mut long = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let mut tx = sqlx::Connection::begin(&mut long).await.expect("begin");
    sqlx::query(
        "INSERT INTO outbox (id, kind, channel, payload, created_at) \
         VALUES ($1, 'slow.write', 'room:0192f0c1-5c3a-7b8e-9d4f-000000000001', '{}', now())",
    )
    .bind(uuid::Uuid::now_v7())
    .execute(&mut *tx)
    .await
    .expect("insert in the long transaction");

    let task = herald_testkit::store_suite::new_task(ada, "Quick");
    let event = herald_core::change::ChangeEvent::for_user(ada, "task.created", serde_json::json!({}), task.created_at);
    db.store.create_task(&task, &[event]).await.expect("a later transaction commits first");

    let options = herald_workers::relay::RelayOptions { batch: 100, ..Default::default() };
    let relay = herald_workers::relay::Relay::new(
        db.store.clone(),
        broker.broker.clone(),
        Arc::new(Default::default()),
        options,
    );
    assert_eq!(
        relay.tick().await.expect("tick"),
        herald_workers::relay::Step::Idle,
        "held back by the open transaction"
    );

    tx.commit().await.expect("the long transaction commits");
    assert_eq!(relay.tick().await.expect("tick"), herald_workers::relay::Step::Published(2));
    let outbox = db.store.read_outbox(0, 10).await.expect("outbox");
    assert_eq!(outbox.iter().map(|e| e.event.kind.as_str()).collect::<Vec<_>>(), ["slow.write", "task.created"]);
    assert!(outbox.iter().all(|e| e.published_at.is_some()));
    broker.finish().await;
    db.finish().await;
}

/// The interleaving that defeats a row-by-row horizon filter: B takes its xid first, X opens
/// next, A writes offset 1 of a channel and commits, B then writes offset 2 and commits. B's row is
/// below the horizon (X is still open) and A's is not. The relay must publish nothing until X ends,
/// then offset 1 before offset 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_relay_never_publishes_a_later_offset_before_an_earlier_one() {
    use sqlx::{Connection as _, PgConnection};
    let Some(db) = TestStore::postgres("postgres_relay_never_publishes_a_later_offset").await else { return };
    let broker = TestBroker::memory();
    let mut sub = broker.broker.subscribe(herald_core::wire::EVENTS_TOPIC).await.expect("subscribe");

    async fn write_event(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, kind: &str) {
        let offset: i64 = sqlx::query_scalar(
            "INSERT INTO channel_offsets (channel, last_offset) \
             VALUES ('room:0192f0c1-5c3a-7b8e-9d4f-00000000aace', 1) \
             ON CONFLICT (channel) DO UPDATE SET last_offset = channel_offsets.last_offset + 1 RETURNING last_offset",
        )
        .fetch_one(&mut **tx)
        .await
        .expect("offset");
        sqlx::query(
            "INSERT INTO outbox (id, kind, channel, channel_offset, payload, created_at) \
             VALUES ($1, $2, 'room:0192f0c1-5c3a-7b8e-9d4f-00000000aace', $3, '{}', now())",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(kind)
        .bind(offset)
        .execute(&mut **tx)
        .await
        .expect("outbox row");
    }

    let (mut a, mut b, mut x) = (
        PgConnection::connect(&db.url).await.expect("a"),
        PgConnection::connect(&db.url).await.expect("b"),
        PgConnection::connect(&db.url).await.expect("x"),
    );
    let mut tx_b = b.begin().await.expect("begin b");
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *tx_b).await.expect("b takes its xid");
    let mut tx_x = x.begin().await.expect("begin x");
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *tx_x).await.expect("x takes its xid");
    let mut tx_a = a.begin().await.expect("begin a");
    write_event(&mut tx_a, "first").await;
    tx_a.commit().await.expect("a commits offset 1");
    write_event(&mut tx_b, "second").await;
    tx_b.commit().await.expect("b commits offset 2");

    let relay = herald_workers::relay::Relay::new(
        db.store.clone(),
        broker.broker.clone(),
        Arc::new(Default::default()),
        herald_workers::relay::RelayOptions::default(),
    );
    assert_eq!(relay.tick().await.expect("tick"), herald_workers::relay::Step::Idle, "offset 2 must wait for offset 1");
    tx_x.rollback().await.expect("x ends");
    assert_eq!(relay.tick().await.expect("tick"), herald_workers::relay::Step::Published(2));
    let mut offsets = Vec::new();
    for _ in 0..2 {
        let message =
            tokio::time::timeout(std::time::Duration::from_secs(5), sub.next()).await.expect("in time").expect("open");
        let herald_core::wire::EventEnvelope::V1 { offset, .. } =
            herald_core::wire::EventEnvelope::decode(&message.payload).expect("envelope");
        offsets.push(offset);
    }
    assert_eq!(offsets, [1, 2]);
    broker.finish().await;
    db.finish().await;
}

/// In a served app, a change reaches the broker at once: the relay is woken by the commit (an
/// in-process signal on SQLite, LISTEN/NOTIFY on PostgreSQL), not by polling, whose interval is
/// set to a minute here.
async fn a_served_change_is_relayed_on_wake_up(backend: herald_testkit::Backend) {
    let Some(app) = herald_testkit::TestApp::start_with(backend, "served_change_is_relayed", |env| {
        env.insert("HERALD_RELAY_POLL_INTERVAL".into(), "60s".into());
    })
    .await
    else {
        return;
    };
    let mut sub = app.herald().services.broker.subscribe(herald_core::wire::EVENTS_TOPIC).await.expect("subscribe");
    let token = app.user("ada@example.org").await;
    // Let the relay settle into its long wait before the change.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let task = app.post("/api/v1/tasks", Some(&token), &serde_json::json!({"title": "Wake up"})).await.body;
    // Anything well below the minute-long poll interval proves the wake-up; the margin is for a
    // loaded machine.
    let message = tokio::time::timeout(std::time::Duration::from_secs(30), sub.next())
        .await
        .expect("relayed on wake-up, long before the poll interval")
        .expect("open");
    let herald_core::wire::EventEnvelope::V1 { kind, data, offset, .. } =
        herald_core::wire::EventEnvelope::decode(&message.payload).expect("envelope");
    assert_eq!((kind.as_str(), offset, &data["id"]), ("task.created", 1, &task["id"]));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // The relay counts an event after marking it, which may come just after the subscriber saw it.
    let mut metrics = String::new();
    for _ in 0..500 {
        metrics = app.client.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
        if metrics.contains("herald_relay_published_total 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(metrics.contains("herald_relay_published_total 1"), "{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_served_change_is_relayed_on_wake_up() {
    a_served_change_is_relayed_on_wake_up(herald_testkit::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_served_change_is_relayed_on_wake_up() {
    a_served_change_is_relayed_on_wake_up(herald_testkit::Backend::Postgres).await;
}
