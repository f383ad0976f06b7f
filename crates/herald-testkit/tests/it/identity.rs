//! Identity checked on every call: an API key acts with its maker's current role, a token of a
//! deleted account is `invalid_token` on REST, `/ws` and gRPC (never a 500), a deleted account's
//! open socket is closed with `account_gone`, and Herald always keeps one administrator.

use std::time::Duration;

use herald_grpc::pb::{CreateEventRequest, calendar_service_client::CalendarServiceClient};
use herald_testkit::{TestApp, ws_client::WsClient};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tonic::{Code, Request};
use tonic_types::StatusExt as _;

api_tests! {
    a_demoted_makers_key_loses_admin_power_at_once,
    a_deleted_accounts_token_and_socket_stop_on_every_transport,
    the_only_administrator_is_neither_demoted_nor_deleted,
}

async fn id_of(app: &TestApp, token: &str) -> String {
    app.get("/api/v1/me", Some(token)).await.body["id"].as_str().expect("id").to_owned()
}

async fn set_role(app: &TestApp, admin: &str, id: &str, role: &str) -> herald_testkit::app::Reply {
    app.send(Method::PATCH, &format!("/api/v1/users/{id}"), Some(admin), Some(&json!({"role": role}))).await
}

async fn delete(app: &TestApp, admin: &str, id: &str) -> herald_testkit::app::Reply {
    app.send(Method::DELETE, &format!("/api/v1/users/{id}"), Some(admin), None).await
}

