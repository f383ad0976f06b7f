//! The calendar part of the store suite: overlaps refused, periods listed, reminders kept in step
//! with their event, retention.

use chrono::{DateTime, Duration, Utc};
use herald_core::{
    calendar::{CalendarEvent, CalendarEventId, REMINDER_DUE_KIND, REMINDER_SENT_KIND},
    change::ChangeEvent,
    delivery::DeliveryStatus,
    store::{Constraint, Store, StoreError},
    task::{Description, Title},
    user::{Role, UserId},
};

use super::{new_user, now};

async fn owner(store: &dyn Store, email: &str) -> UserId {
    let user = new_user(email, Role::User);
    store.create_user(&user).await.expect("user");
    user.user.id
}

fn event(owner: UserId, starts_at: DateTime<Utc>, minutes: i64) -> CalendarEvent {
    let at = now();
    CalendarEvent {
        id: CalendarEventId::new(),
        owner,
        title: Title::parse("Meeting").expect("title"),
        description: Description::default(),
        starts_at,
        duration: Duration::minutes(minutes),
        remind_before: None,
        created_at: at,
        updated_at: at,
    }
}

fn changed(e: &CalendarEvent, kind: &str) -> Vec<ChangeEvent> {
    vec![ChangeEvent::for_user(e.owner, kind, serde_json::json!({"id": e.id.0}), e.updated_at)]
}

fn is_overlap(err: StoreError) -> bool {
    matches!(err, ref err if err.is_conflict_on(Constraint::EventsOverlap))
}

pub async fn overlapping_events_of_one_owner_are_refused(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let bob = owner(store, "bob@example.org").await;
    let t = now();
    let first = event(ada, t, 60);
    store.create_calendar_event(&first, &changed(&first, "event.created"), &[]).await.expect("first");

    let inside = event(ada, t + Duration::minutes(30), 60);
    assert!(is_overlap(store.create_calendar_event(&inside, &[], &[]).await.expect_err("overlaps")));
    // Touching ends do not overlap; another owner's calendar is their own.
    store.create_calendar_event(&event(ada, t + Duration::minutes(60), 30), &[], &[]).await.expect("right after");
    store.create_calendar_event(&event(ada, t - Duration::minutes(30), 30), &[], &[]).await.expect("right before");
    store.create_calendar_event(&event(bob, t, 60), &[], &[]).await.expect("bob's own");
    assert!(store.calendar_event(ada, inside.id).await.expect("read").is_none(), "the refused event left nothing");

    // An update may keep its own slot but not take another's.
    let mut moved = first.clone();
    moved.duration = Duration::minutes(45);
    store.update_calendar_event(&moved, &changed(&moved, "event.updated"), &[]).await.expect("shorter");
    moved.starts_at = t + Duration::minutes(50);
    assert!(is_overlap(store.update_calendar_event(&moved, &[], &[]).await.expect_err("onto the next one")));
    assert_eq!(store.calendar_event(ada, first.id).await.expect("read").expect("kept").duration, Duration::minutes(45));
    let events = store.read_outbox(0, 10).await.expect("outbox");
    assert_eq!(events.len(), 2, "only the successful writes wrote change events");

    // Racing creates of one slot: exactly one wins.
    let racing: Vec<_> = (0..6).map(|_| event(ada, t + Duration::hours(5), 30)).collect();
    let results = futures::future::join_all(racing.iter().map(|e| store.create_calendar_event(e, &[], &[]))).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
}

pub async fn periods_list_what_overlaps_them_by_start(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let day: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().expect("instant");
    let spans_midnight = event(ada, day - Duration::minutes(30), 60);
    let morning = event(ada, day + Duration::hours(9), 60);
    let last = event(ada, day + Duration::hours(23), 60);
    let next_day = event(ada, day + Duration::hours(24), 60);
    for e in [&morning, &next_day, &last, &spans_midnight] {
        store.create_calendar_event(e, &[], &[]).await.expect("create");
    }
    let end = day + Duration::days(1);
    let listed = store.list_calendar_events(ada, day, end, None, 10).await.expect("list");
    let ids: Vec<_> = listed.iter().map(|e| e.id).collect();
    assert_eq!(ids, [spans_midnight.id, morning.id, last.id], "overlapping the day, by start");
    assert_eq!(listed[1], morning, "every field round-trips");
    // Page by page: after the last one seen, at most the limit.
    let first = store.list_calendar_events(ada, day, end, None, 2).await.expect("page 1");
    assert_eq!(first.iter().map(|e| e.id).collect::<Vec<_>>(), [spans_midnight.id, morning.id]);
    let after = Some((morning.starts_at, morning.id));
    let rest = store.list_calendar_events(ada, day, end, after, 2).await.expect("page 2");
    assert_eq!(rest.iter().map(|e| e.id).collect::<Vec<_>>(), [last.id]);
    assert!(store.list_calendar_events(UserId::new(), day, end, None, 10).await.expect("list").is_empty());
}

