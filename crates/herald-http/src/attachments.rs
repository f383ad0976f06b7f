//! Streamed attachment upload (multipart) and download (with single ranges). The bytes never sit
//! whole in memory: chunks go from the socket to the file store and back.

use axum::{
    Json, Router,
    body::Body,
    extract::{DefaultBodyLimit, Multipart, Path, State, multipart::MultipartRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use herald_core::{
    auth::Identity,
    command::Access,
    commands::attachments,
    error::{ApiError, ErrorCode},
    task::{AttachmentId, TaskId},
};
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use crate::{AppState, extract::CallerOf, problem::HttpError};

/// Multipart framing and small fields allowed on top of the largest file.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// The upload and download routes.
pub fn router(max_upload: u64) -> Router<AppState> {
    let body_limit = usize::try_from(max_upload.saturating_add(MULTIPART_OVERHEAD)).unwrap_or(usize::MAX);
    Router::new()
        .route(
            "/api/v1/tasks/{id}/attachments",
            post(move |state, caller, id, headers, form| upload(state, caller, id, headers, form, max_upload))
                .layer(DefaultBodyLimit::max(body_limit)),
        )
        .route("/api/v1/attachments/{id}/content", get(download))
}

fn user(caller: CallerOf) -> Result<Identity, HttpError> {
    Access::User.check(&caller.0)?;
    match caller.0 {
        herald_core::auth::Caller::User(identity) => Ok(identity),
        herald_core::auth::Caller::Anonymous => {
            Err(HttpError::new(ErrorCode::Unauthorized, "an access token is required"))
        }
    }
}

fn id_of(raw: &str) -> Result<Uuid, HttpError> {
    raw.parse().map_err(|_| HttpError(ApiError::invalid_field("id", "must be a UUID")))
}

fn too_large(max: u64) -> HttpError {
    HttpError::new(ErrorCode::PayloadTooLarge, format!("attachments are limited to {max} bytes"))
}

async fn upload(
    State(state): State<AppState>,
    caller: CallerOf,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Multipart, MultipartRejection>,
    max: u64,
) -> Result<Response, HttpError> {
    let identity = user(caller)?;
    let task = TaskId(id_of(&id)?);
    let svc = &state.herald.services;
    attachments::check_task(svc, identity, task).await?;
    // Refuse a declared oversize before reading a byte of it.
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max.saturating_add(MULTIPART_OVERHEAD)) {
        return Err(too_large(max));
    }
    let mut form = form.map_err(|e| {
        HttpError::new(
            ErrorCode::UnsupportedMediaType,
            format!("send the file as multipart/form-data: {}", e.body_text()),
        )
    })?;
    let malformed = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(max)
        } else {
            HttpError::new(
                ErrorCode::MalformedRequest,
                format!("the multipart body could not be read: {}", e.body_text()),
            )
        }
    };
    while let Some(mut field) = form.next_field().await.map_err(malformed)? {
        if field.name() != Some("file") {
            continue;
        }
        let file_name = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let mut upload = svc.files.begin_upload().await.map_err(ApiError::internal)?;
        loop {
            let chunk = match field.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    upload.abort().await;
                    return Err(malformed(e));
                }
            };
            match upload.write(&chunk).await {
                Ok(total) if total > max => {
                    upload.abort().await;
                    return Err(too_large(max));
                }
                Ok(_) => {}
                Err(e) => {
                    upload.abort().await;
                    return Err(ApiError::internal(e).into());
                }
            }
        }
        let stored = upload.finish().await.map_err(ApiError::internal)?;
        let view =
            attachments::attach(svc, identity, task, stored, file_name.as_deref(), content_type.as_deref()).await?;
        return Ok((StatusCode::CREATED, Json(view)).into_response());
    }
    Err(ApiError::invalid_field("file", "is required: send the file in a multipart field named `file`").into())
}

