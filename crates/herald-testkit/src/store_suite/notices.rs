//! The notices part of the store suite: a notice and its in-app first step written together,
//! idempotency keys per caller, escalation passes (send, skip, defer, expire, settle), the
//! acknowledgement by a cursor or by reading, and the race of an acknowledgement with a due step.

use chrono::{DateTime, Duration, Timelike as _, Utc};
use herald_core::{
    delivery::{DailyWindow, DeliveryId, DeliveryReport, DeliveryStatus},
    notice::{self, Notice, NoticeFilter, NoticeId, NoticeStatus, NoticeStep, StepStatus},
    notify::{NoticeChannel, NoticeType, Preferences},
    store::{Constraint, Store, StoreError},
    stream::{SessionCursor, SessionId, StreamName},
    user::{ProfileChange, UserId},
};

use super::{now, owner};

/// A notice to `user` by `caller` with `steps` (channel, after), not yet stored.
pub fn new_notice(user: UserId, caller: &str, steps: &[(NoticeChannel, u32)], at: DateTime<Utc>) -> Notice {
    Notice {
        id: NoticeId::new(),
        user_id: user,
        caller: caller.to_owned(),
        kind: NoticeType::parse("invoice.due").expect("type"),
        title: "Your invoice is due".into(),
        body: "Invoice 42 is due tomorrow.".into(),
        data: Some(serde_json::json!({"invoice": 42})),
        urgent: false,
        expires_at: None,
        idempotency_key: None,
        request_hash: Some("h1".into()),
        status: NoticeStatus::Pending,
        created_at: at,
        acknowledged_at: None,
        read_at: None,
        event: None,
        steps: steps
            .iter()
            .map(|&(channel, after)| NoticeStep {
                channel,
                after,
                status: StepStatus::Pending,
                due_at: at + Duration::seconds(i64::from(after)),
                sent_at: None,
                reason: None,
                delivery_id: None,
            })
            .collect(),
    }
}

/// Stores `notice`, with its in-app first step sent at once when it has one with no delay.
async fn store_notice(store: &dyn Store, notice: &Notice) {
    let first = notice.steps.first().is_some_and(|s| s.channel == NoticeChannel::Realtime && s.after == 0);
    let event = first.then(|| notice.event(notice.created_at));
    store.create_notice(notice, event.as_ref()).await.expect("create notice");
}

async fn escalate(store: &dyn Store, at: DateTime<Utc>) -> notice::Escalation {
    store.escalate_notices(at, 100, &|due| notice::plan(due, at)).await.expect("escalate")
}

async fn read(store: &dyn Store, id: NoticeId) -> Notice {
    store.notice(id).await.expect("read").expect("present")
}

fn statuses(n: &Notice) -> Vec<StepStatus> {
    n.steps.iter().map(|s| s.status).collect()
}

async fn with_phone_and_zone(store: &dyn Store, user: UserId) {
    let change = ProfileChange {
        name: None,
        phone: Some(Some(herald_core::user::ContactPhone::parse("+4915112345678").expect("phone"))),
        timezone: None,
    };
    store.update_profile(user, &change).await.expect("profile");
}

fn cursor(user: UserId, session: &str, stream: StreamName, offset: i64) -> SessionCursor {
    SessionCursor { user, session: SessionId::parse(session).expect("session"), stream, offset }
}

/// Reports a claimed delivery as sent.
async fn report_sent(store: &dyn Store, id: DeliveryId, at: DateTime<Utc>) {
    let claimed =
        store.claim_due_deliveries(at, 100, std::time::Duration::from_secs(60)).await.expect("claim").deliveries;
    let d = claimed.into_iter().find(|d| d.id == id).expect("claimed");
    let report = DeliveryReport {
        id,
        lease_until: d.lease_until.expect("leased"),
        status: DeliveryStatus::Sent,
        attempts: 1,
        next_attempt_at: at,
        last_error: None,
        sent_at: Some(at),
        call_time: None,
    };
    assert_eq!(store.record_deliveries(&[report], at).await.expect("record"), 1);
}

