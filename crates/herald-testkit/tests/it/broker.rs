//! The broker conformance suite, run on the in-process broker always and on RabbitMQ, NATS and
//! Redis when `HERALD_TEST_AMQP_URL` / `HERALD_TEST_NATS_URL` / `HERALD_TEST_REDIS_URL` are set. Each test has its own namespace.

macro_rules! broker_suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let env = herald_testkit::broker_suite::TestBroker::memory();
                herald_testkit::broker_suite::$name(env.broker.as_ref(), &env).await;
                env.finish().await;
            })*
        }
        mod amqp {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(env) = herald_testkit::broker_suite::TestBroker::amqp(stringify!($name)).await else { return };
                herald_testkit::broker_suite::$name(env.broker.as_ref(), &env).await;
                env.finish().await;
            })*
        }
        mod nats {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(env) = herald_testkit::broker_suite::TestBroker::nats(stringify!($name)).await else { return };
                herald_testkit::broker_suite::$name(env.broker.as_ref(), &env).await;
                env.finish().await;
            })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(env) = herald_testkit::broker_suite::TestBroker::redis(stringify!($name)).await else { return };
                herald_testkit::broker_suite::$name(env.broker.as_ref(), &env).await;
                env.finish().await;
            })*
        }
    };
}

broker_suite! {
    a_consumer_sees_a_queue_in_publish_order,
    ack_removes_and_nack_redelivers,
    nack_with_delay_redelivers_after_the_delay,
    a_dropped_consumer_gives_its_messages_to_another,
    an_unacked_delivery_comes_back_after_the_ack_deadline,
    an_expired_delivery_frees_its_prefetch_slot,
    a_consumer_read_after_a_pause_hands_out_live_deliveries,
    a_dropped_consumer_releases_everything_it_was_given,
    every_subscription_gets_every_broadcast_in_order,
    duplicate_ids_are_dropped_or_left_to_the_consumer,
    headers_and_ids_travel_unchanged,
    a_closed_broker_refuses_work_and_ends_its_streams,
    consumers_and_subscriptions_survive_a_dropped_connection,
    signed_messages_arrive_intact_through_a_signed_broker,
    unsigned_and_forged_messages_are_dropped_and_counted,
}
