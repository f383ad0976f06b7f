//! A mailing's messages: created set-based when it starts and chunk by chunk after, planned by the client's zone, moved
//! with the mailing, cancelled with it or with their client, counted, listed, and finished.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Duration, Utc};
use herald_core::{
    campaign::{
        Client, FirstAttempts, MESSAGE_KIND, Mailing, MailingFilter, MailingStatus, MessageCounts, MessageText,
    },
    delivery::{Channel, Delivery, DeliveryReport, DeliveryStatus, ZonedWindow},
    store::{Constraint, Store, StoreError},
};
use serde_json::json;

use super::{
    campaigns::{filter, new_client, new_mailing, window},
    deliveries::new_delivery,
    now,
};

const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// Stores `clients`, all new.
async fn seed(store: &dyn Store, clients: &[Client]) {
    assert!(store.insert_clients(clients).await.expect("insert clients").is_empty());
}

/// Stores a scheduled mailing and starts it; returns it and how many messages it got.
async fn started(store: &dyn Store, m: Mailing, plan: &FirstAttempts, at: DateTime<Utc>) -> (Mailing, u64) {
    store.create_mailing(&m).await.expect("create mailing");
    let n = store.start_mailing(m.id, plan, at, 1000).await.expect("start").expect("it was scheduled");
    (m, n)
}

async fn messages(store: &dyn Store, m: &Mailing) -> Vec<Delivery> {
    store.list_messages(m.id, None, None, 1000).await.expect("list messages")
}

async fn status_of(store: &dyn Store, m: &Mailing) -> MailingStatus {
    store.mailing(m.id).await.expect("get").expect("present").status
}

/// The message of `m` for `client`.
fn message_for<'a>(list: &'a [Delivery], client: &Client) -> &'a Delivery {
    list.iter().find(|d| d.recipient_id == Some(client.id.0)).expect("a message for the client")
}

/// A sender's report on a claimed delivery.
fn report(d: &Delivery, status: DeliveryStatus, at: DateTime<Utc>) -> DeliveryReport {
    DeliveryReport {
        id: d.id,
        lease_until: d.lease_until.expect("leased"),
        status,
        attempts: 1,
        next_attempt_at: at + Duration::minutes(1),
        last_error: None,
        sent_at: (status == DeliveryStatus::Sent).then_some(at),
        call_time: None,
    }
}

fn four_clients() -> [Client; 4] {
    [
        new_client("79160000001", "916", "vip", "Europe/Moscow"),
        new_client("79160000002", "916", "new", "Asia/Tokyo"),
        new_client("79030000003", "903", "vip", "America/New_York"),
        new_client("79030000004", "903", "new", "Asia/Kolkata"),
    ]
}

pub async fn starting_a_mailing_creates_one_message_per_matching_client(store: &dyn Store) {
    let t = now();
    let clients = four_clients();
    seed(store, &clients).await;
    let cases: [(MailingFilter, &[usize]); 6] = [
        (MailingFilter::default(), &[0, 1, 2, 3]),
        (filter(Some(&["916"]), None), &[0, 1]),
        (filter(None, Some(&["vip"])), &[0, 2]),
        (filter(Some(&["916", "999"]), Some(&["vip"])), &[0]),
        (filter(Some(&["999"]), None), &[]),
        (filter(None, Some(&[])), &[]),
    ];
    let mut ids = HashSet::new();
    for (f, expected) in cases {
        let m = new_mailing(f.clone(), None, t - Duration::minutes(1), t + Duration::hours(1));
        let (m, n) = started(store, m, &FirstAttempts::At(t), t).await;
        assert_eq!(n, expected.len() as u64, "{f:?}");
        let list = messages(store, &m).await;
        let got: BTreeSet<_> = list.iter().map(|d| d.recipient.clone()).collect();
        let want: BTreeSet<_> = expected.iter().map(|&i| clients[i].phone.as_str().to_owned()).collect();
        assert_eq!(got, want, "{f:?}");
        for &i in expected {
            let c = &clients[i];
            let d = message_for(&list, c);
            assert_eq!(
                (d.kind.as_str(), d.channel, d.status, d.attempts),
                (MESSAGE_KIND, Channel::Provider, DeliveryStatus::Pending, 0)
            );
            assert_eq!(d.source_key, format!("mailing:{}:client:{}", m.id, c.id));
            assert_eq!((d.source_id, d.recipient_id), (Some(m.id.0), Some(c.id.0)));
            assert_eq!((d.next_attempt_at, d.deadline, d.created_at, d.updated_at), (t, Some(m.end_at), t, t));
            assert_eq!((&d.last_error, d.lease_until, d.sent_at), (&None, None, None));
            let payload = json!({
                "phone": c.phone.as_str(),
                "text": m.text.as_str(),
                "mailing_id": m.id.to_string(),
                "client_id": c.id.to_string(),
            });
            assert_eq!(d.payload, payload, "no window key without a window");
            assert_eq!(d.id.0.get_version_num(), 7, "message ids are UUIDv7: {}", d.id);
            assert_eq!(d.id.0.get_variant(), uuid::Variant::RFC4122, "{}", d.id);
            assert!(ids.insert(d.id), "message ids are distinct");
        }
        let status = if expected.is_empty() { MailingStatus::Finished } else { MailingStatus::Running };
        assert_eq!(status_of(store, &m).await, status, "a mailing without live messages is finished at once");
    }
    let claimed = store.claim_due_deliveries(t, 100, LEASE).await.expect("claim").deliveries;
    assert_eq!(claimed.len(), ids.len(), "every message is due at its first attempt");
}

