//! What a peer may make the HTTP server hold, over real sockets: a request body trickled a byte
//! at a time is cut at `HERALD_HTTP_BODY_TIMEOUT` (408) while other clients are served; an
//! upload at a slow but steady rate is not, one below `HERALD_HTTP_BODY_MIN_RATE` is; and
//! connections over `HERALD_HTTP_MAX_CONNECTIONS_PER_ADDRESS` are closed at accept while another
//! address is served, upgraded sessions and a trusted proxy's other clients uncounted; and a
//! webhook receiver's answer trickled after its status is cut at `HERALD_WEBHOOK_TIMEOUT`.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use herald_testkit::{Backend, TestApp, ws_client::WsClient};
use reqwest::{StatusCode, multipart};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream},
    task::JoinHandle,
};

/// Long enough to tell "cut" from "never cut", far past every deadline the tests set.
const PATIENCE: Duration = Duration::from_secs(30);

async fn start(test: &str, settings: &[(&str, &str)]) -> TestApp {
    let settings: Vec<(String, String)> = settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    TestApp::start_with(Backend::Sqlite, test, move |env| env.extend(settings)).await.expect("SQLite always runs")
}

fn addr(app: &TestApp) -> SocketAddr {
    app.base.trim_start_matches("http://").parse().expect("socket address")
}

/// A connection to `app` from the loopback address `from` (127.0.0.1, 127.0.0.2, …).
async fn connect_from(app: &TestApp, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{from}:0").parse().expect("address")).expect("bind the source address");
    socket.connect(addr(app)).await.expect("connect")
}

/// Sends `head` and then `body` one byte every `every` on a task (until the server stops
/// reading); the task gives back what the server answered, once it closed the connection.
fn trickle(mut conn: TcpStream, head: String, body: Vec<u8>, every: Duration) -> JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let (mut read, mut write) = conn.split();
        let sending = async {
            write.write_all(head.as_bytes()).await.expect("head sent");
            for byte in body {
                if write.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(every).await;
            }
            std::future::pending::<()>().await;
        };
        let mut answer = Vec::new();
        tokio::select! {
            () = sending => unreachable!(),
            _ = read.read_to_end(&mut answer) => {}
        }
        answer
    })
}

/// The status and problem `code` of a raw HTTP answer.
fn status_and_code(raw: &[u8]) -> (u16, String) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(at)) = parsed.parse(raw) else {
        panic!("no HTTP answer: {:?}", String::from_utf8_lossy(raw));
    };
    let body: Value = serde_json::from_slice(&raw[at..]).unwrap_or(Value::Null);
    (parsed.code.expect("status"), body["code"].as_str().unwrap_or_default().to_owned())
}

