//! Herald's HTTP edge: REST adapters over the command registry, problem+json errors, health
//! probes, the generated OpenAPI document and Swagger UI served from the binary.

pub mod admin;
pub mod attachments;
pub mod bulk;
pub mod demo;
pub mod extract;
pub mod gateway;
pub mod observe;
pub mod oidc;
pub mod openapi;
pub mod pace;
pub mod peer;
pub mod per_address;
pub mod problem;
pub mod rest;
pub mod server;
pub mod state;
pub mod statics;

use std::{any::Any, io, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderName, HeaderValue, Method, header},
    middleware,
    response::{IntoResponse, Response},
    routing::get,
};
use herald_core::{
    Herald,
    broker::Broker,
    error::{ApiError, ErrorCode},
    health::Readiness,
    metrics::Metrics,
    net::Networks,
    store::Store,
};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
};
use utoipa_swagger_ui::SwaggerUi;

use problem::HttpError;
pub use state::AppState;

/// HTTP settings, taken from the configuration by the binary.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Origins allowed by CORS; empty turns CORS off, `*` allows any origin.
    pub cors_origins: Vec<String>,
    /// How long `/readyz` waits for the store and for the broker.
    pub ready_timeout: Duration,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Networks,
    /// Single sign-on through an OpenID Connect provider, when configured.
    pub oidc: Option<herald_core::oidc::OidcSettings>,
    /// Most bytes of an answer of the OpenID Connect provider read.
    pub oidc_answer_limit: usize,
    /// How outbound calls (to the OpenID Connect provider) are made.
    pub egress: herald_egress::Egress,
}

/// The whole HTTP application; `/readyz` also waits for every part registered in `readiness`.
pub fn router(herald: Arc<Herald>, options: &HttpOptions, readiness: Readiness) -> Router {
    let metrics_registry = herald.services.metrics.clone();
    let oidc_herald = herald.clone();
    let state = AppState { herald, body_limit: options.body_limit, trusted_proxies: options.trusted_proxies.clone() };
    let openapi = openapi::document(&state.herald);
    let ready_timeout = options.ready_timeout;

    let probes = Probes {
        store: state.herald.services.store.clone(),
        broker: state.herald.services.broker.clone(),
        metrics: state.herald.services.metrics.clone(),
        ready_timeout,
        readiness,
    };
    let api = rest::router(&state)
        .merge(attachments::router())
        .merge(bulk::router())
        .fallback(|| async { HttpError::new(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            HttpError::new(ErrorCode::MethodNotAllowed, "this method is not allowed on this route")
        })
        .with_state(state);

    let mut app = Router::new()
        .merge(SwaggerUi::new("/docs").external_url_unchecked("/openapi.json", openapi))
        // Where the to-do system's and the mailing service's users look for it.
        .route("/swagger", get(to_docs))
        .route("/api/v1/docs", get(to_docs))
        .merge(probe_routes(probes))
        .merge(admin::routes())
        .merge(oidc::routes(
            oidc_herald,
            options
                .oidc
                .clone()
                .map(|o| Arc::new(oidc::OidcClient::new(o, options.oidc_answer_limit, options.egress.open().clone()))),
            options.trusted_proxies.clone(),
        ))
        .merge(api)
        .layer(DefaultBodyLimit::max(options.body_limit))
        .layer(CatchPanicLayer::custom(on_panic))
        .layer(middleware::from_fn_with_state(metrics_registry, observe::log_requests));
    if let Some(cors) = cors_layer(&options.cors_origins) {
        app = app.layer(cors);
    }
    app
}

/// Serves `app` on `listener` within `limits` until `shutdown` is cancelled, then drains
/// in-flight requests. See [`server`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: server::ServerLimits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let app = app.layer(middleware::from_fn(undecodable_paths)).layer(middleware::from_fn(security_headers));
    server::serve(listener, app, limits, shutdown).await
}

/// A path whose percent-encoding does not decode to UTF-8 names no resource: 400 problem+json,
/// like every other malformed request, before any route sees it.
async fn undecodable_paths(request: axum::extract::Request, next: middleware::Next) -> Response {
    if percent_decodes_to_utf8(request.uri().path()) {
        next.run(request).await
    } else {
        HttpError::new(ErrorCode::MalformedRequest, "the path is not valid UTF-8 once percent-decoded").into_response()
    }
}

