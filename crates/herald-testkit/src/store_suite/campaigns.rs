//! Clients and mailings as records: round trips, unique phones, batch inserts, pages, and which
//! mailings are due.

use chrono::{DateTime, Duration, Utc};
use herald_core::{
    campaign::{
        Client, ClientFilter, ClientId, Mailing, MailingFilter, MailingId, MailingStatus, MessageText, OperatorCode,
        Phone, Tag,
    },
    delivery::DailyWindow,
    store::{Constraint, Store, StoreError},
};

use super::now;

/// A client with phone `phone`, operator code `code`, tag `tag`, in time zone `zone`, created now.
pub fn new_client(phone: &str, code: &str, tag: &str, zone: &str) -> Client {
    let at = now();
    Client {
        id: ClientId::new(),
        phone: Phone::parse(phone).expect("test phone"),
        operator_code: OperatorCode::parse(code).expect("test operator code"),
        tag: Tag::parse(tag).expect("test tag"),
        timezone: zone.parse().expect("test zone"),
        created_at: at,
        updated_at: at,
    }
}

/// A scheduled mailing from `start_at` to `end_at` with a filter and an optional window.
pub fn new_mailing(
    filter: MailingFilter,
    window: Option<DailyWindow>,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
) -> Mailing {
    let at = now();
    Mailing {
        id: MailingId::new(),
        start_at,
        end_at,
        text: MessageText::parse("Spring sale: 20% off").expect("test text"),
        filter,
        window,
        status: MailingStatus::Scheduled,
        created_at: at,
        updated_at: at,
    }
}

/// A filter of the given operator codes and tags (`None`: that part matches everyone).
pub fn filter(codes: Option<&[&str]>, tags: Option<&[&str]>) -> MailingFilter {
    MailingFilter {
        operator_codes: codes.map(|c| c.iter().map(|c| OperatorCode::parse(c).expect("code")).collect()),
        tags: tags.map(|t| t.iter().map(|t| Tag::parse(t).expect("tag")).collect()),
    }
}

/// A send window from `from` to `to` (`HH:MM`).
pub fn window(from: &str, to: &str) -> DailyWindow {
    DailyWindow::new(from.parse().expect("from"), to.parse().expect("to")).expect("window")
}

fn phone_conflict(result: Result<(), StoreError>) {
    match result {
        Err(err) => assert!(err.is_conflict_on(Constraint::ClientsPhone), "{err:?}"),
        other => panic!("a taken phone must conflict on {}, got {other:?}", Constraint::ClientsPhone),
    }
}

pub async fn clients_round_trip_and_a_taken_phone_names_its_constraint(store: &dyn Store) {
    let ada = new_client("79160000001", "916", "vip", "Europe/Moscow");
    let bob = new_client("79030000002", "903", "", "Asia/Tokyo");
    store.create_client(&ada).await.expect("create ada");
    store.create_client(&bob).await.expect("create bob");
    assert_eq!(store.client(ada.id).await.expect("get"), Some(ada.clone()), "every field round-trips");
    assert_eq!(store.client(ClientId::new()).await.expect("get"), None);

    phone_conflict(store.create_client(&new_client("79160000001", "916", "new", "UTC")).await);
    let mut moved = bob.clone();
    moved.phone = ada.phone.clone();
    phone_conflict(store.update_client(&moved).await);
    assert_eq!(store.client(bob.id).await.expect("get"), Some(bob.clone()), "the refused update changed nothing");

    let mut changed = bob.clone();
    changed.phone = Phone::parse("79990000003").expect("phone");
    changed.operator_code = OperatorCode::parse("999").expect("code");
    changed.tag = Tag::parse("returning").expect("tag");
    changed.timezone = "America/New_York".parse().expect("zone");
    changed.updated_at = now() + Duration::seconds(5);
    store.update_client(&changed).await.expect("update");
    assert_eq!(store.client(bob.id).await.expect("get"), Some(changed));
    let ghost = new_client("79990000004", "999", "", "UTC");
    assert!(matches!(store.update_client(&ghost).await, Err(StoreError::NotFound)));
    assert_eq!(store.list_clients(&ClientFilter::default(), None, 10).await.expect("list").len(), 2);
}

