//! The orphan-file collector against a running app, on every store.

use std::{
    fs::File,
    path::Path,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use herald_testkit::TestApp;
use reqwest::{StatusCode, multipart};
use serde_json::json;
use sha2::{Digest as _, Sha256};

api_tests! {
    the_collector_removes_only_orphans,
    an_upload_in_flight_survives_collector_passes,
}

fn age(path: &Path, by: Duration) {
    let file = File::options().write(true).open(path).expect("open to age");
    file.set_modified(SystemTime::now() - by).expect("set mtime");
}

async fn the_collector_removes_only_orphans(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let task = app.post("/api/v1/tasks", Some(&token), &json!({"title": "Files"})).await.body;
    let id = task["id"].as_str().expect("id");
    let part = multipart::Part::bytes(b"kept".to_vec()).file_name("kept.txt");
    let kept = app
        .client
        .post(app.url(&format!("/api/v1/tasks/{id}/attachments")))
        .bearer_auth(&token)
        .multipart(multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    assert_eq!(kept.status(), StatusCode::CREATED);
    let kept: serde_json::Value = kept.json().await.expect("json");

    let dir = app.files_dir();
    let hour = Duration::from_secs(3600);
    // The referenced file is old too: age alone never condemns a file.
    for entry in std::fs::read_dir(dir).expect("dir").flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_file())) {
        age(&entry.path(), 2 * hour);
    }
    // Orphans have names of the shape of Herald's keys (a UUID's 32 hex digits); a file of any
    // other name is not Herald's, however old.
    let (old, new, abandoned) =
        ("0000000000000000000000000000001d", "0000000000000000000000000000002e", "0000000000000000000000000000003f");
    std::fs::write(dir.join(old), b"x").expect("write");
    age(&dir.join(old), 2 * hour);
    std::fs::write(dir.join(new), b"x").expect("write");
    std::fs::write(dir.join(".partial").join(abandoned), b"x").expect("write");
    age(&dir.join(".partial").join(abandoned), 2 * hour);
    for foreign in ["old-orphan", "README", "0000000000000000000000000000001D"] {
        std::fs::write(dir.join(foreign), b"x").expect("write");
        age(&dir.join(foreign), 2 * hour);
    }
    let outside = tempfile::NamedTempFile::new().expect("outside file");
    age(outside.path(), 2 * hour);
    std::os::unix::fs::symlink(outside.path(), dir.join("0000000000000000000000000000004a")).expect("symlink");
    std::fs::create_dir(dir.join("subdir")).expect("mkdir");
    std::fs::write(dir.join("subdir/old"), b"x").expect("write");
    age(&dir.join("subdir/old"), 2 * hour);

    let outcome = app.collector(hour).tick().await.expect("collect");
    assert_eq!((outcome.removed, outcome.referenced, outcome.fresh, outcome.failed), (2, 1, 1, 0), "{outcome:?}");
    assert!(!dir.join(old).exists() && !dir.join(".partial").join(abandoned).exists());
    assert!(dir.join(new).exists(), "younger than the grace period");
    for foreign in ["old-orphan", "README", "0000000000000000000000000000001D"] {
        assert!(dir.join(foreign).exists(), "{foreign} is not Herald's");
    }
    assert!(
        std::fs::symlink_metadata(dir.join("0000000000000000000000000000004a")).is_ok() && outside.path().exists(),
        "links are not followed"
    );
    assert!(dir.join("subdir/old").exists(), "the collector does not descend into directories");

    let content = app.client.get(app.url(&format!("/api/v1/attachments/{}/content", kept["id"].as_str().expect("id"))));
    assert_eq!(content.bearer_auth(&token).send().await.expect("send").bytes().await.expect("body").as_ref(), b"kept");
    let metrics = app.client.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("herald_files_collected_total 2"), "{metrics}");
    assert_eq!(app.collector(hour).tick().await.expect("again").removed, 0, "a second pass finds nothing");
}

async fn an_upload_in_flight_survives_collector_passes(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let task = app.post("/api/v1/tasks", Some(&token), &json!({"title": "Slow"})).await.body;
    let id = task["id"].as_str().expect("id").to_owned();
    let chunk = Bytes::from(vec![42u8; 32 * 1024]);
    let expected = hex::encode(Sha256::digest(chunk.repeat(15)));

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let request = app
        .client
        .post(app.url(&format!("/api/v1/tasks/{id}/attachments")))
        .bearer_auth(&token)
        .multipart(multipart::Form::new().part("file", multipart::Part::stream(body).file_name("slow.bin")))
        .send();
    let upload = tokio::spawn(request);

    // A short grace period and passes every 100 ms while the upload trickles in for 1.5 s.
    let collector = app.collector(Duration::from_millis(400));
    let mut removed = 0;
    for _ in 0..15 {
        tx.send(Ok(chunk.clone())).await.expect("send chunk");
        tokio::time::sleep(Duration::from_millis(100)).await;
        removed += collector.tick().await.expect("collect").removed;
    }
    drop(tx);
    let resp = upload.await.expect("join").expect("upload answered");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let att: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(att["sha256"], expected.as_str(), "every byte arrived");
    assert_eq!(removed, 0, "the file being uploaded was never collected");
    for _ in 0..3 {
        assert_eq!(collector.tick().await.expect("collect").removed, 0);
    }
}

/// A stream over an mpsc receiver.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
