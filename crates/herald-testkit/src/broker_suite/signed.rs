//! The broker suite's part on [`SignedBroker`]: signed messages cross every backend intact, and
//! what was not signed with the deployment's key is dropped, counted, and does not stop the stream.

use std::{sync::Arc, time::Duration};

use herald_broker::{MemoryBroker, SIGNATURE_HEADER, SignedBroker};
use herald_core::{
    broker::{Broker, Message},
    metrics::{Metrics, RejectionLabels},
};
use uuid::Uuid;

use super::{TestBroker, message, next_delivery, next_message, options};

/// The deployment's key in these tests.
const KEY: &[u8] = b"the-deployment-key-of-32-bytes!!";
/// Someone else's key, just as long.
const OTHER_KEY: &[u8] = b"an-attacker-key-also-of-32-bytes";

/// `broker` behind the deployment's key, counting rejections in `metrics`.
fn signed(broker: Arc<dyn Broker>, metrics: &Arc<Metrics>) -> SignedBroker {
    SignedBroker::new(broker, KEY, metrics.clone()).expect("a 32-byte key")
}

/// How many messages were rejected for `reason`.
fn rejected(metrics: &Metrics, reason: &str) -> u64 {
    metrics.broker_rejected_messages.get_or_create(&RejectionLabels { reason: reason.to_owned() }).get()
}

/// Whether a message goes to a queue or a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Queue,
    Topic,
}

/// `message` as a SignedBroker under `key` puts it on the wire for the queue or topic `name`:
/// signature header included, so that a test can alter it and publish it raw.
async fn as_signed(key: &[u8], via: Via, name: &str, message: Message) -> Message {
    let wire: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let signer = SignedBroker::new(wire.clone(), key, Arc::default()).expect("key");
    match via {
        Via::Topic => {
            let mut tap = wire.subscribe(name).await.expect("tap the topic");
            signer.broadcast(name, message).await.expect("broadcast");
            next_message(tap.as_mut(), "the signed broadcast").await
        }
        Via::Queue => {
            signer.enqueue(name, message).await.expect("enqueue");
            let mut tap = wire.consume(name, options(Duration::from_secs(30), 1)).await.expect("tap the queue");
            let delivery = next_delivery(tap.as_mut(), "the signed message").await;
            let signed = delivery.message.clone();
            delivery.ack().await.expect("ack");
            signed
        }
    }
}

fn with_headers(body: &str) -> Message {
    message(body)
        .with_header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .with_header("event-type", "task.created")
        .with_header("Mixed-Case", "naïve ✓ value: with colon")
        .with_header("empty", "")
}

