//! The relay's suite, written once and run over every store and broker: committed events reach
//! the broker at least once, in commit order per channel, whatever happens to the relay.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::Duration,
};

use herald_core::{
    broker::Subscription,
    change::ChangeEvent,
    metrics::Metrics,
    store::Store,
    task::TaskStatus,
    wire::{EVENTS_TOPIC, EventEnvelope},
};
use herald_workers::relay::{Relay, RelayOptions, Step};
use tokio_util::sync::CancellationToken;

use crate::{
    broker_suite::TestBroker,
    store_suite::{new_task, owner},
};

/// Ticks until `count` events have been published. PostgreSQL's visibility horizon is
/// cluster-wide, so another test's open transaction can hold back a pass for a moment.
async fn publish_all(relay: &Relay, count: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while batches.iter().sum::<usize>() < count {
        assert!(tokio::time::Instant::now() < deadline, "only {batches:?} of {count} published");
        match relay.tick().await.expect("tick") {
            Step::Published(n) => batches.push(n),
            Step::Idle => tokio::time::sleep(Duration::from_millis(20)).await,
            Step::Standby => panic!("the only relay must hold the lease"),
        }
    }
    batches
}

fn relay(store: &Arc<dyn Store>, broker: &TestBroker, batch: u32) -> Relay {
    let options = RelayOptions {
        batch,
        lease_ttl: Duration::from_secs(1),
        poll_interval: Duration::from_millis(50),
        retention: Duration::from_secs(3600),
        channel_max_events: 1000,
    };
    Relay::new(store.clone(), broker.broker.clone(), Arc::new(Metrics::default()), options)
}

/// One decoded event as received: (id, stream, offset, type).
type Seen = (uuid::Uuid, String, i64, String);

async fn receive(sub: &mut Box<dyn Subscription>, wait: Duration) -> Option<Seen> {
    let message = tokio::time::timeout(wait, sub.next()).await.ok()?.expect("subscription open");
    let EventEnvelope::V1 { id, kind, stream, offset, .. } = EventEnvelope::decode(&message.payload).expect("envelope");
    assert_eq!(message.id, id, "the message id is the event id");
    Some((id, stream.to_string(), offset, kind))
}

/// Writes `count` task events for one owner: a create, then updates.
async fn write_changes(store: &Arc<dyn Store>, owner: herald_core::user::UserId, count: usize) {
    let mut task = new_task(owner, "Relayed");
    store
        .create_task(&task, &[ChangeEvent::for_user(owner, "task.created", serde_json::json!({}), task.created_at)])
        .await
        .expect("create");
    for i in 1..count {
        let mut next = task.clone();
        next.version += 1;
        next.status = if i % 2 == 0 { TaskStatus::Todo } else { TaskStatus::Done };
        let event =
            ChangeEvent::for_user(owner, "task.updated", serde_json::json!({"version": next.version}), next.updated_at);
        store.update_task(&next, task.version, &[event]).await.expect("update");
        task = next;
    }
}

pub async fn committed_events_are_published_in_order_and_marked(store: Arc<dyn Store>, broker: &TestBroker) {
    let mut sub = broker.broker.subscribe(EVENTS_TOPIC).await.expect("subscribe");
    let ada = owner(store.as_ref(), "ada@example.org").await;
    write_changes(&store, ada, 5).await;
    let relay = relay(&store, broker, 3);
    let batches = publish_all(&relay, 5).await;
    assert!(batches.iter().all(|n| *n <= 3), "no pass publishes more than its batch: {batches:?}");
    assert_eq!(relay.tick().await.expect("tick"), Step::Idle);
    let mut seen = Vec::new();
    while let Some(event) = receive(&mut sub, Duration::from_secs(10)).await {
        seen.push(event);
        if seen.len() == 5 {
            break;
        }
    }
    let offsets: Vec<i64> = seen.iter().map(|s| s.2).collect();
    assert_eq!(offsets, [1, 2, 3, 4, 5]);
    assert_eq!(seen[0].3, "task.created");
    assert!(seen.iter().all(|s| s.1 == format!("user:{ada}")));
    let outbox = store.read_outbox(0, 100).await.expect("outbox");
    assert!(outbox.iter().all(|e| e.published_at.is_some()), "every relayed event is marked");
    assert_eq!(store.oldest_unpublished().await.expect("lag"), None);
}