pub async fn a_notice_and_its_in_app_first_step_are_stored_together(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let at = now();
    let mut n = new_notice(ada, "user:admin", &[(NoticeChannel::Realtime, 0), (NoticeChannel::Email, 30)], at);
    n.idempotency_key = Some("invoice-42".into());
    store_notice(store, &n).await;

    let found = read(store, n.id).await;
    assert_eq!(statuses(&found), [StepStatus::Sent, StepStatus::Pending]);
    assert_eq!(found.steps[0].sent_at, Some(at));
    assert_eq!(found.steps[1].due_at, at + Duration::seconds(30));
    assert_eq!(
        (found.title.as_str(), found.data.clone(), found.status),
        (n.title.as_str(), n.data.clone(), NoticeStatus::Pending)
    );
    let (stream, offset) = found.event.expect("its event went");
    assert_eq!(stream, StreamName::User(ada));
    let events = store.read_stream(stream, 0, 10).await.expect("stream");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].stream_offset, offset);
    assert_eq!(events[0].event.kind, notice::EVENT_TYPE);
    assert_eq!(events[0].event.payload["id"], serde_json::json!(n.id.0));

    // The scheduler's next wake-up is the email step's due time.
    assert_eq!(store.next_due_at().await.expect("next due"), Some(at + Duration::seconds(30)));

    // The inbox lists it; the caller's key finds it; another caller may use the same key.
    assert_eq!(store.inbox(ada, true, None, 10).await.expect("inbox").len(), 1);
    assert_eq!(store.notice_by_key("user:admin", "invoice-42").await.expect("by key").map(|f| f.id), Some(n.id));
    let mut again = new_notice(ada, "user:admin", &[(NoticeChannel::Email, 0)], at);
    again.idempotency_key = Some("invoice-42".into());
    let err = store.create_notice(&again, None).await.expect_err("the key is taken");
    assert!(err.is_conflict_on(Constraint::NoticesIdempotency), "{err:?}");
    assert!(store.notice(again.id).await.expect("read").is_none(), "nothing half-written");
    again.caller = "key:other".into();
    store.create_notice(&again, None).await.expect("another caller's key");

    // A notice to nobody is refused and leaves nothing.
    let ghost = new_notice(UserId::new(), "user:admin", &[(NoticeChannel::Realtime, 0)], at);
    let refused = store.create_notice(&ghost, Some(&ghost.event(at))).await;
    assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
    assert_eq!(store.read_stream(StreamName::User(ghost.user_id), 0, 10).await.expect("stream").len(), 0);

    // Admins list by person and status, newest first.
    let listed = store
        .list_notices(&NoticeFilter { user: Some(ada), status: Some(NoticeStatus::Pending), kind: None }, None, 10)
        .await
        .expect("list");
    assert_eq!(listed.iter().map(|l| l.id).collect::<Vec<_>>(), [again.id, n.id]);
    let page = store.list_notices(&NoticeFilter::default(), Some(again.id), 10).await.expect("page");
    assert_eq!(page.iter().map(|l| l.id).collect::<Vec<_>>(), [n.id]);
}

pub async fn an_escalation_pass_sends_skips_and_settles_due_steps(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let at = now();
    // No phone yet: the SMS step is skipped with a reason; the email goes; the webhook is off.
    let n = new_notice(
        ada,
        "user:admin",
        &[(NoticeChannel::Email, 0), (NoticeChannel::Sms, 0), (NoticeChannel::Webhook, 60)],
        at,
    );
    store_notice(store, &n).await;
    let pass = escalate(store, at).await;
    assert_eq!(pass.steps, [(NoticeChannel::Email, StepStatus::Sending), (NoticeChannel::Sms, StepStatus::Skipped)]);
    let found = read(store, n.id).await;
    assert_eq!(statuses(&found), [StepStatus::Sending, StepStatus::Skipped, StepStatus::Pending]);
    assert!(found.steps[1].reason.as_deref().is_some_and(|r| r.contains("phone")), "{:?}", found.steps[1]);
    let delivery =
        store.delivery(found.steps[0].delivery_id.expect("a delivery")).await.expect("read").expect("stored");
    assert_eq!((delivery.kind.as_str(), delivery.recipient.as_str()), (notice::STEP_KIND, "ada@example.org"));
    assert_eq!(delivery.payload["subject"], "Your invoice is due");
    assert!(escalate(store, at).await.steps.is_empty(), "nothing is taken twice");

    // The channel reports: the next pass settles the step.
    report_sent(store, delivery.id, at).await;
    let pass = escalate(store, at + Duration::seconds(1)).await;
    assert_eq!(pass.steps, [(NoticeChannel::Email, StepStatus::Sent)]);
    assert_eq!(read(store, n.id).await.status, NoticeStatus::Pending, "a step is still to come");

    // The webhook step: the person has none, so it is skipped and the notice is delivered.
    let pass = escalate(store, at + Duration::seconds(60)).await;
    assert_eq!(pass.steps, [(NoticeChannel::Webhook, StepStatus::Skipped)]);
    assert_eq!(pass.settled, [NoticeStatus::Delivered]);
    let found = read(store, n.id).await;
    assert_eq!(
        (found.status, statuses(&found)),
        (NoticeStatus::Delivered, vec![StepStatus::Sent, StepStatus::Skipped, StepStatus::Skipped])
    );
    assert_eq!(found.steps[0].sent_at, Some(at));

    // Nothing could be sent at all: failed.
    let bare = new_notice(ada, "user:admin", &[(NoticeChannel::Sms, 0)], at);
    store_notice(store, &bare).await;
    assert_eq!(escalate(store, at).await.settled, [NoticeStatus::Failed]);
}

