//! The live demo page at `/demo`: static files compiled into the binary (no CDN, no build step),
//! and the serving of a page's ES modules from one table, which the admin console shares.

use axum::{
    Router,
    extract::Path,
    http::header,
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use herald_core::error::ErrorCode;

use crate::problem::HttpError;

const INDEX: &str = include_str!("../assets/demo/index.html");
const STYLE: &str = include_str!("../assets/demo/demo.css");

/// The page's ES modules; `demo.js` is the entry `index.html` loads, and it imports the others.
const MODULES: Modules = &[
    ("demo.js", include_str!("../assets/demo/demo.js")),
    ("api.js", include_str!("../assets/demo/api.js")),
    ("dom.js", include_str!("../assets/demo/dom.js")),
    ("inbox.js", include_str!("../assets/demo/inbox.js")),
    ("realtime.js", include_str!("../assets/demo/realtime.js")),
    ("rooms.js", include_str!("../assets/demo/rooms.js")),
    ("session.js", include_str!("../assets/demo/session.js")),
    ("state.js", include_str!("../assets/demo/state.js")),
    ("tasks.js", include_str!("../assets/demo/tasks.js")),
];

/// The content type of every script, module or not.
pub(crate) const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// A page's ES modules: each file's name (its URL's last segment) and text.
pub(crate) type Modules = &'static [(&'static str, &'static str)];

/// `/demo/` and its assets; `/demo` redirects there so relative asset paths resolve.
pub fn routes() -> Router {
    Router::new()
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .route("/demo/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/demo/demo.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .merge(modules("/demo", MODULES))
}

/// A static page or asset, revalidated on every load.
pub(crate) fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// `{dir}/{name}` for each module of `table`, as JavaScript; any other name is the usual 404.
pub(crate) fn modules<S: Clone + Send + Sync + 'static>(dir: &str, table: Modules) -> Router<S> {
    let serve = move |Path(name): Path<String>| async move {
        match table.iter().find(|(file, _)| *file == name) {
            Some((_, text)) => asset(JAVASCRIPT, text),
            None => HttpError::new(ErrorCode::NotFound, "no such route").into_response(),
        }
    };
    Router::new().route(&format!("{dir}/{{name}}"), get(serve))
}

/// Checks that `table` holds every `.js` file of `assets/{dir}` (vendored files aside) and every
/// module they import, so a file added to a page cannot be left out of the binary.
#[cfg(test)]
pub(crate) fn assert_table_is_complete(dir: &str, table: Modules) {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets").join(dir);
    let names: std::collections::BTreeSet<&str> = table.iter().map(|(name, _)| *name).collect();
    assert_eq!(names.len(), table.len(), "{dir}: a name twice");
    for entry in std::fs::read_dir(&folder).expect("assets folder") {
        let file = entry.expect("entry").file_name().into_string().expect("UTF-8 name");
        if file.ends_with(".js") {
            assert!(names.contains(file.as_str()), "{dir}/{file} is not served");
        }
    }
    for (name, text) in table {
        assert_eq!(Some(*text), std::fs::read_to_string(folder.join(name)).ok().as_deref(), "{dir}/{name}");
        for import in text.split("from \"./").skip(1) {
            let target = import.split('"').next().unwrap_or_default();
            assert!(names.contains(target), "{dir}/{name} imports {target}, which is not served");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_module_of_the_demo_is_served() {
        super::assert_table_is_complete("demo", super::MODULES);
    }
}
