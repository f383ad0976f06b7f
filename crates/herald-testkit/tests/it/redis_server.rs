//! Redis on a `redis-server` of the test's own (a free port, `appendonly yes`): restarting
//! mid-flow, queued work survives and a subscription resumes, and task changes keep reaching an
//! open session; serving TLS only, `herald serve` reaches it over `rediss://` when it trusts the
//! certificate and refuses to start when it does not.

use std::time::Duration;

use herald_testkit::{
    Backend, broker_suite::BrokerKind, cluster::Cluster, processes::HeraldProcess, redis_server::RedisServer,
};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reaches_redis_over_tls_and_checks_its_certificate() {
    let Some(redis) = RedisServer::start_tls("serve_reaches_redis_over_tls").await else { return };
    let certificate = redis.certificate().expect("a TLS server").display().to_string();
    let data = tempfile::tempdir().expect("data dir");
    let env = |trusted: bool| {
        let mut env: Vec<(String, String)> = [
            ("HERALD_DATA_DIR", data.path().display().to_string()),
            ("HERALD_HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("HERALD_GRPC_ADDR", "127.0.0.1:0".to_owned()),
            ("HERALD_BROKER_URL", redis.url()),
            ("HERALD_JWT_SECRET", herald_testkit::app::TEST_JWT_SECRET.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if trusted {
            // rustls-native-certs reads the roots from SSL_CERT_FILE when it is set.
            env.push(("SSL_CERT_FILE".to_owned(), certificate.clone()));
        }
        env
    };

    let mut serve = HeraldProcess::start("serve", &["serve"], &env(true));
    let addr = serve.http_addr().await;
    let client = herald_testkit::http::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        // Ready means the broker answered a ping and the gateway's subscription is up: both over TLS.
        let status = client.get(format!("http://{addr}/readyz")).send().await.map(|r| r.status().as_u16());
        if status.as_ref().is_ok_and(|s| *s == 200) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not ready over rediss://: {status:?}\n{}", serve.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    serve.terminate().await;

    // Without the certificate among its roots, the same server is refused at start.
    let mut untrusted = HeraldProcess::start("serve-untrusted", &["serve"], &env(false));
    let status = untrusted.wait_exit(Duration::from_secs(60)).await;
    assert!(!status.success(), "started against an untrusted certificate:\n{}", untrusted.log_text());
    let log = untrusted.log_text();
    assert!(log.contains("broker"), "the error names the broker: {log}");
}
