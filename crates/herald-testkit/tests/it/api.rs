//! Accounts and auth over real HTTP, on every store.

use chrono::{Duration, Utc};
use herald_core::{
    identity::Identity,
    user::{Role, UserId},
};
use herald_testkit::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

api_tests! {
    register_login_and_me,
    bad_input_gets_its_code_and_leaves_no_row,
    tokens_that_prove_nothing_are_refused,
    roles_guard_admin_commands_and_lists_page,
    health_and_readiness_answer,
}

async fn register_login_and_me(app: &TestApp) {
    let reply = app
        .post(
            "/api/v1/auth/register",
            None,
            &json!({"email": "Ada@Example.org", "password": "password123", "name": "Ada"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["email"], "ada@example.org", "emails are normalised");
    assert_eq!(reply.body["role"], "user", "registration never makes an admin");
    assert!(reply.body.get("password_hash").is_none() && reply.body.get("password").is_none());
    let id = reply.body["id"].clone();

    let token = app.login("ADA@example.org", "password123").await;
    let me = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["id"], id);
    assert_eq!(me.body["name"], "Ada");

    let login =
        app.post("/api/v1/auth/login", None, &json!({"email": "ada@example.org", "password": "password123"})).await;
    assert_eq!(login.body["token_type"], "Bearer");
    assert_eq!(login.body["expires_in"], 3600);
}

async fn bad_input_gets_its_code_and_leaves_no_row(app: &TestApp) {
    let admin = app.admin("root@example.org").await;
    let register = app.url("/api/v1/auth/register");
    let raw = |body: &'static str, content_type: &'static str| {
        app.client.post(register.clone()).header("content-type", content_type).body(body).send()
    };

    let malformed = TestApp::reply(raw(r#"{"email": "a@b.org", "#, "application/json").await.expect("send")).await;
    assert_eq!((malformed.status, malformed.code()), (StatusCode::BAD_REQUEST, "malformed_request"));
    assert_eq!(malformed.headers["content-type"], "application/problem+json");

    let not_json = TestApp::reply(raw("email=a@b.org", "application/x-www-form-urlencoded").await.expect("send")).await;
    assert_eq!((not_json.status, not_json.code()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));

    let wrong_types =
        app.post("/api/v1/auth/register", None, &json!({"email": 42, "password": ["x"], "name": true})).await;
    assert_eq!((wrong_types.status, wrong_types.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    let mut fields = wrong_types.fields();
    fields.sort();
    assert_eq!(fields, ["email", "name", "password"]);

    let missing = app.post("/api/v1/auth/register", None, &json!({"email": "ada@example.org"})).await;
    assert_eq!(missing.code(), "validation_failed");
    assert_eq!(missing.fields(), ["password", "name"]);
    assert!(missing.body["errors"].as_array().expect("errors").iter().all(|e| e["message"] == "is required"));

    let unknown = app
        .post(
            "/api/v1/auth/register",
            None,
            &json!({"email": "ada@example.org", "password": "password123", "name": "A", "role": "admin"}),
        )
        .await;
    assert_eq!(unknown.code(), "validation_failed", "a client cannot smuggle in a role");
    assert_eq!(unknown.fields(), ["role"]);

    let bad_values =
        app.post("/api/v1/auth/register", None, &json!({"email": "ada@", "password": "hunter2", "name": " "})).await;
    assert_eq!(bad_values.code(), "validation_failed");
    assert!(!bad_values.body.to_string().contains("hunter2"), "the password was echoed");

    let oversized = app.declare_body("/api/v1/auth/register", None, "application/json", 2 << 20).await;
    assert_eq!((oversized.status, oversized.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    assert_eq!(oversized.headers["content-type"], "application/problem+json");

    let first = app
        .post(
            "/api/v1/auth/register",
            None,
            &json!({"email": "ada@example.org", "password": "password123", "name": "A"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let taken = app
        .post(
            "/api/v1/auth/register",
            None,
            &json!({"email": "ADA@example.org", "password": "password456", "name": "B"}),
        )
        .await;
    assert_eq!((taken.status, taken.code()), (StatusCode::CONFLICT, "email_taken"));

    let wrong_password =
        app.post("/api/v1/auth/login", None, &json!({"email": "ada@example.org", "password": "password124"})).await;
    assert_eq!((wrong_password.status, wrong_password.code()), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    let unknown_email =
        app.post("/api/v1/auth/login", None, &json!({"email": "eve@example.org", "password": "password123"})).await;
    assert_eq!(unknown_email.body["detail"], wrong_password.body["detail"], "no hint which emails exist");

    // Only the admin and the one valid registration exist: no refused request left a row.
    let users = app.get("/api/v1/users", Some(&admin)).await;
    let emails: Vec<&str> =
        users.body["items"].as_array().expect("items").iter().filter_map(|u| u["email"].as_str()).collect();
    assert_eq!(emails, ["root@example.org", "ada@example.org"]);
    // The original password still works: the refused duplicate changed nothing.
    app.login("ada@example.org", "password123").await;
}

async fn tokens_that_prove_nothing_are_refused(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let me = app.get("/api/v1/me", Some(&token)).await;
    let user_id = UserId(me.body["id"].as_str().expect("id").parse().expect("uuid"));

    let missing = app.get("/api/v1/me", None).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    assert_eq!(missing.headers["www-authenticate"], "Bearer");

    let expired = app.token_at(Identity { user_id, role: Role::User }, Utc::now() - Duration::hours(2));
    let reply = app.get("/api/v1/me", Some(&expired)).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::UNAUTHORIZED, "token_expired"));

    // Same claims, another key: a forgery.
    let forger = herald_core::auth::TokenIssuer::new(&[1u8; 32], Duration::hours(1)).expect("issuer");
    let forged = forger.issue(Identity { user_id, role: Role::Admin }, Utc::now()).access_token;
    for bad in [forged.as_str(), "not.a.token", "", &format!("{token}x")] {
        let reply = app.get("/api/v1/users", Some(bad)).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::UNAUTHORIZED, "invalid_token"), "{bad:?}");
    }
    let basic = TestApp::reply(
        app.client.get(app.url("/api/v1/me")).header("authorization", "Basic YTpi").send().await.expect("send"),
    )
    .await;
    assert_eq!(basic.code(), "invalid_token");

    // A valid signature for an account that does not exist.
    let ghost = app.token_at(Identity { user_id: UserId::new(), role: Role::User }, Utc::now());
    assert_eq!(app.get("/api/v1/me", Some(&ghost)).await.code(), "invalid_token");
}

async fn roles_guard_admin_commands_and_lists_page(app: &TestApp) {
    let user = app.user("ada@example.org").await;
    let forbidden = app.get("/api/v1/users", Some(&user)).await;
    assert_eq!((forbidden.status, forbidden.code()), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(app.get("/api/v1/users", None).await.status, StatusCode::UNAUTHORIZED);

    let admin = app.admin("root@example.org").await;
    for i in 0..3 {
        app.user(&format!("u{i}@example.org")).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/users?limit=2&cursor={c}"),
            None => "/api/v1/users?limit=2".to_owned(),
        };
        let page = app.get(&path, Some(&admin)).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        let items = page.body["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|u| u["email"].as_str().expect("email").to_owned()));
        match page.body.get("next_cursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["ada@example.org", "root@example.org", "u0@example.org", "u1@example.org", "u2@example.org"]);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=500", "limit"),
        ("limit=ten", "limit"),
        ("cursor=zzz", "cursor"),
        ("sort=asc", "sort"),
    ] {
        let reply = app.get(&format!("/api/v1/users?{query}"), Some(&admin)).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{query}");
        assert_eq!(reply.fields(), [field], "{query}");
    }
}

async fn health_and_readiness_answer(app: &TestApp) {
    let live = app.get("/healthz", None).await;
    assert_eq!((live.status, &live.body["status"]), (StatusCode::OK, &json!("alive")));
    let ready = app.get("/readyz", None).await;
    assert_eq!((ready.status, &ready.body["checks"]["store"]), (StatusCode::OK, &json!("ok")));
}
