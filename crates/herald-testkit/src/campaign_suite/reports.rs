//! The daily report: a day of the timeline's counters over the API, and the scheduler's job that
//! sends it to administrators once per day, on the paused clock.

#[allow(unused_imports, reason = "the suite's helpers and imports, shared")]
use super::*;

use herald_core::{commands::reports::DAILY_REPORT_KIND, delivery::Channel, user::WebhookUrl};
use herald_workers::reports::DailyReportJob;

/// A day's mailing sums up in `GET /reports/daily`, the next day is empty, and the job queues
/// the report once per administrator and channel however often it runs.
pub async fn the_daily_report_sums_a_day_and_reaches_each_administrator_once(
    store: Arc<dyn herald_core::store::Store>,
    broker: &TestBroker,
) {
    let rig = Campaign::new(store.clone(), broker, 100).await;
    let admin = rig.token(Role::Admin).await;
    let lines: Vec<(String, &str, &str)> = (0..10).map(|i| (format!("7916{i:07}"), "", "UTC")).collect();
    let lines: Vec<(&str, &str, &str)> = lines.iter().map(|(p, t, z)| (p.as_str(), *t, *z)).collect();
    assert_eq!(rig.bulk(&admin, &ndjson(&lines)).await.body["created"], 10);
    let end = (t0() + chrono::Duration::hours(6)).to_rfc3339();
    let mailing = rig.mailing(&admin, json!({"start_at": t0().to_rfc3339(), "end_at": end, "text": "daily"})).await;
    let sender = rig.spawn_sender(Pipeline::options());
    rig.drain().await;
    assert_eq!(rig.settle(&admin, &mailing).await["messages"]["sent"], 10);
    sender.stop().await;
    assert_eq!(rig.run_job().await, "0 started, 1 finished");

    let day = rig.send(Method::GET, "/api/v1/reports/daily?date=2026-11-22", &admin, None).await;
    assert_eq!(day.status, StatusCode::OK, "{:?}", day.body);
    let report = &day.body;
    assert_eq!((report["date"].as_str(), report["timezone"].as_str()), (Some("2026-11-22"), Some("UTC")));
    assert_eq!((report["totals"]["sent"].as_u64(), report["totals"]["attempts"].as_u64()), (Some(10), Some(10)));
    assert_eq!(report["provider_error_rate"], 0.0);
    assert_eq!(report["busiest_hour"]["starts_at"], "2026-11-22T09:00:00Z", "{report}");
    assert_eq!(report["busiest_hour"]["attempts"], 10);
    let listed = report["mailings"].as_array().expect("mailings");
    assert_eq!(listed.len(), 1, "{report}");
    assert_eq!((listed[0]["mailing_id"].as_str(), listed[0]["sent"].as_u64()), (Some(mailing.as_str()), Some(10)));
    assert_eq!((listed[0]["text"].as_str(), listed[0]["status"].as_str()), (Some("daily"), Some("finished")));
    let next = rig.send(Method::GET, "/api/v1/reports/daily?date=2026-11-23", &admin, None).await;
    assert_eq!(
        (next.body["totals"]["sent"].as_u64(), next.body["mailings"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );
    assert!(next.body.get("busiest_hour").is_none() && next.body.get("provider_error_rate").is_none());
    // Without a date it is yesterday's, in the report's zone.
    rig.pipe.clock.set(at("2026-11-23T07:00:00Z"));
    let admin = rig.token(Role::Admin).await;
    let default = rig.send(Method::GET, "/api/v1/reports/daily", &admin, None).await;
    assert_eq!(default.body, day.body);
    for date in ["2026-13-01", "0001-01-01", "+262142-12-31", "yesterday"] {
        let bad = rig.send(Method::GET, &format!("/api/v1/reports/daily?date={date}"), &admin, None).await;
        assert_eq!(
            (bad.status.as_u16(), bad.body["code"].as_str()),
            (422, Some("validation_failed")),
            "{date}: {:?}",
            bad.body
        );
    }
    let user = rig.token(Role::User).await;
    assert_eq!(rig.send(Method::GET, "/api/v1/reports/daily", &user, None).await.status, StatusCode::FORBIDDEN);

    // The job: to the webhook of each administrator who has one, once; by email to all when the
    // email channel is on. A plain user's webhook gets nothing.
    let hook = WebhookUrl::parse("http://127.0.0.1:9/reports").expect("url");
    let mut with_hook = crate::store_suite::new_user("ops@example.org", Role::Admin);
    with_hook.user.email = herald_core::user::Email::parse("ops@example.org").expect("email");
    let without = crate::store_suite::new_user("boss@example.org", Role::Admin);
    let plain = crate::store_suite::new_user("user@example.org", Role::User);
    for u in [&with_hook, &without, &plain] {
        store.create_user(u).await.expect("user");
    }
    // The administrators of the tokens above get no report.
    rig.forget_token_accounts().await;
    store
        .set_webhook(with_hook.user.id, Some(&hook), &herald_core::webhook::WebhookSecret::generate())
        .await
        .expect("webhook");
    store
        .set_webhook(plain.user.id, Some(&hook), &herald_core::webhook::WebhookSecret::generate())
        .await
        .expect("webhook");
    let utc = "UTC".parse().expect("zone");
    let now = rig.pipe.clock.now();
    let by_webhook = DailyReportJob::new(store.clone(), utc, false);
    assert_eq!(by_webhook.run(now).await.expect("run"), "the report of 2026-11-22 queued for 1 administrators");
    assert_eq!(by_webhook.run(now).await.expect("again"), "the report of 2026-11-22 queued for 0 administrators");
    let by_email = DailyReportJob::new(store.clone(), utc, true);
    assert_eq!(by_email.run(now).await.expect("run"), "the report of 2026-11-22 queued for 2 administrators");
    let queued: Vec<_> = store
        .claim_due_deliveries(now, 100, Duration::from_secs(60))
        .await
        .expect("claim")
        .deliveries
        .into_iter()
        .filter(|d| d.kind == DAILY_REPORT_KIND)
        .collect();
    let mut to: Vec<(Channel, String)> = queued.iter().map(|d| (d.channel, d.recipient.clone())).collect();
    to.sort_by_key(|(c, r)| (c.as_str(), r.clone()));
    let expected = [
        (Channel::Email, "boss@example.org".to_owned()),
        (Channel::Email, "ops@example.org".to_owned()),
        (Channel::Webhook, hook.as_str().to_owned()),
    ];
    assert_eq!(to, expected);
    let webhook = queued.iter().find(|d| d.channel == Channel::Webhook).expect("webhook delivery");
    assert_eq!(webhook.payload["type"], DAILY_REPORT_KIND);
    assert_eq!(webhook.payload["report"], day.body, "the webhook carries what the API answers");
    let email = queued.iter().find(|d| d.channel == Channel::Email).expect("email delivery");
    assert_eq!(email.payload["subject"], "Herald daily report for 2026-11-22");
    let text = email.payload["text"].as_str().expect("text");
    assert!(text.starts_with("Mailings on 2026-11-22 (UTC): 10 sent, 0 failed, 0 expired"), "{text}");
    assert!(text.contains(&mailing), "{text}");
    rig.finish().await;
}
