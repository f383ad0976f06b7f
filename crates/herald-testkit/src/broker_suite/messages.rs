//! The broker suite's message part: what an adapter does with an id published twice, and the
//! headers, ids and payload a message carries through a topic, a queue and a delayed redelivery.

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use herald_core::broker::{Broker, Message};
use uuid::Uuid;

use super::{TestBroker, message, next_delivery, next_message, options};

/// What each adapter promises about a message id published twice: the in-process broker and NATS
/// (`Nats-Msg-Id` within the stream's duplicate window) deliver it once; RabbitMQ has no
/// de-duplication, delivers both, and consumers drop the second by [`Message::id`], as shown here.
pub async fn duplicate_ids_are_dropped_or_left_to_the_consumer(broker: &dyn Broker, env: &TestBroker) {
    let original = message("once");
    broker.enqueue("jobs.dedup", original.clone()).await.expect("enqueue");
    broker.enqueue("jobs.dedup", original.clone()).await.expect("enqueue the same id again (a relay retry)");
    broker.enqueue_all("jobs.dedup", vec![original.clone()]).await.expect("and once more in a batch");
    let sentinel = message("sentinel");
    broker.enqueue("jobs.dedup", sentinel.clone()).await.expect("enqueue sentinel");

    let mut consumer = broker.consume("jobs.dedup", options(Duration::from_secs(30), 8)).await.expect("consume");
    let mut received = Vec::new();
    let mut processed = HashSet::new();
    loop {
        let delivery = next_delivery(consumer.as_mut(), "the messages up to the sentinel").await;
        let message = delivery.message.clone();
        delivery.ack().await.expect("ack");
        received.push(message.id);
        processed.insert(message.id);
        if message.id == sentinel.id {
            break;
        }
    }
    if env.dedups_natively() {
        assert_eq!(received, vec![original.id, sentinel.id], "the broker dropped the duplicates");
    } else {
        assert_eq!(received, vec![original.id, original.id, original.id, sentinel.id], "every copy arrives");
        assert_eq!(processed.len(), 2, "and the consumer, keyed by Message::id, handles it once");
    }
}

pub async fn headers_and_ids_travel_unchanged(broker: &dyn Broker, _env: &TestBroker) {
    let payload: Vec<u8> = (0..=255u8).chain(b"\r\n\0 end".iter().copied()).collect();
    let sent = Message::new(Uuid::now_v7(), payload)
        .with_header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .with_header("event-type", "task.created")
        .with_header("Mixed-Case", "naïve ✓ value: with colon")
        .with_header("empty", "");
    let expected_headers: BTreeMap<String, String> = sent.headers.clone();

    let mut subscription = broker.subscribe("events.headers").await.expect("subscribe");
    broker.broadcast("events.headers", sent.clone()).await.expect("broadcast");
    assert_eq!(next_message(subscription.as_mut(), "the broadcast").await, sent, "broadcast carries all unchanged");

    broker.enqueue("jobs.headers", sent.clone()).await.expect("enqueue");
    let mut consumer = broker.consume("jobs.headers", options(Duration::from_secs(30), 2)).await.expect("consume");
    let delivery = next_delivery(consumer.as_mut(), "the message").await;
    assert_eq!(delivery.message, sent, "queue carries all unchanged");
    delivery.nack(Some(Duration::from_millis(100))).await.expect("nack with delay");
    let again = next_delivery(consumer.as_mut(), "the delayed redelivery").await;
    assert_eq!(again.message.headers, expected_headers, "no broker-added headers leak through a redelivery");
    assert_eq!(again.message, sent);
    again.ack().await.expect("ack");
}
