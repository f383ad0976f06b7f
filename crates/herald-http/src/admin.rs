//! The admin console at `/admin/`: static files compiled into the binary (no CDN, no build step),
//! its one third-party asset, uPlot, vendored with its licence (see `scripts/vendor-admin`). The
//! page talks to the REST API, `/ws` and `/metrics` of the same origin; every command it calls
//! checks the admin role itself, so the files alone give nothing away.

use axum::{Router, response::Redirect, routing::get};

use crate::demo::{JAVASCRIPT, Modules, asset, modules};

const INDEX: &str = include_str!("../assets/admin/index.html");
const STYLE: &str = include_str!("../assets/admin/admin.css");
const UPLOT: &str = include_str!("../assets/admin/vendor/uPlot.iife.min.js");
const UPLOT_STYLE: &str = include_str!("../assets/admin/vendor/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../assets/admin/vendor/uPlot.LICENSE");

/// The console's ES modules; `admin.js` is the entry `index.html` loads, and it imports the others.
const MODULES: Modules = &[
    ("admin.js", include_str!("../assets/admin/admin.js")),
    ("api.js", include_str!("../assets/admin/api.js")),
    ("charts.js", include_str!("../assets/admin/charts.js")),
    ("client-import.js", include_str!("../assets/admin/client-import.js")),
    ("clients.js", include_str!("../assets/admin/clients.js")),
    ("dom.js", include_str!("../assets/admin/dom.js")),
    ("format.js", include_str!("../assets/admin/format.js")),
    ("live.js", include_str!("../assets/admin/live.js")),
    ("mailings.js", include_str!("../assets/admin/mailings.js")),
    ("metrics.js", include_str!("../assets/admin/metrics.js")),
    ("notifications.js", include_str!("../assets/admin/notifications.js")),
    ("router.js", include_str!("../assets/admin/router.js")),
    ("session.js", include_str!("../assets/admin/session.js")),
    ("state.js", include_str!("../assets/admin/state.js")),
];

/// `/admin/` and its assets; `/admin` redirects there so relative paths resolve.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    const CSS: &str = "text/css; charset=utf-8";
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/admin/admin.css", get(|| async { asset(CSS, STYLE) }))
        .route("/admin/vendor/uPlot.iife.min.js", get(|| async { asset(JAVASCRIPT, UPLOT) }))
        .route("/admin/vendor/uPlot.min.css", get(|| async { asset(CSS, UPLOT_STYLE) }))
        .route("/admin/vendor/uPlot.LICENSE", get(|| async { asset("text/plain; charset=utf-8", UPLOT_LICENSE) }))
        .merge(modules("/admin", MODULES))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_module_of_the_console_is_served() {
        crate::demo::assert_table_is_complete("admin", super::MODULES);
    }
}