pub async fn a_windowed_mailing_plans_each_clients_first_attempt_by_zone(store: &dyn Store) {
    let t = now();
    let clients = four_clients();
    seed(store, &clients).await;
    let w = window("09:00", "21:00");

    // The real plan, over every zone: each client starts at its zone's next allowed instant.
    let m = new_mailing(MailingFilter::default(), Some(w), t, t + Duration::hours(30));
    let (m, n) = started(store, m, &FirstAttempts::plan(Some(w), t), t).await;
    assert_eq!(n, 4);
    let list = messages(store, &m).await;
    for c in &clients {
        let d = message_for(&list, c);
        assert_eq!((d.status, d.next_attempt_at), (DeliveryStatus::Pending, w.next_inside(t, c.timezone.0)));
        let expected = json!({"from": "09:00", "to": "21:00", "tz": c.timezone.name()});
        assert_eq!(d.payload["window"], expected, "the window travels in the client's zone");
        assert_eq!(ZonedWindow::of_payload(&d.payload), Some(ZonedWindow::new(w, c.timezone.0)));
        assert_eq!(d.payload["phone"], c.phone.as_str());
    }

    // A window that opens at or after the end expires the message at once.
    let end = t + Duration::hours(2);
    let plan = FirstAttempts::ByZone(vec![
        ("Europe/Moscow", t),
        ("Asia/Tokyo", end),
        ("America/New_York", end + Duration::hours(1)),
        ("Asia/Kolkata", end - Duration::microseconds(1)),
        ("Europe/Paris", t),
    ]);
    let (short, n) = started(store, new_mailing(MailingFilter::default(), Some(w), t, end), &plan, t).await;
    assert_eq!(n, 4, "expired messages are created and counted too");
    let list = messages(store, &short).await;
    let expect = [
        (DeliveryStatus::Pending, t),
        (DeliveryStatus::Expired, end),
        (DeliveryStatus::Expired, end + Duration::hours(1)),
        (DeliveryStatus::Pending, end - Duration::microseconds(1)),
    ];
    for (c, (status, at)) in clients.iter().zip(expect) {
        let d = message_for(&list, c);
        assert_eq!((d.status, d.next_attempt_at, d.deadline), (status, at, Some(end)), "{}", c.timezone.name());
        assert_eq!(d.last_error.is_some(), status == DeliveryStatus::Expired, "an expired message says why");
    }
    assert_eq!(status_of(store, &short).await, MailingStatus::Running);

    // When every window opens too late, nothing is live: the mailing is finished at once.
    let late = FirstAttempts::ByZone(clients.iter().map(|c| (c.timezone.name(), end)).collect());
    let (hopeless, n) = started(store, new_mailing(MailingFilter::default(), Some(w), t, end), &late, t).await;
    assert_eq!(n, 4);
    assert!(messages(store, &hopeless).await.iter().all(|d| d.status == DeliveryStatus::Expired));
    assert_eq!(status_of(store, &hopeless).await, MailingStatus::Finished);
}

