//! Notices through the real pipeline on a paused clock: the scheduler's escalation pass, the
//! sender, the SMTP server and the mock provider. A step goes at its time to the second unless
//! the notice was acknowledged; quiet hours defer it to their end in the person's zone.

use std::sync::Arc;

use chrono::{DateTime, TimeZone as _, Utc};
use herald_core::{
    campaign::TimeZone,
    clock::Clock as _,
    notice::{Notice, NoticeId, NoticeStatus, StepStatus},
    notify::{NoticeChannel, Preferences},
    store::Store,
    stream::{SessionCursor, SessionId},
    user::{ContactPhone, ProfileChange, UserId},
};

use super::{Pipeline, secs, t0};
use crate::{broker_suite::TestBroker, store_suite};

/// Ada, with an email address, a phone and a zone.
async fn ada(store: &dyn Store, zone: &str) -> UserId {
    let id = store_suite::owner(store, "ada@example.org").await;
    let change = ProfileChange {
        name: None,
        phone: Some(Some(ContactPhone::parse("+4915112345678").expect("phone"))),
        timezone: Some(Some(TimeZone(zone.parse().expect("zone")))),
    };
    store.update_profile(id, &change).await.expect("profile");
    id
}

async fn notify(p: &Pipeline, user: UserId, steps: &[(NoticeChannel, u32)], urgent: bool) -> Notice {
    let mut notice = store_suite::new_notice(user, "user:admin", steps, p.clock.now());
    notice.urgent = urgent;
    let first = steps.first().is_some_and(|&(c, after)| c == NoticeChannel::Realtime && after == 0);
    let event = first.then(|| notice.event(notice.created_at));
    p.store.create_notice(&notice, event.as_ref()).await.expect("notice");
    notice
}

async fn read(p: &Pipeline, id: NoticeId) -> Notice {
    p.store.notice(id).await.expect("read").expect("stored")
}

