//! The HTTP edge, independent of the store: fallbacks, request ids, CORS, the OpenAPI document
//! and Swagger UI served from the binary.

use std::collections::BTreeSet;

use herald_testkit::{Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::Value;

async fn app(test: &str) -> TestApp {
    TestApp::start(Backend::Sqlite, test).await.expect("SQLite always runs")
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems_with_request_ids() {
    let app = app("unknown_routes").await;
    let missing = app.get("/api/v1/nothing", None).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(missing.body["instance"], "/api/v1/nothing");
    let request_id = missing.headers["x-request-id"].to_str().expect("ascii").to_owned();
    assert_eq!(missing.body["request_id"], request_id.as_str());

    let wrong_method = app.send(Method::DELETE, "/api/v1/me", None, None).await;
    assert_eq!((wrong_method.status, wrong_method.code()), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));

    let mine = app.client.get(app.url("/healthz")).header("x-request-id", "trace-me-42").send().await.expect("send");
    assert_eq!(mine.headers()["x-request-id"], "trace-me-42", "a plain client id is kept");
    let hostile = app.client.get(app.url("/healthz")).header("x-request-id", "a b<script>").send().await.expect("send");
    assert_ne!(hostile.headers()["x-request-id"], "a b<script>", "an unsafe id is replaced");
    app.stop().await;
}

#[tokio::test]
async fn cors_is_off_by_default_and_follows_the_configured_origins() {
    let preflight = |app: &TestApp, origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/api/v1/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let closed = app("cors_off").await;
    let reply = preflight(&closed, "https://app.example.org").await.expect("send");
    assert!(reply.headers().get("access-control-allow-origin").is_none());
    closed.stop().await;

    let open = TestApp::start_with(Backend::Sqlite, "cors_on", |env| {
        env.insert("HERALD_CORS_ORIGINS".into(), "https://app.example.org".into());
    })
    .await
    .expect("SQLite always runs");
    let allowed = preflight(&open, "https://app.example.org").await.expect("send");
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.org");
    let other = preflight(&open, "https://evil.example.org").await.expect("send");
    assert!(other.headers().get("access-control-allow-origin").is_none());
    open.stop().await;
}

#[tokio::test]
async fn the_openapi_document_covers_every_route_and_resolves_every_reference() {
    let app = app("openapi").await;
    let doc = app.get("/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.body;
    assert_eq!(doc["openapi"], "3.1.0");

    for route in herald_http::rest::ROUTES {
        let op = &doc["paths"][route.path][route.method.to_ascii_lowercase()];
        assert_eq!(op["operationId"], route.command, "{} {}", route.method, route.path);
        assert!(op["responses"][route.status.to_string()].is_object(), "{} documents its success", route.command);
        assert!(op["responses"]["500"].is_object());
    }
    let register = &doc["paths"]["/api/v1/auth/register"]["post"];
    assert!(register["responses"]["409"]["description"].as_str().expect("text").contains("email_taken"));
    assert!(register["responses"]["422"].is_object());
    assert!(doc["paths"]["/api/v1/users"]["get"]["responses"]["403"].is_object());
    assert!(doc["paths"]["/api/v1/me"]["get"]["security"].is_array());
    assert!(doc["components"]["schemas"]["RegisterInput"]["example"].is_object(), "inputs carry examples");
    for schema in ["tasks.CreateInput", "TaskView", "AttachmentView", "tasks.UpdateInput"] {
        assert!(doc["components"]["schemas"][schema]["example"].is_object(), "{schema} has an example");
    }
    // Types of one short name in several modules are told apart: a mailing's messages are not a
    // room's, and each update documents its own resource's body.
    let schemas = &doc["components"]["schemas"];
    assert!(schemas.get("MessageView").is_none() && schemas.get("UpdateInput").is_none(), "no ambiguous names");
    assert!(schemas["mailings.MessageView"]["properties"].get("room").is_none());
    assert!(schemas["rooms.MessageView"]["properties"]["room"].is_object());
    let mailing_update = &doc["paths"]["/api/v1/mailings/{id}"]["patch"]["requestBody"]["content"]["application/json"];
    assert!(mailing_update["schema"]["properties"].get("end_at").is_some(), "{mailing_update}");
    let update = &doc["paths"]["/api/v1/tasks/{id}"]["patch"];
    assert!(update["responses"]["412"]["description"].as_str().expect("text").contains("precondition_failed"));
    let params: Vec<&str> =
        update["parameters"].as_array().expect("params").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(params, ["id", "If-Match"]);
    let body = &update["requestBody"]["content"]["application/json"]["schema"]["properties"];
    assert!(body.get("id").is_none() && body.get("if_match").is_none(), "path and header fields are not body fields");
    assert!(doc["paths"]["/api/v1/tasks/{id}"]["delete"]["responses"]["204"].is_object());
    let upload = &doc["paths"]["/api/v1/tasks/{id}/attachments"]["post"];
    assert!(upload["requestBody"]["content"]["multipart/form-data"].is_object());
    assert!(upload["responses"]["413"].is_object());
    let download = &doc["paths"]["/api/v1/attachments/{id}/content"]["get"];
    assert!(download["responses"]["206"].is_object() && download["responses"]["416"].is_object());

    let members = &doc["paths"]["/api/v1/rooms/{room}/members"]["post"]["responses"];
    assert!(members["201"].is_object() && members["200"].is_object(), "added, or a member already");
    let history = &doc["paths"]["/api/v1/rooms/{room}/messages"]["get"]["parameters"];
    let names: Vec<&str> = history.as_array().expect("params").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names.iter().filter(|n| **n == "room").count(), 1, "a path field is no query parameter: {names:?}");

    let mut refs = BTreeSet::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let pointer = reference.strip_prefix('#').expect("local reference");
        assert!(doc.pointer(pointer).is_some(), "dangling reference {reference}");
    }
    app.stop().await;
}

