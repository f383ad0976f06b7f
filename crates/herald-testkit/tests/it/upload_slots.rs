//! Attachment uploads in progress, limited per user: a held upload takes a slot, a finished or
//! cut-off one gives it back, and only users with uploads under way are remembered.

use std::time::Duration;

use herald_testkit::TestApp;
use reqwest::StatusCode;
use serde_json::json;

use super::tasks::{create, files_on_disk, upload};

api_tests! {
    uploads_in_progress_are_limited_per_user,
}

/// An upload on a connection of its own, held open: the request and the multipart head of a
/// 64 KiB file, of which 1 KiB is sent.
struct HeldUpload {
    conn: tokio::net::TcpStream,
    rest: Vec<u8>,
}

impl HeldUpload {
    async fn start(app: &TestApp, token: &str, task: &str) -> Self {
        use tokio::io::AsyncWriteExt as _;
        let boundary = "herald-held";
        let head = format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"held.bin\"\r\n\
             content-type: application/octet-stream\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let file = 64 * 1024;
        let length = head.len() + file + tail.len();
        let base = app.url("");
        let addr = base.trim_start_matches("http://");
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "POST /api/v1/tasks/{task}/attachments HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
             content-type: multipart/form-data; boundary={boundary}\r\ncontent-length: {length}\r\n\
             connection: close\r\n\r\n{head}"
        );
        conn.write_all(request.as_bytes()).await.expect("head sent");
        conn.write_all(&[5u8; 1024]).await.expect("first bytes sent");
        conn.flush().await.expect("flush");
        let mut rest = vec![5u8; file - 1024];
        rest.extend_from_slice(tail.as_bytes());
        Self { conn, rest }
    }

    /// Sends the rest of the file; returns the answer's status line.
    async fn finish(mut self) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        self.conn.write_all(&self.rest).await.expect("rest sent");
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), self.conn.read_to_end(&mut raw))
            .await
            .expect("answered in time")
            .expect("answer read");
        String::from_utf8_lossy(&raw).lines().next().unwrap_or_default().to_owned()
    }
}

/// Uploads stored in part so far: `LocalFiles` keeps each upload in progress under `.partial`.
fn partial_uploads(app: &TestApp) -> usize {
    std::fs::read_dir(app.files_dir().join(".partial")).expect("partial dir").flatten().count()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn uploads_in_progress_are_limited_per_user(app: &TestApp) {
    // Test apps keep the default, HERALD_UPLOADS_PER_USER=4.
    let ada = app.user("ada@example.org").await;
    let eve = app.user("eve@example.org").await;
    let ada_task = create(app, &ada, json!({"title": "Held"})).await["id"].as_str().expect("id").to_owned();
    let eve_task = create(app, &eve, json!({"title": "Free"})).await["id"].as_str().expect("id").to_owned();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(HeldUpload::start(app, &ada, &ada_task).await);
    }
    wait_for("four uploads under way", || partial_uploads(app) == 4).await;

    let refused = upload(app, &ada, &ada_task, "fifth.txt", b"five".to_vec()).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"));
    let detail = refused.body["detail"].as_str().expect("detail");
    assert!(detail.contains("4 uploads in progress") && detail.contains("HERALD_UPLOADS_PER_USER"), "{detail}");
    assert_eq!(refused.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert_eq!(files_on_disk(app).len(), 4, "the refused upload stored nothing");
    let other = upload(app, &eve, &eve_task, "eve.txt", b"not held up".to_vec()).await;
    assert_eq!(other.status, StatusCode::CREATED, "another user is not affected: {:?}", other.body);

    // An upload that ends frees its slot at once.
    let finished = held.pop().expect("held").finish().await;
    assert!(finished.starts_with("HTTP/1.1 201"), "{finished}");
    let next = upload(app, &ada, &ada_task, "next.txt", b"next".to_vec()).await;
    assert_eq!(next.status, StatusCode::CREATED, "{:?}", next.body);

    // So does one whose client goes away.
    held.push(HeldUpload::start(app, &ada, &ada_task).await);
    wait_for("four uploads under way again", || partial_uploads(app) == 4).await;
    let refused = upload(app, &ada, &ada_task, "fifth.txt", b"five".to_vec()).await;
    assert_eq!(refused.code(), "too_many_requests");
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = upload(app, &ada, &ada_task, "after.txt", b"after".to_vec()).await;
        if reply.status == StatusCode::CREATED {
            break;
        }
        assert_eq!(reply.code(), "too_many_requests");
        assert!(tokio::time::Instant::now() < deadline, "the cut-off upload never freed its slot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Only users with uploads under way are remembered.
    let herald = app.herald();
    assert_eq!(herald.services.uploads.users(), 1);
    drop(held);
    wait_for("every held upload ended", || herald.services.uploads.users() == 0).await;
}