pub async fn inserting_clients_skips_taken_phones_and_repeats_in_the_batch(store: &dyn Store) {
    let taken = new_client("79160000001", "916", "vip", "UTC");
    store.create_client(&taken).await.expect("create");
    let batch = vec![
        new_client("79160000002", "916", "a", "UTC"),
        new_client("79160000001", "916", "b", "UTC"),
        new_client("79160000003", "916", "c", "UTC"),
        new_client("79160000002", "916", "d", "UTC"),
        new_client("79160000004", "916", "e", "UTC"),
    ];
    let skipped = store.insert_clients(&batch).await.expect("insert");
    assert_eq!(skipped, [1, 3], "the stored phone and the later repeat are skipped");
    for (i, c) in batch.iter().enumerate() {
        let stored = store.client(c.id).await.expect("get");
        assert_eq!(stored.as_ref(), (!skipped.contains(&i)).then_some(c), "client {i}");
    }
    assert_eq!(store.client(taken.id).await.expect("get"), Some(taken), "the stored client is untouched");
    assert_eq!(store.insert_clients(&batch).await.expect("again"), [0, 1, 2, 3, 4], "all taken now");
    assert!(store.insert_clients(&[]).await.expect("empty").is_empty());
}

pub async fn inserting_a_large_batch_of_clients_stores_every_new_one(store: &dyn Store) {
    let mut batch: Vec<Client> =
        (0..2500).map(|i| new_client(&format!("7916{i:07}"), "916", "bulk", "Europe/Moscow")).collect();
    // A repeat far from its first occurrence, and a repeat of a phone stored before.
    batch[2100].phone = batch[3].phone.clone();
    store.create_client(&new_client("79160001234", "916", "old", "UTC")).await.expect("create");
    let skipped = store.insert_clients(&batch).await.expect("insert");
    assert_eq!(skipped, [1234, 2100]);
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_clients(&ClientFilter::default(), after, 1000).await.expect("list");
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        listed.extend(page);
    }
    assert_eq!(listed.len(), 2500 - 2 + 1);
}

pub async fn clients_list_in_id_order_page_by_page(store: &dyn Store) {
    let clients: Vec<Client> = (0..5).map(|i| new_client(&format!("7916000000{i}"), "916", "", "UTC")).collect();
    assert!(store.insert_clients(&clients).await.expect("insert").is_empty());
    let ids: Vec<ClientId> = clients.iter().map(|c| c.id).collect();
    let page = |after, limit| async move {
        store
            .list_clients(&ClientFilter::default(), after, limit)
            .await
            .expect("list")
            .into_iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(page(None, 2).await, ids[..2]);
    assert_eq!(page(Some(ids[1]), 2).await, ids[2..4]);
    assert_eq!(page(Some(ids[3]), 2).await, ids[4..]);
    assert!(page(Some(ids[4]), 2).await.is_empty());

    // Filtered: by the start of the phone, the operator code, the tag, and all together.
    let more = [
        new_client("79031110000", "903", "vip", "UTC"),
        new_client("79031120000", "777", "vip", "UTC"),
        new_client("79251110000", "925", "new", "UTC"),
    ];
    assert!(store.insert_clients(&more).await.expect("insert").is_empty());
    let phones = |filter: ClientFilter| async move {
        let listed = store.list_clients(&filter, None, 100).await.expect("list");
        listed.into_iter().map(|c| c.phone.as_str().to_owned()).collect::<Vec<_>>()
    };
    let code = |c: &str| Some(OperatorCode::parse(c).expect("code"));
    let tag = |t: &str| Some(Tag::parse(t).expect("tag"));
    let prefix = |p: &str| Some(p.to_owned());
    assert_eq!(
        phones(ClientFilter { phone_prefix: prefix("7903"), ..Default::default() }).await,
        ["79031110000", "79031120000"]
    );
    assert_eq!(
        phones(ClientFilter { phone_prefix: prefix("79031110000"), ..Default::default() }).await,
        ["79031110000"]
    );
    assert_eq!(phones(ClientFilter { operator_code: code("777"), ..Default::default() }).await, ["79031120000"]);
    assert_eq!(phones(ClientFilter { tag: tag("vip"), ..Default::default() }).await, ["79031110000", "79031120000"]);
    let all_three = ClientFilter { phone_prefix: prefix("790"), operator_code: code("903"), tag: tag("vip") };
    assert_eq!(phones(all_three).await, ["79031110000"]);
    assert!(phones(ClientFilter { phone_prefix: prefix("8"), ..Default::default() }).await.is_empty());
    assert_eq!(phones(ClientFilter::default()).await.len(), 8);
}

pub async fn mailings_round_trip_and_list_by_status_page_by_page(store: &dyn Store) {
    let t = now();
    let full = new_mailing(
        filter(Some(&["916", "903"]), Some(&["vip"])),
        Some(window("21:00", "09:00")),
        t + Duration::hours(1),
        t + Duration::hours(5),
    );
    let plain = new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1));
    let mut running = new_mailing(filter(Some(&[]), None), None, t, t + Duration::hours(1));
    running.status = MailingStatus::Running;
    for m in [&full, &plain, &running] {
        store.create_mailing(m).await.expect("create");
    }
    assert_eq!(store.mailing(full.id).await.expect("get"), Some(full.clone()), "every field round-trips");
    assert_eq!(store.mailing(plain.id).await.expect("get"), Some(plain.clone()));
    assert_eq!(store.mailing(running.id).await.expect("get"), Some(running.clone()), "an empty filter part stays");
    assert_eq!(store.mailing(MailingId::new()).await.expect("get"), None);

    let ids = |list: Vec<Mailing>| list.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_mailings(None, None, 2).await.expect("list")), [full.id, plain.id]);
    assert_eq!(ids(store.list_mailings(None, Some(plain.id), 2).await.expect("list")), [running.id]);
    let scheduled = store.list_mailings(Some(MailingStatus::Scheduled), None, 10).await.expect("list");
    assert_eq!(ids(scheduled), [full.id, plain.id]);
    let after = store.list_mailings(Some(MailingStatus::Scheduled), Some(full.id), 10).await.expect("list");
    assert_eq!(ids(after), [plain.id]);
    assert_eq!(ids(store.list_mailings(Some(MailingStatus::Running), None, 10).await.expect("list")), [running.id]);
    assert!(store.list_mailings(Some(MailingStatus::Finished), None, 10).await.expect("list").is_empty());
}

