//! A mailing's timeline: every change of its messages counted in the bucket of the change, by
//! whichever write made it, and summed by bucket width, by range and per mailing.

use chrono::Duration;
use herald_core::{
    campaign::{FirstAttempts, MailingFilter, MailingStatus},
    delivery::{Delivery, DeliveryReport, DeliveryStatus},
    store::Store,
    timeline::{BUCKET_SECONDS, Tally, bucket_of},
};

use super::{
    campaigns::{new_client, new_mailing},
    now,
};

const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

fn report(
    d: &Delivery,
    status: DeliveryStatus,
    call_ms: Option<u64>,
    at: chrono::DateTime<chrono::Utc>,
) -> DeliveryReport {
    DeliveryReport {
        id: d.id,
        lease_until: d.lease_until.expect("leased"),
        status,
        attempts: d.attempts + u32::from(call_ms.is_some()),
        next_attempt_at: at + Duration::minutes(1),
        last_error: None,
        sent_at: (status == DeliveryStatus::Sent).then_some(at),
        call_time: call_ms.map(std::time::Duration::from_millis),
    }
}

fn tally(f: impl FnOnce(&mut Tally)) -> Tally {
    let mut t = Tally::default();
    f(&mut t);
    t
}

pub async fn the_timeline_counts_every_change_of_a_mailings_messages(store: &dyn Store) {
    let t0 = now();
    let (t1, t2, t3) = (t0 + Duration::seconds(10), t0 + Duration::seconds(20), t0 + Duration::seconds(30));
    let [b0, b1, b2, b3] = [t0, t1, t2, t3].map(bucket_of);
    let zones = ["Europe/Moscow", "Asia/Tokyo", "America/New_York", "Asia/Kolkata", "Europe/Paris"];
    let clients: Vec<_> =
        zones.iter().enumerate().map(|(i, z)| new_client(&format!("7916000000{i}"), "916", "", z)).collect();
    assert!(store.insert_clients(&clients).await.expect("clients").is_empty());

    // Made at t0: five messages, Tokyo's stored expired (its first attempt falls at the end).
    let end = t0 + Duration::hours(1);
    let m = new_mailing(MailingFilter::default(), None, t0 - Duration::minutes(1), end);
    store.create_mailing(&m).await.expect("create");
    let plan = FirstAttempts::ByZone(zones.iter().map(|z| (*z, if *z == "Asia/Tokyo" { end } else { t0 })).collect());
    assert_eq!(store.start_mailing(m.id, &plan, t0, 1000).await.expect("start"), Some(5));

    // Reported at t1: sent after 3 ms, retried after 40 ms, failed after 7 s, deferred without a
    // call; and a stale report, which applies nothing and counts nothing.
    let claimed = store.claim_due_deliveries(t1, 10, LEASE).await.expect("claim").deliveries;
    assert_eq!(claimed.len(), 4);
    let of = |i: usize| claimed.iter().find(|d| d.recipient_id == Some(clients[i].id.0)).expect("claimed");
    let mut stale = report(of(0), DeliveryStatus::Failed, Some(1), t1);
    stale.lease_until += Duration::microseconds(1);
    let reports = [
        report(of(0), DeliveryStatus::Sent, Some(3), t1),
        report(of(2), DeliveryStatus::Pending, Some(40), t1),
        report(of(3), DeliveryStatus::Failed, Some(7_000), t1),
        report(of(4), DeliveryStatus::Pending, None, t1),
        stale,
    ];
    assert_eq!(store.record_deliveries(&reports, t1).await.expect("report"), 4);

    // At t2 New York's client goes (its retried message is cancelled); a second mailing starts
    // for the four left and has its end moved to now (all four expire).
    assert!(store.delete_client(clients[2].id, t2).await.expect("delete client"));
    let mut m2 = new_mailing(MailingFilter::default(), None, t0 - Duration::hours(1), t0 + Duration::hours(1));
    store.create_mailing(&m2).await.expect("create");
    assert_eq!(store.start_mailing(m2.id, &FirstAttempts::At(t2), t2, 1000).await.expect("start"), Some(4));
    m2.status = MailingStatus::Running;
    m2.end_at = t2;
    store.update_mailing(&m2, MailingStatus::Running, t2).await.expect("move the end");

    // At t3 the first mailing is cancelled: the deferred message goes.
    assert_eq!(store.cancel_mailing(m.id, t3).await.expect("cancel"), 1);

    let all = |mailing| store.mailing_timeline(mailing, BUCKET_SECONDS, 0, i64::MAX, 100);
    let expected = vec![
        (b0, tally(|t| (t.created, t.expired) = (5, 1))),
        (
            b1,
            tally(|t| {
                (t.attempts, t.sent, t.failed, t.retried) = (3, 1, 1, 1);
                (t.calls[0], t.calls[3], t.calls[10]) = (1, 1, 1);
            }),
        ),
        (b2, tally(|t| t.cancelled = 1)),
        (b3, tally(|t| t.cancelled = 1)),
    ];
    assert_eq!(all(Some(m.id)).await.expect("timeline"), expected);
    assert_eq!(
        all(Some(m2.id)).await.expect("timeline"),
        [(b2, tally(|t| (t.created, t.expired) = (4, 4)))],
        "made and expired in one bucket"
    );

    // The sums: over everything, by a wider bucket, over a range, across mailings, per mailing.
    let mut total = Tally::default();
    expected.iter().for_each(|(_, t)| total.add(t));
    assert_eq!((total.created, total.settled()), (5, 5), "every message made is settled");
    let rows =
        |status| async move { store.list_messages(m.id, Some(status), None, 100).await.expect("list").len() as u64 };
    assert_eq!(
        (
            store.list_messages(m.id, None, None, 100).await.expect("list").len() as u64,
            rows(DeliveryStatus::Sent).await,
            rows(DeliveryStatus::Failed).await,
            rows(DeliveryStatus::Expired).await,
            rows(DeliveryStatus::Cancelled).await,
        ),
        (total.created, total.sent, total.failed, total.expired, total.cancelled),
        "the counters agree with the rows"
    );
    let counts = store.message_counts(&[m.id, m2.id]).await.expect("counts");
    assert_eq!((counts[&m.id].total, counts[&m.id].settled()), (5, 5));
    assert_eq!((counts[&m2.id].total, counts[&m2.id].expired), (4, 4));
    let whole = store.mailing_timeline(Some(m.id), i64::MAX, 0, i64::MAX, 10).await.expect("whole");
    assert_eq!(whole, [(0, total.clone())]);
    let minute = store.mailing_timeline(Some(m.id), 60, 0, i64::MAX, 10).await.expect("by minute");
    let mut by_minute: Vec<(i64, Tally)> = Vec::new();
    for (at, t) in &expected {
        match by_minute.last_mut() {
            Some((last, sum)) if *last == at / 60 * 60 => sum.add(t),
            _ => by_minute.push((at / 60 * 60, t.clone())),
        }
    }
    assert_eq!(minute, by_minute);
    let range = store.mailing_timeline(Some(m.id), BUCKET_SECONDS, b1, b3, 10).await.expect("range");
    assert_eq!(range, expected[1..3], "from is inclusive, to exclusive");
    assert_eq!(store.mailing_timeline(Some(m.id), BUCKET_SECONDS, 0, i64::MAX, 1).await.expect("limit").len(), 1);
    let mut both = tally(|t| t.cancelled = 1);
    both.add(&tally(|t| (t.created, t.expired) = (4, 4)));
    assert_eq!(store.mailing_timeline(None, BUCKET_SECONDS, b2, b2 + 1, 10).await.expect("b2"), [(b2, both)]);
    let tallies = store.mailing_tallies(b0, b3 + BUCKET_SECONDS, 10).await.expect("tallies");
    let m2_total = tally(|t| (t.created, t.expired) = (4, 4));
    let mut want = vec![(m.id, total), (m2.id, m2_total)];
    want.sort_by_key(|(id, _)| *id);
    assert_eq!(tallies, want);
    assert!(store.mailing_tallies(b3 + BUCKET_SECONDS, i64::MAX, 10).await.expect("later").is_empty());
}
