//! The admin console: served from the binary, and driven in headless Chromium against a real
//! `herald serve` sending a mailing through the mock provider.

use std::time::Duration;

use herald_testkit::{
    mock_provider::MockProvider,
    oidc_provider::{Person, TestOidcProvider},
};
use reqwest::StatusCode;
use serde_json::json;

/// `/admin/` and its assets come from Herald itself, with the security headers of every page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_from_the_binary() {
    let app = herald_testkit::TestApp::start(herald_testkit::Backend::Sqlite, "admin_assets").await.expect("SQLite");
    for (path, kind) in [
        ("/admin/", "text/html"),
        ("/admin/admin.js", "text/javascript"),
        // A module the entry imports, from the same table.
        ("/admin/mailings.js", "text/javascript"),
        ("/admin/admin.css", "text/css"),
        ("/admin/vendor/uPlot.iife.min.js", "text/javascript"),
        ("/admin/vendor/uPlot.min.css", "text/css"),
        ("/admin/vendor/uPlot.LICENSE", "text/plain"),
    ] {
        let reply = app.get(path, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let content_type = reply.headers["content-type"].to_str().unwrap_or_default();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        let csp = reply.headers["content-security-policy"].to_str().unwrap_or_default();
        assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"), "{path}: {csp}");
    }
    let unknown = app.get("/admin/nothing.js", None).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "not_found"));
    let redirect = herald_testkit::http::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("{}/admin", app.base))
        .send()
        .await
        .expect("GET /admin");
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    app.stop().await;
}

/// The console in a browser: a plain user is refused; an administrator (signed in with a
/// password, and again through the test OpenID Connect provider) watches a running
/// mailing's counts move live and its charts draw, at desktop and phone widths, imports a file
/// with a bad line, searches clients, opens the provider and real-time panels; nothing loads
/// from another host (see `tests/js/admin.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_works_in_a_browser() {
    let sso = TestOidcProvider::start("herald-console", "console-secret").await;
    sso.sign_in_next(Person {
        subject: "ops-1".into(),
        email: "ops@example.org".into(),
        email_verified: true,
        name: "Ops".into(),
        groups: vec!["herald-admin".into()],
    });
    let addr = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let issuer = sso.issuer();
    let provider = MockProvider::start("console-token").await;
    // Slow enough that the mailing is still running while the browser watches it.
    provider.set_latency(Duration::from_millis(150), Duration::ZERO);
    let url = provider.base_url();
    let app = herald_testkit::TestApp::start_with(herald_testkit::Backend::Sqlite, "admin_console", |env| {
        env.insert("HERALD_PROVIDER_URL".into(), url);
        env.insert("HERALD_PROVIDER_TOKEN".into(), "console-token".into());
        env.insert("HERALD_SENDER_CONCURRENCY".into(), "2".into());
        env.insert("HERALD_SENDER_MIN_CONCURRENCY".into(), "2".into());
        env.insert("HERALD_PROVIDER_RATE".into(), "50/s".into());
        env.insert("HERALD_HTTP_ADDR".into(), addr.to_string());
        env.insert("HERALD_OIDC_ISSUER".into(), issuer);
        env.insert("HERALD_OIDC_CLIENT_ID".into(), "herald-console".into());
        env.insert("HERALD_OIDC_CLIENT_SECRET".into(), "console-secret".into());
        env.insert("HERALD_OIDC_REDIRECT_URL".into(), format!("http://{addr}/api/v1/auth/oidc/callback"));
    })
    .await
    .expect("SQLite");
    let admin = app.admin("root@example.org").await;
    app.user("plain@example.org").await;
    let lines: String = (0..2000).map(|i| format!("{{\"phone\":\"7916{i:07}\"}}\n")).collect();
    let imported = herald_testkit::http::client()
        .post(format!("{}/api/v1/clients/bulk", app.base))
        .bearer_auth(&admin)
        .header("content-type", "application/x-ndjson")
        .body(lines)
        .send()
        .await
        .expect("bulk import");
    assert_eq!(imported.status(), StatusCode::OK);
    let now = chrono::Utc::now();
    let body = json!({"start_at": now, "end_at": now + chrono::Duration::hours(1), "text": "Console test"});
    let mailing = app.post("/api/v1/mailings", Some(&admin), &body).await;
    assert_eq!(mailing.body["status"], "running", "{:?}", mailing.body);
    let id = mailing.body["id"].as_str().expect("id").to_owned();
    provider.wait_accepted(1, Duration::from_secs(10)).await.expect("sending began");

    let sso_host = sso.host();
    let env = [
        ("HERALD_ADMIN_EMAIL", "root@example.org"),
        ("HERALD_ADMIN_PASSWORD", "password123"),
        ("HERALD_USER_EMAIL", "plain@example.org"),
        ("HERALD_USER_PASSWORD", "password123"),
        ("HERALD_MAILING_ID", id.as_str()),
        ("HERALD_OIDC", "1"),
        ("HERALD_OIDC_HOST", &sso_host),
    ];
    let result = herald_testkit::node::run_admin_browser_test(&app.base, &env).await;
    app.stop().await;
    provider.stop().await;
    sso.stop();
    if let Err(output) = result {
        panic!("the admin console's browser test failed:\n{output}");
    }
}
