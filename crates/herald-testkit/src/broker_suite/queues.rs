//! The broker suite's queue part: publish order, ack and nack (now and later), ack deadlines and
//! prefetch slots, and what a dropped consumer hands on to another.

use std::{collections::HashSet, time::Duration};

use herald_core::broker::{Broker, Message};
use tokio::time::Instant;

use super::{BrokerKind, TestBroker, WAIT, body, message, next_delivery, options, within};

pub async fn a_consumer_sees_a_queue_in_publish_order(broker: &dyn Broker, _env: &TestBroker) {
    broker.ping().await.expect("ping");
    broker.enqueue("jobs.ordered", message("0")).await.expect("enqueue");
    broker.enqueue_all("jobs.ordered", (1..20).map(|i| message(&i.to_string())).collect()).await.expect("enqueue_all");
    broker.enqueue("jobs.ordered", message("20")).await.expect("enqueue");
    let mut consumer = broker.consume("jobs.ordered", options(Duration::from_secs(30), 8)).await.expect("consume");
    for expected in 0..=20 {
        let delivery = next_delivery(consumer.as_mut(), "the next message in order").await;
        assert_eq!(body(&delivery.message), expected.to_string(), "publish order");
        assert!(!delivery.redelivered);
        delivery.ack().await.expect("ack");
    }
}

pub async fn ack_removes_and_nack_redelivers(broker: &dyn Broker, _env: &TestBroker) {
    let mut consumer = broker.consume("jobs.acks", options(Duration::from_secs(30), 1)).await.expect("consume");
    let (a, b) = (message("a"), message("b"));
    broker.enqueue_all("jobs.acks", vec![a.clone(), b.clone()]).await.expect("enqueue");

    let first = next_delivery(consumer.as_mut(), "a").await;
    assert_eq!(first.message, a);
    first.nack(None).await.expect("nack");
    let again = next_delivery(consumer.as_mut(), "a, redelivered").await;
    assert_eq!(again.message, a, "a nacked message comes back before later ones");
    assert!(again.redelivered, "and says so");
    again.ack().await.expect("ack a");

    let second = next_delivery(consumer.as_mut(), "b").await;
    assert_eq!(second.message, b);
    second.ack().await.expect("ack b");

    let sentinel = message("sentinel");
    broker.enqueue("jobs.acks", sentinel.clone()).await.expect("enqueue sentinel");
    let last = next_delivery(consumer.as_mut(), "the sentinel").await;
    assert_eq!(last.message, sentinel, "acked messages never come back");
    last.ack().await.expect("ack sentinel");
}

pub async fn nack_with_delay_redelivers_after_the_delay(broker: &dyn Broker, _env: &TestBroker) {
    let delay = Duration::from_millis(800);
    let mut consumer = broker.consume("jobs.delayed", options(Duration::from_secs(30), 4)).await.expect("consume");
    let delayed = message("delayed");
    broker.enqueue("jobs.delayed", delayed.clone()).await.expect("enqueue");
    let first = next_delivery(consumer.as_mut(), "the message").await;
    let nacked_at = Instant::now();
    first.nack(Some(delay)).await.expect("nack with delay");

    let later = message("later");
    broker.enqueue("jobs.delayed", later.clone()).await.expect("enqueue later");
    let next = next_delivery(consumer.as_mut(), "the later message").await;
    assert_eq!(next.message, later, "a delayed message does not hold up the queue");
    next.ack().await.expect("ack later");

    let again = next_delivery(consumer.as_mut(), "the delayed message").await;
    let waited = nacked_at.elapsed();
    assert_eq!(again.message, delayed, "id, headers and payload survive the delay");
    assert!(again.redelivered);
    assert!(waited >= delay, "redelivered after {waited:?}, before the {delay:?} delay");
    assert!(waited < delay + WAIT, "redelivered far too late: {waited:?}");
    again.ack().await.expect("ack");
}

pub async fn a_dropped_consumer_gives_its_messages_to_another(broker: &dyn Broker, env: &TestBroker) {
    let sent: Vec<Message> = (0..3).map(|i| message(&format!("job {i}"))).collect();
    broker.enqueue_all("jobs.handover", sent.clone()).await.expect("enqueue");
    let mut first = broker.consume("jobs.handover", options(Duration::from_secs(30), 8)).await.expect("consume");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next_delivery(first.as_mut(), "a message for the first consumer").await);
    }
    drop(first);
    drop(held);

    let other = env.open_another().await;
    let mut second = other.consume("jobs.handover", options(Duration::from_secs(30), 8)).await.expect("consume");
    let started = Instant::now();
    let mut got = Vec::new();
    while got.len() < 3 {
        let delivery = next_delivery(second.as_mut(), "a message the dropped consumer held").await;
        // NATS 2.9 rolls its delivery pointer back when the last delivered message is nacked and
        // then counts its next delivery as the first: the flag is best effort there.
        assert!(delivery.redelivered || env.kind == BrokerKind::Nats, "it was delivered before");
        got.push(delivery.message.clone());
        delivery.ack().await.expect("ack");
    }
    assert!(started.elapsed() < Duration::from_secs(30), "released by the drop, not by the 30 s deadline");
    // Redeliveries may come in any order; every one of them must come.
    let ids = |messages: &[Message]| messages.iter().map(|m| m.id).collect::<HashSet<_>>();
    assert_eq!(ids(&got), ids(&sent), "all of them");
}

