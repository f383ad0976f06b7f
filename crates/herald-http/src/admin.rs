//! The admin console at `/admin/`: static files compiled into the binary (no CDN, no build step),
//! its one third-party asset, uPlot, vendored with its licence (see `scripts/vendor-admin`). The
//! page talks to the REST API, `/ws` and `/metrics` of the same origin; every command it calls
//! checks the admin role itself, so the files alone give nothing away.

use axum::{Router, response::Redirect, routing::get};

use crate::demo::asset;

const INDEX: &str = include_str!("../assets/admin/index.html");
const SCRIPT: &str = include_str!("../assets/admin/admin.js");
const STYLE: &str = include_str!("../assets/admin/admin.css");
const UPLOT: &str = include_str!("../assets/admin/vendor/uPlot.iife.min.js");
const UPLOT_STYLE: &str = include_str!("../assets/admin/vendor/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../assets/admin/vendor/uPlot.LICENSE");

/// `/admin/` and its assets; `/admin` redirects there so relative paths resolve.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    const JS: &str = "text/javascript; charset=utf-8";
    const CSS: &str = "text/css; charset=utf-8";
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/admin/admin.js", get(|| async { asset(JS, SCRIPT) }))
        .route("/admin/admin.css", get(|| async { asset(CSS, STYLE) }))
        .route("/admin/vendor/uPlot.iife.min.js", get(|| async { asset(JS, UPLOT) }))
        .route("/admin/vendor/uPlot.min.css", get(|| async { asset(CSS, UPLOT_STYLE) }))
        .route("/admin/vendor/uPlot.LICENSE", get(|| async { asset("text/plain; charset=utf-8", UPLOT_LICENSE) }))
}
