//! HTTP framing of the attachment commands: `attachments.upload` from a multipart field and
//! `attachments.download` as a (ranged) response body. The bytes never sit whole in memory:
//! chunks go from the socket through the command to the file store and back.

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures::StreamExt as _;
use herald_core::{
    body::Body as CommandBody,
    command::Access,
    commands::attachments::RangeSpec,
    error::{ApiError, ErrorCode},
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{extract::CallOf, pace::BodyPace, peer::Peer, problem::HttpError, state::AppState};

/// Multipart framing and small fields allowed on top of the largest file.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// The upload and download routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tasks/{id}/attachments", post(upload))
        .route("/api/v1/attachments/{id}/content", get(download))
}

fn id_of(raw: &str) -> Result<Uuid, HttpError> {
    raw.parse().map_err(|_| HttpError(ApiError::invalid_field("id", "must be a UUID")))
}

fn too_large(max: u64) -> HttpError {
    HttpError::new(ErrorCode::PayloadTooLarge, format!("attachments are limited to {max} bytes"))
}

async fn upload(
    State(state): State<AppState>,
    CallOf(mut cx): CallOf,
    Peer(peer): Peer,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, HttpError> {
    // Who calls, before anything of the body is looked at.
    Access::User.check(&cx.caller)?;
    cx.peer = peer;
    let task = id_of(&id)?;
    let max = state.herald.services.max_upload;
    let limit = max.saturating_add(MULTIPART_OVERHEAD);
    // Refuse a declared oversize before reading a byte of it.
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large(max));
    }
    let boundary = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
        .ok_or_else(|| HttpError::new(ErrorCode::UnsupportedMediaType, "send the file as multipart/form-data"))?;
    // A file may be large and its line slow: held to a least rate, not a deadline.
    let pace = BodyPace::of(&request);
    pace.stream();
    let constraints = multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit));
    let mut form = multer::Multipart::with_constraints(request.into_body().into_data_stream(), boundary, constraints);
    loop {
        let Some(field) = form.next_field().await.map_err(|e| HttpError(pace.error(malformed(&e, max))))? else {
            return Err(ApiError::invalid_field(
                "file",
                "is required: send the file in a multipart field named `file`",
            )
            .into());
        };
        if field.name() != Some("file") {
            continue;
        }
        let input = json!({
            "task_id": task,
            "file_name": field.file_name(),
            "content_type": field.content_type().map(ToString::to_string),
        });
        let pace = pace.clone();
        let body = CommandBody::new(field.map(move |chunk| chunk.map_err(|e| pace.error(malformed(&e, max)))));
        let answer = state.herald.call_body(cx, "attachments.upload", input, Some(body)).await?;
        return Ok((StatusCode::CREATED, Json(answer.output)).into_response());
    }
}

fn malformed(e: &multer::Error, max: u64) -> ApiError {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => too_large(max).0,
        other => ApiError::new(ErrorCode::MalformedRequest, format!("the multipart body could not be read: {other}")),
    }
}

async fn download(
    State(state): State<AppState>,
    CallOf(mut cx): CallOf,
    Peer(peer): Peer,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    cx.peer = peer;
    let id = id_of(&id)?;
    // A `Range` that does not parse, or names several ranges, is ignored (RFC 9110): the whole
    // content is sent.
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).filter(|v| RangeSpec::parse(v).is_some());
    let input = json!({"id": id, "range": range});
    let answer = match state.herald.call_body(cx.clone(), "attachments.download", input, None).await {
        Ok(answer) => answer,
        Err(err) if err.code() == ErrorCode::RangeNotSatisfiable => {
            let mut response = HttpError(err).into_response();
            // `Content-Range: bytes */<size>`: the size from the command's own answer.
            let whole = state.herald.call_body(cx, "attachments.download", json!({"id": id}), None).await;
            let size = whole.ok().and_then(|a| a.output["attachment"]["size"].as_u64());
            if let Some(value) = size.and_then(|s| HeaderValue::from_str(&format!("bytes */{s}")).ok()) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
        Err(err) => return Err(err.into()),
    };
    let content = &answer.output;
    let a = &content["attachment"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let etag = format!("\"{}\"", text(&a["sha256"]));
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let (size, start, length) = (
        a["size"].as_u64().unwrap_or(0),
        content["start"].as_u64().unwrap_or(0),
        content["length"].as_u64().unwrap_or(0),
    );
    let partial = content["partial"].as_bool().unwrap_or(false);
    // A read that fails midway cuts the response short: the client sees fewer bytes than promised.
    let body = answer.body.map_or_else(Body::empty, |body| {
        Body::from_stream(body.map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string()))))
    });
    let mut response = Response::new(body);
    *response.status_mut() = if partial { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    let h = response.headers_mut();
    let content_type = HeaderValue::from_str(&text(&a["content_type"]))
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&content_disposition(&text(&a["file_name"]))) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    if partial && let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + length - 1)) {
        h.insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

/// `attachment` with an ASCII fallback name and the exact name in RFC 8187 form.
fn content_disposition(name: &str) -> String {
    let fallback: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_are_safe() {
        assert_eq!(content_disposition("a.txt"), "attachment; filename=\"a.txt\"; filename*=UTF-8''a.txt");
        let evil = content_disposition("x\"; filename=evil.exe\r\n.txt");
        assert!(!evil.contains('\r') && !evil.contains('\n'));
        assert!(evil.starts_with("attachment; filename=\"x_; filename=evil.exe__.txt\""), "{evil}");
        assert!(content_disposition("résumé.pdf").ends_with("filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"));
    }
}