/// Ticks until the step `index` of `id` ended (its delivery reported and the pass settled it).
async fn step_ends(p: &Pipeline, id: NoticeId, index: usize) -> Notice {
    for _ in 0..500 {
        p.tick().await;
        let notice = read(p, id).await;
        if notice.steps[index].status.is_final() {
            return notice;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("step {index} of {id} never ended: {:?}", read(p, id).await.steps);
}

async fn acknowledge(p: &Pipeline, notice: &Notice, at: DateTime<Utc>) {
    let (stream, offset) = read(p, notice.id).await.event.expect("its in-app event went");
    let cursor =
        SessionCursor { user: notice.user_id, session: SessionId::parse("phone").expect("session"), stream, offset };
    assert_eq!(p.store.advance_cursors(&[cursor], at).await.expect("ack").len(), 1, "acknowledged");
}

fn mails_to(p: &Pipeline, subject: &str) -> usize {
    p.smtp.mails().iter().filter(|m| m.data.contains(&format!("Subject: {subject}"))).count()
}

pub async fn a_notice_escalates_on_time_until_it_is_acknowledged(store: Arc<dyn Store>, broker: &TestBroker) {
    let p = Pipeline::new(store, broker).await;
    let sender = p.spawn(Pipeline::options());
    let user = ada(p.store.as_ref(), "Europe/Berlin").await;
    let subject = "Your invoice is due";

    // Unacknowledged: the email goes at 30 s to the second, then the text at 300 s.
    let ignored =
        notify(&p, user, &[(NoticeChannel::Realtime, 0), (NoticeChannel::Email, 30), (NoticeChannel::Sms, 300)], false)
            .await;
    p.clock.set(t0() + secs(30) - chrono::Duration::milliseconds(1));
    p.tick().await;
    assert_eq!(read(&p, ignored.id).await.steps[1].status, StepStatus::Pending, "not a millisecond early");
    p.clock.set(t0() + secs(30));
    let after_email = step_ends(&p, ignored.id, 1).await;
    assert_eq!(after_email.steps[1].status, StepStatus::Sent, "{:?}", after_email.steps[1]);
    assert_eq!(after_email.steps[1].sent_at, Some(t0() + secs(30)));
    assert_eq!(mails_to(&p, subject), 1);
    let mail = &p.smtp.mails()[0];
    assert_eq!(mail.to, ["ada@example.org"]);
    assert!(mail.data.contains("Invoice 42 is due tomorrow."), "{}", mail.data);

    p.clock.set(t0() + secs(300));
    let after_sms = step_ends(&p, ignored.id, 2).await;
    assert_eq!((after_sms.status, after_sms.steps[2].status), (NoticeStatus::Delivered, StepStatus::Sent));
    let sms = p.store.delivery(after_sms.steps[2].delivery_id.expect("delivery")).await.expect("read").expect("stored");
    let accepted = p.provider.accepted(sms.number as u64).expect("the provider got the text");
    assert_eq!(accepted.phone, 4_915_112_345_678);
    assert!(accepted.text.starts_with(subject), "{}", accepted.text);

    // Acknowledged in-app at 10 s: neither the email nor the text ever goes.
    p.clock.set(t0() + secs(400));
    let seen =
        notify(&p, user, &[(NoticeChannel::Realtime, 0), (NoticeChannel::Email, 30), (NoticeChannel::Sms, 300)], false)
            .await;
    acknowledge(&p, &seen, t0() + secs(410)).await;
    for at in [430, 700, 1000] {
        p.clock.set(t0() + secs(at));
        p.tick().await;
    }
    let found = read(&p, seen.id).await;
    assert_eq!(found.status, NoticeStatus::Acknowledged);
    assert_eq!(found.acknowledged_at, Some(t0() + secs(410)));
    assert_eq!(
        found.steps.iter().map(|s| s.status).collect::<Vec<_>>(),
        [StepStatus::Sent, StepStatus::Cancelled, StepStatus::Cancelled]
    );
    assert_eq!(mails_to(&p, subject), 1, "no second email");
    assert_eq!(p.provider.accepted_ids().len(), 1, "no second text");

    // Email turned off for this type: the email step is skipped and the text goes at its time.
    let mut prefs: Preferences =
        serde_json::from_value(serde_json::json!({"types": {"invoice.due": {"channels": {"email": false}}}}))
            .expect("prefs");
    prefs.quiet_hours = None;
    p.store.set_preferences(user, &prefs).await.expect("preferences");
    let skipped = notify(&p, user, &[(NoticeChannel::Email, 0), (NoticeChannel::Sms, 60)], false).await;
    p.tick().await;
    let found = read(&p, skipped.id).await;
    assert_eq!(found.steps[0].status, StepStatus::Skipped);
    assert!(found.steps[0].reason.as_deref().is_some_and(|r| r.contains("turned off")), "{:?}", found.steps[0]);
    p.advance(secs(60));
    let found = step_ends(&p, skipped.id, 1).await;
    assert_eq!((found.status, found.steps[1].status), (NoticeStatus::Delivered, StepStatus::Sent));
    assert_eq!(mails_to(&p, subject), 1, "the skipped email did not go");
    assert_eq!(p.provider.accepted_ids().len(), 2);

    let metrics = p.metrics.encode();
    for line in [
        "herald_notice_steps_total{channel=\"email\",status=\"sent\"} 1",
        "herald_notice_steps_total{channel=\"email\",status=\"skipped\"} 1",
        "herald_notices_total{status=\"delivered\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
    sender.stop().await;
    p.finish().await;
}

pub async fn quiet_hours_defer_to_their_end_across_a_dst_change(store: Arc<dyn Store>, broker: &TestBroker) {
    let p = Pipeline::new(store, broker).await;
    let sender = p.spawn(Pipeline::options());
    let user = ada(p.store.as_ref(), "Europe/Berlin").await;
    let prefs: Preferences =
        serde_json::from_value(serde_json::json!({"quiet_hours": {"start": "22:00", "end": "07:00"}})).expect("prefs");
    p.store.set_preferences(user, &prefs).await.expect("preferences");
    // 23:30 in Berlin on the night the clocks go forward: 07:00 the next morning is 05:00 UTC.
    let night = Utc.with_ymd_and_hms(2026, 3, 28, 22, 30, 0).single().expect("time");
    let morning = Utc.with_ymd_and_hms(2026, 3, 29, 5, 0, 0).single().expect("time");
    p.clock.set(night);

    let quiet = notify(&p, user, &[(NoticeChannel::Email, 0)], false).await;
    let urgent = notify(&p, user, &[(NoticeChannel::Sms, 0)], true).await;
    p.tick().await;
    let found = read(&p, quiet.id).await;
    assert_eq!((found.steps[0].status, found.steps[0].due_at), (StepStatus::Deferred, morning));
    let found = step_ends(&p, urgent.id, 0).await;
    assert_eq!(found.steps[0].status, StepStatus::Sent, "urgent ignores quiet hours");
    assert!(p.smtp.mails().is_empty());

    p.clock.set(morning - secs(1));
    p.tick().await;
    assert_eq!(read(&p, quiet.id).await.steps[0].status, StepStatus::Deferred, "not a second early");
    p.clock.set(morning);
    let found = step_ends(&p, quiet.id, 0).await;
    assert_eq!((found.steps[0].status, found.steps[0].sent_at), (StepStatus::Sent, Some(morning)));
    assert_eq!(p.smtp.mails().len(), 1);
    sender.stop().await;
    p.finish().await;
}