pub async fn reminders_follow_their_event(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let t = now();
    let mut e = event(ada, t + Duration::hours(2), 30);
    e.remind_before = Some(Duration::minutes(15));
    store.create_calendar_event(&e, &[], &e.reminders(t)).await.expect("create");
    let reminders = store.calendar_event_reminders(ada, e.id).await.expect("read").expect("event");
    assert_eq!(reminders.len(), 1);
    let first = &reminders[0];
    assert_eq!((first.kind.as_str(), first.status), (REMINDER_DUE_KIND, DeliveryStatus::Pending));
    assert_eq!(first.next_attempt_at, t + Duration::minutes(105));

    // A new title only: the same reminder, carrying it.
    e.title = Title::parse("Renamed").expect("title");
    store.update_calendar_event(&e, &[], &e.reminders(t)).await.expect("rename");
    let kept = store.calendar_event_reminders(ada, e.id).await.expect("read").expect("event");
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].id, kept[0].status), (first.id, DeliveryStatus::Pending));
    assert_eq!(kept[0].payload["title"], "Renamed");

    // Moved: the old one is cancelled, a new one is due at the new time.
    e.starts_at += Duration::hours(1);
    store.update_calendar_event(&e, &[], &e.reminders(t)).await.expect("move");
    let all = store.calendar_event_reminders(ada, e.id).await.expect("read").expect("event");
    let statuses: Vec<_> = all.iter().map(|d| (d.status, d.next_attempt_at)).collect();
    assert_eq!(
        statuses,
        [
            (DeliveryStatus::Cancelled, t + Duration::minutes(105)),
            (DeliveryStatus::Pending, t + Duration::minutes(165))
        ]
    );
    assert!(store.calendar_event_reminders(UserId::new(), e.id).await.expect("read").is_none(), "not another's");

    // The notifications a reminder led to are listed with it and, still pending, die with the event.
    let notification = e.reminder();
    store.create_deliveries(&notification.deliveries(uuid::Uuid::now_v7(), None, t)).await.expect("notifications");
    let listed = store.calendar_event_reminders(ada, e.id).await.expect("read").expect("event");
    assert_eq!(listed.iter().filter(|d| d.kind == REMINDER_SENT_KIND).count(), 2);

    let deleted = store.delete_calendar_event(ada, e.id, t, &|e| changed(e, "event.deleted")).await.expect("delete");
    assert_eq!(deleted.map(|d| d.id), Some(e.id));
    assert!(store.calendar_event(ada, e.id).await.expect("read").is_none());
    assert!(
        store.delete_calendar_event(ada, e.id, t, &|e| changed(e, "event.deleted")).await.expect("again").is_none()
    );
    let due = store.count_due_deliveries(t + Duration::days(1)).await.expect("due");
    assert_eq!(due, 0, "the deleted event's reminder and notifications are cancelled");
    let outbox = store.read_outbox(0, 10).await.expect("outbox");
    assert_eq!(outbox.iter().map(|o| o.event.kind.as_str()).collect::<Vec<_>>(), ["event.deleted"]);
}

pub async fn events_past_retention_are_deleted(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let t = now();
    let old = event(ada, t - Duration::days(400), 60);
    let recent = event(ada, t - Duration::days(10), 60);
    for e in [&old, &recent] {
        store.create_calendar_event(e, &[], &[]).await.expect("create");
    }
    assert_eq!(store.delete_calendar_events_ended_before(t - Duration::days(365), 100).await.expect("prune"), 1);
    assert!(store.calendar_event(ada, old.id).await.expect("read").is_none());
    assert!(store.calendar_event(ada, recent.id).await.expect("read").is_some());
    assert_eq!(store.delete_calendar_events_ended_before(t - Duration::days(365), 100).await.expect("again"), 0);
}
