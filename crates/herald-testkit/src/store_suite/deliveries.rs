//! Deliveries: created once per source key, claimed under exclusive leases, rescued when a lease
//! lapses, and settled only by the sender that holds the current lease.

use chrono::Utc;
use herald_core::{
    change::ChangeEvent,
    delivery::{Channel, Delivery, DeliveryId, DeliveryReport, DeliveryStatus, NewDelivery},
    store::Store,
    user::UserId,
};

use super::now;

/// A pending test delivery due at `due`, with a deadline an hour later.
pub(super) fn new_delivery(key: &str, due: chrono::DateTime<Utc>) -> NewDelivery {
    NewDelivery {
        id: DeliveryId::new(),
        kind: "test.delivery".into(),
        source_key: key.into(),
        recipient: "79001234567".into(),
        channel: Channel::Provider,
        payload: serde_json::json!({"text": key}),
        source_id: None,
        recipient_id: None,
        next_attempt_at: due,
        deadline: Some(due + chrono::Duration::hours(1)),
        created_at: now(),
        trace_context: None,
    }
}

const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

pub async fn deliveries_are_created_once_per_source_key(store: &dyn Store) {
    let t = now();
    let mut batch: Vec<_> = (0..3).map(|i| new_delivery(&format!("src:{i}"), t)).collect();
    batch[0].source_id = Some(uuid::Uuid::now_v7());
    batch[0].recipient_id = Some(uuid::Uuid::now_v7());
    batch[0].trace_context = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    assert_eq!(store.create_deliveries(&batch).await.expect("create"), 3);
    let again = vec![new_delivery("src:1", t), new_delivery("src:2", t), new_delivery("src:3", t)];
    assert_eq!(store.create_deliveries(&again).await.expect("again"), 1, "known source keys are skipped");
    assert!(store.delivery(again[0].id).await.expect("read").is_none(), "the duplicate was not stored");

    let stored = store.delivery(batch[0].id).await.expect("read").expect("present");
    assert_eq!((stored.status, stored.attempts, stored.channel), (DeliveryStatus::Pending, 0, Channel::Provider));
    assert_eq!((&stored.payload, stored.deadline), (&batch[0].payload, batch[0].deadline));
    assert_eq!((stored.source_id, stored.recipient_id), (batch[0].source_id, batch[0].recipient_id));
    assert_eq!(stored.trace_context, batch[0].trace_context);
    let plain = store.delivery(batch[1].id).await.expect("read").expect("present");
    assert_eq!((plain.source_id, plain.recipient_id, plain.trace_context), (None, None, None), "all are optional");
    let numbers: Vec<i64> = {
        let mut n = Vec::new();
        for d in &batch {
            n.push(store.delivery(d.id).await.expect("read").expect("present").number);
        }
        n
    };
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "numeric ids are assigned in order: {numbers:?}");
}

pub async fn only_due_pending_deliveries_are_claimed_earliest_first(store: &dyn Store) {
    let t = now();
    let later = new_delivery("later", t + chrono::Duration::minutes(5));
    let second = new_delivery("second", t - chrono::Duration::seconds(10));
    let first = new_delivery("first", t - chrono::Duration::seconds(20));
    store.create_deliveries(&[later.clone(), second.clone(), first.clone()]).await.expect("create");
    let claimed = store.claim_due_deliveries(t, 10, LEASE).await.expect("claim").deliveries;
    let keys: Vec<&str> = claimed.iter().map(|d| d.source_key.as_str()).collect();
    assert_eq!(keys, ["first", "second"], "due ones only, earliest first");
    assert!(claimed.iter().all(|d| d.status == DeliveryStatus::Sending && d.lease_until.is_some()));
    assert!(
        store.claim_due_deliveries(t, 10, LEASE).await.expect("claim").deliveries.is_empty(),
        "a lease is exclusive"
    );
    let late = store.claim_due_deliveries(t + chrono::Duration::minutes(6), 10, LEASE).await.expect("claim").deliveries;
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].id, later.id);
}

pub async fn concurrent_claimers_never_share_a_delivery(store: &dyn Store) {
    let t = now();
    let batch: Vec<_> = (0..120).map(|i| new_delivery(&format!("bulk:{i}"), t)).collect();
    store.create_deliveries(&batch).await.expect("create");
    let claimers = (0..4).map(|_| async {
        let mut mine = Vec::new();
        loop {
            let got = store.claim_due_deliveries(t, 7, LEASE).await.expect("claim").deliveries;
            if got.is_empty() {
                return mine;
            }
            mine.extend(got.into_iter().map(|d| d.id));
        }
    });
    let all: Vec<DeliveryId> = futures::future::join_all(claimers).await.into_iter().flatten().collect();
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (120, 120), "every delivery claimed exactly once");
}

