//! What `herald serve` writes into a fresh data directory is its user's alone: every directory
//! 0700 and every file 0600 — the SQLite database with its `-wal` and `-shm`, the generated JWT
//! secret, the files directory and an uploaded file — whatever the process's umask allows.

use std::{os::unix::fs::PermissionsExt as _, path::Path};

use herald_testkit::{cluster::wait_ready, processes::HeraldProcess};
use reqwest::{StatusCode, multipart};
use serde_json::{Value, json};

/// Every path under `dir` (itself included) with its permission bits.
fn modes(dir: &Path) -> Vec<(String, bool, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&path).expect("read dir").map(|e| e.expect("entry").path()));
        }
        found.push((path.display().to_string(), meta.is_dir(), meta.permissions().mode() & 0o777));
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_data_directory_is_private_to_herald() {
    let parent = tempfile::tempdir().expect("temp dir");
    let data = parent.path().join("data");
    let env: Vec<(String, String)> = vec![
        ("HERALD_HTTP_ADDR".into(), "127.0.0.1:0".into()),
        ("HERALD_GRPC_ADDR".into(), "127.0.0.1:0".into()),
        ("HERALD_DATA_DIR".into(), data.display().to_string()),
    ];
    let mut process = HeraldProcess::start("file_modes", &["serve"], &env);
    let base = format!("http://{}", process.http_addr().await);
    let client = herald_testkit::http::client();
    wait_ready(&client, &base).await;

    // A user, a task and an uploaded file, so that every kind of file exists.
    let account = json!({"email": "ada@example.org", "password": "correct horse", "name": "Ada"});
    let registered = client.post(format!("{base}/api/v1/auth/register")).json(&account).send().await.expect("send");
    assert_eq!(registered.status(), StatusCode::CREATED);
    let login = json!({"email": "ada@example.org", "password": "correct horse"});
    let reply = client.post(format!("{base}/api/v1/auth/login")).json(&login).send().await.expect("send");
    let token = reply.json::<Value>().await.expect("json")["access_token"].as_str().expect("token").to_owned();
    let task = client.post(format!("{base}/api/v1/tasks")).bearer_auth(&token).json(&json!({"title": "Files"}));
    let task: Value = task.send().await.expect("send").json().await.expect("json");
    let part = multipart::Part::bytes(b"private".to_vec()).file_name("note.txt");
    let uploaded = client
        .post(format!("{base}/api/v1/tasks/{}/attachments", task["id"].as_str().expect("id")))
        .bearer_auth(&token)
        .multipart(multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    assert_eq!(uploaded.status(), StatusCode::CREATED);

    let found = modes(&data);
    let names: Vec<String> =
        found.iter().map(|(path, _, _)| path.trim_start_matches(&data.display().to_string()).to_owned()).collect();
    for expected in ["", "/herald.db", "/herald.db-wal", "/herald.db-shm", "/jwt-secret", "/files", "/files/.partial"] {
        assert!(names.iter().any(|n| n == expected), "{expected:?} is among {names:?}");
    }
    let files = found.iter().filter(|(path, dir, _)| !dir && path.contains("/files/")).count();
    assert_eq!(files, 1, "the uploaded file: {found:?}");
    for (path, dir, mode) in &found {
        let want = if *dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{path} is {mode:o}");
    }
    process.terminate().await;
}
