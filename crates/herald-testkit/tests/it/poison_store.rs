//! Held records at the store and worker level, on SQLite and PostgreSQL: failures back a record
//! off and then quarantine it; a notice step the database refuses is undone alone while the pass
//! goes on; an unreadable outbox row holds back only its stream; an unavailable store blames no
//! record.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use herald_broker::MemoryBroker;
use herald_core::{
    change::ChangeEvent,
    clock::SystemClock,
    delivery::{Channel, DeliveryId, NewDelivery},
    metrics::Metrics,
    notice::{self, StepStatus},
    notify::NoticeChannel,
    quarantine::{FailurePolicy, FailureReason, ItemFailure, Worker},
    store::Store,
    stream::StreamName,
    user::UserId,
};
use herald_testkit::{Backend, TestStore, proxy::Proxy, store_suite};
use herald_workers::{
    relay::{Relay, RelayOptions},
    scheduler::{Scheduler, SchedulerOptions},
};
use serde_json::json;

fn log_delivery(at: chrono::DateTime<Utc>) -> NewDelivery {
    let id = DeliveryId::new();
    NewDelivery {
        id,
        kind: "test.note".into(),
        source_key: format!("test:{id}"),
        recipient: "ops".into(),
        channel: Channel::Log,
        payload: json!({}),
        source_id: None,
        recipient_id: None,
        next_attempt_at: at,
        deadline: None,
        created_at: at,
        trace_context: None,
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(#[tokio::test] async fn $name() { super::$name(herald_testkit::Backend::Sqlite).await; })* }
        mod postgres { $(#[tokio::test] async fn $name() { super::$name(herald_testkit::Backend::Postgres).await; })* }
    };
}
on_both!(failures_back_off_then_quarantine, a_step_the_database_refuses_is_held_alone);

async fn failures_back_off_then_quarantine(backend: Backend) {
    let Some(test) = TestStore::new(backend, "held_records").await else { return };
    let store = test.store.as_ref();
    let now = Utc::now();
    let due = log_delivery(now);
    store.create_deliveries(std::slice::from_ref(&due)).await.expect("create");
    let policy =
        FailurePolicy { first_delay: Duration::from_secs(10), max_delay: Duration::from_secs(25), quarantine_after: 3 };
    let failure = ItemFailure::new(Worker::Scheduler, due.id.to_string(), FailureReason::Conflict, "conflict on x");
    let first = store.record_failure(&failure, &policy, now).await.expect("first");
    assert_eq!((first.failures, first.quarantined_at), (1, None));
    assert_eq!(first.retry_at.timestamp_micros(), (now + chrono::Duration::seconds(10)).timestamp_micros());
    // Backed off: not claimed before its time, claimed after it.
    assert!(store.claim_due_deliveries(now, 10, Duration::from_secs(60)).await.expect("claim").deliveries.is_empty());
    let later = now + chrono::Duration::seconds(11);
    assert_eq!(
        store.claim_due_deliveries(later, 10, Duration::from_secs(60)).await.expect("claim").deliveries.len(),
        1
    );
    let second = store.record_failure(&failure, &policy, later).await.expect("second");
    assert_eq!((second.id, second.failures), (first.id, 2));
    assert_eq!(second.retry_at.timestamp_micros(), (later + chrono::Duration::seconds(20)).timestamp_micros());
    let third = store.record_failure(&failure, &policy, later).await.expect("third");
    assert!(third.quarantined_at.is_some(), "quarantined at the third failure");
    assert_eq!(third.retry_at.timestamp_micros(), (later + chrono::Duration::seconds(25)).timestamp_micros());
    // A later failure for another reason leaves it quarantined.
    let fourth = ItemFailure::new(Worker::Scheduler, due.id.to_string(), FailureReason::Failing, "again");
    let fourth = store.record_failure(&fourth, &policy, later).await.expect("fourth");
    let micros = |at: Option<chrono::DateTime<Utc>>| at.map(|at| at.timestamp_micros());
    assert_eq!(micros(fourth.quarantined_at), micros(third.quarantined_at), "still quarantined, since the third");
    let listed = store.quarantined(None, 10).await.expect("list");
    assert_eq!(listed.iter().map(|h| h.id).collect::<Vec<_>>(), [first.id]);
    assert_eq!(store.held_record(Worker::Scheduler, &due.id.to_string()).await.expect("read"), Some(listed[0].clone()));
    // Quarantined: not prunable, not claimed however late, until released.
    assert_eq!(store.prune_held(now + chrono::Duration::days(1), 100).await.expect("prune"), 0);
    let rescued = store.rescue_expired_leases(now + chrono::Duration::days(1)).await.expect("rescue");
    assert_eq!(rescued, 1);
    let much_later = now + chrono::Duration::days(1);
    assert!(
        store.claim_due_deliveries(much_later, 10, Duration::from_secs(60)).await.expect("claim").deliveries.is_empty()
    );
    assert_eq!(store.release_held(first.id).await.expect("release").map(|h| h.id), Some(first.id));
    assert_eq!(store.release_held(first.id).await.expect("release again"), None);
    assert_eq!(
        store.claim_due_deliveries(much_later, 10, Duration::from_secs(60)).await.expect("claim").deliveries.len(),
        1
    );
    // A delivery the sender backed off is left out of claims as well.
    let sent_twice = log_delivery(much_later);
    store.create_deliveries(std::slice::from_ref(&sent_twice)).await.expect("create");
    let refused = ItemFailure::new(Worker::Sender, sent_twice.id.to_string(), FailureReason::Failing, "refused");
    store.record_failure(&refused, &policy, much_later).await.expect("record");
    let claimed = store.claim_due_deliveries(much_later, 10, Duration::from_secs(60)).await.expect("claim");
    assert!(claimed.deliveries.iter().all(|d| d.id != sent_twice.id), "held by the sender");
    // An unreadable record is quarantined at its first failure; a backed-off one is pruned once due.
    let unreadable = ItemFailure::new(Worker::Relay, "user:x", FailureReason::Unreadable, "bad row");
    assert!(store.record_failure(&unreadable, &policy, now).await.expect("record").quarantined_at.is_some());
    let passing = ItemFailure::new(Worker::Router, "m1", FailureReason::Failing, "once");
    store.record_failure(&passing, &policy, now).await.expect("record");
    assert_eq!(store.prune_held(now + chrono::Duration::seconds(11), 100).await.expect("prune"), 1);
    assert_eq!(store.held_record(Worker::Router, "m1").await.expect("read"), None);
    test.finish().await;
}

/// The database refuses one person's email step (a trigger, as a constraint added by an operator
/// would): the pass undoes that step alone, names its notice, and Ada's step goes.
async fn a_step_the_database_refuses_is_held_alone(backend: Backend) {
    let Some(test) = TestStore::new(backend, "refused_step").await else { return };
    let trigger = match backend {
        Backend::Sqlite => {
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON deliveries WHEN NEW.recipient = 'poison@example.org' \
             BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END;"
        }
        Backend::Postgres => {
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
             IF NEW.recipient = 'poison@example.org' THEN RAISE EXCEPTION 'refused by a trigger'; END IF; RETURN NEW; END $$ \
             LANGUAGE plpgsql; CREATE TRIGGER refuse_poison BEFORE INSERT ON deliveries FOR EACH ROW EXECUTE FUNCTION refuse_poison();"
        }
    };
    test.raw_sql(trigger).await;
    let store = test.store.clone();
    let now = Utc::now();
    let poison = store_suite::owner(store.as_ref(), "poison@example.org").await;
    let ada = store_suite::owner(store.as_ref(), "ada@example.org").await;
    let notice_for = |user: UserId| store_suite::new_notice(user, "user:admin", &[(NoticeChannel::Email, 0)], now);
    let (bad, good) = (notice_for(poison), notice_for(ada));
    store.create_notice(&bad, None).await.expect("notice");
    store.create_notice(&good, None).await.expect("notice");

    let metrics = Arc::new(Metrics::default());
    let broker = Arc::new(MemoryBroker::new());
    let scheduler =
        Scheduler::new(store.clone(), broker, Arc::new(SystemClock), metrics.clone(), SchedulerOptions::default());
    scheduler.tick().await.expect("the pass goes on");
    let good = store.notice(good.id).await.expect("read").expect("stored");
    assert_eq!(good.steps[0].status, StepStatus::Sending, "Ada's step went");
    let bad_now = store.notice(bad.id).await.expect("read").expect("stored");
    assert_eq!(bad_now.steps[0].status, StepStatus::Pending, "the refused step is left as it was");
    let held = store.held_record(Worker::Escalation, &bad.id.to_string()).await.expect("read").expect("held");
    assert_eq!(held.failures, 1);
    assert!(held.error.contains("refused by a trigger"), "{}", held.error);
    assert!(held.quarantined_at.is_none() && held.retry_at > now, "backed off, not yet quarantined");
    // The next pass leaves it alone until its time.
    let pass = store.escalate_notices(Utc::now(), 100, &|due| notice::plan(due, Utc::now())).await.expect("pass");
    assert!(pass.failed.is_empty() && pass.steps.is_empty(), "{pass:?}");
    let text = metrics.encode();
    let line = r#"herald_worker_item_failures_total{worker="escalation",reason="failing"} 1"#;
    assert!(text.contains(line), "{line} in {text}");
    test.finish().await;
}

/// An outbox row that cannot be read holds back its stream only, and goes once mended and retried.
#[tokio::test]
async fn an_unreadable_event_holds_back_only_its_stream() {
    let test = TestStore::sqlite().await;
    let store = test.store.clone();
    let event = |stream: &str, n: u32| ChangeEvent {
        id: uuid::Uuid::now_v7(),
        kind: "note".into(),
        stream: StreamName::parse(stream).expect("a stream"),
        payload: json!({"n": n}),
        created_at: Utc::now(),
        trace_context: None,
    };
    let (a, b) = ("user:0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "user:0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e70");
    store.append_events(&[event(a, 1), event(b, 1), event(a, 2), event(b, 2)]).await.expect("append");
    test.raw_sql(&format!("UPDATE outbox SET payload = 'not json' WHERE channel = '{a}' AND channel_offset = 1")).await;
    let relay =
        Relay::new(store.clone(), Arc::new(MemoryBroker::new()), Arc::new(Metrics::default()), RelayOptions::default());
    relay.tick().await.expect("the pass goes on");
    let left = store.unpublished_events(10).await.expect("read");
    assert!(left.events.is_empty(), "held back: {:?}", left.events);
    let held = store.held_record(Worker::Relay, a).await.expect("read").expect("held");
    assert_eq!((held.reason, held.quarantined_at.is_some()), (FailureReason::Unreadable, true));
    // Mended and retried, the stream goes on from where it stopped, in order.
    test.raw_sql(&format!("UPDATE outbox SET payload = '{{\"n\":1}}' WHERE channel = '{a}'")).await;
    store.release_held(held.id).await.expect("release").expect("released");
    let waiting = store.unpublished_events(10).await.expect("read").events;
    let offsets: Vec<(String, i64)> = waiting.iter().map(|e| (e.event.stream.to_string(), e.stream_offset)).collect();
    assert_eq!(offsets, [(a.to_owned(), 1), (a.to_owned(), 2)], "b went, a waited whole");
    relay.tick().await.expect("pass");
    assert!(store.unpublished_events(10).await.expect("read").events.is_empty());
    test.finish().await;
}

/// PostgreSQL cut off mid-pass: the pass fails and is retried, and no record is blamed.
#[tokio::test]
async fn an_unavailable_store_quarantines_nothing() {
    let Some(test) = TestStore::postgres("unavailable_store").await else { return };
    let url = &test.url;
    let rest = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://")).expect("postgres url");
    let (auth_host, path) = rest.split_once('/').expect("a database");
    let (auth, host) = auth_host.rsplit_once('@').map_or(("", auth_host), |(a, h)| (a, h));
    let proxy = Proxy::start(host).await.expect("proxy");
    let at = if auth.is_empty() { String::new() } else { format!("{auth}@") };
    let through = format!("postgres://{at}{}/{path}", proxy.addr());
    let store: Arc<dyn Store> = Arc::new(herald_store::PgStore::connect(&through, 2).await.expect("connect"));
    let now = Utc::now();
    let owner = store_suite::owner(store.as_ref(), "ada@example.org").await;
    let n = store_suite::new_notice(owner, "user:admin", &[(NoticeChannel::Email, 0)], now);
    store.create_notice(&n, None).await.expect("notice");
    store.create_deliveries(&[log_delivery(now)]).await.expect("delivery");
    let metrics = Arc::new(Metrics::default());
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(MemoryBroker::new()),
        Arc::new(SystemClock),
        metrics.clone(),
        SchedulerOptions::default(),
    );
    proxy.hold();
    proxy.sever();
    let mut failed = 0;
    for _ in 0..3 {
        if scheduler.tick().await.is_err() {
            failed += 1;
        }
    }
    assert!(failed > 0, "a pass without the store fails");
    proxy.release();
    let mut passed = false;
    for _ in 0..100 {
        if scheduler.tick().await.is_ok() {
            passed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(passed, "passes go on once the store is back");
    assert!(test.store.quarantined(None, 10).await.expect("list").is_empty());
    assert!(test.store.held_record(Worker::Escalation, &n.id.to_string()).await.expect("read").is_none());
    assert!(!metrics.encode().contains("herald_worker_item_failures_total{"), "no record was blamed");
    test.finish().await;
}
