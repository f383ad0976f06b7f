//! Commands with a byte stream on every socket transport: `attachments.upload`,
//! `attachments.download` and `clients.import` over Socket.io (a stock `socket.io-client`: one
//! binary attachment, or numbered chunks) and `/ws` (binary frames tagged with the call's id),
//! checked against what REST serves back. (NATS is in `nats_commands.rs`.)

use herald_testkit::{Backend, TestApp, node::SioClient, ws_client::WsClient};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The largest attachment in these tests: a body over it takes a few chunks.
const MAX_UPLOAD: usize = 300 * 1024;

async fn start(test: &str) -> TestApp {
    TestApp::start_with(Backend::Sqlite, test, |env| {
        env.insert("HERALD_MAX_UPLOAD_SIZE".into(), "300KiB".into());
    })
    .await
    .expect("SQLite always runs")
}

/// Bytes that differ from one offset to the next, so a chunk out of place would show.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn task(app: &TestApp, token: &str) -> String {
    let reply = app.post("/api/v1/tasks", Some(token), &json!({"title": "With files"})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body["id"].as_str().expect("id").to_owned()
}

/// What REST serves for an attachment: its bytes.
async fn rest_content(app: &TestApp, token: &str, attachment: &Value) -> Vec<u8> {
    let id = attachment["id"].as_str().expect("id");
    let response = app
        .client
        .get(app.url(&format!("/api/v1/attachments/{id}/content")))
        .bearer_auth(token)
        .send()
        .await
        .expect("download");
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.expect("bytes").to_vec()
}

/// An upload's answer is the stored attachment: REST serves the same bytes, with the hash the
/// answer names.
async fn assert_stored(app: &TestApp, token: &str, answer: &Value, sent: &[u8]) -> Value {
    assert_eq!(answer["ok"], true, "{answer}");
    let attachment = answer["output"].clone();
    assert_eq!(attachment["size"], sent.len(), "{attachment}");
    assert_eq!(attachment["sha256"], sha256(sent));
    let served = rest_content(app, token, &attachment).await;
    assert_eq!(sha256(&served), sha256(sent), "REST serves what the socket sent");
    attachment
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or_default()
}

