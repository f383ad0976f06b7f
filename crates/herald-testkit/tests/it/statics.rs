//! The static directory over real HTTP: content types, `ETag` and 304, precompressed siblings,
//! `index.html` for directories, and no way out of the directory by any spelling of `..` or by a
//! symlink.

use std::path::Path;

use herald_testkit::{Backend, TestApp};
use reqwest::{StatusCode, header};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// Lays out a static directory beside a secret file it must never serve.
fn layout(root: &Path) -> std::path::PathBuf {
    let site = root.join("site");
    std::fs::create_dir_all(site.join("docs")).expect("mkdir");
    std::fs::write(site.join("index.html"), "<h1>home</h1>").expect("write");
    std::fs::write(site.join("docs/index.html"), "<h1>docs</h1>").expect("write");
    std::fs::write(site.join("app.js"), "console.log('plain')").expect("write");
    std::fs::write(site.join("app.js.br"), "BROTLI-BYTES").expect("write");
    std::fs::write(site.join("app.js.gz"), "GZIP-BYTES").expect("write");
    std::fs::write(site.join("logo.svg"), "<svg/>").expect("write");
    std::fs::write(root.join("secret.txt"), "TOP SECRET").expect("write");
    std::fs::write(site.join(".env"), "TOP SECRET too").expect("write");
    std::os::unix::fs::symlink(root.join("secret.txt"), site.join("leak.txt")).expect("symlink out");
    std::os::unix::fs::symlink(site.join("logo.svg"), site.join("alias.svg")).expect("symlink in");
    site
}

/// Sends `GET <raw path>` as written (no client normalises it) and returns the status and body.
async fn raw_get(app: &TestApp, path: &str) -> (u16, String) {
    let addr = app.base.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.expect("read");
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_directory_is_served_with_etags_encodings_and_no_way_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = layout(dir.path());
    let app = TestApp::start_with(Backend::Sqlite, "static_dir", |env| {
        env.insert("HERALD_STATIC_DIR".into(), site.display().to_string());
        env.insert("HERALD_STATIC_CACHE_CONTROL".into(), "public, max-age=60".into());
    })
    .await
    .expect("SQLite always runs");

    let home = app.client.get(app.url("/static/")).send().await.expect("get");
    assert_eq!(home.status(), StatusCode::OK);
    assert_eq!(home.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(home.headers()[header::CACHE_CONTROL], "public, max-age=60");
    let etag = home.headers()[header::ETAG].clone();
    assert_eq!(home.text().await.expect("body"), "<h1>home</h1>");
    let docs = app.client.get(app.url("/static/docs/")).send().await.expect("get");
    assert_eq!(docs.text().await.expect("body"), "<h1>docs</h1>", "a directory serves its index.html");

    let again =
        app.client.get(app.url("/static/index.html")).header(header::IF_NONE_MATCH, &etag).send().await.expect("get");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[header::ETAG], etag);
    assert!(again.text().await.expect("body").is_empty());

    let br = app.client.get(app.url("/static/app.js")).header(header::ACCEPT_ENCODING, "gzip, br").send().await;
    let br = br.expect("get");
    assert_eq!(br.headers()[header::CONTENT_ENCODING], "br");
    assert_eq!(br.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert_eq!(br.headers()[header::VARY], "accept-encoding");
    let br_etag = br.headers()[header::ETAG].to_str().expect("etag").to_owned();
    assert!(br_etag != etag && br_etag.ends_with("-br\""), "each representation has its own tag: {br_etag}");
    assert_eq!(br.bytes().await.expect("body").as_ref(), b"BROTLI-BYTES");
    let gz = app.client.get(app.url("/static/app.js")).header(header::ACCEPT_ENCODING, "gzip").send().await;
    assert_eq!(gz.expect("get").headers()[header::CONTENT_ENCODING], "gzip");
    let plain = app.client.get(app.url("/static/app.js")).header(header::ACCEPT_ENCODING, "identity").send().await;
    let plain = plain.expect("get");
    assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
    assert_eq!(plain.text().await.expect("body"), "console.log('plain')");
    let svg = app.client.get(app.url("/static/alias.svg")).send().await.expect("get");
    assert_eq!(svg.headers()[header::CONTENT_TYPE], "image/svg+xml", "a symlink inside the directory is served");

    for path in [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/docs/..%2f..%2fsecret.txt",
        "/static/%2E%2E%2Fsecret.txt",
        "/static/leak.txt",
        "/static/.env",
        "/static/missing.html",
    ] {
        let (status, answer) = raw_get(&app, path).await;
        assert!(matches!(status, 400 | 404), "{path}: {status}");
        assert!(!answer.contains("TOP SECRET"), "{path} escaped the directory");
    }
    // A file swapped for a symlink out of the directory after start is not followed.
    std::fs::remove_file(site.join("logo.svg")).expect("remove");
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), site.join("logo.svg")).expect("swap in a symlink");
    let (status, answer) = raw_get(&app, "/static/logo.svg").await;
    assert_eq!(status, 404, "{answer}");
    assert!(!answer.contains("TOP SECRET"));
    app.stop().await;
}