fn percent_decodes_to_utf8(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                decoded.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

/// The Content-Security-Policy of every answer: pages (`/demo`, `/docs`) load scripts, styles,
/// images and connections from Herald itself only, and no site may frame them.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// Security headers on every answer (pages, assets and JSON alike; cheap, and no page is missed).
async fn security_headers(request: axum::extract::Request, next: middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// What the health and metrics endpoints look at.
#[derive(Debug, Clone)]
pub struct Probes {
    pub store: Arc<dyn Store>,
    pub broker: Arc<dyn Broker>,
    pub metrics: Arc<Metrics>,
    /// How long `/readyz` waits for the store and for the broker.
    pub ready_timeout: Duration,
    /// The transports and subscriptions of this process, each ready or not.
    pub readiness: Readiness,
}

fn probe_routes(probes: Probes) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "alive"})) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(probes)
}

/// The admin endpoints alone (`/healthz`, `/readyz`, `/metrics`), for the roles that serve no API:
/// relay, scheduler and sender. Requests are logged and counted like the API's.
pub fn admin_router(probes: Probes) -> Router {
    let metrics = probes.metrics.clone();
    probe_routes(probes)
        .fallback(|| async { HttpError::new(ErrorCode::NotFound, "no such route") })
        .layer(CatchPanicLayer::custom(on_panic))
        .layer(middleware::from_fn_with_state(metrics, observe::log_requests))
}

async fn metrics(State(probes): State<Probes>) -> Response {
    let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    probes.metrics.runtime_alive_tasks.set(i64::try_from(tasks).unwrap_or(i64::MAX));
    let body = probes.metrics.encode();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

async fn ready(State(probes): State<Probes>) -> Result<Response, HttpError> {
    let timeout = probes.ready_timeout;
    match tokio::time::timeout(timeout, probes.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            return Err(HttpError(
                ApiError::new(ErrorCode::Unavailable, "the store is not reachable").with_source(err),
            ));
        }
        Err(_) => return Err(HttpError::new(ErrorCode::Unavailable, "the store did not answer in time")),
    }
    match tokio::time::timeout(timeout, probes.broker.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            return Err(HttpError(
                ApiError::new(ErrorCode::Unavailable, "the broker is not reachable").with_source(err),
            ));
        }
        Err(_) => return Err(HttpError::new(ErrorCode::Unavailable, "the broker did not answer in time")),
    }
    let parts = probes.readiness.report();
    if let Some((part, _)) = parts.iter().find(|(_, ready)| !**ready) {
        // Not serving yet (starting) or not now (a subscription is down): send no traffic here.
        return Err(HttpError(ApiError::new(ErrorCode::Unavailable, format!("{part} is not accepting work yet"))));
    }
    let mut checks =
        serde_json::Map::from_iter([("store".to_owned(), json!("ok")), ("broker".to_owned(), json!("ok"))]);
    checks.extend(parts.keys().map(|part| ((*part).to_owned(), json!("ok"))));
    Ok(Json(json!({"status": "ready", "checks": checks})).into_response())
}

fn on_panic(_payload: Box<dyn Any + Send + 'static>) -> Response {
    // The panic itself is printed by the panic hook; the client learns nothing of it.
    HttpError::new(ErrorCode::Internal, "").into_response()
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::IF_MATCH, observe::REQUEST_ID.clone()])
            .expose_headers([observe::REQUEST_ID.clone(), header::ETAG, HeaderName::from_static("www-authenticate")])
            .max_age(Duration::from_secs(600)),
    )
}

/// The Swagger UI's other addresses lead to it.
async fn to_docs() -> axum::response::Redirect {
    axum::response::Redirect::permanent("/docs/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_that_do_not_decode_to_utf8_are_told_apart() {
        for good in ["/", "/api/v1/tasks/abc", "/a%20b", "/caf%C3%A9", "/100%", "/%zz"] {
            assert!(super::percent_decodes_to_utf8(good), "{good}");
        }
        for bad in ["/api/v1/tasks/%FF", "/%C3", "/x/%80%80"] {
            assert!(!super::percent_decodes_to_utf8(bad), "{bad}");
        }
    }
}
