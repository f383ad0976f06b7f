//! Starts the real application on `127.0.0.1:0` over a per-test store and talks to it over HTTP.

use std::{collections::BTreeMap, time::Duration};

use herald::{app::Running, config};
use herald_core::{
    auth::PasswordHasher,
    identity::Identity,
    new_account::{NewAccount, create_user},
    user::{Email, Password, Role, UserName},
};
use herald_workers::collector::FileCollector;
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;
use tempfile::TempDir;

use crate::backend::{Backend, TestStore};

/// The JWT secret every test app signs with, so tests can mint tokens of their own.
pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// The largest attachment a test app accepts.
pub const TEST_MAX_UPLOAD: &str = "8MiB";

/// A running Herald and an HTTP client for it.
#[derive(Debug)]
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub backend: Backend,
    running: Running,
    store: TestStore,
    config: herald::config::Config,
    _data_dir: TempDir,
}

/// An answer: status, headers and the body as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The problem `code` of an error answer.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// Field names of a `validation_failed` answer.
    pub fn fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errs| errs.iter().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

impl TestApp {
    /// Starts Herald on `backend`, or `None` when that backend is not configured.
    pub async fn start(backend: Backend, test: &str) -> Option<Self> {
        Self::start_with(backend, test, |_| {}).await
    }

    /// Like [`TestApp::start`], with `HERALD_*` settings changed by `tweak` first.
    pub async fn start_with(
        backend: Backend,
        test: &str,
        tweak: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Option<Self> {
        Self::start_with_parts(backend, test, tweak, herald::app::Parts::default()).await
    }

    /// Like [`TestApp::start_with`], with some parts (a resolver) put in place of the configured ones.
    pub async fn start_with_parts(
        backend: Backend,
        test: &str,
        tweak: impl FnOnce(&mut BTreeMap<String, String>),
        parts: herald::app::Parts,
    ) -> Option<Self> {
        let store = TestStore::new(backend, test).await?;
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let mut env = BTreeMap::from([
            ("HERALD_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("HERALD_GRPC_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("HERALD_DATA_DIR".to_owned(), data_dir.path().display().to_string()),
            ("HERALD_STORE_URL".to_owned(), store.url.clone()),
            ("HERALD_STORE_POOL_SIZE".to_owned(), "4".to_owned()),
            ("HERALD_JWT_SECRET".to_owned(), TEST_JWT_SECRET.to_owned()),
            ("HERALD_MAX_UPLOAD_SIZE".to_owned(), TEST_MAX_UPLOAD.to_owned()),
            // Tests register and log in many users from one address, and receive webhooks on
            // loopback; the security suite puts the production defaults back where it tests them.
            ("HERALD_AUTH_ACCOUNT_RATE".to_owned(), "unlimited".to_owned()),
            ("HERALD_AUTH_ADDRESS_RATE".to_owned(), "unlimited".to_owned()),
            ("HERALD_WEBHOOK_ALLOWED_NETWORKS".to_owned(), "127.0.0.0/8".to_owned()),
        ]);
        tweak(&mut env);
        let loaded = config::load(None, &env, &config::Flags::default()).expect("test configuration is valid");
        let config = loaded.config;
        let running = herald::app::start_with(&config, parts).await.expect("start herald");
        let base = format!("http://{}", running.http_addr);
        let client = crate::http::builder().timeout(Duration::from_secs(30)).build().expect("http client");
        let app = Self { base, client, backend, running, store, config, _data_dir: data_dir };
        app.wait_ready().await;
        Some(app)
    }

    /// Polls `/readyz` until it answers 200: readiness, never a fixed sleep.
    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = self.client.get(self.url("/readyz")).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("herald at {} never became ready", self.base);
    }

    /// The address the gRPC server listens on.
    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.running.grpc_addr.expect("this app serves gRPC")
    }

