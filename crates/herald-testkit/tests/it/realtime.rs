//! The real-time gateway over `/ws`, on SQLite with the in-process broker, PostgreSQL with
//! RabbitMQ, PostgreSQL with NATS and PostgreSQL with Redis (the suite is in `herald_testkit::realtime_suite`).

macro_rules! realtime_suite {
    ($($module:ident: $store:ident + $broker:ident),+ ; $tests:tt) => {
        $(realtime_suite!(@module $module, $store, $broker, $tests);)+
    };
    (@module $module:ident, $store:ident, $broker:ident, { $($name:ident),* $(,)? }) => {
        mod $module {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let kind = herald_testkit::broker_suite::BrokerKind::$broker;
                let backend = herald_testkit::Backend::$store;
                let Some(cluster) = herald_testkit::cluster::Cluster::new(backend, kind, stringify!($name)).await
                else {
                    return;
                };
                herald_testkit::realtime_suite::$name(&cluster).await;
                cluster.finish().await;
            })*
        }
    };
}

realtime_suite! {
    sqlite_memory: Sqlite + Memory,
    postgres_amqp: Postgres + Amqp,
    postgres_nats: Postgres + Nats,
    postgres_redis: Postgres + Redis;
    {
        unacknowledged_events_come_again_after_a_reconnect,
        nothing_is_lost_across_a_gateway_restart,
        a_session_moves_between_gateway_instances,
        a_deleted_accounts_sessions_close_on_every_gateway,
        a_gateway_cut_off_from_the_broker_catches_up_when_it_is_back,
        forged_tokens_and_other_users_channels_are_refused,
        recovery_fails_once_the_gap_has_left_the_stream,
        commands_run_over_the_socket_with_its_identity,
        a_slow_session_is_disconnected_and_catches_up_by_recovery,
        room_messages_reach_every_member_live,
        a_removed_member_stops_receiving_the_room,
        socketio_clients_get_unacknowledged_events_again_on_any_gateway,
        a_session_ends_when_its_token_expires_and_resumes_with_a_fresh_one,
        an_acknowledged_notice_sends_no_email_and_an_ignored_one_does,
    }
}

/// The demo page in headless Chromium (Playwright): two tabs of one person see task changes made
/// in the other tab and by a plain HTTP client, a notification lands in the inbox and the page's
/// ack acknowledges it, and two people chat in a room, all live.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_page_works_in_a_browser() {
    let app = herald_testkit::TestApp::start(herald_testkit::Backend::Sqlite, "demo_page").await.expect("SQLite");
    let served = app.get("/demo/", None).await;
    assert_eq!(served.status, 200);
    assert!(
        served.headers["content-type"].to_str().unwrap_or_default().starts_with("text/html"),
        "{:?}",
        served.headers
    );
    let admin = app.admin("root@example.org").await;
    let result = herald_testkit::node::run_demo_browser_test(&app.base, Some(&admin)).await;
    app.stop().await;
    if let Err(output) = result {
        panic!("the demo page's browser test failed:\n{output}");
    }
}

/// The REST-to-socket bench script, briefly: people with stock `socket.io-client` sessions get
/// every task written for them over REST, none lost (its figures are in docs/benchmarks.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_writes_reach_socket_io_clients_none_lost() {
    let app = herald_testkit::TestApp::start(herald_testkit::Backend::Sqlite, "rest_to_socket").await.expect("SQLite");
    let summary = herald_testkit::node::rest_to_socket(&app.base, 4, 40, 2).await;
    app.stop().await;
    let Some(summary) = summary else { return };
    assert_eq!(summary["written"], 80, "{summary}");
    assert_eq!((&summary["refused"], &summary["lost"]), (&serde_json::json!(0), &serde_json::json!(0)), "{summary}");
    assert_eq!(summary["delivered"], 80, "{summary}");
    assert!(summary["p99_ms"].is_number(), "{summary}");
}
