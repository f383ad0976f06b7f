//! `POST /api/v1/clients/bulk`: the HTTP framing of `clients.import` — an NDJSON request body,
//! streamed to the command as it arrives.

use axum::{
    Json, Router,
    extract::{Request, State},
    http::header,
    routing::post,
};
use futures::TryStreamExt as _;
use herald_core::{
    body::Body,
    command::Access,
    error::{ApiError, ErrorCode},
};
use serde_json::{Value, json};

use crate::{extract::CallOf, pace::BodyPace, peer::Peer, problem::HttpError, state::AppState};

/// The bulk import route.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/clients/bulk", post(import))
}

async fn import(
    State(state): State<AppState>,
    CallOf(mut cx): CallOf,
    Peer(peer): Peer,
    request: Request,
) -> Result<Json<Value>, HttpError> {
    Access::Admin.check(&cx.caller)?;
    cx.peer = peer;
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !matches!(essence.as_str(), "application/x-ndjson" | "application/ndjson" | "application/jsonl") {
        return Err(HttpError::new(
            ErrorCode::UnsupportedMediaType,
            "send clients as application/x-ndjson: one JSON object per line",
        ));
    }
    // An import may be long: held to a least rate, not a deadline.
    let pace = BodyPace::of(&request);
    pace.stream();
    let chunks = request.into_body().into_data_stream().map_err(move |e| {
        pace.error(ApiError::new(ErrorCode::MalformedRequest, format!("the request body could not be read: {e}")))
    });
    let answer = state.herald.call_body(cx, "clients.import", json!({}), Some(Body::new(chunks))).await?;
    Ok(Json(answer.output))
}