/// `GET /healthz` on `conn`, kept alive; the status.
async fn health(conn: &mut TcpStream) -> Option<u16> {
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: herald\r\n\r\n").await.ok()?;
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(PATIENCE, conn.read(&mut buf)).await.expect("an answer or a close").ok()?;
    (n > 0).then(|| status_and_code(&buf[..n]).0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_json_body_is_cut_at_its_deadline_while_another_client_is_served() {
    let app = start("trickled_json", &[("HERALD_HTTP_BODY_TIMEOUT", "2s")]).await;
    let body = br#"{"email":"ada@example.org","password":"password123"}"#.to_vec();
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nhost: herald\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    // 53 bytes, one every 300 ms: 16 s if nothing cut it.
    let trickled = trickle(connect_from(&app, "127.0.0.1").await, head, body, Duration::from_millis(300));
    // Meanwhile another client signs up and in.
    let token = app.user("grace@example.org").await;
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, StatusCode::OK);
    let answer = tokio::time::timeout(PATIENCE, trickled).await.expect("the trickle was cut").expect("task");
    assert_eq!(status_and_code(&answer), (408, "request_timeout".to_owned()), "then the connection closed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_at_a_slow_steady_rate_goes_on_and_one_below_the_least_rate_is_cut() {
    let app = start("slow_uploads", &[("HERALD_HTTP_BODY_TIMEOUT", "1s"), ("HERALD_HTTP_BODY_MIN_RATE", "1KiB")]).await;
    let token = app.user("ada@example.org").await;
    let task = app.post("/api/v1/tasks", Some(&token), &json!({"title": "Slow line"})).await.body;
    let path = format!("/api/v1/tasks/{}/attachments", task["id"].as_str().expect("id"));

    // 1 KiB every 125 ms (8 KiB/s, eight times the least rate) for 3 s: three times the deadline.
    let chunks = futures::stream::unfold(0, |i| async move {
        (i < 24).then_some(())?;
        tokio::time::sleep(Duration::from_millis(125)).await;
        Some((Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1024])), i + 1))
    });
    let part = multipart::Part::stream_with_length(reqwest::Body::wrap_stream(chunks), 24 * 1024).file_name("a.bin");
    let uploaded = app
        .client
        .post(app.url(&path))
        .bearer_auth(&token)
        .multipart(multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    assert_eq!(uploaded.json::<Value>().await.expect("json")["size"], 24 * 1024);

    // One byte every 100 ms: ten bytes a second.
    let boundary = "herald-test-boundary";
    let mut body = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"b.bin\"\r\n\
         content-type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend(vec![b'y'; 1000]);
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: herald\r\nauthorization: Bearer {token}\r\n\
         content-type: multipart/form-data; boundary={boundary}\r\ncontent-length: {}\r\n\r\n",
        body.len() + boundary.len() + 8
    );
    let trickled = trickle(connect_from(&app, "127.0.0.1").await, head, body, Duration::from_millis(100));
    let answer = tokio::time::timeout(PATIENCE, trickled).await.expect("the trickle was cut").expect("task");
    assert_eq!(status_and_code(&answer), (408, "request_timeout".to_owned()));
    let listed = app.get(&path, Some(&token)).await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1), "only the steady upload was kept");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_address_cap_are_closed_while_another_address_is_served() {
    let app = start("per_address_cap", &[("HERALD_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "3")]).await;
    let token = app.user("ada@example.org").await;
    // 127.0.0.3 is the crowding client (the test's own HTTP client keeps a connection of 127.0.0.1).
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = connect_from(&app, "127.0.0.3").await;
        assert_eq!(health(&mut conn).await, Some(200));
        held.push(conn);
    }
    let mut over = connect_from(&app, "127.0.0.3").await;
    assert_eq!(health(&mut over).await, None, "the fourth connection of 127.0.0.3 is closed unanswered");
    let mut other = connect_from(&app, "127.0.0.2").await;
    assert_eq!(health(&mut other).await, Some(200), "another address is served");
    assert_eq!(health(&mut held[0]).await, Some(200), "the first three still are");

    // A slot given back is free again (once the server has seen the close).
    drop(held.pop());
    assert!(served_soon(&app, "127.0.0.3").await, "a connection closed frees its slot");

    // Sessions upgraded from 127.0.0.1 hold no slot of it: four of them over a cap of three, and
    // still a connection for it.
    let ws_url = format!("{}/ws", app.base.replacen("http://", "ws://", 1));
    let mut sessions = Vec::new();
    for n in 0..4 {
        sessions.push(WsClient::connect(&ws_url, &token, &format!("tab-{n}")).await.expect("a session"));
    }
    assert!(served_soon(&app, "127.0.0.1").await, "four sessions and still a connection for 127.0.0.1");
    drop((sessions, held));
    app.stop().await;
}

/// Whether a new connection from `from` is served within a few tries (a closed connection's
/// slot comes back when the server notices the close).
async fn served_soon(app: &TestApp, from: &str) -> bool {
    for _ in 0..50 {
        let mut conn = connect_from(app, from).await;
        if health(&mut conn).await == Some(200) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Behind a trusted proxy, the client its `X-Forwarded-For` names is counted per request in
/// flight: over the cap, 429; another client on the same proxy connection is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_clients_are_counted_by_their_forwarded_address() {
    let app = start(
        "per_forwarded_address",
        &[
            ("HERALD_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "1"),
            ("HERALD_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("HERALD_HTTP_BODY_TIMEOUT", "20s"),
        ],
    )
    .await;
    // The proxy's connections are not counted themselves.
    let proxy = |client: &str| {
        format!("GET /healthz HTTP/1.1\r\nhost: herald\r\nx-forwarded-for: {client}\r\nconnection: close\r\n\r\n")
    };
    // 203.0.113.9's one request in flight: a body that comes slowly.
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nhost: herald\r\nx-forwarded-for: 203.0.113.9\r\n\
                content-type: application/json\r\ncontent-length: 100\r\n\r\n";
    let mut slow =
        trickle(connect_from(&app, "127.0.0.1").await, head.to_owned(), vec![b' '; 100], Duration::from_secs(1));
    let mut refused = false;
    for _ in 0..50 {
        // A quick request of the loop may have held the client's one slot when the slow head
        // came, which was then refused itself: start it again.
        if slow.is_finished() {
            slow = trickle(
                connect_from(&app, "127.0.0.1").await,
                head.to_owned(),
                vec![b' '; 100],
                Duration::from_secs(1),
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut conn = connect_from(&app, "127.0.0.1").await;
        conn.write_all(proxy("203.0.113.9").as_bytes()).await.expect("request");
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).await.expect("answer");
        if status_and_code(&answer) == (429, "too_many_requests".to_owned()) {
            refused = true;
            break;
        }
        // The slow request may not have reached the server yet.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "a second request of 203.0.113.9 while one is in flight");
    let mut conn = connect_from(&app, "127.0.0.1").await;
    conn.write_all(proxy("203.0.113.10").as_bytes()).await.expect("request");
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.expect("answer");
    assert_eq!(status_and_code(&answer).0, 200, "another client through the same proxy");
    slow.abort();
    app.stop().await;
}

/// A webhook receiver that sends its `200` at once and then its body a byte at a time is cut at
/// `HERALD_WEBHOOK_TIMEOUT`: the delivery is sent (the status decides) and the connection closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_webhook_answer_is_cut_at_the_timeout_and_the_delivery_is_sent() {
    let app = start(
        "slow_webhook_answer",
        &[
            ("HERALD_WEBHOOK_SECRET", "a-webhook-secret-of-at-least-32-bytes"),
            ("HERALD_WEBHOOK_TIMEOUT", "1s"),
            ("HERALD_SCHEDULER_INTERVAL", "200ms"),
        ],
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (hung_up, seen) = tokio::sync::oneshot::channel::<()>();
    let receiver = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("the sender calls");
        let mut request = vec![0; 64 * 1024];
        let _ = tokio::time::timeout(Duration::from_millis(500), conn.read(&mut request)).await;
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n").await.expect("head");
        // A byte every 100 ms: 28 hours for the whole body, unless the sender hangs up.
        while conn.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = hung_up.send(());
    });
    let token = app.user("ada@example.org").await;
    let hook_url = json!({"url": format!("http://127.0.0.1:{port}/hook")});
    let set = app.send(reqwest::Method::PUT, "/api/v1/me/webhook", Some(&token), Some(&hook_url)).await;
    assert_eq!(set.status, StatusCode::OK);
    let due = chrono::Utc::now() + chrono::Duration::seconds(2);
    let event = json!({"title": "Call", "starts_at": due + chrono::Duration::seconds(60), "duration": 30,
        "remind_before": 60});
    let created = app.post("/api/v1/events", Some(&token), &event).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    tokio::time::timeout(PATIENCE, seen).await.expect("the sender hung up").expect("receiver");
    let path = format!("/api/v1/events/{}/notifications", created.body["id"].as_str().expect("id"));
    let mut hook = Value::Null;
    for _ in 0..100 {
        let items = app.get(&path, Some(&token)).await.body["items"].as_array().cloned().unwrap_or_default();
        if let Some(found) = items.into_iter().find(|n| n["channel"] == "webhook" && n["attempts"].as_u64() >= Some(1))
        {
            hook = found;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(hook["status"], "sent", "{hook}");
    receiver.abort();
    app.stop().await;
}
