//! The broker suite's topic part: every subscription gets every broadcast, in order, from the
//! moment it subscribed.

use herald_core::broker::{Broker, Message};

use super::{TestBroker, message, next_message};

pub async fn every_subscription_gets_every_broadcast_in_order(broker: &dyn Broker, env: &TestBroker) {
    let other = env.open_another().await;
    let mut here = broker.subscribe("events.fanout").await.expect("subscribe");
    let mut there = other.subscribe("events.fanout").await.expect("subscribe on another connection");

    let mut sent: Vec<Message> = (0..10).map(|i| message(&i.to_string())).collect();
    broker.broadcast_all("events.fanout", sent.clone()).await.expect("broadcast_all");
    let last = message("10");
    broker.broadcast("events.fanout", last.clone()).await.expect("broadcast");
    sent.push(last);

    for subscription in [&mut here, &mut there] {
        for expected in &sent {
            assert_eq!(&next_message(subscription.as_mut(), "the next broadcast").await, expected, "broadcast order");
        }
    }

    let mut late = broker.subscribe("events.fanout").await.expect("subscribe late");
    let fresh = message("fresh");
    broker.broadcast("events.fanout", fresh.clone()).await.expect("broadcast");
    assert_eq!(next_message(late.as_mut(), "a broadcast").await, fresh, "only what was broadcast after subscribing");
    assert_eq!(next_message(here.as_mut(), "a broadcast").await, fresh);
    let unrelated = broker.broadcast("events.other", message("x")).await;
    assert!(unrelated.is_ok(), "broadcasting with no subscriber is fine");
}