    /// The gRPC endpoint, as a tonic client connects to it (`http://127.0.0.1:<port>`).
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        Self::reply(req.send().await.expect("request sent")).await
    }

    /// Reads a response into a [`Reply`].
    pub async fn reply(resp: reqwest::Response) -> Reply {
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body read");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, headers, body }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(Method::POST, path, token, Some(body)).await
    }

    /// Sends only the head of a `POST` that declares a `length`-byte body of `content_type`, and
    /// reads the answer the server gives without waiting for the body. An oversized declaration
    /// must be refused up front; sending the body too would race the server's early close
    /// (the client may see a broken pipe instead of the answer).
    pub async fn declare_body(&self, path: &str, token: Option<&str>, content_type: &str, length: u64) -> Reply {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.base.trim_start_matches("http://");
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\n\
             {auth}connection: close\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.expect("head sent");
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut raw))
            .await
            .expect("the server answered without the body")
            .expect("answer read");
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(at) = parsed.parse(&raw).expect("an HTTP answer") else {
            panic!("incomplete answer: {}", String::from_utf8_lossy(&raw));
        };
        let status = StatusCode::from_u16(parsed.code.expect("status")).expect("status");
        let mut map = HeaderMap::new();
        for h in parsed.headers.iter() {
            map.append(
                reqwest::header::HeaderName::from_bytes(h.name.as_bytes()).expect("name"),
                reqwest::header::HeaderValue::from_bytes(h.value).expect("value"),
            );
        }
        let body = serde_json::from_slice(&raw[at..]).unwrap_or(Value::Null);
        Reply { status, headers: map, body }
    }

    /// Registers an account and returns its access token.
    pub async fn user(&self, email: &str) -> String {
        let reply = self
            .post(
                "/api/v1/auth/register",
                None,
                &serde_json::json!({"email": email, "password": "password123", "name": "T"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "register {email}: {:?}", reply.body);
        self.login(email, "password123").await
    }

    /// Logs in and returns the access token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let reply =
            self.post("/api/v1/auth/login", None, &serde_json::json!({"email": email, "password": password})).await;
        assert_eq!(reply.status, StatusCode::OK, "login {email}: {:?}", reply.body);
        reply.body["access_token"].as_str().expect("access_token").to_owned()
    }

    /// Creates an administrator the way `herald users create --admin` does, and logs in.
    pub async fn admin(&self, email: &str) -> String {
        let svc = &self.running.herald.services;
        let account = NewAccount {
            email: Email::parse(email).expect("email"),
            name: UserName::parse("Admin").expect("name"),
            password: Password::new_secret("password123".into()).expect("password"),
            role: Role::Admin,
        };
        create_user(svc.store.as_ref(), &PasswordHasher::default(), svc.clock.as_ref(), account)
            .await
            .expect("create admin");
        self.login(email, "password123").await
    }

    /// Mints a token with the app's secret for `identity`, as issued at `issued_at`.
    pub fn token_at(&self, identity: Identity, issued_at: chrono::DateTime<chrono::Utc>) -> String {
        self.running.herald.services.tokens.issue(identity, issued_at).access_token
    }

    /// The application itself, as every transport sees it.
    pub fn herald(&self) -> std::sync::Arc<herald_core::Herald> {
        self.running.herald.clone()
    }

    /// The store the app runs on, for checks behind the API.
    /// Runs `sql` on the app's database directly (SQLite file or PostgreSQL schema), as an
    /// operator or a bug would, outside Herald.
    pub async fn raw_sql(&self, sql: &str) {
        self.store.raw_sql(sql).await;
    }

    pub fn store(&self) -> &dyn herald_core::store::Store {
        self.store.store.as_ref()
    }

    /// The directory attachment files are kept in (test apps keep them in a local directory).
    pub fn files_dir(&self) -> &std::path::Path {
        match &self.config.files_url {
            herald_store::FilesUrl::Local(dir) => dir,
            other => panic!("this test app keeps its files at {other}, not in a directory"),
        }
    }

    /// The app's orphan-file collector, with another grace period.
    pub fn collector(&self, grace: Duration) -> herald_workers::collector::FileCollector {
        let svc = &self.running.herald.services;
        FileCollector { store: svc.store.clone(), files: svc.files.clone(), metrics: svc.metrics.clone(), grace }
    }

    /// Stops the app gracefully and removes its store.
    pub async fn stop(self) {
        self.running.stop(Duration::from_secs(10)).await.expect("graceful stop");
        self.store.finish().await;
    }
}
