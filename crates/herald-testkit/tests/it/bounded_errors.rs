//! Validation answers stay small whatever the input: an object of a hundred thousand unknown
//! keys is refused with the first 20 field errors and `errors_truncated`, over REST and over a
//! `/ws` session (both render the same problem document as the NATS command API).

use herald_testkit::{Backend, TestApp, ws_client::WsClient};
use reqwest::StatusCode;
use serde_json::Value;

/// The most field errors one answer lists (`herald_core::error::MAX_FIELD_ERRORS`).
const LISTED: usize = 20;

/// A JSON object of `n` distinct unknown keys of at most 3 characters (`"0":0,"1":0,…`) beside a
/// valid login: 111,841 of them make a body of 0.9 MB.
fn unknown_keys(n: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut body = String::from(r#"{"email":"ada@example.org","password":"password123""#);
    for i in 0..n {
        let mut key = Vec::new();
        let mut rest = i;
        loop {
            key.push(DIGITS[rest % DIGITS.len()]);
            rest /= DIGITS.len();
            if rest == 0 {
                break;
            }
        }
        body.push_str(&format!(r#","{}":0"#, String::from_utf8_lossy(&key)));
    }
    body.push('}');
    body
}

fn assert_bounded(problem: &Value) {
    assert_eq!(problem["code"], "validation_failed", "{problem}");
    assert_eq!(problem["errors_truncated"], true, "{problem}");
    let errors = problem["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), LISTED, "{problem}");
    assert!(errors.iter().all(|e| e["message"] == "is not a known field"), "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_of_111k_unknown_keys_gets_a_bounded_422() {
    let app = TestApp::start(Backend::Sqlite, "bounded_422").await.expect("SQLite always runs");
    let body = unknown_keys(111_841);
    assert!(body.len() <= 1 << 20, "within the default body limit: {}", body.len());
    let reply = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let raw = reply.bytes().await.expect("body");
    assert!(raw.len() < 4096, "the answer is {} bytes", raw.len());
    assert_bounded(&serde_json::from_slice(&raw).expect("problem+json"));

    // A few bad fields are all listed, and the answer does not say it is cut.
    let few = app.client.post(app.url("/api/v1/auth/login")).header("content-type", "application/json");
    let reply = few.body(unknown_keys(3)).send().await.expect("send");
    assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = reply.json().await.expect("problem+json");
    assert_eq!(problem["errors"].as_array().map(Vec::len), Some(3), "{problem}");
    assert!(problem.get("errors_truncated").is_none(), "{problem}");

    // The same over a socket (its frames are at most 256 KiB: 25,000 keys).
    let token = app.user("ada@example.org").await;
    let url = format!("{}/ws", app.base.replacen("http://", "ws://", 1));
    let mut ws = WsClient::connect(&url, &token, "tab").await.expect("connect");
    let input: Value = serde_json::from_str(&unknown_keys(25_000)).expect("json");
    let reply = ws.call("auth.login", input).await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(reply.to_string().len() < 4096, "the reply is {} bytes", reply.to_string().len());
    assert_bounded(&reply["error"]);
    ws.close().await;
    app.stop().await;
}
