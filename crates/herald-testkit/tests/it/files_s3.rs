//! Attachments on S3 with the built binary: `herald api` processes sharing a PostgreSQL store and
//! a prefix of the test bucket (`HERALD_FILES_URL=s3://…`, `HERALD_S3_ENDPOINT`, credentials from
//! `AWS_*`). An attachment uploaded through one process downloads through another, whole and by
//! range, with the uploading process's memory bounded whatever the file's size; an upload cut
//! off midway leaves no object and no open multipart upload; uploads beyond
//! `HERALD_S3_UPLOAD_MEMORY` are refused with 503 and leave nothing; `herald gc files` removes
//! orphaned objects past the grace period and keeps the rest, objects of other names among them.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use herald_testkit::{
    Backend, TestStore,
    cluster::wait_ready,
    processes::{HeraldProcess, herald_bin},
    s3::TestBucket,
};
use reqwest::{StatusCode, multipart};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

const MIB: usize = 1024 * 1024;

/// A PostgreSQL schema, a broker namespace and a bucket prefix shared by the processes of one test.
struct Deployment {
    env: Vec<(String, String)>,
    store: TestStore,
    bucket: TestBucket,
    client: reqwest::Client,
    _data: tempfile::TempDir,
}

/// One `herald api` and the account and task a test works with.
struct Api {
    process: HeraldProcess,
    base: String,
}

impl Deployment {
    /// Everything the test needs, migrated; `None` (after a loud SKIPPED) when a backend is missing.
    async fn start(test: &str) -> Option<Self> {
        let broker_url = herald_testkit::backend_url("HERALD_TEST_NATS_URL", test)?;
        let bucket = TestBucket::new(test)?;
        let store = TestStore::new(Backend::Postgres, test).await?;
        herald_bin();
        let data = tempfile::tempdir().expect("data dir");
        let mut env = herald_testkit::processes::deployment_env(&store.url, &broker_url, data.path());
        env.extend(bucket.env());
        HeraldProcess::start("migrate", &["migrate"], &env).wait_success().await;
        let client = herald_testkit::http::builder().timeout(Duration::from_secs(120)).build().expect("client");
        Some(Self { env, store, bucket, client, _data: data })
    }

    async fn api(&self, name: &str) -> Api {
        let mut process = HeraldProcess::start(name, &["api"], &self.env);
        let base = format!("http://{}", process.http_addr().await);
        wait_ready(&self.client, &base).await;
        Api { process, base }
    }

    /// Registers `email` through `api` and creates a task; returns the token and the task's id.
    async fn user_with_task(&self, api: &Api, email: &str) -> (String, String) {
        let account = json!({"email": email, "password": "password123", "name": "Ada"});
        let reply = self.client.post(format!("{}/api/v1/auth/register", api.base)).json(&account).send().await;
        assert_eq!(reply.expect("register").status(), StatusCode::CREATED);
        let login = json!({"email": email, "password": "password123"});
        let reply = self.client.post(format!("{}/api/v1/auth/login", api.base)).json(&login).send().await;
        let token = reply.expect("login").json::<Value>().await.expect("json")["access_token"]
            .as_str()
            .expect("token")
            .to_owned();
        let reply = self
            .client
            .post(format!("{}/api/v1/tasks", api.base))
            .bearer_auth(&token)
            .json(&json!({"title": "files"}))
            .send()
            .await;
        let task = reply.expect("task").json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned();
        (token, task)
    }

    /// Uploads `body` as the `file` field through `api`; returns the attachment.
    async fn upload(&self, api: &Api, token: &str, task: &str, body: reqwest::Body) -> Value {
        let reply = self.send_file(api, token, task, multipart::Part::stream(body).file_name("data.bin")).await;
        assert_eq!(reply.status(), StatusCode::CREATED);
        reply.json().await.expect("attachment")
    }

