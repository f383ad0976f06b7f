//! The broker suite's connection part: a closed broker, a dropped connection and a restarted
//! broker; consumers and subscriptions carry on across a reconnect, publishing fails retryably
//! meanwhile.

use std::{collections::HashSet, future::Future, time::Duration};

use herald_core::broker::{Broker, BrokerError, Message, Subscription};
use uuid::Uuid;

use super::{
    BrokerKind, RECONNECT_WAIT, TestBroker, WAIT, body, message, next_delivery, next_message, options, within,
};
use crate::proxy::Proxy;

/// Enqueues `message` once the broker takes it again: while cut off it must fail with the
/// retryable `Unavailable`, anything else fails the test.
async fn enqueue_once_back(broker: &dyn Broker, queue: &str, message: &Message) {
    within(RECONNECT_WAIT, "enqueueing to work again", async {
        loop {
            match broker.enqueue(queue, message.clone()).await {
                Ok(()) => break,
                Err(BrokerError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(other) => panic!("a broker out of reach must be Unavailable, got {other:?}"),
            }
        }
    })
    .await;
}

/// Reads `subscription` until it says `Interrupted`, broadcasting a "ping" on `topic` every
/// 200 ms meanwhile (each must be accepted when `pings_must_land`); pings are all it may see
/// before.
async fn until_interrupted(
    subscription: &mut dyn Subscription,
    broker: &dyn Broker,
    topic: &str,
    pings_must_land: bool,
) {
    within(RECONNECT_WAIT, "the subscription to report the interruption", async {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                received = subscription.next() => match received {
                    Err(BrokerError::Interrupted) => break,
                    Ok(received) => assert!(body(&received).starts_with("ping"), "{received:?}"),
                    Err(error) => panic!("the subscription keeps working, got {error:?}"),
                },
                _ = tick.tick() => {
                    let pinged = broker.broadcast(topic, message("ping")).await;
                    assert!(pinged.is_ok() || !pings_must_land, "broadcast: {pinged:?}");
                }
            }
        }
    })
    .await;
}

pub async fn a_closed_broker_refuses_work_and_ends_its_streams(broker: &dyn Broker, env: &TestBroker) {
    let other = env.open_another().await;
    let mut consumer = other.consume("jobs.closing", options(Duration::from_secs(30), 2)).await.expect("consume");
    let mut subscription = other.subscribe("events.closing").await.expect("subscribe");
    other.close().await;
    assert!(matches!(other.enqueue("jobs.closing", message("x")).await, Err(BrokerError::Closed)));
    assert!(matches!(within(WAIT, "the consumer to end", consumer.next()).await, Err(BrokerError::Closed)));
    assert!(matches!(within(WAIT, "the subscription to end", subscription.next()).await, Err(BrokerError::Closed)));
    if env.kind == BrokerKind::Memory {
        return; // in-process, "another connection" is the broker itself
    }
    // Closing one connection leaves the backend and the other connections alone.
    broker.enqueue("jobs.closing", message("still open")).await.expect("enqueue on the open broker");
    broker.broadcast("events.closing", message("still open")).await.expect("broadcast on the open broker");
}