pub async fn mailing_updates_apply_only_from_the_expected_status(store: &dyn Store) {
    let t = now();
    let m = new_mailing(MailingFilter::default(), None, t + Duration::hours(1), t + Duration::hours(2));
    store.create_mailing(&m).await.expect("create");

    let mut changed = m.clone();
    changed.text = MessageText::parse("New text").expect("text");
    changed.filter = filter(Some(&["916"]), None);
    changed.window = Some(window("09:00", "21:00"));
    changed.start_at = t + Duration::hours(2);
    changed.end_at = t + Duration::hours(3);
    changed.updated_at = t + Duration::seconds(1);
    store.update_mailing(&changed, MailingStatus::Scheduled, t).await.expect("update");
    assert_eq!(store.mailing(m.id).await.expect("get"), Some(changed.clone()));

    let mut stale = changed.clone();
    stale.text = MessageText::parse("Stale").expect("text");
    match store.update_mailing(&stale, MailingStatus::Running, t).await {
        Err(err) => assert!(err.is_conflict_on(Constraint::MailingStatus), "{err:?}"),
        other => panic!("an update from the wrong status must conflict, got {other:?}"),
    }
    let ghost = new_mailing(MailingFilter::default(), None, t, t + Duration::hours(1));
    assert!(matches!(store.update_mailing(&ghost, MailingStatus::Scheduled, t).await, Err(StoreError::NotFound)));
    assert_eq!(store.mailing(m.id).await.expect("get"), Some(changed), "refused updates changed nothing");
}

pub async fn due_mailings_are_scheduled_ones_whose_start_passed_earliest_first(store: &dyn Store) {
    let t = now();
    let at = |minutes: i64| t + Duration::minutes(minutes);
    let later = new_mailing(MailingFilter::default(), None, at(-5), at(60));
    let earliest = new_mailing(MailingFilter::default(), None, at(-30), at(60));
    let on_time = new_mailing(MailingFilter::default(), None, t, at(60));
    let future = new_mailing(MailingFilter::default(), None, at(1), at(60));
    let mut cancelled = new_mailing(MailingFilter::default(), None, at(-60), at(60));
    cancelled.status = MailingStatus::Cancelled;
    for m in [&later, &earliest, &on_time, &future, &cancelled] {
        store.create_mailing(m).await.expect("create");
    }
    assert_eq!(store.due_mailings(t, 10).await.expect("due"), [earliest.id, later.id, on_time.id]);
    assert_eq!(store.due_mailings(t, 2).await.expect("due"), [earliest.id, later.id]);
    assert!(store.due_mailings(at(-31), 10).await.expect("due").is_empty());
}