    /// Sends `part` as the `file` field through `api`; returns the answer, whatever it is.
    async fn send_file(&self, api: &Api, token: &str, task: &str, part: multipart::Part) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/tasks/{task}/attachments", api.base))
            .bearer_auth(token)
            .multipart(multipart::Form::new().part("file", part))
            .send()
            .await
            .expect("upload")
    }

    async fn download(&self, api: &Api, token: &str, id: &str, range: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(format!("{}/api/v1/attachments/{id}/content", api.base)).bearer_auth(token);
        if let Some(range) = range {
            req = req.header("range", range);
        }
        req.send().await.expect("download")
    }

    async fn finish(self) {
        self.bucket.finish().await;
        self.store.finish().await;
    }
}

/// The `i`-th 64 KiB chunk of a test file: every offset's byte differs from its neighbours'.
fn chunk(i: usize) -> Bytes {
    (0..64 * 1024).map(|j| ((i * 64 * 1024 + j).wrapping_mul(31) >> 3) as u8).collect::<Vec<u8>>().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attachment_uploaded_through_one_api_downloads_through_another() {
    let Some(d) = Deployment::start("an_attachment_uploaded_through_one_api_downloads_through_another").await else {
        return;
    };
    let (api1, api2) = (d.api("api-1").await, d.api("api-2").await);
    let (token, task) = d.user_with_task(&api1, "ada@example.org").await;

    let small = d.upload(&api1, &token, &task, reqwest::Body::from("hello from api-1")).await;
    let small_id = small["id"].as_str().expect("id");
    let objects = d.bucket.objects().await;
    assert_eq!(objects.iter().map(|(_, size)| *size).collect::<Vec<_>>(), [16], "one object, in the bucket");
    let whole = d.download(&api2, &token, small_id, None).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.bytes().await.expect("body").as_ref(), b"hello from api-1");
    let part = d.download(&api2, &token, small_id, Some("bytes=6-9")).await;
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()["content-range"], "bytes 6-9/16");
    assert_eq!(part.bytes().await.expect("body").as_ref(), b"from");

    // 48 MiB streamed through api-1 in 64 KiB chunks: its peak memory grows by far less.
    let chunks = 48 * MIB / (64 * 1024);
    let expected = {
        let mut hasher = Sha256::new();
        (0..chunks).for_each(|i| hasher.update(chunk(i)));
        hex::encode(hasher.finalize())
    };
    let (_, peak_before) = api1.process.memory();
    let stream = futures::stream::iter((0..chunks).map(|i| Ok::<_, std::io::Error>(chunk(i))));
    let large = d.upload(&api1, &token, &task, reqwest::Body::wrap_stream(stream)).await;
    let (_, peak_after) = api1.process.memory();
    let grown = peak_after.saturating_sub(peak_before);
    eprintln!("api-1 peak RSS grew by {:.1} MiB during a 48 MiB upload", grown as f64 / MIB as f64);
    assert_eq!((large["size"].as_u64(), large["sha256"].as_str()), (Some(48 * MIB as u64), Some(expected.as_str())));
    // Bounded by the upload's share of the budget (15 MiB) plus the HTTP server's and the S3
    // client's buffers: 18–30 MiB measured. Holding the file would take 48 MiB or more.
    assert!(grown < 40 * MIB as u64, "the upload was held in memory: peak RSS grew by {grown} bytes");

    let large_id = large["id"].as_str().expect("id");
    let download = d.download(&api2, &token, large_id, None).await;
    assert_eq!(download.status(), StatusCode::OK);
    let mut hasher = Sha256::new();
    let mut body = download.bytes_stream();
    while let Some(bytes) = body.next().await {
        hasher.update(bytes.expect("body chunk"));
    }
    assert_eq!(hex::encode(hasher.finalize()), expected, "api-2 streams back every byte");
    // A range across the boundary of the first two 5 MiB parts.
    let start = 5 * MIB - 3;
    let part = d.download(&api2, &token, large_id, Some(&format!("bytes={start}-{}", start + 5))).await;
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    let bytes = part.bytes().await.expect("body");
    let expected_range: Vec<u8> = [chunk(start / (64 * 1024)), chunk(start / (64 * 1024) + 1)].concat();
    let offset = start % (64 * 1024);
    assert_eq!(bytes.as_ref(), &expected_range[offset..offset + 6]);

    let deleted = d.client.delete(format!("{}/api/v1/attachments/{small_id}", api2.base)).bearer_auth(&token).send();
    assert_eq!(deleted.await.expect("delete").status(), StatusCode::NO_CONTENT);
    assert_eq!(d.bucket.objects().await.len(), 1, "deleting the attachment deleted its object");
    assert_eq!(d.download(&api1, &token, small_id, None).await.status(), StatusCode::NOT_FOUND);
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_cut_off_midway_leaves_no_object() {
    let Some(d) = Deployment::start("an_upload_cut_off_midway_leaves_no_object").await else { return };
    let api = d.api("api").await;
    let (token, task) = d.user_with_task(&api, "ada@example.org").await;

    // A multipart body that declares 12 MiB of file, of which 7 MiB are sent: past the first part.
    let mut conn = start_upload(&api, &token, &task).await;
    for i in 0..7 * MIB / (64 * 1024) {
        conn.write_all(&chunk(i)).await.expect("chunk sent");
    }
    conn.flush().await.expect("flush");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while d.bucket.open_uploads().await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the upload never reached the bucket");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(conn);

    let open = d.bucket.wait_no_open_uploads(Duration::from_secs(20)).await;
    assert!(open.is_empty(), "the cut-off upload was not aborted: {open:?}");
    assert!(d.bucket.objects().await.is_empty(), "no object is left behind");
    let listed = d.client.get(format!("{}/api/v1/tasks/{task}/attachments", api.base)).bearer_auth(&token).send();
    let listed: Value = listed.await.expect("list").json().await.expect("json");
    assert_eq!(listed["items"], json!([]), "and no attachment");
    let after = d.upload(&api, &token, &task, reqwest::Body::from("still works")).await;
    assert_eq!(after["size"], 11);
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_files_removes_orphaned_objects_past_the_grace_period() {
    let Some(d) = Deployment::start("gc_files_removes_orphaned_objects_past_the_grace_period").await else { return };
    let api = d.api("api").await;
    let (token, task) = d.user_with_task(&api, "ada@example.org").await;
    let kept = d.upload(&api, &token, &task, reqwest::Body::from("kept")).await;
    let kept_key = d.bucket.objects().await.pop().expect("the attachment's object").0;
    let (old, new) = ("0000000000000000000000000000001d", "0000000000000000000000000000002e");
    d.bucket.put(old, b"x").await;
    d.bucket.put("nested/old", b"x").await;
    // Objects others keep under the prefix: not of the shape of Herald's keys, never collected.
    for foreign in ["report.pdf", "0000000000000000000000000000001D", "0000000000000000000000000000001"] {
        d.bucket.put(foreign, b"not Herald's").await;
    }
    // Object stores keep their own times (and lists round them down to the second): the fresh
    // orphan comes 6 s later, and the grace period falls between the two.
    tokio::time::sleep(Duration::from_secs(6)).await;
    d.bucket.put(new, b"x").await;

    let out = tokio::process::Command::new(herald_bin())
        .args(["gc", "files", "--gc-grace", "4s"])
        .env_clear()
        .envs(d.env.iter().cloned())
        .env("HERALD_LOG_FORMAT", "json")
        .output()
        .await
        .expect("run herald gc files");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("scanned 3 files: removed 1, referenced 1, younger than the grace period 1, failed 0"),
        "{stdout}"
    );
    let mut left: Vec<String> = d.bucket.objects().await.into_iter().map(|(name, _)| name).collect();
    left.sort();
    let mut expected: Vec<String> = [
        new,
        &kept_key,
        "nested/old",
        "report.pdf",
        "0000000000000000000000000000001D",
        "0000000000000000000000000000001",
    ]
    .map(str::to_owned)
    .into();
    expected.sort();
    assert_eq!(left, expected, "the old orphan alone is gone; nested keys and other names are not Herald's");
    let content = d.download(&api, &token, kept["id"].as_str().expect("id"), None).await;
    assert_eq!(content.bytes().await.expect("body").as_ref(), b"kept");
    d.finish().await;
}