pub async fn a_mailing_starts_once_and_only_when_scheduled(store: &dyn Store) {
    let t = now();
    seed(store, &four_clients()).await;
    let at = FirstAttempts::At(t);
    let m = new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1));
    store.create_mailing(&m).await.expect("create");
    let racing = futures::future::join_all((0..4).map(|_| store.start_mailing(m.id, &at, t, 1000))).await;
    let started: Vec<u64> = racing.into_iter().filter_map(|r| r.expect("start")).collect();
    assert_eq!(started, [4], "exactly one start creates the messages");
    assert_eq!(store.start_mailing(m.id, &at, t, 1000).await.expect("again"), None);
    assert_eq!(messages(store, &m).await.len(), 4);

    let cancelled = new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1));
    store.create_mailing(&cancelled).await.expect("create");
    store.cancel_mailing(cancelled.id, t).await.expect("cancel");
    assert_eq!(store.start_mailing(cancelled.id, &at, t, 1000).await.expect("start"), None);
    assert!(messages(store, &cancelled).await.is_empty());
    let ghost = new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1));
    assert_eq!(store.start_mailing(ghost.id, &at, t, 1000).await.expect("start"), None);
}

pub async fn updating_a_running_mailing_moves_its_live_messages(store: &dyn Store) {
    let t = now();
    let clients = four_clients();
    seed(store, &clients).await;
    // Tokyo's first attempt is two hours away; the others are due now.
    let mut plan: Vec<_> = clients.iter().map(|c| (c.timezone.name(), t)).collect();
    plan[1].1 = t + Duration::hours(2);
    let m = new_mailing(MailingFilter::default(), None, t, t + Duration::hours(3));
    let (m, _) = started(store, m, &FirstAttempts::ByZone(plan), t).await;
    let claimed = store.claim_due_deliveries(t, 2, LEASE).await.expect("claim").deliveries;
    let (sent, sending) = (&claimed[0], &claimed[1]);
    store.record_deliveries(&[report(sent, DeliveryStatus::Sent, t)], t).await.expect("report");
    let waiting =
        messages(store, &m).await.into_iter().find(|d| d.status == DeliveryStatus::Pending && d.next_attempt_at == t);
    let waiting = waiting.expect("one message due now is still pending");

    let mut shorter = m.clone();
    shorter.status = MailingStatus::Running;
    shorter.end_at = t + Duration::hours(1);
    shorter.text = MessageText::parse("Last call").expect("text");
    shorter.updated_at = t + Duration::seconds(1);
    assert!(matches!(
        store.update_mailing(&shorter, MailingStatus::Scheduled, t).await,
        Err(err) if err.is_conflict_on(Constraint::MailingStatus)
    ));
    store.update_mailing(&shorter, MailingStatus::Running, t + Duration::seconds(1)).await.expect("update");
    assert_eq!(store.mailing(m.id).await.expect("get"), Some(shorter.clone()));

    let list = messages(store, &m).await;
    let read = |id| list.iter().find(|d| d.id == id).expect("message").clone();
    let pending = read(waiting.id);
    assert_eq!((pending.status, pending.deadline), (DeliveryStatus::Pending, Some(shorter.end_at)));
    assert_eq!(pending.payload["text"], "Last call", "pending messages get the new text");
    assert_eq!(pending.payload["phone"], waiting.payload["phone"], "and keep the rest of their payload");
    let tokyo = message_for(&list, &clients[1]);
    assert_eq!((tokyo.status, tokyo.deadline), (DeliveryStatus::Expired, Some(shorter.end_at)));
    assert!(tokyo.last_error.is_some(), "due after the new end, it expired and says why");
    let in_flight = read(sending.id);
    assert_eq!((in_flight.status, in_flight.deadline), (DeliveryStatus::Sending, Some(shorter.end_at)));
    assert_eq!(in_flight.payload, sending.payload, "a message being sent keeps its text");
    let done = read(sent.id);
    assert_eq!((done.status, done.deadline), (DeliveryStatus::Sent, Some(m.end_at)), "settled messages stay");
}