pub async fn quiet_hours_defer_a_step_and_expiry_ends_the_notice(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    with_phone_and_zone(store, ada).await;
    let at = now();
    // Quiet from an hour ago until an hour from now, in UTC (the person set no zone).
    let hm = |t: DateTime<Utc>| format!("{:02}:{:02}", t.hour(), t.minute());
    let quiet = DailyWindow::new(
        hm(at - Duration::hours(1)).parse().expect("start"),
        hm(at + Duration::hours(1)).parse().expect("end"),
    )
    .expect("quiet hours");
    let prefs = Preferences { quiet_hours: Some(quiet), ..Preferences::default() };
    store.set_preferences(ada, &prefs).await.expect("preferences");

    let n = new_notice(ada, "user:admin", &[(NoticeChannel::Sms, 0)], at);
    store_notice(store, &n).await;
    let mut urgent = new_notice(ada, "user:admin", &[(NoticeChannel::Sms, 0)], at);
    urgent.urgent = true;
    store_notice(store, &urgent).await;
    escalate(store, at).await;
    let deferred = read(store, n.id).await;
    assert_eq!(deferred.steps[0].status, StepStatus::Deferred);
    let end = deferred.steps[0].due_at;
    assert!(end > at + Duration::minutes(58) && end <= at + Duration::hours(1), "deferred to the end: {end}");
    assert_eq!(read(store, urgent.id).await.steps[0].status, StepStatus::Sending, "urgent ignores quiet hours");
    assert!(escalate(store, end - Duration::seconds(1)).await.steps.is_empty(), "not before the end");
    assert_eq!(escalate(store, end).await.steps, [(NoticeChannel::Sms, StepStatus::Sending)]);

    // Past its expiry nothing more goes: the notice and its steps to come are expired.
    let mut brief = new_notice(ada, "user:admin", &[(NoticeChannel::Email, 10), (NoticeChannel::Sms, 20)], at);
    brief.expires_at = Some(at + Duration::seconds(5));
    store_notice(store, &brief).await;
    let pass = escalate(store, at + Duration::seconds(10)).await;
    assert_eq!(pass.settled, [NoticeStatus::Expired]);
    let found = read(store, brief.id).await;
    assert_eq!(
        (found.status, statuses(&found)),
        (NoticeStatus::Expired, vec![StepStatus::Expired, StepStatus::Expired])
    );
}