async fn a_demoted_makers_key_loses_admin_power_at_once(app: &TestApp) {
    let root = app.admin("root@example.org").await;
    let maker = app.admin("maker@example.org").await;
    let maker_id = id_of(app, &maker).await;
    let made = app.post("/api/v1/api-keys", Some(&maker), &json!({"name": "crm", "scopes": ["admin"]})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let key = made.body["key"].as_str().expect("key").to_owned();
    assert_eq!(app.get("/api/v1/users", Some(&key)).await.status, StatusCode::OK);
    // A key, even an admin one, neither promotes an account nor deletes one: a leaked key cannot
    // make itself an administrator's account.
    let mallory = app.user("mallory@example.org").await;
    let mallory_id = id_of(app, &mallory).await;
    assert_eq!(set_role(app, &key, &mallory_id, "admin").await.status, StatusCode::FORBIDDEN);
    assert_eq!(delete(app, &key, &mallory_id).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/api/v1/me", Some(&mallory)).await.body["role"], "user");

    let demoted = set_role(app, &root, &maker_id, "user").await;
    assert_eq!((demoted.status, demoted.body["role"].as_str()), (StatusCode::OK, Some("user")), "{:?}", demoted.body);
    let refused = app.get("/api/v1/users", Some(&key)).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "forbidden"), "the key's next call");
    let own = app.get("/api/v1/users", Some(&maker)).await;
    assert_eq!((own.status, own.code()), (StatusCode::FORBIDDEN, "forbidden"), "the maker's own token, same claims");
    assert_eq!(app.get("/api/v1/me", Some(&maker)).await.body["role"], "user");

    let promoted = set_role(app, &root, &maker_id, "admin").await;
    assert_eq!(promoted.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/users", Some(&key)).await.status, StatusCode::OK, "admin again, at once");

    assert_eq!(delete(app, &root, &maker_id).await.status, StatusCode::NO_CONTENT);
    let gone = app.get("/api/v1/users", Some(&key)).await;
    assert_eq!(
        (gone.status, gone.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token"),
        "a key never outlives its maker"
    );
}

async fn a_deleted_accounts_token_and_socket_stop_on_every_transport(app: &TestApp) {
    let root = app.admin("root@example.org").await;
    let ada = app.user("ada@example.org").await;
    let ada_id = id_of(app, &ada).await;
    let task = app.post("/api/v1/tasks", Some(&ada), &json!({"title": "before"})).await;
    assert_eq!(task.status, StatusCode::CREATED, "{:?}", task.body);
    let ws_url = format!("{}/ws", app.base.replacen("http://", "ws://", 1));
    let mut socket = WsClient::connect(&ws_url, &ada, "phone").await.expect("a session");
    let subscribed = socket.subscribe(&format!("user:{ada_id}"), None).await;
    assert_eq!(subscribed["ok"], true, "{subscribed}");
    // And a stock Socket.io client, when Node.js and the packages of tests/js are there.
    let mut sio = herald_testkit::node::SioClient::spawn();
    if let Some(sio) = sio.as_mut() {
        sio.connect(&app.base, &ada, "browser").await.expect("a Socket.io session");
    }

    let user = app.user("bob@example.org").await;
    let forbidden = delete(app, &user, &ada_id).await;
    assert_eq!((forbidden.status, forbidden.code()), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(delete(app, &root, &ada_id).await.status, StatusCode::NO_CONTENT);

    // The open socket is told why, then closed.
    let close = socket.next_op("close", Duration::from_secs(10)).await.expect("a close frame before the socket ends");
    assert_eq!(close["code"], "account_gone", "{close}");
    assert!(socket.next_frame(Duration::from_secs(5)).await.is_none(), "and the socket ends");
    if let Some(sio) = sio.as_mut() {
        let close = sio.next_notice(Duration::from_secs(10)).await.expect("Socket.io: a close event");
        assert_eq!((&close["kind"], &close["data"]["code"]), (&json!("close"), &json!("account_gone")), "{close}");
        let ended = sio.next_notice(Duration::from_secs(10)).await.expect("Socket.io: then a disconnect");
        assert_eq!(ended["kind"], "disconnected", "{ended}");
        let refused = sio.connect(&app.base, &ada, "browser-2").await.expect_err("no new Socket.io session");
        assert!(refused["message"].as_str().is_some_and(|m| m.starts_with("invalid_token")), "{refused}");
    }

    // REST: every route, never a 500.
    for (method, path, body) in [
        (Method::GET, "/api/v1/me", None),
        (Method::POST, "/api/v1/tasks", Some(json!({"title": "after"}))),
        (Method::GET, "/api/v1/tasks", None),
        (Method::POST, "/api/v1/auth/login", Some(json!({"email": "x@example.org", "password": "password123"}))),
    ] {
        let reply = app.send(method.clone(), path, Some(&ada), body.as_ref()).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::UNAUTHORIZED, "invalid_token"), "{method} {path}");
    }
    // A new socket.
    let refused = WsClient::connect(&ws_url, &ada, "laptop").await.expect_err("no session for a deleted account");
    assert_eq!(refused["code"], "invalid_token", "{refused}");
    // gRPC.
    let mut grpc = CalendarServiceClient::connect(app.grpc_url()).await.expect("connect to the gRPC server");
    let starts = prost_types::Timestamp { seconds: 1_940_000_000, nanos: 0 };
    let event = CreateEventRequest {
        title: "after".into(),
        starts_at: Some(starts),
        duration: Some(prost_types::Duration { seconds: 1800, nanos: 0 }),
        ..Default::default()
    };
    let mut request = Request::new(event);
    request.metadata_mut().insert("authorization", format!("Bearer {ada}").parse().expect("ascii"));
    let status = grpc.create_event(request).await.expect_err("a deleted account");
    let reason = status.get_error_details().error_info().map(|info| info.reason.clone());
    assert_eq!((status.code(), reason.as_deref()), (Code::Unauthenticated, Some("invalid_token")));

    assert_eq!(delete(app, &root, &ada_id).await.code(), "not_found", "deleted once");
    assert_eq!(app.get("/api/v1/me", Some(&user)).await.status, StatusCode::OK, "others carry on");
}

async fn the_only_administrator_is_neither_demoted_nor_deleted(app: &TestApp) {
    let root = app.admin("root@example.org").await;
    let root_id = id_of(app, &root).await;
    let demote = set_role(app, &root, &root_id, "user").await;
    assert_eq!((demote.status, demote.code()), (StatusCode::CONFLICT, "last_admin"), "{:?}", demote.body);
    let delete_self = delete(app, &root, &root_id).await;
    assert_eq!((delete_self.status, delete_self.code()), (StatusCode::CONFLICT, "last_admin"));
    assert_eq!(app.get("/api/v1/me", Some(&root)).await.body["role"], "admin");

    let bad = set_role(app, &root, &root_id, "owner").await;
    assert_eq!((bad.status, bad.fields()), (StatusCode::UNPROCESSABLE_ENTITY, vec!["role".to_owned()]));
    let nobody = set_role(app, &root, "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "user").await;
    assert_eq!((nobody.status, nobody.code()), (StatusCode::NOT_FOUND, "not_found"));

    // With a second administrator, the first may step down, and then go.
    let ada = app.user("ada@example.org").await;
    let ada_id = id_of(app, &ada).await;
    assert_eq!(set_role(app, &root, &ada_id, "admin").await.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/users", Some(&ada)).await.status, StatusCode::OK, "promoted at once");
    assert_eq!(set_role(app, &root, &root_id, "user").await.status, StatusCode::OK);
    let not_any_more = delete(app, &root, &ada_id).await;
    assert_eq!(not_any_more.code(), "forbidden", "the demoted admin's token lost its power");
    assert_eq!(delete(app, &ada, &root_id).await.status, StatusCode::NO_CONTENT);
    assert_eq!(delete(app, &ada, &ada_id).await.code(), "last_admin");
}