pub async fn lapsed_leases_are_rescued_and_stale_reports_change_nothing(store: &dyn Store) {
    let t = now();
    let d = new_delivery("lease", t);
    store.create_deliveries(std::slice::from_ref(&d)).await.expect("create");
    let first = store.claim_due_deliveries(t, 1, LEASE).await.expect("claim").deliveries.remove(0);
    assert_eq!(store.rescue_expired_leases(t + chrono::Duration::seconds(10)).await.expect("rescue"), 0);
    // The sender holding the first lease dies; after the lease lapses the rescuer returns it.
    let after = t + chrono::Duration::seconds(31);
    assert_eq!(store.rescue_expired_leases(after).await.expect("rescue"), 1);
    let second = store.claim_due_deliveries(after, 1, LEASE).await.expect("claim again").deliveries.remove(0);
    assert_ne!(first.lease_until, second.lease_until);

    let report = |lease: &Delivery, status, attempts| DeliveryReport {
        id: d.id,
        lease_until: lease.lease_until.expect("leased"),
        status,
        attempts,
        next_attempt_at: after,
        last_error: None,
        sent_at: Some(after),
        call_time: None,
    };
    let stale = report(&first, DeliveryStatus::Failed, 1);
    assert_eq!(store.record_deliveries(&[stale], after).await.expect("record"), 0, "the old lease is gone");
    assert_eq!(store.record_deliveries(&[report(&second, DeliveryStatus::Sent, 2)], after).await.expect("record"), 1);
    let done = store.delivery(d.id).await.expect("read").expect("present");
    assert_eq!(
        (done.status, done.attempts, done.sent_at, done.lease_until),
        (DeliveryStatus::Sent, 2, Some(after), None)
    );
    assert_eq!(store.record_deliveries(&[report(&second, DeliveryStatus::Failed, 3)], after).await.expect("record"), 0);
}

pub async fn a_retry_report_returns_the_delivery_to_pending_until_its_next_attempt(store: &dyn Store) {
    let t = now();
    let d = new_delivery("retry", t);
    store.create_deliveries(std::slice::from_ref(&d)).await.expect("create");
    let claimed = store.claim_due_deliveries(t, 1, LEASE).await.expect("claim").deliveries.remove(0);
    let retry_at = t + chrono::Duration::seconds(2);
    let report = DeliveryReport {
        id: d.id,
        lease_until: claimed.lease_until.expect("leased"),
        status: DeliveryStatus::Pending,
        attempts: 1,
        next_attempt_at: retry_at,
        last_error: Some("provider answered 503".into()),
        sent_at: None,
        call_time: None,
    };
    assert_eq!(store.record_deliveries(&[report], t).await.expect("record"), 1);
    let pending = store.delivery(d.id).await.expect("read").expect("present");
    assert_eq!((pending.status, pending.attempts, pending.next_attempt_at), (DeliveryStatus::Pending, 1, retry_at));
    assert_eq!(pending.last_error.as_deref(), Some("provider answered 503"));
    assert!(
        store
            .claim_due_deliveries(t + chrono::Duration::seconds(1), 1, LEASE)
            .await
            .expect("claim")
            .deliveries
            .is_empty()
    );
    assert_eq!(store.claim_due_deliveries(retry_at, 1, LEASE).await.expect("claim").deliveries.len(), 1);
}

pub async fn claims_are_checked_counted_and_settled_with_their_events(store: &dyn Store) {
    let t = now();
    let batch: Vec<_> = (0..3).map(|i| new_delivery(&format!("claims:{i}"), t)).collect();
    let later = new_delivery("claims:later", t + chrono::Duration::minutes(5));
    store.create_deliveries(&batch).await.expect("create");
    store.create_deliveries(std::slice::from_ref(&later)).await.expect("create");
    assert_eq!(store.count_due_deliveries(t).await.expect("count"), 3, "the later one is not due");

    let claimed = store.claim_due_deliveries(t, 2, LEASE).await.expect("claim").deliveries;
    assert_eq!(store.count_due_deliveries(t).await.expect("count"), 1, "claimed ones are not due");
    assert_eq!(store.count_claimed_deliveries().await.expect("count"), 2, "claimed and not yet reported");
    let claims: Vec<_> = claimed.iter().map(|d| (d.id, d.lease_until.expect("leased"))).collect();
    let stale = (claims[0].0, claims[0].1 - chrono::Duration::seconds(1));
    let unclaimed = (batch.iter().find(|d| !claims.iter().any(|c| c.0 == d.id)).expect("one left").id, t);
    let current = store.current_claims(&[claims[0], claims[1], stale, unclaimed]).await.expect("check");
    assert_eq!(current, claims.iter().map(|c| c.0).collect(), "only the exact current leases");

    // Settling with events: the event is written with the report, and not for a stale claim.
    let user = UserId::new();
    let event = |id: uuid::Uuid| event_for(user, id, t);
    let report = |(id, lease_until): (DeliveryId, chrono::DateTime<Utc>)| DeliveryReport {
        id,
        lease_until,
        status: DeliveryStatus::Sent,
        attempts: 1,
        next_attempt_at: t,
        last_error: None,
        sent_at: Some(t),
        call_time: None,
    };
    assert!(store.record_delivery_with_events(&report(claims[0]), &[event(claims[0].0.0)], t).await.expect("record"));
    assert!(
        !store.record_delivery_with_events(&report(claims[0]), &[event(uuid::Uuid::now_v7())], t).await.expect("again")
    );
    assert!(
        !store.record_delivery_with_events(&report(stale), &[event(uuid::Uuid::now_v7())], t).await.expect("stale")
    );
    let events = store.read_outbox(0, 100).await.expect("outbox");
    assert_eq!(events.len(), 1, "only the current claim wrote its event");
    assert_eq!(events[0].event.id, claims[0].0.0);
    assert_eq!(store.delivery(claims[0].0).await.expect("read").expect("present").status, DeliveryStatus::Sent);
    assert!(store.current_claims(&claims).await.expect("check").contains(&claims[1].0));
    assert!(!store.current_claims(&claims).await.expect("check").contains(&claims[0].0), "settled");
    assert_eq!(store.count_claimed_deliveries().await.expect("count"), 1, "the settled one is no longer claimed");
}

/// An event for `owner`'s channel with a given id.
pub fn event_for(owner: UserId, id: uuid::Uuid, at: chrono::DateTime<Utc>) -> ChangeEvent {
    ChangeEvent { id, ..ChangeEvent::for_user(owner, "test.delivered", serde_json::json!({"ok": true}), at) }
}