/// Starts an upload on a connection of its own: the request and the multipart head of a file
/// declared 12 MiB long, none of its bytes yet.
async fn start_upload(api: &Api, token: &str, task: &str) -> tokio::net::TcpStream {
    let boundary = "herald-raw";
    let head = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"raw.bin\"\r\n\
         content-type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let length = head.len() + 12 * MIB + tail.len();
    let addr = api.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST /api/v1/tasks/{task}/attachments HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: multipart/form-data; boundary={boundary}\r\ncontent-length: {length}\r\n\r\n{head}"
    );
    conn.write_all(request.as_bytes()).await.expect("head sent");
    conn
}

/// An upload that sends `file_bytes` of its file and holds there.
async fn hold_upload(api: &Api, token: &str, task: &str, file_bytes: usize) -> tokio::net::TcpStream {
    let mut conn = start_upload(api, token, task).await;
    conn.write_all(&vec![5u8; file_bytes]).await.expect("file sent");
    conn.flush().await.expect("flush");
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_beyond_the_upload_memory_are_refused_with_503_and_leave_nothing() {
    let test = "uploads_beyond_the_upload_memory_are_refused_with_503_and_leave_nothing";
    let Some(mut d) = Deployment::start(test).await else { return };
    // The least allowed: one upload of any size, or three buffers of just under a part.
    d.env.push(("HERALD_S3_UPLOAD_MEMORY".into(), "15MiB".into()));
    let api = d.api("api").await;
    let (token, task) = d.user_with_task(&api, "ada@example.org").await;

    let held = 5 * MIB - 64 * 1024;
    let mut holders = Vec::new();
    for _ in 0..3 {
        holders.push(hold_upload(&api, &token, &task, held).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Until the server has read the held bytes, a small upload may still fit: it is kept (and
    // counted); once they are in, uploads are refused. A held upload that lost the race for
    // the last MiB was answered (503): another takes its place.
    let mut kept = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let refused = loop {
        assert!(tokio::time::Instant::now() < deadline, "no upload was ever refused");
        let reply = d.send_file(&api, &token, &task, multipart::Part::bytes(b"hello".to_vec())).await;
        match reply.status() {
            StatusCode::CREATED => {
                kept += 1;
                for holder in &mut holders {
                    if !matches!(holder.try_read(&mut [0; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
                        *holder = hold_upload(&api, &token, &task, held).await;
                    }
                }
            }
            StatusCode::SERVICE_UNAVAILABLE => break reply.json::<Value>().await.expect("problem"),
            other => panic!("an upload beyond the budget is refused with 503, not {other}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused["code"], "unavailable", "{refused}");
    assert_eq!(d.bucket.objects().await.len(), kept, "the refused upload left no object");

    // The held uploads gone, the budget is free again: a multipart upload goes through.
    drop(holders);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let large = loop {
        let stream = futures::stream::iter((0..12 * MIB / (64 * 1024)).map(|i| Ok::<_, std::io::Error>(chunk(i))));
        let part = multipart::Part::stream(reqwest::Body::wrap_stream(stream)).file_name("large.bin");
        let reply = d.send_file(&api, &token, &task, part).await;
        if reply.status() == StatusCode::CREATED {
            break reply.json::<Value>().await.expect("attachment");
        }
        assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(tokio::time::Instant::now() < deadline, "the held uploads never gave their memory back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(large["size"], 12 * MIB);
    assert_eq!(d.bucket.objects().await.len(), kept + 1);
    assert_eq!(d.bucket.wait_no_open_uploads(Duration::from_secs(10)).await, Vec::<String>::new());
    d.finish().await;
}
