//! Commands over NATS request-reply answer as REST does: the same output, codes, field errors and
//! auth, against a real app and a real NATS server (skipped when `HERALD_TEST_NATS_URL` is unset).

use std::time::Duration;

use async_nats::{HeaderMap, Request, client::RequestErrorKind};
use herald_broker::nats_commands as commands;
use herald_core::broker::BrokerError;
use herald_testkit::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long one request may wait for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A running app, its NATS transport in a fresh namespace, and a plain NATS client.
struct Setup {
    app: TestApp,
    client: async_nats::Client,
    namespace: String,
    shutdown: CancellationToken,
    server: JoinHandle<Result<(), BrokerError>>,
}

/// One NATS answer: the `Herald-Status` header and the JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// Field errors, sorted, as `(field, message)`.
    fn errors(&self) -> Vec<(String, String)> {
        sorted_errors(&self.body["error"]["errors"])
    }
}

fn sorted_errors(errors: &Value) -> Vec<(String, String)> {
    let mut errors: Vec<(String, String)> = errors
        .as_array()
        .map(|errs| errs.iter().map(|e| (text(&e["field"]), text(&e["message"]))).collect())
        .unwrap_or_default();
    errors.sort();
    errors
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

impl Setup {
    async fn start(test: &str) -> Option<Self> {
        Self::start_with(test, |_| {}).await
    }

    /// [`Setup::start`] with the app's settings changed by `tweak`.
    async fn start_with(
        test: &str,
        tweak: impl FnOnce(&mut std::collections::BTreeMap<String, String>),
    ) -> Option<Self> {
        let url = herald_testkit::backend_url("HERALD_TEST_NATS_URL", test)?;
        let app = TestApp::start_with(Backend::Sqlite, test, tweak).await.expect("SQLite always runs");
        let namespace = format!("t_{}", Uuid::now_v7().simple());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let (url, namespace, herald, shutdown) = (url.clone(), namespace.clone(), app.herald(), shutdown.clone());
            let ready = herald_core::health::Readiness::default().register("nats_commands");
            async move { commands::serve(&url, &namespace, herald, &Default::default(), ready, shutdown).await }
        });
        let client = async_nats::connect(&url).await.expect("connect to HERALD_TEST_NATS_URL");
        let setup = Self { app, client, namespace, shutdown, server };
        setup.wait_answering().await;
        Some(setup)
    }

    /// Polls with a short request until the transport answers: readiness, never a fixed sleep.
    async fn wait_answering(&self) {
        for _ in 0..200 {
            assert!(!self.server.is_finished(), "the NATS transport stopped before answering");
            let request = Request::new().timeout(Some(Duration::from_millis(250)));
            if self.client.send_request(commands::subject(&self.namespace, "users.me"), request).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the NATS transport never answered on {}", self.namespace);
    }

    /// Sends `body` as is to `command`, with an optional bearer token.
    async fn raw(&self, command: &str, token: Option<&str>, body: &[u8]) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            headers.insert("Authorization", format!("Bearer {token}").as_str());
        }
        let request = Request::new().headers(headers).payload(body.to_vec().into()).timeout(Some(REPLY_TIMEOUT));
        let reply = self
            .client
            .send_request(commands::subject(&self.namespace, command), request)
            .await
            .unwrap_or_else(|e| panic!("{command}: no reply: {e}"));
        let status = reply
            .headers
            .as_ref()
            .and_then(|h| h.get(commands::STATUS_HEADER))
            .and_then(|v| v.as_str().parse().ok())
            .unwrap_or_else(|| panic!("{command}: reply without a {} header", commands::STATUS_HEADER));
        let body = serde_json::from_slice(&reply.payload).unwrap_or_else(|e| panic!("{command}: reply not JSON: {e}"));
        Answer { status, body }
    }

    async fn call(&self, command: &str, token: Option<&str>, input: &Value) -> Answer {
        self.raw(command, token, input.to_string().as_bytes()).await
    }

    /// Stops the transport (it must stop cleanly and promptly), then the app.
    async fn stop(self) {
        self.shutdown.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        stopped.expect("the NATS transport stops promptly").expect("no panic").expect("clean stop");
        // Nobody answers any more: the subscription is gone.
        let request = Request::new().timeout(Some(Duration::from_millis(500)));
        let after = self.client.send_request(commands::subject(&self.namespace, "users.me"), request).await;
        let kind = after.as_ref().map(|_| ()).map_err(|e| e.kind());
        assert!(
            matches!(kind, Err(RequestErrorKind::NoResponders | RequestErrorKind::TimedOut)),
            "answered after shutdown: {after:?}"
        );
        self.app.stop().await;
    }
}

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_answers_as_rest_does() {
    let Some(nats) = Setup::start("register_answers_as_rest_does").await else { return };
    let app = &nats.app;

    let input = json!({"email": "Nats@Example.org", "password": "password123", "name": "Nats"});
    let over_nats = nats.call("auth.register", None, &input).await;
    assert_eq!((over_nats.status, &over_nats.body["ok"]), (200, &json!(true)), "{:?}", over_nats.body);
    let over_rest = app
        .post(
            "/api/v1/auth/register",
            None,
            &json!({"email": "rest@example.org", "password": "password123", "name": "Rest"}),
        )
        .await;
    assert_eq!(over_rest.status, StatusCode::CREATED, "{:?}", over_rest.body);
    let output = &over_nats.body["output"];
    assert_eq!(keys(output), keys(&over_rest.body), "the same output shape");
    assert_eq!((&output["email"], &output["role"]), (&json!("nats@example.org"), &over_rest.body["role"]));

    // The same bad input: the same code, status and field errors, word for word.
    let bad = json!({"email": 5, "extra": true});
    let nats_bad = nats.call("auth.register", None, &bad).await;
    let rest_bad = app.post("/api/v1/auth/register", None, &bad).await;
    assert_eq!((nats_bad.status, nats_bad.code()), (422, "validation_failed"), "{:?}", nats_bad.body);
    assert_eq!((rest_bad.status.as_u16(), rest_bad.code()), (nats_bad.status, nats_bad.code()));
    let fields: Vec<String> = nats_bad.errors().into_iter().map(|(field, _)| field).collect();
    assert_eq!(fields, ["email", "extra", "name", "password"]);
    assert_eq!(nats_bad.errors(), sorted_errors(&rest_bad.body["errors"]));
    assert_eq!(nats_bad.body["ok"], false);
    assert_eq!(nats_bad.body["error"]["instance"], commands::subject(&nats.namespace, "auth.register"));

    // An email REST registered is taken over NATS too.
    let taken = nats
        .call("auth.register", None, &json!({"email": "REST@example.org", "password": "password456", "name": "B"}))
        .await;
    assert_eq!((taken.status, taken.code()), (409, "email_taken"));

    nats.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_over_nats_matches_rest() {
    let Some(nats) = Setup::start("auth_over_nats_matches_rest").await else { return };
    let app = &nats.app;

    let register = json!({"email": "ada@example.org", "password": "password123", "name": "Ada"});
    assert_eq!(nats.call("auth.register", None, &register).await.status, 200);
    let login = nats.call("auth.login", None, &json!({"email": "ada@example.org", "password": "password123"})).await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    let token = login.body["output"]["access_token"].as_str().expect("access_token").to_owned();
    assert_eq!(login.body["output"]["token_type"], "Bearer");

    // An empty body is `{}`; the token names the caller.
    let me = nats.raw("users.me", Some(&token), b"").await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    let rest_me = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(rest_me.status, StatusCode::OK);
    assert_eq!(me.body["output"], rest_me.body, "the same user over both transports");

    let anonymous = nats.call("users.me", None, &json!({})).await;
    assert_eq!((anonymous.status, anonymous.code()), (401, "unauthorized"));
    assert_eq!(app.get("/api/v1/me", None).await.code(), "unauthorized");

    let (signed, _) = token.rsplit_once('.').expect("a JWS");
    let forged = format!("{signed}.AAAA");
    for command in ["users.me", "auth.login"] {
        // Even a public command refuses a present but bad token, as REST does.
        let input = json!({"email": "ada@example.org", "password": "password123"});
        let input = if command == "users.me" { json!({}) } else { input };
        let reply = nats.call(command, Some(&forged), &input).await;
        assert_eq!((reply.status, reply.code()), (401, "invalid_token"), "{command}: {:?}", reply.body);
    }
    assert_eq!(app.get("/api/v1/me", Some(&forged)).await.code(), "invalid_token");
    let mut basic = HeaderMap::new();
    basic.insert("Authorization", "Basic YTpi");
    let request = Request::new().headers(basic).timeout(Some(REPLY_TIMEOUT));
    let reply = nats.client.send_request(commands::subject(&nats.namespace, "users.me"), request).await.expect("reply");
    let body: Value = serde_json::from_slice(&reply.payload).expect("JSON");
    assert_eq!(body["error"]["code"], "invalid_token");

    let list = nats.call("users.list", Some(&token), &json!({})).await;
    assert_eq!((list.status, list.code()), (403, "forbidden"));
    let rest_list = app.get("/api/v1/users", Some(&token)).await;
    assert_eq!((rest_list.status, rest_list.code()), (StatusCode::FORBIDDEN, "forbidden"));

    nats.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_requests_are_refused() {
    let Some(nats) = Setup::start("malformed_and_unknown_requests_are_refused").await else { return };

    let malformed = nats.raw("auth.register", None, br#"{"email": "a@b.org", "#).await;
    assert_eq!((malformed.status, malformed.code()), (400, "malformed_request"), "{:?}", malformed.body);
    let unknown = nats.call("no.such.command", None, &json!({})).await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"), "{:?}", unknown.body);

    // A request nobody can answer is not run: the address it would have registered stays free.
    let ghost = json!({"email": "ghost@example.org", "password": "password123", "name": "G"});
    let subject = commands::subject(&nats.namespace, "auth.register");
    nats.client.publish(subject, ghost.to_string().into()).await.expect("publish");
    nats.client.flush().await.expect("flush");
    let registered = nats.call("auth.register", None, &ghost).await;
    assert_eq!(registered.status, 200, "{:?}", registered.body);

    nats.stop().await;
}

/// A command with a byte stream: the bytes are the payload, the JSON input the `Herald-Input`
/// header (ASCII, as NATS headers are); a download answers with the bytes and `Herald-Output`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_downloads_ride_in_the_payload() {
    let Some(nats) = Setup::start_with("uploads_and_downloads_ride_in_the_payload", |env| {
        env.insert("HERALD_MAX_UPLOAD_SIZE".into(), "300KiB".into());
    })
    .await
    else {
        return;
    };
    let app = &nats.app;
    let token = app.user("ada@example.org").await;
    let task = app.post("/api/v1/tasks", Some(&token), &json!({"title": "Over NATS"})).await.body["id"].clone();
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let request = |command: &str, input: Option<&str>, payload: Vec<u8>| {
        let mut headers = HeaderMap::new();
        headers.insert("Authorization", format!("Bearer {token}").as_str());
        if let Some(input) = input {
            headers.insert(commands::INPUT_HEADER, input);
        }
        let request = Request::new().headers(headers).payload(payload.into()).timeout(Some(REPLY_TIMEOUT));
        nats.client.send_request(commands::subject(&nats.namespace, command), request)
    };
    let status = |reply: &async_nats::Message| {
        reply.headers.as_ref().and_then(|h| h.get(commands::STATUS_HEADER)).map(|v| v.as_str().to_owned())
    };

    // "résumé.txt", escaped: a header is ASCII.
    let input = format!(r#"{{"task_id": "{}", "file_name": "r\u00e9sum\u00e9.txt"}}"#, task.as_str().expect("id"));
    let reply = request("attachments.upload", Some(&input), content.clone()).await.expect("a reply");
    assert_eq!(status(&reply).as_deref(), Some("200"));
    let body: Value = serde_json::from_slice(&reply.payload).expect("JSON");
    let attachment = &body["output"];
    assert_eq!(
        (&attachment["size"], &attachment["file_name"]),
        (&json!(content.len()), &json!("résumé.txt")),
        "{body}"
    );
    let id = attachment["id"].as_str().expect("id");
    let served = app.client.get(app.url(&format!("/api/v1/attachments/{id}/content"))).bearer_auth(&token).send();
    assert_eq!(served.await.expect("download").bytes().await.expect("bytes"), content, "REST serves what NATS sent");

    // The download: bytes as the payload, the JSON in a header.
    let ranged = json!({"id": id, "range": "bytes=100-199"}).to_string().into_bytes();
    let reply = request("attachments.download", None, ranged).await.expect("a reply");
    assert_eq!(status(&reply).as_deref(), Some("200"));
    let output = reply.headers.as_ref().and_then(|h| h.get(commands::OUTPUT_HEADER)).expect("Herald-Output");
    let output: Value = serde_json::from_str(output.as_str()).expect("JSON");
    assert_eq!((&output["start"], &output["length"], &output["partial"]), (&json!(100), &json!(100), &json!(true)));
    assert_eq!(output["attachment"]["file_name"], "résumé.txt");
    assert_eq!(&reply.payload[..], &content[100..200]);

    // Over the attachment limit: 413, as over HTTP; a header that is not JSON: 400.
    let oversize = vec![1u8; 400 * 1024];
    let reply = request("attachments.upload", Some(&input), oversize).await.expect("a reply");
    assert_eq!(status(&reply).as_deref(), Some("413"));
    let reply = request("attachments.upload", Some("{not json"), b"x".to_vec()).await.expect("a reply");
    assert_eq!(status(&reply).as_deref(), Some("400"));
    let listed = app.get(&format!("/api/v1/tasks/{}/attachments", task.as_str().expect("id")), Some(&token)).await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1), "only the upload that fit is kept");

    nats.stop().await;
}

/// An API key is a bearer token over NATS as over REST, within its scopes, until revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_work_over_nats_until_revoked() {
    let Some(nats) = Setup::start("api_keys_work_over_nats_until_revoked").await else { return };
    let app = &nats.app;
    let admin = app.admin("root@example.org").await;
    let made = app.post("/api/v1/api-keys", Some(&admin), &json!({"name": "crm", "scopes": ["campaigns"]})).await;
    let key = made.body["key"].as_str().expect("key").to_owned();
    let listed = nats.call("clients.list", Some(&key), &json!({})).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let users = nats.call("users.list", Some(&key), &json!({})).await;
    assert_eq!((users.status, users.code()), (403, "forbidden"));
    let id = made.body["id"].as_str().expect("id");
    let revoked = app.send(reqwest::Method::DELETE, &format!("/api/v1/api-keys/{id}"), Some(&admin), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let after = nats.call("clients.list", Some(&key), &json!({})).await;
    assert_eq!((after.status, after.code()), (401, "invalid_token"));
    nats.stop().await;
}