pub async fn cancelling_a_mailing_cancels_its_pending_messages(store: &dyn Store) {
    let t = now();
    seed(store, &four_clients()).await;
    let at = FirstAttempts::At(t);
    let (m, _) = started(store, new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1)), &at, t).await;
    let claimed = store.claim_due_deliveries(t, 1, LEASE).await.expect("claim").deliveries;
    assert_eq!(store.cancel_mailing(m.id, t).await.expect("cancel"), 3, "the pending ones");
    let counts = store.message_counts(&[m.id]).await.expect("counts")[&m.id];
    assert_eq!((counts.total, counts.cancelled, counts.sending, counts.pending), (4, 3, 1, 0));
    let in_flight = store.delivery(claimed[0].id).await.expect("read").expect("present");
    assert_eq!(in_flight.status, DeliveryStatus::Sending, "a message being sent is left to its sender");
    assert_eq!(status_of(store, &m).await, MailingStatus::Cancelled);
    assert_eq!(store.cancel_mailing(m.id, t).await.expect("again"), 0, "cancelling twice changes nothing");

    let scheduled = new_mailing(MailingFilter::default(), None, t + Duration::hours(1), t + Duration::hours(2));
    store.create_mailing(&scheduled).await.expect("create");
    assert_eq!(store.cancel_mailing(scheduled.id, t).await.expect("cancel"), 0);
    assert_eq!(status_of(store, &scheduled).await, MailingStatus::Cancelled);

    let nobody = new_mailing(filter(Some(&["999"]), None), None, t, t + Duration::hours(1));
    let (finished, n) = started(store, nobody, &at, t).await;
    assert_eq!((n, status_of(store, &finished).await), (0, MailingStatus::Finished));
    match store.cancel_mailing(finished.id, t).await {
        Err(err) => assert!(err.is_conflict_on(Constraint::MailingStatus), "{err:?}"),
        other => panic!("a finished mailing cannot be cancelled, got {other:?}"),
    }
    let ghost = new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1));
    assert!(matches!(store.cancel_mailing(ghost.id, t).await, Err(StoreError::NotFound)));
}

pub async fn deleting_a_client_cancels_its_pending_messages(store: &dyn Store) {
    let t = now();
    let clients = four_clients();
    seed(store, &clients).await;
    let at = FirstAttempts::At(t);
    let (first, _) =
        started(store, new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1)), &at, t).await;
    let (second, _) =
        started(store, new_mailing(filter(Some(&["916"]), None), None, t, t + Duration::hours(1)), &at, t).await;
    // Another kind of delivery that names the client is not a message.
    let mut other = new_delivery("other:ada", t);
    other.recipient_id = Some(clients[0].id.0);
    store.create_deliveries(std::slice::from_ref(&other)).await.expect("create");

    let later = t + Duration::seconds(1);
    assert!(store.delete_client(clients[0].id, later).await.expect("delete"));
    assert_eq!(store.client(clients[0].id).await.expect("get"), None);
    for m in [&first, &second] {
        let list = messages(store, m).await;
        let gone = message_for(&list, &clients[0]);
        assert_eq!((gone.status, gone.updated_at), (DeliveryStatus::Cancelled, later));
        let kept = message_for(&list, &clients[1]);
        assert_eq!(kept.status, DeliveryStatus::Pending, "other clients' messages stay");
    }
    let other = store.delivery(other.id).await.expect("read").expect("present");
    assert_eq!(other.status, DeliveryStatus::Pending);
    assert!(!store.delete_client(clients[0].id, later).await.expect("again"), "nothing left to delete");
}

pub async fn running_mailings_finish_when_no_message_is_live(store: &dyn Store) {
    let t = now();
    let clients = four_clients();
    seed(store, &clients[..2]).await;
    let at = FirstAttempts::At(t);
    let (m1, _) = started(store, new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1)), &at, t).await;
    let (m2, _) = started(store, new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1)), &at, t).await;
    let m3 = new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1));
    store.create_mailing(&m3).await.expect("create");
    assert!(store.finish_mailings(t).await.expect("finish").is_empty(), "pending messages are live");

    let claimed = store.claim_due_deliveries(t, 10, LEASE).await.expect("claim").deliveries;
    assert_eq!(claimed.len(), 4);
    assert!(store.finish_mailings(t).await.expect("finish").is_empty(), "sending messages are live");
    let reports: Vec<_> = claimed
        .iter()
        .map(|d| {
            let retry = d.source_id == Some(m2.id.0) && d.recipient_id == Some(clients[0].id.0);
            report(d, if retry { DeliveryStatus::Pending } else { DeliveryStatus::Sent }, t)
        })
        .collect();
    assert_eq!(store.record_deliveries(&reports, t).await.expect("report"), 4);

    assert_eq!(store.finish_mailings(t).await.expect("finish"), [m1.id]);
    let statuses = [status_of(store, &m1).await, status_of(store, &m2).await, status_of(store, &m3).await];
    assert_eq!(statuses, [MailingStatus::Finished, MailingStatus::Running, MailingStatus::Scheduled]);
    assert!(store.finish_mailings(t).await.expect("again").is_empty());
}