pub async fn signed_messages_arrive_intact_through_a_signed_broker(broker: &dyn Broker, env: &TestBroker) {
    broker.ping().await.expect("ping");
    let metrics = Arc::new(Metrics::default());
    let publisher = signed(env.broker.clone(), &metrics);
    let receiver = signed(env.open_another().await, &metrics);
    publisher.ping().await.expect("ping delegates");

    let mut subscription = receiver.subscribe("events.signed").await.expect("subscribe");
    let first = with_headers("broadcast");
    publisher.broadcast("events.signed", first.clone()).await.expect("broadcast");
    let more: Vec<Message> = (0..3).map(|i| message(&format!("batch {i}"))).collect();
    publisher.broadcast_all("events.signed", more.clone()).await.expect("broadcast_all");
    for expected in std::iter::once(&first).chain(&more) {
        let received = next_message(subscription.as_mut(), "a signed broadcast").await;
        assert_eq!(&received, expected, "id, headers and payload unchanged; the signature header stripped");
    }

    let job = with_headers("job");
    publisher.enqueue("jobs.signed", job.clone()).await.expect("enqueue");
    let jobs: Vec<Message> = (0..3).map(|i| message(&format!("job {i}"))).collect();
    publisher.enqueue_all("jobs.signed", jobs.clone()).await.expect("enqueue_all");
    let mut consumer = receiver.consume("jobs.signed", options(Duration::from_secs(30), 8)).await.expect("consume");
    for expected in std::iter::once(&job).chain(&jobs) {
        let delivery = next_delivery(consumer.as_mut(), "a signed job").await;
        assert_eq!(&delivery.message, expected, "id, headers and payload unchanged; the signature header stripped");
        delivery.ack().await.expect("ack through the decorator");
    }

    // A signed job still passes when it comes back: the redelivery carries the same signature.
    let nacked = message("nacked");
    publisher.enqueue("jobs.signed", nacked.clone()).await.expect("enqueue");
    let delivery = next_delivery(consumer.as_mut(), "the job to nack").await;
    delivery.nack(Some(Duration::from_millis(100))).await.expect("nack");
    let again = next_delivery(consumer.as_mut(), "the redelivery").await;
    assert_eq!(again.message, nacked);
    again.ack().await.expect("ack");

    assert_eq!((rejected(&metrics, "unsigned"), rejected(&metrics, "bad_signature")), (0, 0), "nothing rejected");
    let exposition = metrics.encode();
    assert!(exposition.contains(r#"herald_broker_rejected_messages_total{reason="unsigned"} 0"#), "{exposition}");
    assert!(exposition.contains(r#"herald_broker_rejected_messages_total{reason="bad_signature"} 0"#));
}

/// What a publisher without the key can put on the queue or topic `name`: an unsigned message,
/// one signed with another key, a genuine one with its payload altered, and a genuine one signed
/// for the topic of that name when `name` is a queue (and the other way round).
async fn forgeries(via: Via, name: &str) -> [Message; 4] {
    let unsigned = message("unsigned");
    let foreign = as_signed(OTHER_KEY, via, name, message("another key")).await;
    let mut altered = as_signed(KEY, via, name, message("genuine")).await;
    altered.payload = b"altered".to_vec();
    let elsewhere = if via == Via::Queue { Via::Topic } else { Via::Queue };
    let moved = as_signed(KEY, elsewhere, name, message("moved")).await;
    assert!(foreign.headers.contains_key(SIGNATURE_HEADER) && moved.headers.contains_key(SIGNATURE_HEADER));
    [unsigned, foreign, altered, moved]
}

pub async fn unsigned_and_forged_messages_are_dropped_and_counted(broker: &dyn Broker, env: &TestBroker) {
    let metrics = Arc::new(Metrics::default());
    let publisher = signed(env.broker.clone(), &metrics);
    let receiver = signed(env.open_another().await, &metrics);

    // Topics: everything goes through one connection, so it arrives in this order.
    let mut subscription = receiver.subscribe("events.guarded").await.expect("subscribe");
    for forged in forgeries(Via::Topic, "events.guarded").await {
        broker.broadcast("events.guarded", forged).await.expect("publish raw");
    }
    let genuine = message("genuine broadcast");
    publisher.broadcast("events.guarded", genuine.clone()).await.expect("broadcast signed");
    let received = next_message(subscription.as_mut(), "the signed broadcast after the forgeries").await;
    assert_eq!(received, genuine, "the forgeries were dropped and the subscription kept going");
    assert_eq!(rejected(&metrics, "unsigned"), 1);
    assert_eq!(rejected(&metrics, "bad_signature"), 3, "another key, an altered payload, a moved message");
    let after = message("after");
    publisher.broadcast("events.guarded", after.clone()).await.expect("broadcast signed");
    assert_eq!(next_message(subscription.as_mut(), "the next signed broadcast").await, after);

    // Queues: the same, and the rejected deliveries are acked away rather than redelivered.
    let forged = forgeries(Via::Queue, "jobs.guarded").await;
    let forged_ids: Vec<Uuid> = forged.iter().map(|m| m.id).collect();
    broker.enqueue_all("jobs.guarded", forged.to_vec()).await.expect("publish raw");
    let genuine = message("genuine job");
    publisher.enqueue("jobs.guarded", genuine.clone()).await.expect("enqueue signed");
    // A short ack deadline: a message a dropped consumer's pending pull swallowed (NATS) comes
    // back within the wait below, and a rejected one left unacked would come back too.
    let mut consumer = receiver.consume("jobs.guarded", options(Duration::from_secs(2), 8)).await.expect("consume");
    let delivery = next_delivery(consumer.as_mut(), "the signed job after the forgeries").await;
    assert_eq!(delivery.message, genuine, "the forgeries were dropped and the consumer kept going");
    delivery.ack().await.expect("ack");
    assert_eq!(rejected(&metrics, "unsigned"), 2);
    assert_eq!(rejected(&metrics, "bad_signature"), 6);
    let exposition = metrics.encode();
    assert!(exposition.contains(r#"herald_broker_rejected_messages_total{reason="unsigned"} 2"#), "{exposition}");
    assert!(exposition.contains(r#"herald_broker_rejected_messages_total{reason="bad_signature"} 6"#));

    // Had they been nacked or left unsettled, dropping the consumer would hand them to the next.
    drop(consumer);
    let mut raw = broker.consume("jobs.guarded", options(Duration::from_secs(2), 8)).await.expect("consume raw");
    let sentinel = message("sentinel");
    broker.enqueue("jobs.guarded", sentinel.clone()).await.expect("enqueue raw");
    loop {
        let delivery = next_delivery(raw.as_mut(), "the sentinel").await;
        let id = delivery.message.id;
        delivery.ack().await.expect("ack");
        assert!(!forged_ids.contains(&id), "a rejected message came back");
        if id == sentinel.id {
            break;
        }
    }
}
