//! Redis restarting mid-flow, on a `redis-server` of the test's own (`appendonly yes`, a free
//! port): queued work survives and a subscription resumes; task changes keep reaching an open
//! session through the restart.

use std::time::Duration;

use herald_testkit::{Backend, broker_suite::BrokerKind, cluster::Cluster, redis_server::RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_work_survives_a_redis_restart() {
    let Some(mut redis) = RedisServer::start("queued_work_survives_a_redis_restart").await else { return };
    let namespace = format!("t_{}", uuid::Uuid::now_v7().simple());
    let broker = herald_broker::RedisBroker::connect(&redis.url(), &namespace).await.expect("connect");
    herald_testkit::broker_suite::queued_work_survives_a_broker_restart(&broker, || {
        redis.restart(Duration::from_millis(500))
    })
    .await;
    herald_core::broker::Broker::close(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_is_lost_across_a_redis_restart() {
    let test = "nothing_is_lost_across_a_redis_restart";
    let Some(mut redis) = RedisServer::start(test).await else { return };
    let Some(cluster) = Cluster::with_broker_url(Backend::Postgres, BrokerKind::Redis, redis.url(), test).await else {
        return;
    };
    herald_testkit::realtime_suite::nothing_is_lost_across_a_broker_restart(&cluster, || {
        redis.restart(Duration::from_secs(1))
    })
    .await;
    cluster.finish().await;
}
