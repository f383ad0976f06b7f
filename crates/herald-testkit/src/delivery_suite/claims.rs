//! The delivery suite's claims part: a sender killed mid-batch, claims packed into batches up to
//! the scheduler's bound, and a claim that ran out while its job waited in the queue.

use std::{sync::Arc, time::Duration};

use herald_core::{
    clock::Clock as _,
    delivery::{DELIVERY_QUEUE, DeliveryId, DeliveryReport, DeliveryStatus, JobBatch},
    store::Store,
};
use herald_workers::scheduler::SchedulerOptions;

use super::{Pipeline, secs};
use crate::broker_suite::TestBroker;

/// A sender killed with requests in flight: its unacked messages go to another sender (or its
/// claims lapse and are rescued), every delivery is sent, and only requests the provider had not
/// answered when it died are sent twice.
pub async fn a_sender_killed_mid_batch_loses_nothing(store: Arc<dyn Store>, broker: &TestBroker) {
    let p = Pipeline::new(store, broker).await;
    p.provider.set_latency(Duration::from_millis(200), Duration::ZERO);
    let mut options = Pipeline::options();
    options.concurrency = 10;
    let doomed = p.spawn(options.clone());
    let ids = p.sms(60).await;
    assert_eq!(p.tick().await, 60);
    p.provider.wait_requests(25, Duration::from_secs(20)).await.expect("the first sender is busy");
    doomed.kill().await;

    let survivor = p.spawn(options);
    // Claims the dead sender held lapse; the rescuer returns them and the scheduler requeues.
    p.advance(secs(121));
    p.tick().await;
    let all = p.all_become(&ids, DeliveryStatus::Sent).await;
    let accepted = p.provider.accepted_messages();
    assert_eq!(accepted.len(), 60, "every delivery reached the provider");
    let twice: Vec<_> = accepted.iter().filter(|a| a.times > 1).map(|a| a.id).collect();
    assert!(twice.len() <= 10, "only the killed sender's unrecorded calls (at most its 10 slots) repeat: {twice:?}");
    assert!(all.iter().all(|d| d.sent_at.is_some()));
    assert_eq!(p.provider.stats().inconsistent_retries, 0, "a retry is the same message");
    survivor.stop().await;
    p.finish().await;
}

/// The scheduler claims no more than `max_claimed` at once and packs its claims into messages of
/// `jobs_per_message`; a sender checks a message's claims together and skips the settled ones.
pub async fn claims_travel_in_batches_and_stop_at_the_bound(store: Arc<dyn Store>, broker: &TestBroker) {
    let options = SchedulerOptions {
        batch: 100,
        jobs_per_message: 10,
        max_claimed: 25,
        lease: Duration::from_secs(120),
        ..SchedulerOptions::default()
    };
    let p = Pipeline::with_scheduler(store, broker, options).await;
    let ids = p.sms(60).await;
    let pass = p.scheduler.tick().await.expect("pass");
    assert_eq!((pass.queued, pass.capped), (25, true), "claims stop at the bound");
    let pass = p.scheduler.tick().await.expect("pass");
    assert_eq!((pass.queued, pass.capped), (0, true), "nothing more until senders report");

    // Three messages of 10, 10 and 5 jobs; put them back for the sender.
    let mut consumer = p
        .broker
        .consume(
            DELIVERY_QUEUE,
            herald_core::broker::ConsumeOptions { ack_deadline: Duration::from_secs(30), prefetch: 10 },
        )
        .await
        .expect("consume");
    let mut taken = Vec::new();
    for _ in 0..3 {
        let next = tokio::time::timeout(Duration::from_secs(10), consumer.next()).await.expect("a message");
        taken.push(next.expect("next"));
    }
    let mut sizes = Vec::new();
    let mut queued = Vec::new();
    for delivery in taken {
        let jobs = JobBatch::decode(&delivery.message.payload).expect("a batch");
        sizes.push(jobs.len());
        queued.extend(jobs);
        delivery.nack(None).await.expect("nack");
    }
    drop(consumer);
    assert_eq!(sizes, [10, 10, 5]);

    // One claim is settled elsewhere while its message waits: the sender must not call for it.
    let settled = &queued[3];
    let report = DeliveryReport {
        id: DeliveryId(settled.id),
        lease_until: settled.lease_until,
        status: DeliveryStatus::Cancelled,
        attempts: 0,
        next_attempt_at: p.clock.now(),
        last_error: Some("cancelled".into()),
        sent_at: None,
        call_time: None,
    };
    assert_eq!(p.store.record_deliveries(&[report], p.clock.now()).await.expect("record"), 1);

    let sender = p.spawn(Pipeline::options());
    p.provider.wait_accepted(24, Duration::from_secs(20)).await.expect("the other 24 claims are sent");
    // The bound frees up as reports land; the rest follow.
    let rest: Vec<_> = ids.iter().copied().filter(|id| !queued.iter().any(|j| j.id == id.0)).collect();
    assert_eq!(rest.len(), 35);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while p.provider.stats().distinct_accepted < 59 {
        assert!(tokio::time::Instant::now() < deadline, "the rest were not sent");
        p.tick().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.all_become(&rest, DeliveryStatus::Sent).await;
    assert_eq!(p.get(DeliveryId(settled.id)).await.status, DeliveryStatus::Cancelled);
    assert_eq!(p.provider.received(p.get(DeliveryId(settled.id)).await.number as u64), 0, "never called");
    assert!(p.provider.accepted_messages().iter().all(|a| a.times == 1), "each sent once");
    sender.stop().await;
    p.finish().await;
}

/// A job reached only when its claim is about to lapse is handed back, not sent: the rescuer may
/// already be handing it to another sender. The next claim sends it, once.
pub async fn a_claim_that_ran_out_while_queued_is_handed_back(store: Arc<dyn Store>, broker: &TestBroker) {
    let p = Pipeline::new(store, broker).await;
    let id = p.sms(1).await[0];
    assert_eq!(p.tick().await, 1);
    // The lease is 120 s and a sender keeps 15 s for the call: 110 s later it is too late.
    p.advance(secs(110));
    let sender = p.spawn(Pipeline::options());
    let d = &p.settled(&[id]).await[0];
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, 0), "handed back without an attempt");
    assert!(d.last_error.as_deref().is_some_and(|e| e.contains("claim ran out")), "{:?}", d.last_error);
    assert_eq!(p.provider.received(d.number as u64), 0);
    assert_eq!(p.tick().await, 1, "due again at once");
    let d = &p.all_become(&[id], DeliveryStatus::Sent).await[0];
    assert_eq!((d.attempts, p.provider.received(d.number as u64)), (1, 1));
    sender.stop().await;
    p.finish().await;
}