pub async fn message_counts_add_up_by_status(store: &dyn Store) {
    let t = now();
    seed(store, &four_clients()).await;
    let at = FirstAttempts::At(t);
    let (m, _) = started(store, new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1)), &at, t).await;
    let claimed = store.claim_due_deliveries(t, 2, LEASE).await.expect("claim").deliveries;
    let reports = [report(&claimed[0], DeliveryStatus::Sent, t), report(&claimed[1], DeliveryStatus::Failed, t)];
    store.record_deliveries(&reports, t).await.expect("report");
    let pending = store.list_messages(m.id, Some(DeliveryStatus::Pending), None, 1).await.expect("list").remove(0);
    let client = herald_core::campaign::ClientId(pending.recipient_id.expect("a client"));
    assert!(store.delete_client(client, t).await.expect("delete"));

    let idle = new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1));
    store.create_mailing(&idle).await.expect("create");
    let ghost = new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1));
    let counts = store.message_counts(&[m.id, idle.id, ghost.id]).await.expect("counts");
    let expected = MessageCounts { total: 4, pending: 1, sending: 0, sent: 1, failed: 1, expired: 0, cancelled: 1 };
    assert_eq!(counts[&m.id], expected);
    assert_eq!(counts[&m.id].settled(), 3);
    // A claimed message counts as sending until its report.
    assert_eq!(store.claim_due_deliveries(t, 10, LEASE).await.expect("claim").deliveries.len(), 1);
    let claimed = MessageCounts { pending: 0, sending: 1, ..expected };
    assert_eq!(store.message_counts(&[m.id]).await.expect("counts")[&m.id], claimed);
    let zero = MessageCounts::default();
    assert_eq!(counts.get(&idle.id).copied().unwrap_or_default(), zero, "a mailing without messages counts nothing");
    assert_eq!(counts.get(&ghost.id).copied().unwrap_or_default(), zero);
    assert!(store.message_counts(&[]).await.expect("none").is_empty());
}

