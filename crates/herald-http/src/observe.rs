//! One log line per request (method, path, route, status, latency, request id), and the request
//! id on every response and problem document. Server errors log their cause chain here. The
//! request's span is the root of its trace (or continues the caller's `traceparent`).

use std::time::Instant;

use std::sync::Arc;

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use herald_core::{
    error::ApiError,
    metrics::{Metrics, RequestLabels, RouteLabels},
    trace,
    trace::TRACEPARENT_HEADER,
};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::problem;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Middleware: assigns or accepts a request id, logs the request when it completes and counts
/// it in the metrics.
pub async fn log_requests(State(metrics): State<Arc<Metrics>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_safe_id(id))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(&REQUEST_ID, value);
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    // A child of the caller's span when it sent a W3C `traceparent`.
    let parent = request.headers().get(TRACEPARENT_HEADER).and_then(|v| v.to_str().ok());
    let span = trace::child_of(parent, || {
        tracing::info_span!(
            "request",
            %request_id,
            otel.name = format!("{method} {}", route.as_deref().unwrap_or("unmatched")),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = %method,
            http.route = route.as_deref(),
            http.response.status_code = tracing::field::Empty,
        )
    });

    let mut response = next.run(request).instrument(span.clone()).await;

    if let Some(err) = response.extensions_mut().remove::<ApiError>() {
        let headers = response.headers().clone();
        response = problem::render(&err, Some(path.clone()), Some(request_id.clone()));
        for (name, value) in &headers {
            if !response.headers().contains_key(name) {
                response.headers_mut().insert(name, value.clone());
            }
        }
        if err.is_server_error() {
            span.in_scope(|| tracing::error!(error = %err.cause_chain(), "request failed"));
        }
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(&REQUEST_ID, value);
    }
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let latency_ms = elapsed * 1000.0;
    // Unmatched paths share one label, so junk requests cannot grow the metric without bound.
    let route = route.as_deref().unwrap_or("unmatched");
    metrics
        .http_requests
        .get_or_create(&RequestLabels { method: method.to_string(), route: route.to_owned(), status })
        .inc();
    metrics.http_request_seconds.get_or_create(&RouteLabels { route: route.to_owned() }).observe(elapsed);
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(%method, %path, route, status, latency_ms, "request");
        } else {
            tracing::info!(%method, %path, route, status, latency_ms, "request");
        }
    });
    response
}

/// Accept a client's request id only when it is short and plain.
fn is_safe_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}