async fn download(
    State(state): State<AppState>,
    caller: CallerOf,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let identity = user(caller)?;
    let id = AttachmentId(id_of(&id)?);
    let requested = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(parse_range);
    let mut ranged = None;
    let opened = attachments::open(&state.herald.services, identity, id, |size| match requested {
        None => Ok(None),
        Some(spec) => match spec.resolve(size) {
            Some(range) => {
                ranged = Some(range);
                Ok(Some(range))
            }
            None => Err(ApiError::new(ErrorCode::RangeNotSatisfiable, format!("the content is {size} bytes long"))),
        },
    })
    .await;
    let download = match opened {
        Ok(download) => download,
        Err(err) if err.code() == ErrorCode::RangeNotSatisfiable => {
            let mut response = HttpError(err).into_response();
            let size =
                state.herald.services.store.attachment(identity.user_id, id).await.ok().flatten().map(|a| a.size);
            if let Some(value) = size.and_then(|s| HeaderValue::from_str(&format!("bytes */{s}")).ok()) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
        Err(err) => return Err(err.into()),
    };
    let a = &download.attachment;
    let etag = format!("\"{}\"", a.sha256);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let size = download.file.size;
    let (status, length) = match ranged {
        Some((_, len)) => (StatusCode::PARTIAL_CONTENT, len),
        None => (StatusCode::OK, size),
    };
    let mut response = Response::new(Body::from_stream(ReaderStream::new(download.file.reader)));
    *response.status_mut() = status;
    let h = response.headers_mut();
    let content_type =
        HeaderValue::from_str(&a.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&content_disposition(&a.file_name)) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Some((start, len)) = ranged
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

/// One byte range as a client asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeSpec {
    /// `bytes=a-b` or `bytes=a-`.
    From(u64, Option<u64>),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

/// Parses a single `bytes=` range. Several ranges, or a header that does not parse, are ignored
/// (the whole content is sent), as RFC 9110 allows.
fn parse_range(header: &str) -> Option<RangeSpec> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        return end.parse().ok().map(RangeSpec::Suffix);
    }
    let start: u64 = start.parse().ok()?;
    let end: Option<u64> = if end.is_empty() { None } else { Some(end.parse().ok()?) };
    if end.is_some_and(|e| e < start) {
        return None;
    }
    Some(RangeSpec::From(start, end))
}

impl RangeSpec {
    /// `(start, length)` within a content of `size` bytes, or `None` when unsatisfiable.
    fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            RangeSpec::From(start, _) if start >= size => None,
            RangeSpec::From(start, end) => {
                let last = end.map_or(size - 1, |e| e.min(size - 1));
                Some((start, last - start + 1))
            }
            RangeSpec::Suffix(0) => None,
            RangeSpec::Suffix(_) if size == 0 => None,
            RangeSpec::Suffix(n) => {
                let len = n.min(size);
                Some((size - len, len))
            }
        }
    }
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
    fn ranges_parse_and_resolve() {
        assert_eq!(parse_range("bytes=0-9").and_then(|r| r.resolve(100)), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-").and_then(|r| r.resolve(100)), Some((90, 10)));
        assert_eq!(parse_range("bytes=90-500").and_then(|r| r.resolve(100)), Some((90, 10)));
        assert_eq!(parse_range("bytes=-5").and_then(|r| r.resolve(100)), Some((95, 5)));
        assert_eq!(parse_range("bytes=-500").and_then(|r| r.resolve(100)), Some((0, 100)));
        assert_eq!(parse_range("bytes=100-").map(|r| r.resolve(100)), Some(None));
        assert_eq!(parse_range("bytes=-0").map(|r| r.resolve(100)), Some(None));
        assert_eq!(parse_range("bytes=0-1,5-6"), None);
        assert_eq!(parse_range("bytes=5-1"), None);
        assert_eq!(parse_range("items=0-1"), None);
        assert_eq!(parse_range("bytes=x-1"), None);
    }

    #[test]
    fn dispositions_are_safe() {
        assert_eq!(content_disposition("a.txt"), "attachment; filename=\"a.txt\"; filename*=UTF-8''a.txt");
        let evil = content_disposition("x\"; filename=evil.exe\r\n.txt");
        assert!(!evil.contains('\r') && !evil.contains('\n'));
        assert!(evil.starts_with("attachment; filename=\"x_; filename=evil.exe__.txt\""), "{evil}");
        assert!(content_disposition("résumé.pdf").ends_with("filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"));
    }
}
