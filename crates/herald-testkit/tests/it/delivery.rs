//! The delivery pipeline (scheduler, sender, channels, failure policy) over every store and broker.

store_broker_suite! {
    delivery_suite {
        sqlite_memory: Sqlite + Memory,
        postgres_amqp: Postgres + Amqp,
        postgres_nats: Postgres + Nats,
        postgres_redis: Postgres + Redis,
    }
    {
        the_retry_schedule_is_honoured_on_a_paused_clock,
        client_errors_are_final_and_deadlines_expire,
        the_breaker_opens_defers_and_recovers,
        a_sender_killed_mid_batch_loses_nothing,
        claims_travel_in_batches_and_stop_at_the_bound,
        a_claim_that_ran_out_while_queued_is_handed_back,
        calendar_reminders_go_out_once_at_their_time,
        the_rate_limit_holds_within_five_percent,
        malformed_answers_are_failures_not_crashes,
        log_webhook_and_realtime_channels_deliver,
        email_deliveries_follow_the_mail_servers_answers,
        webhook_breakers_are_kept_per_host,
        the_sender_adapts_its_concurrency_to_the_provider,
        periodic_jobs_run_on_schedule_on_one_scheduler,
        a_notice_escalates_on_time_until_it_is_acknowledged,
        quiet_hours_defer_to_their_end_across_a_dst_change,
    }
}

/// `herald serve` runs the scheduler and a sender in-process: a stored delivery is sent, through
/// the in-process broker, without any other process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_runs_the_pipeline_in_process() {
    use herald_core::delivery::{Channel, DeliveryId, DeliveryStatus, NewDelivery};

    let app = herald_testkit::TestApp::start_with(herald_testkit::Backend::Sqlite, "serve_pipeline", |env| {
        env.insert("HERALD_SCHEDULER_INTERVAL".into(), "50ms".into());
    })
    .await
    .expect("sqlite is always there");
    let id = DeliveryId::new();
    let now = chrono::Utc::now();
    let delivery = NewDelivery {
        id,
        kind: "test.note".into(),
        source_key: format!("test:{id}"),
        recipient: "ops".into(),
        channel: Channel::Log,
        payload: serde_json::json!({"note": "in-process"}),
        source_id: None,
        recipient_id: None,
        next_attempt_at: now,
        deadline: None,
        created_at: now,
        trace_context: None,
    };
    app.store().create_deliveries(&[delivery]).await.expect("create");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let d = app.store().delivery(id).await.expect("read").expect("stored");
        if d.status == DeliveryStatus::Sent {
            assert_eq!(d.attempts, 1);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {} after 20 s", d.status.as_str());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let text = app.client.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(text.contains(r#"herald_deliveries_total{channel="log",outcome="sent"} 1"#), "{text}");
    app.stop().await;
}
