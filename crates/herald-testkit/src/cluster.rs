//! A deployment in one test: several Herald nodes (`serve`, `api`, `gateway`) started in this
//! process on one store and one broker, each on its own loopback port, each stoppable alone.

use std::{collections::BTreeMap, time::Duration};

use herald::{app::Running, config};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use uuid::Uuid;

use crate::{
    app::TEST_JWT_SECRET,
    backend::{Backend, TestStore},
    broker_suite::BrokerKind,
};

/// One store, one broker namespace, and the nodes started on them.
#[derive(Debug)]
pub struct Cluster {
    pub backend: Backend,
    pub broker: BrokerKind,
    pub store: TestStore,
    broker_url: String,
    namespace: String,
    data_dir: TempDir,
    pub client: reqwest::Client,
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    pub base: String,
    running: Running,
}

/// A registered user: id and access token.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: Uuid,
    pub token: String,
}

impl Cluster {
    /// A cluster on `backend` and `broker`, or `None` (skipped, loudly) when one is not configured.
    pub async fn new(backend: Backend, broker: BrokerKind, test: &str) -> Option<Self> {
        let broker_url = match broker {
            BrokerKind::Memory => "memory://".to_owned(),
            BrokerKind::Amqp => crate::test_env::backend_url("HERALD_TEST_AMQP_URL", test)?,
            BrokerKind::Nats => crate::test_env::backend_url("HERALD_TEST_NATS_URL", test)?,
            BrokerKind::Redis => crate::test_env::backend_url("HERALD_TEST_REDIS_URL", test)?,
        };
        Self::with_broker_url(backend, broker, broker_url, test).await
    }

    /// A cluster on `backend` and the broker of `kind` at `broker_url` (a server the test owns),
    /// or `None` (skipped, loudly) when the store is not configured.
    pub async fn with_broker_url(backend: Backend, broker: BrokerKind, broker_url: String, test: &str) -> Option<Self> {
        let store = TestStore::new(backend, test).await?;
        Some(Self {
            backend,
            broker,
            store,
            broker_url,
            namespace: format!("t_{}", Uuid::now_v7().simple()),
            data_dir: tempfile::tempdir().expect("temp data dir"),
            client: crate::http::builder().timeout(Duration::from_secs(30)).build().expect("http client"),
        })
    }

    /// Whether several nodes can share the broker (the in-process one lives in one node).
    pub fn shares_broker(&self) -> bool {
        self.broker != BrokerKind::Memory
    }