pub async fn an_unacked_delivery_comes_back_after_the_ack_deadline(broker: &dyn Broker, _env: &TestBroker) {
    let deadline = Duration::from_millis(600);
    let mut consumer = broker.consume("jobs.deadline", options(deadline, 4)).await.expect("consume");
    let sent = message("slow");
    broker.enqueue("jobs.deadline", sent.clone()).await.expect("enqueue");
    let held = next_delivery(consumer.as_mut(), "the message").await;
    let taken_at = Instant::now();

    let again = next_delivery(consumer.as_mut(), "the redelivery after the deadline").await;
    let waited = taken_at.elapsed();
    assert_eq!(again.message, sent);
    assert!(again.redelivered);
    assert!(
        waited >= deadline - Duration::from_millis(50),
        "came back after {waited:?}, before the {deadline:?} deadline"
    );

    assert!(held.ack().await.is_err(), "a delivery whose deadline passed can no longer be acked");
    again.ack().await.expect("ack the redelivery");
}

/// A delivery held past its ack deadline (neither settled nor dropped) no longer counts against
/// the consumer's prefetch: with a prefetch of one, the queue goes on.
pub async fn an_expired_delivery_frees_its_prefetch_slot(broker: &dyn Broker, _env: &TestBroker) {
    let mut consumer = broker.consume("jobs.expiry", options(Duration::from_millis(600), 1)).await.expect("consume");
    let sent = vec![message("a"), message("b")];
    broker.enqueue_all("jobs.expiry", sent.clone()).await.expect("enqueue");
    let held = next_delivery(consumer.as_mut(), "the first message").await;
    assert_eq!(held.message, sent[0]);
    let mut got = HashSet::new();
    while got.len() < 2 {
        let delivery = next_delivery(consumer.as_mut(), "the messages after the deadline").await;
        got.insert(delivery.message.id);
        delivery.ack().await.expect("ack");
    }
    assert_eq!(got, sent.iter().map(|m| m.id).collect::<HashSet<_>>());
    assert!(held.ack().await.is_err(), "the expired delivery can no longer be acked");
}

/// A consumer whose owner stops calling `next` for longer than the ack deadline keeps working when
/// it reads again: every message arrives and is acked. The in-process broker and Redis hand out
/// only live deliveries then; RabbitMQ and NATS may first hand out ones whose lease ran out while
/// they waited in the consumer's buffer (settling those fails, and they come again).
pub async fn a_consumer_read_after_a_pause_hands_out_live_deliveries(broker: &dyn Broker, env: &TestBroker) {
    let only_live = matches!(env.kind, BrokerKind::Memory | BrokerKind::Redis);
    let sent: Vec<Message> = (0..5).map(|i| message(&format!("paused {i}"))).collect();
    broker.enqueue_all("jobs.paused", sent.clone()).await.expect("enqueue");
    let mut consumer = broker.consume("jobs.paused", options(Duration::from_millis(600), 2)).await.expect("consume");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut got = HashSet::new();
    while got.len() < sent.len() {
        let delivery = next_delivery(consumer.as_mut(), "a message after the pause").await;
        let id = delivery.message.id;
        match delivery.ack().await {
            Ok(()) => {
                got.insert(id);
            }
            Err(error) => assert!(!only_live, "a delivery handed out after the pause is live: {error:?}"),
        }
    }
    assert_eq!(got, sent.iter().map(|m| m.id).collect::<HashSet<_>>());
}

/// A dropped consumer hands on at once what it was given (even a delivery dropped before it) and
/// what reached it while it was waiting for more.
pub async fn a_dropped_consumer_releases_everything_it_was_given(broker: &dyn Broker, env: &TestBroker) {
    let mut first = broker.consume("jobs.release", options(Duration::from_secs(30), 8)).await.expect("consume");
    let given = message("given");
    broker.enqueue("jobs.release", given.clone()).await.expect("enqueue");
    let delivery = next_delivery(first.as_mut(), "the message").await;
    drop(delivery);
    let waiting = message("arrived while the consumer waited");
    broker.enqueue("jobs.release", waiting.clone()).await.expect("enqueue");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(first);

    let other = env.open_another().await;
    let mut second = other.consume("jobs.release", options(Duration::from_secs(30), 8)).await.expect("consume");
    let started = Instant::now();
    let mut got = HashSet::new();
    while got.len() < 2 {
        let delivery = within(Duration::from_secs(20), "the dropped consumer's messages", second.next())
            .await
            .expect("a delivery");
        got.insert(delivery.message.id);
        delivery.ack().await.expect("ack");
    }
    assert_eq!(got, HashSet::from([given.id, waiting.id]));
    assert!(started.elapsed() < Duration::from_secs(30), "released by the drop, not by the 30 s deadline");
}