pub async fn consumers_and_subscriptions_survive_a_dropped_connection(broker: &dyn Broker, env: &TestBroker) {
    let Some(target) = env.target() else {
        eprintln!("{:?}: in-process, no connection to drop", env.kind);
        return;
    };
    let proxy = Proxy::start(&target).await.expect("start proxy");
    let via = env.open_through(&proxy).await.expect("a proxied connection");
    let mut consumer = via.consume("jobs.reconnect", options(Duration::from_secs(10), 4)).await.expect("consume");
    let mut subscription = via.subscribe("events.reconnect").await.expect("subscribe");

    let before = message("before");
    broker.enqueue("jobs.reconnect", before.clone()).await.expect("enqueue");
    let delivery = next_delivery(consumer.as_mut(), "a message before the drop").await;
    assert_eq!(delivery.message, before);
    delivery.ack().await.expect("ack");
    broker.broadcast("events.reconnect", before.clone()).await.expect("broadcast");
    assert_eq!(next_message(subscription.as_mut(), "a broadcast before the drop").await, before);

    proxy.sever();

    // Publishing through the dropped connection fails with a retryable error until it is back.
    let after = message("after");
    enqueue_once_back(via.as_ref(), "jobs.reconnect", &after).await;

    // The existing consumer receives on the new connection (acking anything else it sees).
    within(RECONNECT_WAIT, "the consumer to receive after the reconnect", async {
        loop {
            let delivery = consumer.next().await.expect("consumer keeps working");
            let found = delivery.message.id == after.id;
            delivery.ack().await.expect("ack on the new connection");
            if found {
                break;
            }
        }
    })
    .await;

    // The existing subscription says it was interrupted (broadcasts in the gap may be lost) while
    // others keep broadcasting; from then on, every broadcast reaches it.
    until_interrupted(subscription.as_mut(), broker, "events.reconnect", true).await;
    let resumed = message("resumed");
    broker.broadcast("events.reconnect", resumed.clone()).await.expect("broadcast after the interruption");
    within(WAIT, "the first broadcast after the interruption", async {
        loop {
            let received = subscription.next().await.expect("no second interruption");
            if received.id == resumed.id {
                break;
            }
            assert!(body(&received).starts_with("ping"), "{received:?}");
        }
    })
    .await;
    let last = message("via");
    via.broadcast("events.reconnect", last.clone()).await.expect("broadcast through the new connection");
    within(WAIT, "the broadcast through the new connection", async {
        while subscription.next().await.expect("subscription").id != last.id {}
    })
    .await;
    via.close().await;
}

/// Work queued on a broker that restarts mid-flow (`restart` stops it, keeping its data, and
/// starts it again) all arrives: what was acked before stays acked, the rest reaches the same
/// consumer on its new connection; a subscription says `Interrupted` and then hears broadcasts
/// again; publishing works again once the broker is back.
pub async fn queued_work_survives_a_broker_restart<F, R>(broker: &dyn Broker, restart: R)
where
    R: FnOnce() -> F,
    F: Future<Output = ()>,
{
    const SENT: usize = 1_000;
    let sent: Vec<Message> = (0..SENT).map(|i| message(&format!("job {i}"))).collect();
    broker.enqueue_all("jobs.restart", sent.clone()).await.expect("enqueue");
    let mut consumer = broker.consume("jobs.restart", options(Duration::from_secs(5), 16)).await.expect("consume");
    let mut subscription = broker.subscribe("events.restart").await.expect("subscribe");
    let mut acked = HashSet::new();
    while acked.len() < SENT / 3 {
        let delivery = next_delivery(consumer.as_mut(), "a job before the restart").await;
        acked.insert(delivery.message.id);
        delivery.ack().await.expect("ack before the restart");
    }

    restart().await;

    let after = message("enqueued after the restart");
    enqueue_once_back(broker, "jobs.restart", &after).await;
    let mut expected: HashSet<Uuid> = sent.iter().map(|m| m.id).collect();
    expected.insert(after.id);
    let mut again = 0;
    within(2 * RECONNECT_WAIT, "every job after the restart", async {
        while acked.len() < expected.len() {
            let delivery = consumer.next().await.expect("the consumer keeps working");
            assert!(expected.contains(&delivery.message.id), "an unknown message: {:?}", delivery.message);
            if !acked.insert(delivery.message.id) {
                again += 1; // held when the broker went down: delivered again, at least once
            }
            delivery.ack().await.ok();
        }
    })
    .await;
    assert!(again <= 16, "{again} jobs came twice: only those held (prefetch 16) may");

    until_interrupted(subscription.as_mut(), broker, "events.restart", false).await;
    let resumed = message("resumed");
    broker.broadcast("events.restart", resumed.clone()).await.expect("broadcast after the restart");
    within(WAIT, "the broadcast after the restart", async {
        while subscription.next().await.expect("subscription").id != resumed.id {}
    })
    .await;
}