    fn config(&self, tweak: impl FnOnce(&mut BTreeMap<String, String>)) -> config::Config {
        let mut env = BTreeMap::from([
            ("HERALD_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("HERALD_GRPC_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("HERALD_DATA_DIR".to_owned(), self.data_dir.path().display().to_string()),
            ("HERALD_STORE_URL".to_owned(), self.store.url.clone()),
            ("HERALD_STORE_POOL_SIZE".to_owned(), "4".to_owned()),
            ("HERALD_BROKER_URL".to_owned(), self.broker_url.clone()),
            ("HERALD_BROKER_NAMESPACE".to_owned(), self.namespace.clone()),
            ("HERALD_JWT_SECRET".to_owned(), TEST_JWT_SECRET.to_owned()),
            // Many users register from one address; the security suite tests the limits.
            ("HERALD_AUTH_ACCOUNT_RATE".to_owned(), "unlimited".to_owned()),
            ("HERALD_AUTH_ADDRESS_RATE".to_owned(), "unlimited".to_owned()),
            ("HERALD_RELAY_POLL_INTERVAL".to_owned(), "100ms".to_owned()),
        ]);
        tweak(&mut env);
        config::load(None, &env, &config::Flags::default()).expect("test configuration is valid").config
    }

    /// Starts `herald serve` (API, gateway and workers).
    pub async fn serve(&self) -> Node {
        self.serve_with(|_| {}).await
    }

    /// Starts `herald serve` with settings changed by `tweak`.
    pub async fn serve_with(&self, tweak: impl FnOnce(&mut BTreeMap<String, String>)) -> Node {
        self.started(herald::app::start(&self.config(tweak)).await.expect("start serve")).await
    }

    /// Starts `herald gateway` alone.
    pub async fn gateway(&self) -> Node {
        self.gateway_with(|_| {}).await
    }

    /// Starts `herald gateway` alone with settings changed by `tweak`.
    pub async fn gateway_with(&self, tweak: impl FnOnce(&mut BTreeMap<String, String>)) -> Node {
        self.started(herald::app::start_gateway(&self.config(tweak)).await.expect("start gateway")).await
    }

    /// The broker's `host:port`, for a [`Proxy`](crate::proxy::Proxy); `None` in-process.
    pub fn broker_target(&self) -> Option<String> {
        self.shares_broker().then(|| crate::broker_suite::broker_target(self.broker, &self.broker_url))
    }

    /// Starts `herald gateway` alone, reaching the broker through `proxy` (so a test can cut it off).
    pub async fn gateway_through(&self, proxy: &crate::proxy::Proxy) -> Node {
        let url = crate::broker_suite::proxied_url(&self.broker_url, proxy);
        self.gateway_with(|env| {
            env.insert("HERALD_BROKER_URL".to_owned(), url);
        })
        .await
    }

    async fn started(&self, running: Running) -> Node {
        let node = Node { base: format!("http://{}", running.http_addr), running };
        wait_ready(&self.client, &node.base).await;
        node
    }

    /// Registers `email` through `node` and logs in.
    pub async fn account(&self, node: &Node, email: &str) -> Account {
        let body = json!({"email": email, "password": "password123", "name": "T"});
        let reply = self.client.post(node.url("/api/v1/auth/register")).json(&body).send().await.expect("register");
        assert_eq!(reply.status(), StatusCode::CREATED, "register {email}");
        let user: Value = reply.json().await.expect("user");
        Account {
            id: user["id"].as_str().and_then(|s| s.parse().ok()).expect("user id"),
            token: self.login(node, email).await,
        }
    }

    /// Logs `email` (registered by [`Cluster::account`]) in through `node`: a fresh token.
    pub async fn login(&self, node: &Node, email: &str) -> String {
        let login = json!({"email": email, "password": "password123"});
        let reply = self.client.post(node.url("/api/v1/auth/login")).json(&login).send().await.expect("login");
        assert_eq!(reply.status(), StatusCode::OK, "login {email}");
        let token: Value = reply.json().await.expect("token");
        token["access_token"].as_str().expect("access_token").to_owned()
    }

    /// `POST path` on `node` as `account`; the answer's status and JSON body.
    pub async fn post(&self, node: &Node, account: &Account, path: &str, body: &Value) -> (StatusCode, Value) {
        let reply = self.client.post(node.url(path)).bearer_auth(&account.token).json(body).send().await.expect("post");
        let status = reply.status();
        (status, reply.json().await.unwrap_or(Value::Null))
    }

    /// Removes the store.
    pub async fn finish(self) {
        self.store.finish().await;
    }
}

/// Polls `{base}/readyz` until it answers 200: readiness, never a fixed sleep.
pub async fn wait_ready(client: &reqwest::Client, base: &str) {
    for _ in 0..400 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{base} never became ready");
}

/// The value of the sample `name` (with its labels, e.g. `herald_acks_total` or
/// `herald_x_total{result="ok"}`) in a Prometheus text exposition.
pub fn metric(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

impl Node {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `ws://…/ws` of this node.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.running.http_addr)
    }

    /// The node's application (its store, metrics and commands).
    pub fn herald(&self) -> std::sync::Arc<herald_core::Herald> {
        self.running.herald.clone()
    }

    /// Stops the node gracefully: its sessions are closed.
    pub async fn stop(self) {
        self.running.stop(Duration::from_secs(10)).await.expect("graceful stop");
    }
}
