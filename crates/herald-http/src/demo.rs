//! The live demo page at `/demo`: static files compiled into the binary (no CDN, no build step).

use axum::{
    Router,
    http::header,
    response::{IntoResponse, Redirect, Response},
    routing::get,
};

const INDEX: &str = include_str!("../assets/demo/index.html");
const SCRIPT: &str = include_str!("../assets/demo/demo.js");
const STYLE: &str = include_str!("../assets/demo/demo.css");

/// `/demo/` and its assets; `/demo` redirects there so relative asset paths resolve.
pub fn routes() -> Router {
    Router::new()
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .route("/demo/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/demo/demo.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/demo/demo.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
}

/// A static page or asset, revalidated on every load.
pub(crate) fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