pub async fn a_relay_killed_before_marking_republishes_and_loses_nothing(store: Arc<dyn Store>, broker: &TestBroker) {
    let mut sub = broker.broker.subscribe(EVENTS_TOPIC).await.expect("subscribe");
    let ada = owner(store.as_ref(), "ada@example.org").await;
    write_changes(&store, ada, 4).await;
    // The first relay publishes and dies before it can mark: exactly the relay's publish step.
    let mut pending = Vec::new();
    while pending.len() < 4 {
        pending = store.unpublished_events(10).await.expect("pending").events;
    }
    let messages = pending.iter().map(EventEnvelope::message).collect();
    broker.broker.broadcast_all(EVENTS_TOPIC, messages).await.expect("publish");
    assert!(store.unpublished_events(10).await.expect("pending").events.len() == 4, "nothing was marked");

    let restarted = relay(&store, broker, 100);
    publish_all(&restarted, 4).await;
    let mut unique = HashSet::new();
    let mut received = 0;
    while let Some((id, ..)) = receive(&mut sub, Duration::from_secs(10)).await {
        received += 1;
        unique.insert(id);
        if unique.len() == 4 && received >= if broker.dedups_natively() { 4 } else { 8 } {
            break;
        }
    }
    assert_eq!(unique.len(), 4, "every event arrived");
    assert!(received >= 4);
}

pub async fn only_the_lease_holder_publishes(store: Arc<dyn Store>, broker: &TestBroker) {
    let ada = owner(store.as_ref(), "ada@example.org").await;
    write_changes(&store, ada, 3).await;
    let first = relay(&store, broker, 100);
    let second = relay(&store, broker, 100);
    publish_all(&first, 3).await;
    write_changes(&store, ada, 2).await;
    assert_eq!(second.tick().await.expect("tick"), Step::Standby, "the other relay waits while the lease is held");
    publish_all(&first, 2).await;
    // The holder goes away cleanly: its lease is released and the standby takes over at once.
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    first.run(shutdown).await;
    write_changes(&store, ada, 1).await;
    publish_all(&second, 1).await;
}

/// A relay renews its lease only now and then, but never publishes on a lease it lost: once the
/// lease lapsed and another relay took it, the first one stands by.
pub async fn a_relay_whose_lease_lapsed_stands_by(store: Arc<dyn Store>, broker: &TestBroker) {
    let ada = owner(store.as_ref(), "ada@example.org").await;
    write_changes(&store, ada, 1).await;
    let first = relay(&store, broker, 100);
    publish_all(&first, 1).await;
    // The lease lasts 1 s (on the database's clock); the first relay stalls past it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = relay(&store, broker, 100);
    write_changes(&store, ada, 1).await;
    publish_all(&second, 1).await;
    write_changes(&store, ada, 1).await;
    assert_eq!(first.tick().await.expect("tick"), Step::Standby, "the lapsed holder checks before publishing");
    publish_all(&second, 1).await;
}

/// `writers` concurrent writers over `channels` owners make `total` changes while a relay runs;
/// the relay is killed (aborted, possibly between publish and mark) and restarted part-way. The
/// subscriber must see every event, once after de-duplication by id, in offset (commit) order
/// within each channel.
pub async fn many_writers_and_a_killed_relay_lose_nothing(store: Arc<dyn Store>, broker: &TestBroker, total: usize) {
    let (writers, channels) = (8, 4);
    let mut sub = broker.broker.subscribe(EVENTS_TOPIC).await.expect("subscribe");
    let mut owners = Vec::new();
    for c in 0..channels {
        owners.push(owner(store.as_ref(), &format!("writer{c}@example.org")).await);
    }
    let first = relay(&store, broker, 200);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { first.run(shutdown).await }
    });
    let per_writer = total / writers;
    let writing: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let owner = owners[w % channels];
            tokio::spawn(async move { write_changes(&store, owner, per_writer).await })
        })
        .collect();

    let mut first_seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut unique = HashSet::new();
    let mut restarted = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while unique.len() < total {
        assert!(tokio::time::Instant::now() < deadline, "only {} of {total} events arrived", unique.len());
        let Some((id, channel, offset, _)) = receive(&mut sub, Duration::from_secs(1)).await else { continue };
        if unique.insert(id) {
            first_seen.entry(channel).or_default().push(offset);
        }
        if restarted.is_none() && unique.len() >= total / 3 {
            // Kill the relay mid-flight, then start another (a new lease holder).
            running.abort();
            let second = relay(&store, broker, 200);
            let shutdown = shutdown.clone();
            restarted = Some(tokio::spawn(async move { second.run(shutdown).await }));
        }
    }
    for w in writing {
        w.await.expect("writer");
    }
    shutdown.cancel();
    restarted.expect("the relay was killed and restarted mid-way").await.expect("relay");
    assert_eq!(first_seen.len(), channels);
    for (channel, offsets) in &first_seen {
        let expected: Vec<i64> = (1..=offsets.len() as i64).collect();
        if let Some(at) = offsets.iter().zip(&expected).position(|(a, b)| a != b) {
            let around = &offsets[at.saturating_sub(3)..(at + 5).min(offsets.len())];
            panic!("{channel}: offsets arrived out of commit order or with gaps at position {at}: {around:?}");
        }
    }
    assert_eq!(store.unpublished_events(10).await.expect("pending").events.len(), 0);
}