/// Attachment files on disk, finished or partial.
fn files(app: &TestApp) -> usize {
    [app.files_dir().to_path_buf(), app.files_dir().join(".partial")]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten())
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_carries_uploads_and_downloads_as_binary() {
    let Some(mut sio) = SioClient::spawn() else { return };
    let app = start("socket_io_carries_uploads_and_downloads_as_binary").await;
    let token = app.user("ada@example.org").await;
    let task = task(&app, &token).await;
    sio.connect(&app.base, &token, "tab").await.expect("connect");
    let input = |name: &str| json!({"task_id": task, "file_name": name, "content_type": "text/plain"});

    // Small: the whole body as the call's binary attachment.
    let small = content(10_000);
    let (answer, _) = sio.call_with_body("attachments.upload", input("small.txt"), Some(&small)).await;
    let attachment = assert_stored(&app, &token, &answer, &small).await;
    assert_eq!((&attachment["file_name"], &attachment["content_type"]), (&json!("small.txt"), &json!("text/plain")));

    // Larger than one Socket.io message may be: numbered chunks under an upload id.
    let large = content(250 * 1024);
    let (answer, chunks) = sio.upload("attachments.upload", input("large.bin"), "up-1", &large, 64 * 1024).await;
    assert_eq!(chunks.len(), 4, "{chunks:?}");
    assert!(chunks.iter().all(|c| c["ok"] == true), "{chunks:?}");
    let large_attachment = assert_stored(&app, &token, &answer, &large).await;

    // Over the attachment limit: refused with 413 while streaming, nothing kept.
    let before = files(&app);
    let oversize = content(MAX_UPLOAD + 100 * 1024);
    let (answer, chunks) = sio.upload("attachments.upload", input("huge.bin"), "up-2", &oversize, 64 * 1024).await;
    assert_eq!((code(&answer), &answer["error"]["status"]), ("payload_too_large", &json!(413)), "{answer}");
    // Chunks already queued when the command refused were acknowledged; once it did, the next
    // is refused and the client stops sending.
    let sent_all = chunks.len() == oversize.len().div_ceil(64 * 1024);
    assert!(sent_all || chunks.last().is_some_and(|c| c["ok"] != true), "{chunks:?}");
    assert_eq!(files(&app), before, "the refused upload left no file");

    // Downloads: the bytes in the answer, whole or one range.
    let id = large_attachment["id"].clone();
    let (answer, bytes) = sio.call_with_body("attachments.download", json!({"id": id}), None).await;
    assert_eq!(answer["output"]["partial"], false, "{answer}");
    assert_eq!(sha256(&bytes.expect("bytes")), sha256(&large));
    let (answer, bytes) =
        sio.call_with_body("attachments.download", json!({"id": id, "range": "bytes=1000-1099"}), None).await;
    assert_eq!((&answer["output"]["start"], &answer["output"]["length"]), (&json!(1000), &json!(100)), "{answer}");
    assert_eq!(bytes.expect("bytes"), &large[1000..1100]);

    // The rules of the command hold on this transport too.
    let (answer, _) = sio.call_with_body("attachments.upload", input("none.txt"), None).await;
    assert_eq!((code(&answer), &answer["error"]["errors"][0]["field"]), ("validation_failed", &json!("body")));
    let (answer, _) = sio.call_with_body("tasks.list", json!({}), Some(b"bytes")).await;
    assert_eq!(code(&answer), "unsupported_media_type", "{answer}");
    let (answer, _) = sio.call_with_body("attachments.download", json!({"id": id, "range": "lines=1-2"}), None).await;
    assert_eq!(code(&answer), "validation_failed", "{answer}");

    sio.disconnect().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_carries_uploads_downloads_and_imports_in_binary_frames() {
    let app = start("ws_carries_uploads_downloads_and_imports_in_binary_frames").await;
    let token = app.user("ada@example.org").await;
    let task = task(&app, &token).await;
    let url = format!("{}/ws", app.base.replacen("http://", "ws://", 1));
    let mut ws = WsClient::connect(&url, &token, "tab").await.expect("connect");
    let input = json!({"task_id": task, "file_name": "frames.bin"});

    let large = content(250 * 1024);
    let answer = ws.call_with_body("attachments.upload", input.clone(), &large, 60 * 1024).await;
    let attachment = assert_stored(&app, &token, &answer, &large).await;

    let before = files(&app);
    let oversize = content(MAX_UPLOAD + 100 * 1024);
    let answer = ws.call_with_body("attachments.upload", input.clone(), &oversize, 60 * 1024).await;
    assert_eq!((code(&answer), &answer["error"]["status"]), ("payload_too_large", &json!(413)), "{answer}");
    assert_eq!(files(&app), before, "the refused upload left no file");

    // A download streams in frames, however large.
    let (answer, bytes) = ws.download("attachments.download", json!({"id": attachment["id"]})).await;
    assert_eq!((&answer["ok"], &answer["body"]), (&json!(true), &json!(true)), "{answer}");
    assert_eq!(sha256(&bytes), sha256(&large));
    let (answer, bytes) =
        ws.download("attachments.download", json!({"id": attachment["id"], "range": "bytes=-10"})).await;
    assert_eq!(answer["output"]["partial"], true);
    assert_eq!(bytes, &large[large.len() - 10..]);

    // A body needs an id to be tagged with.
    ws.send(json!({"op": "call", "command": "attachments.upload", "input": input, "body": true})).await;
    // (Skipping the error frames of the refused upload's chunks that came after its refusal.)
    let untagged = loop {
        let frame = ws.next_frame(std::time::Duration::from_secs(5)).await.expect("a reply");
        if frame["op"] != "error" {
            break frame;
        }
        assert!(matches!(frame["code"].as_str(), Some("not_found" | "conflict")), "{frame}");
    };
    assert_eq!((&untagged["op"], &untagged["ok"]), (&json!("reply"), &json!(false)), "{untagged}");
    assert_eq!(untagged["error"]["errors"][0]["field"], "id", "{untagged}");
    ws.close().await;

    // An admin imports clients as NDJSON over the same frames.
    let admin = app.admin("root@example.org").await;
    let mut ws = WsClient::connect(&url, &admin, "console").await.expect("connect");
    let ndjson = b"{\"phone\": \"79161234567\", \"tag\": \"vip\"}\nnot json\n{\"phone\": \"79161234568\", \"timezone\": \"Mars/Olympus\"}\n{\"phone\": \"79161234569\"}\n";
    let answer = ws.call_with_body("clients.import", json!({}), ndjson, 16).await;
    let report = &answer["output"];
    assert_eq!((&report["created"], &report["failed"]), (&json!(2), &json!(2)), "{answer}");
    let lines: Vec<&Value> = report["errors"].as_array().expect("errors").iter().map(|e| &e["line"]).collect();
    assert_eq!(lines, [&json!(2), &json!(3)]);
    let listed = app.get("/api/v1/clients?limit=100", Some(&admin)).await;
    let mut phones: Vec<&str> =
        listed.body["items"].as_array().expect("items").iter().filter_map(|c| c["phone"].as_str()).collect();
    phones.sort_unstable();
    assert_eq!(phones, ["79161234567", "79161234569"], "{:?}", listed.body);
    ws.close().await;

    // A plain user may not import.
    let mut ws = WsClient::connect(&url, &token, "tab-2").await.expect("connect");
    let answer = ws.call_with_body("clients.import", json!({}), ndjson, 1024).await;
    assert_eq!(code(&answer), "forbidden", "{answer}");
    ws.close().await;
    app.stop().await;
}

/// A body in chunks exists only for a call in flight, so a session holds at most
/// `HERALD_SESSION_CALLS_IN_FLIGHT` of them: an open upload takes a slot, and the next call is
/// refused until it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_uploads_are_bounded_by_the_calls_in_flight() {
    let app = TestApp::start_with(Backend::Sqlite, "open_uploads_bounded", |env| {
        env.insert("HERALD_SESSION_CALLS_IN_FLIGHT".into(), "1".into());
    })
    .await
    .expect("SQLite always runs");
    let token = app.user("ada@example.org").await;
    let task = task(&app, &token).await;
    let url = format!("{}/ws", app.base.replacen("http://", "ws://", 1));
    let mut ws = WsClient::connect(&url, &token, "tab").await.expect("connect");
    // An upload opened, its bytes not sent yet: it holds the one slot.
    ws.send(
        json!({"op": "call", "id": "u1", "command": "attachments.upload", "input": {"task_id": task}, "body": true}),
    )
    .await;
    let second = ws
        .request(json!({"op": "call", "command": "attachments.upload", "input": {"task_id": task}, "body": true}))
        .await;
    assert_eq!(second["error"]["code"], "too_many_requests", "{second}");
    let listed = ws.call("tasks.list", json!({})).await;
    assert_eq!(listed["error"]["code"], "too_many_requests", "{listed}");
    // Closing the connection ends the upload at once: nothing of it stays, file or call.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while files(&app) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the open upload never started its file");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    ws.close().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while files(&app) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the open upload outlived its connection");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.stop().await;
}
