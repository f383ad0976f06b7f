//! What the webhook tests share: names the test points, an app with production's destination
//! policy, a loopback receiver that keeps what it is sent, and the calls that set a webhook and
//! wait for a reminder's delivery to it.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, SubsecRound as _, Utc};
use herald_core::net::Resolve;
use herald_testkit::{Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

pub(crate) const WEBHOOK: &str = "/api/v1/me/webhook";

/// The server-wide webhook secret the apps here sign with.
pub(crate) const SECRET: &str = "a-webhook-secret-of-at-least-32-bytes";

/// A public address (example.com's), which the checks let through; no test connects to it.
pub(crate) const PUBLIC: &str = "93.184.216.34";

/// Names as the test points them; any other name does not resolve. Counts the look-ups asked.
#[derive(Debug, Default)]
pub(crate) struct Names(Mutex<HashMap<String, Vec<IpAddr>>>, AtomicUsize);

impl Names {
    /// How many look-ups were asked.
    pub(crate) fn lookups(&self) -> usize {
        self.1.load(Ordering::SeqCst)
    }

    pub(crate) fn point(&self, name: &str, addrs: &[&str]) {
        let addrs = addrs.iter().map(|a| a.parse().expect("address")).collect();
        self.0.lock().expect("names").insert(name.to_owned(), addrs);
    }
}

#[async_trait::async_trait]
impl Resolve for Names {
    async fn resolve(&self, host: &str, _port: u16) -> std::io::Result<Vec<IpAddr>> {
        self.1.fetch_add(1, Ordering::SeqCst);
        let found = self.0.lock().expect("names").get(host).cloned();
        found.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} is not a test name")))
    }
}

/// Starts an app on SQLite with production's destination policy (no allowed networks), a
/// webhook secret and a fast scheduler; `tweak` changes settings after that.
pub(crate) async fn start(
    test: &str,
    resolver: Option<Arc<Names>>,
    tweak: impl FnOnce(&mut BTreeMap<String, String>),
) -> TestApp {
    let mut parts = herald::app::Parts::default();
    if let Some(names) = resolver {
        parts.resolver = Some(names);
    }
    let settings = |env: &mut BTreeMap<String, String>| {
        env.insert("HERALD_WEBHOOK_ALLOWED_NETWORKS".into(), String::new());
        env.insert("HERALD_WEBHOOK_SECRET".into(), SECRET.into());
        env.insert("HERALD_SCHEDULER_INTERVAL".into(), "200ms".into());
        tweak(env);
    };
    TestApp::start_with_parts(Backend::Sqlite, test, settings, parts).await.expect("SQLite always runs")
}

/// A request as a receiver read it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) at: DateTime<Utc>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Received {
    /// The value of header `name` (any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// [`start`], trusting `ca` for outbound TLS: its certificate is written to a file the app names
/// in `HERALD_HTTP_CA_FILE` (kept while the returned file lives).
pub(crate) async fn start_trusting(
    test: &str,
    resolver: Option<Arc<Names>>,
    ca: &herald_testkit::tls::TestCa,
    tweak: impl FnOnce(&mut BTreeMap<String, String>),
) -> (TestApp, tempfile::NamedTempFile) {
    let file = tempfile::NamedTempFile::new().expect("CA file");
    ca.write(file.path());
    let path = file.path().display().to_string();
    let app = start(test, resolver, |env| {
        env.insert("HERALD_HTTP_CA_FILE".into(), path);
        tweak(env);
    })
    .await;
    (app, file)
}

/// A loopback HTTP receiver that answers every request with `status`, counting the connections
/// it accepts and keeping each request it reads, with when it came.
pub(crate) struct Receiver {
    pub(crate) port: u16,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Receiver {
    pub(crate) async fn start(status: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (connections, requests) = (connections.clone(), requests.clone());
            async move {
                while let Ok((mut conn, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    let requests = requests.clone();
                    tokio::spawn(async move {
                        if let Some(request) = read_request(&mut conn).await {
                            requests.lock().expect("requests").push(request);
                            let answer =
                                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                            let _ = conn.write_all(answer.as_bytes()).await;
                            let _ = conn.shutdown().await;
                        }
                    });
                }
            }
        });
        Self { port, connections, requests, task }
    }

    pub(crate) fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub(crate) fn requests(&self) -> Vec<Received> {
        self.requests.lock().expect("requests").clone()
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub(crate) fn arrivals(&self) -> Vec<DateTime<Utc>> {
        self.requests().iter().map(|r| r.at).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request, head and body; `None` if the connection ends first.
async fn read_request(conn: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = request.parse(&buf) {
            let length = request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= head + length {
                let headers = request
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                return Some(Received { at: Utc::now(), headers, body: buf[head..head + length].to_vec() });
            }
        }
    }
}

pub(crate) async fn set_webhook(app: &TestApp, token: &str, url: &str) -> herald_testkit::app::Reply {
    app.send(Method::PUT, WEBHOOK, Some(token), Some(&json!({ "url": url }))).await
}

/// Creates an event whose reminder is due in one to two seconds; returns its id and due time.
/// The `n`th of a user's events starts `n` minutes later and is reminded that much earlier, so
/// their reminders fall due together without the events overlapping.
pub(crate) async fn remind_soon(app: &TestApp, token: &str, n: i64) -> (String, DateTime<Utc>) {
    let due = (Utc::now() + chrono::Duration::seconds(2)).trunc_subsecs(0);
    let before = 60 * (n + 1);
    let starts_at = due + chrono::Duration::seconds(before);
    let body = json!({"title": "Call", "starts_at": starts_at, "duration": 30, "remind_before": before});
    let reply = app.post("/api/v1/events", Some(token), &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    (reply.body["id"].as_str().expect("id").to_owned(), due)
}

/// Polls an event's webhook notification until `done` holds for it; returns it.
pub(crate) async fn webhook_notification(
    app: &TestApp,
    token: &str,
    event: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let path = format!("/api/v1/events/{event}/notifications");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let reply = app.get(&path, Some(token)).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        let items = reply.body["items"].as_array().expect("items").clone();
        if let Some(hook) = items.iter().find(|n| n["channel"] == "webhook" && done(n)) {
            return hook.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "not yet: {items:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
