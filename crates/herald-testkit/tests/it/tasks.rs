//! Tasks and attachments over real HTTP, on every store.

use std::time::Duration;

use bytes::Bytes;
use herald_testkit::TestApp;
use reqwest::{Method, StatusCode, multipart};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

api_tests! {
    tasks_are_created_read_listed_changed_and_deleted,
    every_change_leaves_its_event_for_the_owner,
    other_users_tasks_do_not_exist_for_them,
    a_stale_if_match_is_refused,
    task_input_is_validated_field_by_field,
    attachments_upload_list_download_and_delete,
    an_oversized_upload_is_refused_and_leaves_no_file,
    a_download_survives_a_delete_racing_it,
    deleting_a_task_removes_its_attachment_files,
}

pub(super) async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let reply = app.post("/api/v1/tasks", Some(token), &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body
}

async fn patch(
    app: &TestApp,
    token: &str,
    id: &str,
    if_match: Option<&str>,
    body: Value,
) -> herald_testkit::app::Reply {
    let mut req = app.client.patch(app.url(&format!("/api/v1/tasks/{id}"))).bearer_auth(token).json(&body);
    if let Some(version) = if_match {
        req = req.header("if-match", version);
    }
    TestApp::reply(req.send().await.expect("send")).await
}

pub(super) async fn upload(
    app: &TestApp,
    token: &str,
    task: &str,
    name: &str,
    content: Vec<u8>,
) -> herald_testkit::app::Reply {
    let part = multipart::Part::bytes(content).file_name(name.to_owned()).mime_str("text/plain").expect("mime");
    let form = multipart::Form::new().text("note", "ignored").part("file", part);
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/tasks/{task}/attachments")))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("send");
    TestApp::reply(resp).await
}

