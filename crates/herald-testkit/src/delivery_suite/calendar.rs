//! The delivery suite's calendar part: reminders through the `notifications` queue, and periodic
//! jobs on one scheduler of two.

#[allow(unused_imports)]
use super::{channels::webhook_receiver, *};

/// A calendar reminder is published on the `notifications` queue at its time, not a microsecond
/// before, and once; the router turns it into one delivery per channel for the owner, each sent
/// once. Moving the event moves the reminder; deleting the event cancels it, and a notification
/// already on its way for a deleted or moved event is dropped.
pub async fn calendar_reminders_go_out_once_at_their_time(store: Arc<dyn Store>, broker: &TestBroker) {
    use herald_core::{
        broker::Message,
        calendar::{CalendarEvent, CalendarEventId, REMINDER_DUE_KIND, REMINDER_SENT_KIND, REMINDERS_QUEUE, Reminder},
        task::{Description, Title},
        user::{Role, UserId},
    };
    use herald_workers::calendar::ReminderRouter;

    let p = Pipeline::new(store, broker).await;
    let user = crate::store_suite::new_user("ada@example.org", Role::User);
    p.store.create_user(&user).await.expect("user");
    let (hook_url, hooks, hook_server) = webhook_receiver().await;
    let hook = herald_core::user::WebhookUrl::parse(&hook_url).expect("url");
    p.store
        .set_webhook(user.user.id, Some(&hook), &herald_core::webhook::WebhookSecret::generate())
        .await
        .expect("webhook");
    let sender = p.spawn(Pipeline::options());
    let router = ReminderRouter::new(p.store.clone(), p.broker.clone(), p.clock.clone(), p.metrics.clone());
    let stop_router = CancellationToken::new();
    let routing = tokio::spawn({
        let stop = stop_router.clone();
        async move { router.run(stop).await }
    });
    let t = p.clock.now();
    let mut event = CalendarEvent {
        id: CalendarEventId::new(),
        owner: user.user.id,
        title: Title::parse("Dentist").expect("title"),
        description: Description::default(),
        starts_at: t + secs(3600),
        duration: chrono::Duration::minutes(30),
        remind_before: Some(chrono::Duration::minutes(10)),
        created_at: t,
        updated_at: t,
    };
    p.store.create_calendar_event(&event, &[], &event.reminders(t)).await.expect("create");
    let store = p.store.clone();
    let reminders = move |owner: UserId, id: CalendarEventId, kind: &'static str| {
        let store = store.clone();
        async move {
            let all = store.calendar_event_reminders(owner, id).await.expect("read").expect("event");
            all.into_iter().filter(|d| d.kind == kind).collect::<Vec<_>>()
        }
    };

    p.clock.set(t + secs(3000) - chrono::Duration::microseconds(1));
    assert_eq!(p.tick().await, 0, "not a microsecond early");
    p.clock.set(t + secs(3000));
    assert_eq!(p.tick().await, 1, "the reminder is due");
    let reminder = reminders(event.owner, event.id, REMINDER_DUE_KIND).await;
    let published = p.all_become(&[reminder[0].id], DeliveryStatus::Sent).await;
    assert_eq!((published[0].attempts, published[0].sent_at), (1, Some(t + secs(3000))));

    // The router has the notification from the queue: one delivery per channel and one to the
    // owner's webhook, due now.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let notifications = loop {
        let found = reminders(event.owner, event.id, REMINDER_SENT_KIND).await;
        if found.len() == 3 {
            break found;
        }
        assert!(tokio::time::Instant::now() < deadline, "the notification was not routed: {found:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(notifications[0].payload["title"], "Dentist");
    assert_eq!(p.tick().await, 3);
    let ids: Vec<_> = notifications.iter().map(|d| d.id).collect();
    assert!(p.all_become(&ids, DeliveryStatus::Sent).await.iter().all(|d| d.attempts == 1));
    p.advance(secs(600));
    assert_eq!(p.tick().await, 0, "never twice");
    let outbox = p.store.read_outbox(0, 100).await.expect("outbox");
    let on_stream: Vec<_> = outbox.iter().filter(|o| o.event.kind == "event.reminder").collect();
    assert_eq!(on_stream.len(), 1);
    assert_eq!(on_stream[0].event.stream.to_string(), format!("user:{}", event.owner));
    assert_eq!(on_stream[0].event.payload["event_id"], serde_json::json!(event.id.0));
    let posted = hooks.0.lock().expect("hooks").clone();
    assert_eq!(posted.len(), 1, "the owner's webhook got it once");
    let body: serde_json::Value = serde_json::from_slice(&posted[0].1).expect("JSON");
    assert_eq!((body["event_id"].clone(), body["title"].clone()), (serde_json::json!(event.id.0), "Dentist".into()));
    assert_eq!(body["user_id"], serde_json::json!(event.owner.0));

    // Moved a day later: a new reminder at the new time.
    let now = p.clock.now();
    event.starts_at += chrono::Duration::days(1);
    event.updated_at = now;
    p.store.update_calendar_event(&event, &[], &event.reminders(now)).await.expect("move");
    let due = event.starts_at - chrono::Duration::minutes(10);
    p.clock.set(due - secs(1));
    assert_eq!(p.tick().await, 0);
    p.clock.set(due);
    assert_eq!(p.tick().await, 1, "the moved reminder");
    let moved: Vec<_> = reminders(event.owner, event.id, REMINDER_DUE_KIND)
        .await
        .into_iter()
        .filter(|d| d.next_attempt_at == due)
        .collect();
    p.all_become(&[moved[0].id], DeliveryStatus::Sent).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while reminders(event.owner, event.id, REMINDER_SENT_KIND).await.len() < 6 {
        assert!(tokio::time::Instant::now() < deadline, "the moved reminder was not routed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Moved again, then deleted before anything more is sent: nobody is reminded again, and the
    // notifications still waiting are cancelled with the event.
    let now = p.clock.now();
    event.starts_at += chrono::Duration::days(1);
    p.store.update_calendar_event(&event, &[], &event.reminders(now)).await.expect("move again");
    p.store.delete_calendar_event(event.owner, event.id, now, &|_| Vec::new()).await.expect("delete");
    p.clock.set(event.starts_at);
    assert_eq!(p.tick().await, 0, "a deleted event reminds no one");
    let all = p.store.calendar_event_reminders(event.owner, event.id).await.expect("read");
    assert!(all.is_none(), "the event is gone");
    let far = event.starts_at + chrono::Duration::days(30);
    assert_eq!(p.store.count_due_deliveries(far).await.expect("due"), 0);

    // Notifications that reach the router late, after their event was deleted or moved, are
    // stale: nobody is told. A current one queued behind them shows they were taken.
    let mut other = event.clone();
    other.id = CalendarEventId::new();
    other.remind_before = None;
    other.starts_at = event.starts_at + chrono::Duration::days(7);
    p.store.create_calendar_event(&other, &[], &other.reminders(now)).await.expect("another event");
    let notification = |event_id: CalendarEventId, starts_at| {
        let body = Reminder { event_id: event_id.0, title: "Late".into(), starts_at, user_id: event.owner.0 };
        Message::new(Uuid::now_v7(), serde_json::to_vec(&body).expect("JSON"))
    };
    let deleted = notification(event.id, event.starts_at);
    let moved = notification(other.id, other.starts_at - chrono::Duration::hours(1));
    let current = notification(other.id, other.starts_at);
    for message in [deleted, moved, current] {
        p.broker.enqueue(REMINDERS_QUEUE, message).await.expect("enqueue");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while reminders(other.owner, other.id, REMINDER_SENT_KIND).await.len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "the current notification was not routed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(p.store.count_due_deliveries(far).await.expect("due"), 3, "only the current one is delivered");
    stop_router.cancel();
    routing.await.expect("router");
    hook_server.abort();
    sender.stop().await;
    p.finish().await;
}

#[derive(Debug, Default)]
struct CountingJob(Mutex<Vec<DateTime<Utc>>>);

#[async_trait::async_trait]
impl PeriodicJob for CountingJob {
    fn name(&self) -> &str {
        "test.count"
    }

    async fn run(&self, now: DateTime<Utc>) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        self.0.lock().expect("runs").push(now);
        Ok("counted".into())
    }
}

/// A periodic job runs at its scheduled times, on one scheduler of two.
pub async fn periodic_jobs_run_on_schedule_on_one_scheduler(store: Arc<dyn Store>, broker: &TestBroker) {
    let clock = Arc::new(ManualClock::new(t0()));
    let job = Arc::new(CountingJob::default());
    let every_10s: herald_core::schedule::Schedule = "@every 10s".parse().expect("schedule");
    let make = || {
        Scheduler::new(
            store.clone(),
            broker.broker.clone(),
            clock.clone(),
            Arc::new(Metrics::default()),
            SchedulerOptions::default(),
        )
        .with_job(job.clone(), every_10s.clone())
    };
    let (a, b) = (make(), make());
    assert!(a.run_due_jobs().await.expect("a").is_empty(), "not due yet");
    clock.advance(Duration::from_secs(10));
    let ran = a.run_due_jobs().await.expect("a").len() + b.run_due_jobs().await.expect("b").len();
    assert_eq!(ran, 1, "one scheduler of two runs it");
    clock.advance(Duration::from_secs(5));
    assert_eq!(a.run_due_jobs().await.expect("a").len() + b.run_due_jobs().await.expect("b").len(), 0);
    clock.advance(Duration::from_secs(5));
    assert_eq!(a.run_due_jobs().await.expect("a").len() + b.run_due_jobs().await.expect("b").len(), 1);
    assert_eq!(*job.0.lock().expect("runs"), vec![t0() + secs(10), t0() + secs(20)]);

    assert_eq!(a.job_schedules()["test.count"], "@every 10s");
    let hourly = Scheduler::new(
        store.clone(),
        broker.broker.clone(),
        clock.clone(),
        Arc::new(Metrics::default()),
        SchedulerOptions::default(),
    )
    .with_job(Arc::new(CountingJob::default()), "0 * * * *".parse().expect("schedule"));
    assert_eq!(hourly.job_schedules()["test.count"], "0 * * * *");
}