pub async fn messages_list_in_id_order_page_by_page_and_by_status(store: &dyn Store) {
    let t = now();
    let clients: Vec<Client> = (0..5).map(|i| new_client(&format!("7916000000{i}"), "916", "", "UTC")).collect();
    seed(store, &clients).await;
    let at = FirstAttempts::At(t);
    let (m, _) = started(store, new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1)), &at, t).await;
    let (other, _) =
        started(store, new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1)), &at, t).await;

    let all = messages(store, &m).await;
    let ids: Vec<_> = all.iter().map(|d| d.id).collect();
    assert_eq!(ids.len(), 5);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "id order");
    assert!(all.iter().all(|d| d.source_id == Some(m.id.0)), "only this mailing's messages");
    assert_eq!(messages(store, &other).await.len(), 5);
    let page = |status, after, limit| async move {
        store
            .list_messages(m.id, status, after, limit)
            .await
            .expect("list")
            .into_iter()
            .map(|d| d.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(page(None, None, 2).await, ids[..2]);
    assert_eq!(page(None, Some(ids[1]), 2).await, ids[2..4]);
    assert_eq!(page(None, Some(ids[3]), 2).await, ids[4..]);
    assert!(page(None, Some(ids[4]), 2).await.is_empty());

    // Only this mailing's messages are pending now; two of them go out.
    store.cancel_mailing(other.id, t).await.expect("cancel the other");
    let mut sending: Vec<_> =
        store.claim_due_deliveries(t, 2, LEASE).await.expect("claim").deliveries.iter().map(|d| d.id).collect();
    sending.sort();
    let pending: Vec<_> = ids.iter().copied().filter(|id| !sending.contains(id)).collect();
    assert_eq!(page(Some(DeliveryStatus::Sending), None, 10).await, sending);
    assert_eq!(page(Some(DeliveryStatus::Pending), None, 2).await, pending[..2]);
    assert_eq!(page(Some(DeliveryStatus::Pending), Some(pending[1]), 2).await, pending[2..]);
    assert_eq!(
        page(Some(DeliveryStatus::Pending), Some(ids[0]), 10).await,
        pending.iter().copied().filter(|id| *id > ids[0]).collect::<Vec<_>>()
    );
    assert!(page(Some(DeliveryStatus::Sent), None, 10).await.is_empty());
}

/// A mailing's messages are made chunk by chunk of clients by id: each of the clients stored at
/// its start gets exactly one, however many schedulers race; a client added after the start gets
/// none; the mailing is not finished while messages are still to be made; a cancel stops it.
pub async fn a_mailing_is_made_chunk_by_chunk_once_per_client(store: &dyn Store) {
    let t = now();
    let clients: Vec<Client> =
        (0..25).map(|i| new_client(&format!("7916{i:07}"), "916", "vip", "Europe/Moscow")).collect();
    seed(store, &clients).await;
    let at = FirstAttempts::At(t);
    let m = new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1));
    store.create_mailing(&m).await.expect("create");
    assert_eq!(store.start_mailing(m.id, &at, t, 10).await.expect("start"), Some(10), "the first chunk");
    assert_eq!(store.materializing_mailings(10).await.expect("list").iter().map(|x| x.id).collect::<Vec<_>>(), [m.id]);

    // The first chunk all sent: still not finished, messages are to come.
    let claimed = store.claim_due_deliveries(t, 100, LEASE).await.expect("claim").deliveries;
    assert_eq!(claimed.len(), 10);
    let reports: Vec<_> = claimed.iter().map(|d| report(d, DeliveryStatus::Sent, t)).collect();
    store.record_deliveries(&reports, t).await.expect("record");
    assert!(store.finish_mailings(t).await.expect("finish").is_empty(), "not finished while materializing");
    assert_eq!(status_of(store, &m).await, MailingStatus::Running);

    // A client stored after the start is not in the mailing.
    seed(store, &[new_client("79169999999", "916", "vip", "Europe/Moscow")]).await;
    // Schedulers race for the next chunks: each takes its own.
    let racing = futures::future::join_all((0..4).map(|_| store.continue_mailing(m.id, &at, t, 10))).await;
    let mut made: Vec<u64> = racing.into_iter().map(|r| r.expect("continue").unwrap_or(0)).collect();
    made.sort_unstable();
    assert_eq!(made.iter().sum::<u64>(), 15, "{made:?}");
    assert_eq!(store.continue_mailing(m.id, &at, t, 10).await.expect("done"), None, "nothing is left to make");
    assert!(store.materializing_mailings(10).await.expect("list").is_empty());
    let all = messages(store, &m).await;
    let per_client: HashSet<_> = all.iter().filter_map(|d| d.recipient_id).collect();
    assert_eq!((all.len(), per_client.len()), (25, 25), "one message per client stored at the start");
    assert!(clients.iter().all(|c| per_client.contains(&c.id.0)));

    // Cancelled mid-way: no more chunks.
    let later = new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1));
    store.create_mailing(&later).await.expect("create");
    assert_eq!(store.start_mailing(later.id, &at, t, 10).await.expect("start"), Some(10));
    store.cancel_mailing(later.id, t).await.expect("cancel");
    assert_eq!(store.continue_mailing(later.id, &at, t, 10).await.expect("continue"), None);
    assert_eq!(messages(store, &later).await.len(), 10);
    assert!(messages(store, &later).await.iter().all(|d| d.status == DeliveryStatus::Cancelled));

    // A chunk is the next clients by id, matching or not: a mailing to nobody gets empty chunks
    // and is finished once the last is made.
    let none = new_mailing(filter(Some(&["999"]), None), None, t, t + Duration::hours(1));
    store.create_mailing(&none).await.expect("create");
    assert_eq!(store.start_mailing(none.id, &at, t, 10).await.expect("start"), Some(0));
    assert_eq!(status_of(store, &none).await, MailingStatus::Running);
    while store.continue_mailing(none.id, &at, t, 10).await.expect("continue").is_some() {}
    assert_eq!(status_of(store, &none).await, MailingStatus::Finished);
    assert!(messages(store, &none).await.is_empty());
}