pub async fn a_cursor_past_the_event_or_reading_acknowledges_and_cancels_the_rest(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let bob = owner(store, "bob@example.org").await;
    let at = now();
    let steps = [(NoticeChannel::Realtime, 0), (NoticeChannel::Email, 30)];
    let first = new_notice(ada, "user:admin", &steps, at);
    store_notice(store, &first).await;
    let (stream, offset) = read(store, first.id).await.event.expect("its event");

    // A cursor below the event acknowledges nothing; one at it acknowledges the notice.
    let later = at + Duration::seconds(3);
    assert!(
        store.advance_cursors(&[cursor(ada, "tab-1", stream, offset - 1)], later).await.expect("behind").is_empty()
    );
    let acked = store.advance_cursors(&[cursor(ada, "tab-1", stream, offset)], later).await.expect("at");
    assert_eq!(acked.iter().map(|a| (a.id, a.created_at)).collect::<Vec<_>>(), [(first.id, at)]);
    let found = read(store, first.id).await;
    assert_eq!((found.status, found.acknowledged_at), (NoticeStatus::Acknowledged, Some(later)));
    assert_eq!(statuses(&found), [StepStatus::Sent, StepStatus::Cancelled]);
    assert!(
        store.advance_cursors(&[cursor(ada, "tab-2", stream, offset)], later).await.expect("again").is_empty(),
        "once"
    );
    assert!(escalate(store, at + Duration::seconds(31)).await.steps.is_empty(), "the email never goes");
    // Another person's cursor on their own stream acknowledges nothing of Ada's.
    let second = new_notice(ada, "user:admin", &steps, at);
    store_notice(store, &second).await;
    let bobs = StreamName::User(bob);
    assert!(store.advance_cursors(&[cursor(bob, "tab-1", bobs, 1_000)], later).await.expect("bob").is_empty());

    // Reading: another person's notice is not found; one's own is read and acknowledged.
    assert!(matches!(store.read_notices(bob, Some(second.id), later).await, Err(StoreError::NotFound)));
    assert!(matches!(store.read_notices(ada, Some(NoticeId::new()), later).await, Err(StoreError::NotFound)));
    let (marked, acked) = store.read_notices(ada, Some(second.id), later).await.expect("read");
    assert_eq!((marked, acked.len()), (1, 1));
    let found = read(store, second.id).await;
    assert_eq!((found.status, found.read_at), (NoticeStatus::Acknowledged, Some(later)));
    assert_eq!(store.read_notices(ada, Some(second.id), later).await.expect("again").0, 0, "read once");

    // Read-all marks the rest; the unread inbox is then empty.
    let third = new_notice(ada, "user:admin", &steps, at);
    store_notice(store, &third).await;
    let unread = store.inbox(ada, true, None, 10).await.expect("unread");
    assert_eq!(unread.iter().map(|n| n.id).collect::<Vec<_>>(), [third.id, first.id], "acknowledged is not read");
    let (marked, acked) = store.read_notices(ada, None, later).await.expect("read all");
    assert_eq!((marked, acked.len()), (2, 1), "first was acknowledged but unread; third is both");
    assert!(store.inbox(ada, true, None, 10).await.expect("unread").is_empty());
    assert_eq!(store.inbox(ada, false, None, 10).await.expect("all").len(), 3);
    assert!(store.inbox(bob, false, None, 10).await.expect("bob's").is_empty());
}

pub async fn an_acknowledgement_racing_a_due_step_wins_or_loses_whole(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let (mut sent, mut cancelled) = (0, 0);
    for i in 0..25 {
        let at = now();
        let n = new_notice(ada, "user:admin", &[(NoticeChannel::Realtime, 0), (NoticeChannel::Email, 0)], at);
        store_notice(store, &n).await;
        let (stream, offset) = read(store, n.id).await.event.expect("its event");
        let session = format!("tab-{i}");
        let cursors = [cursor(ada, &session, stream, offset)];
        let (ack, step) = tokio::join!(store.advance_cursors(&cursors, at), async {
            store.escalate_notices(at, 100, &|due| notice::plan(due, at)).await?;
            store.claim_due_deliveries(at, 100, std::time::Duration::from_secs(60)).await
        });
        assert_eq!(ack.expect("ack").len(), 1, "acknowledged once");
        step.expect("step");
        let found = read(store, n.id).await;
        assert_eq!(found.status, NoticeStatus::Acknowledged);
        let delivery = match found.steps[1].delivery_id {
            Some(id) => store.delivery(id).await.expect("read").map(|d| d.status),
            None => None,
        };
        match (found.steps[1].status, delivery) {
            // The step won: its delivery was claimed before the acknowledgement, and goes.
            (StepStatus::Sending, Some(DeliveryStatus::Sending | DeliveryStatus::Pending)) => sent += 1,
            // The acknowledgement won: nothing goes.
            (StepStatus::Cancelled, None | Some(DeliveryStatus::Cancelled)) => cancelled += 1,
            other => panic!("iteration {i}: the race left {other:?}"),
        }
    }
    assert_eq!(sent + cancelled, 25);
}