pub(super) fn files_on_disk(app: &TestApp) -> Vec<String> {
    let mut names = Vec::new();
    for dir in [app.files_dir().to_path_buf(), app.files_dir().join(".partial")] {
        for entry in std::fs::read_dir(&dir).expect("files dir").flatten() {
            if entry.file_type().expect("type").is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    names
}

async fn tasks_are_created_read_listed_changed_and_deleted(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let reply = app
        .post("/api/v1/tasks", Some(&token), &json!({"title": "  Buy milk ", "due_at": "2026-12-01T10:00:00Z"}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.headers["etag"], "\"1\"");
    let task = reply.body;
    assert_eq!(
        (task["title"].as_str(), task["status"].as_str(), task["version"].as_i64()),
        (Some("Buy milk"), Some("todo"), Some(1))
    );
    assert_eq!(task["due_at"], "2026-12-01T10:00:00Z");
    let id = task["id"].as_str().expect("id").to_owned();

    let got = app.get(&format!("/api/v1/tasks/{id}"), Some(&token)).await;
    assert_eq!((got.status, &got.body), (StatusCode::OK, &task));

    for i in 0..4 {
        let status = if i % 2 == 0 { "done" } else { "in_progress" };
        create(app, &token, json!({"title": format!("task {i}"), "status": status, "description": "line 1\nline 2"}))
            .await;
    }
    let done = app.get("/api/v1/tasks?status=done", Some(&token)).await;
    let titles: Vec<&str> =
        done.body["items"].as_array().expect("items").iter().filter_map(|t| t["title"].as_str()).collect();
    assert_eq!(titles, ["task 0", "task 2"]);
    let first = app.get("/api/v1/tasks?limit=3", Some(&token)).await;
    assert_eq!(first.body["items"].as_array().expect("items").len(), 3);
    let cursor = first.body["next_cursor"].as_str().expect("more pages");
    let second = app.get(&format!("/api/v1/tasks?limit=3&cursor={cursor}"), Some(&token)).await;
    assert_eq!(second.body["items"].as_array().expect("items").len(), 2);
    assert!(second.body.get("next_cursor").is_none());

    let changed = patch(app, &token, &id, None, json!({"status": "in_progress", "due_at": null})).await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    assert_eq!((changed.body["status"].as_str(), changed.body["version"].as_i64()), (Some("in_progress"), Some(2)));
    assert_eq!(changed.body["due_at"], Value::Null, "null clears the due date");
    assert_eq!(changed.body["title"], "Buy milk", "absent fields stay");
    assert_eq!(changed.headers["etag"], "\"2\"");
    let same = patch(app, &token, &id, None, json!({"status": "in_progress"})).await;
    assert_eq!(same.body["version"], 2, "a change to nothing is no change");

    let deleted = app.send(Method::DELETE, &format!("/api/v1/tasks/{id}"), Some(&token), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/api/v1/tasks/{id}"), Some(&token)).await.code(), "not_found");
    let again = app.send(Method::DELETE, &format!("/api/v1/tasks/{id}"), Some(&token), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

async fn every_change_leaves_its_event_for_the_owner(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let me = app.get("/api/v1/me", Some(&token)).await.body;
    let task = create(app, &token, json!({"title": "Buy milk"})).await;
    let id = task["id"].as_str().expect("id");
    patch(app, &token, id, Some("\"1\""), json!({"status": "done"})).await;
    let attachment = upload(app, &token, id, "list.txt", b"milk".to_vec()).await.body;
    app.send(
        Method::DELETE,
        &format!("/api/v1/attachments/{}", attachment["id"].as_str().expect("id")),
        Some(&token),
        None,
    )
    .await;
    upload(app, &token, id, "again.txt", b"eggs".to_vec()).await;
    app.send(Method::DELETE, &format!("/api/v1/tasks/{id}"), Some(&token), None).await;

    let events = app.store().read_outbox(0, 100).await.expect("outbox");
    let kinds: Vec<&str> = events.iter().map(|e| e.event.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "task.created",
            "task.updated",
            "attachment.added",
            "attachment.deleted",
            "attachment.added",
            "attachment.deleted",
            "task.deleted"
        ]
    );
    let stream = format!("user:{}", me["id"].as_str().expect("id"));
    assert!(events.iter().all(|e| e.event.stream.to_string() == stream), "all addressed to the owner");
    assert_eq!(events[0].event.payload, task, "task.created carries the new state");
    assert_eq!(events[1].event.payload["status"], "done");
    assert_eq!(events[1].event.payload["version"], 2);
    assert_eq!(events[2].event.payload["file_name"], "list.txt");
    assert_eq!(events[6].event.payload["id"], task["id"]);
}

async fn other_users_tasks_do_not_exist_for_them(app: &TestApp) {
    let ada = app.user("ada@example.org").await;
    let eve = app.user("eve@example.org").await;
    let task = create(app, &ada, json!({"title": "Private"})).await;
    let id = task["id"].as_str().expect("id");
    let attachment = upload(app, &ada, id, "secret.txt", b"top secret".to_vec()).await.body;
    let att = attachment["id"].as_str().expect("id");

    assert_eq!(app.get(&format!("/api/v1/tasks/{id}"), Some(&eve)).await.code(), "not_found");
    assert_eq!(patch(app, &eve, id, None, json!({"title": "Mine now"})).await.code(), "not_found");
    assert_eq!(app.send(Method::DELETE, &format!("/api/v1/tasks/{id}"), Some(&eve), None).await.code(), "not_found");
    assert_eq!(app.get(&format!("/api/v1/tasks/{id}/attachments"), Some(&eve)).await.code(), "not_found");
    assert_eq!(upload(app, &eve, id, "x.txt", b"x".to_vec()).await.code(), "not_found");
    assert_eq!(app.get(&format!("/api/v1/attachments/{att}/content"), Some(&eve)).await.code(), "not_found");
    assert_eq!(
        app.send(Method::DELETE, &format!("/api/v1/attachments/{att}"), Some(&eve), None).await.code(),
        "not_found"
    );
    assert!(app.get("/api/v1/tasks", Some(&eve)).await.body["items"].as_array().expect("items").is_empty());
    assert_eq!(app.get("/api/v1/tasks", None).await.code(), "unauthorized");

    // Everything of Ada's is untouched.
    let still = app.get(&format!("/api/v1/tasks/{id}"), Some(&ada)).await;
    assert_eq!((still.body["title"].as_str(), still.body["version"].as_i64()), (Some("Private"), Some(1)));
    let content = app.client.get(app.url(&format!("/api/v1/attachments/{att}/content"))).bearer_auth(&ada).send().await;
    assert_eq!(content.expect("send").bytes().await.expect("body"), Bytes::from_static(b"top secret"));
}

async fn a_stale_if_match_is_refused(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let task = create(app, &token, json!({"title": "Buy milk"})).await;
    let id = task["id"].as_str().expect("id");
    assert_eq!(patch(app, &token, id, Some("\"1\""), json!({"title": "Buy oat milk"})).await.status, StatusCode::OK);

    let stale = patch(app, &token, id, Some("\"1\""), json!({"title": "Buy soy milk"})).await;
    assert_eq!((stale.status, stale.code()), (StatusCode::PRECONDITION_FAILED, "precondition_failed"));
    let bare = patch(app, &token, id, Some("1"), json!({"status": "done"})).await;
    assert_eq!(bare.status, StatusCode::PRECONDITION_FAILED, "an unquoted version works the same");
    let junk = patch(app, &token, id, Some("\"banana\""), json!({"status": "done"})).await;
    assert_eq!((junk.status, junk.code()), (StatusCode::BAD_REQUEST, "malformed_request"));
    let current = app.get(&format!("/api/v1/tasks/{id}"), Some(&token)).await;
    assert_eq!((current.body["title"].as_str(), current.body["version"].as_i64()), (Some("Buy oat milk"), Some(2)));
    let fresh = patch(app, &token, id, Some("\"2\""), json!({"status": "done"})).await;
    assert_eq!((fresh.status, fresh.body["version"].as_i64()), (StatusCode::OK, Some(3)));

    // Concurrent writers without If-Match all land, one version each.
    let writes = (0..6).map(|i| patch(app, &token, id, None, json!({"description": format!("writer {i}")})));
    let replies = futures::future::join_all(writes).await;
    assert!(
        replies.iter().all(|r| r.status == StatusCode::OK),
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    let last = app.get(&format!("/api/v1/tasks/{id}"), Some(&token)).await;
    assert_eq!(last.body["version"], 9);
}

async fn task_input_is_validated_field_by_field(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let bad = app
        .post(
            "/api/v1/tasks",
            Some(&token),
            &json!({"title": "", "status": "someday", "due_at": "tomorrow", "owner": "me"}),
        )
        .await;
    assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    let mut fields = bad.fields();
    fields.sort();
    assert_eq!(fields, ["due_at", "owner", "status", "title"]);
    let long = app.post("/api/v1/tasks", Some(&token), &json!({"title": "t".repeat(201)})).await;
    assert_eq!(long.fields(), ["title"]);
    let control = app.post("/api/v1/tasks", Some(&token), &json!({"title": "bell\u{7}"})).await;
    assert_eq!(control.fields(), ["title"]);
    let missing = app.post("/api/v1/tasks", Some(&token), &json!({})).await;
    assert_eq!(missing.fields(), ["title"]);
    let bad_id = app.get("/api/v1/tasks/not-a-uuid", Some(&token)).await;
    assert_eq!((bad_id.code(), bad_id.fields()), ("validation_failed", vec!["id".to_owned()]));
    let bad_filter = app.get("/api/v1/tasks?status=someday", Some(&token)).await;
    assert_eq!(bad_filter.fields(), ["status"]);
    assert!(
        app.get("/api/v1/tasks", Some(&token)).await.body["items"].as_array().expect("items").is_empty(),
        "nothing was stored"
    );
}

async fn attachments_upload_list_download_and_delete(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let task = create(app, &token, json!({"title": "Receipts"})).await;
    let id = task["id"].as_str().expect("id");
    let content: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let sha = hex::encode(Sha256::digest(&content));

    let reply = upload(app, &token, id, "../../etc/pass\"wd.txt", content.clone()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let att = reply.body;
    assert_eq!((att["size"].as_u64(), att["sha256"].as_str()), (Some(content.len() as u64), Some(sha.as_str())));
    assert_eq!(att["file_name"], "pass\"wd.txt", "the name is metadata: its path is dropped");
    assert_eq!(att["content_type"], "text/plain");
    let att_id = att["id"].as_str().expect("id");
    assert!(files_on_disk(app).iter().all(|f| !f.contains("pass")), "the client's name is never a path");

    let listed = app.get(&format!("/api/v1/tasks/{id}/attachments"), Some(&token)).await;
    assert_eq!(listed.body["items"], json!([att]));

    let url = app.url(&format!("/api/v1/attachments/{att_id}/content"));
    let full = app.client.get(&url).bearer_auth(&token).send().await.expect("send");
    assert_eq!(full.status(), StatusCode::OK);
    let h = full.headers().clone();
    assert_eq!(h["content-length"], content.len().to_string().as_str());
    assert_eq!(h["content-type"], "text/plain");
    assert_eq!(h["etag"], format!("\"{sha}\"").as_str());
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let disposition = h["content-disposition"].to_str().expect("ascii");
    assert!(disposition.starts_with("attachment; filename=\"pass_wd.txt\""), "{disposition}");
    assert_eq!(full.bytes().await.expect("body").as_ref(), content.as_slice());

    let ranged = |range: &'static str| app.client.get(&url).bearer_auth(&token).header("range", range).send();
    let part = ranged("bytes=1000-1999").await.expect("send");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()["content-range"], format!("bytes 1000-1999/{}", content.len()).as_str());
    assert_eq!(part.bytes().await.expect("body").as_ref(), &content[1000..2000]);
    let tail = ranged("bytes=-10").await.expect("send");
    assert_eq!(tail.bytes().await.expect("body").as_ref(), &content[content.len() - 10..]);
    let beyond = ranged("bytes=999999999-").await.expect("send");
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(beyond.headers()["content-range"], format!("bytes */{}", content.len()).as_str());
    let multi = ranged("bytes=0-1,5-6").await.expect("send");
    assert_eq!(multi.status(), StatusCode::OK, "several ranges: the whole content");
    let cached = app.client.get(&url).bearer_auth(&token).header("if-none-match", format!("\"{sha}\"")).send().await;
    assert_eq!(cached.expect("send").status(), StatusCode::NOT_MODIFIED);

    let no_file = app
        .client
        .post(app.url(&format!("/api/v1/tasks/{id}/attachments")))
        .bearer_auth(&token)
        .multipart(multipart::Form::new().text("other", "x"))
        .send()
        .await
        .expect("send");
    let no_file = TestApp::reply(no_file).await;
    assert_eq!((no_file.code(), no_file.fields()), ("validation_failed", vec!["file".to_owned()]));
    let not_multipart = app.post(&format!("/api/v1/tasks/{id}/attachments"), Some(&token), &json!({"file": "x"})).await;
    assert_eq!(not_multipart.code(), "unsupported_media_type");

    let deleted = app.send(Method::DELETE, &format!("/api/v1/attachments/{att_id}"), Some(&token), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/api/v1/attachments/{att_id}/content"), Some(&token)).await.code(), "not_found");
    assert!(files_on_disk(app).is_empty(), "the file went with its attachment");
}

async fn an_oversized_upload_is_refused_and_leaves_no_file(app: &TestApp) {
    // Test apps allow 8 MiB (TEST_MAX_UPLOAD); send 16 MiB without a Content-Length, so the limit
    // is found while streaming.
    let token = app.user("ada@example.org").await;
    let task = create(app, &token, json!({"title": "Big"})).await;
    let id = task["id"].as_str().expect("id");
    let chunks = (0..256).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![7u8; 64 * 1024])));
    let part = multipart::Part::stream(reqwest::Body::wrap_stream(futures::stream::iter(chunks))).file_name("big.bin");
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/tasks/{id}/attachments")))
        .bearer_auth(&token)
        .multipart(multipart::Form::new().part("file", part))
        .send()
        .await;
    // The server may answer and close before the client has sent everything.
    if let Ok(resp) = resp {
        let reply = TestApp::reply(resp).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    }
    let declared = app
        .declare_body(
            &format!("/api/v1/tasks/{id}/attachments"),
            Some(&token),
            "multipart/form-data; boundary=x",
            9 << 20,
        )
        .await;
    assert_eq!(declared.code(), "payload_too_large", "a declared oversize is refused up front");
    let fits = upload(app, &token, id, "small.bin", vec![1u8; 1024]).await;
    assert_eq!(fits.status, StatusCode::CREATED);
    assert_eq!(files_on_disk(app).len(), 1, "only the upload that fit left a file: {:?}", files_on_disk(app));
    let listed = app.get(&format!("/api/v1/tasks/{id}/attachments"), Some(&token)).await;
    assert_eq!(listed.body["items"].as_array().expect("items").len(), 1);
}

async fn a_download_survives_a_delete_racing_it(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let task = create(app, &token, json!({"title": "Race"})).await;
    let id = task["id"].as_str().expect("id");
    let content: Vec<u8> = (0..(4 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let att = upload(app, &token, id, "big.bin", content.clone()).await.body;
    let att_id = att["id"].as_str().expect("id");

    let mut download = app
        .client
        .get(app.url(&format!("/api/v1/attachments/{att_id}/content")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    let mut received = download.chunk().await.expect("first chunk").expect("some bytes").to_vec();
    let deleted = app.send(Method::DELETE, &format!("/api/v1/attachments/{att_id}"), Some(&token), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    while let Some(chunk) =
        tokio::time::timeout(Duration::from_secs(10), download.chunk()).await.expect("in time").expect("read")
    {
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received.len(), content.len(), "the download already under way completes");
    assert!(received == content);
    assert_eq!(app.get(&format!("/api/v1/attachments/{att_id}/content"), Some(&token)).await.code(), "not_found");
    assert!(files_on_disk(app).is_empty());
}

async fn deleting_a_task_removes_its_attachment_files(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let keep = create(app, &token, json!({"title": "Keep"})).await;
    let drop = create(app, &token, json!({"title": "Drop"})).await;
    let keep_id = keep["id"].as_str().expect("id");
    let drop_id = drop["id"].as_str().expect("id");
    upload(app, &token, keep_id, "a.txt", b"a".to_vec()).await;
    let b = upload(app, &token, drop_id, "b.txt", b"b".to_vec()).await.body;
    upload(app, &token, drop_id, "c.txt", b"c".to_vec()).await;
    assert_eq!(files_on_disk(app).len(), 3);
    app.send(Method::DELETE, &format!("/api/v1/tasks/{drop_id}"), Some(&token), None).await;
    assert_eq!(files_on_disk(app).len(), 1);
    let b_id = b["id"].as_str().expect("id");
    assert_eq!(app.get(&format!("/api/v1/attachments/{b_id}/content"), Some(&token)).await.code(), "not_found");
}