fn collect_refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    out.insert(v.as_str().expect("string ref").to_owned());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn swagger_ui_loads_every_asset_from_herald_itself() {
    let app = app("swagger").await;
    let page = app.client.get(app.url("/docs/")).send().await.expect("send");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    let assets: Vec<&str> = ["src=\"", "href=\""]
        .iter()
        .flat_map(|attr| html.split(attr).skip(1).filter_map(|rest| rest.split('"').next()))
        .collect();
    assert!(assets.iter().any(|a| a.ends_with("swagger-ui-bundle.js")), "{assets:?}");
    for asset in &assets {
        assert!(!asset.starts_with("http") && !asset.starts_with("//"), "{asset} would be fetched from elsewhere");
        let url = app.url(&format!("/docs/{}", asset.trim_start_matches("./")));
        let resp = app.client.get(&url).send().await.expect("send");
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
    }
    let init = app.client.get(app.url("/docs/swagger-initializer.js")).send().await.expect("send");
    let init = init.text().await.expect("js");
    assert!(init.contains("/openapi.json"), "the UI loads Herald's own spec: {init}");
    assert!(!init.contains("petstore"), "no demo spec from the internet");
    // Where the to-do system's and the mailing service's users look for it.
    let direct = herald_testkit::http::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    for path in ["/swagger", "/api/v1/docs"] {
        let moved = direct.get(app.url(path)).send().await.expect("send");
        assert_eq!(moved.status(), StatusCode::PERMANENT_REDIRECT, "{path}");
        assert_eq!(moved.headers()["location"], "/docs/", "{path}");
        let followed = app.client.get(app.url(path)).send().await.expect("send");
        assert_eq!(followed.status(), StatusCode::OK, "{path}");
        assert!(followed.text().await.expect("html").contains("swagger-ui-bundle.js"), "{path}");
    }
    app.stop().await;
}

#[test]
fn every_error_code_is_answered_with_its_own_status() {
    use axum::response::IntoResponse as _;
    use herald_core::error::{ApiError, ErrorCode};
    for code in ErrorCode::ALL {
        let response = herald_http::problem::HttpError(ApiError::new(*code, "x")).into_response();
        assert_eq!(response.status().as_u16(), code.status(), "{code}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
    }
}
