//! RFC 9457 problem responses: the one place an [`ApiError`] becomes HTTP.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use herald_core::error::{ApiError, ErrorCode, Problem};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An [`ApiError`] on its way out over HTTP.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(err: ApiError) -> Self {
        Self(err)
    }
}

impl HttpError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self(ApiError::new(code, detail))
    }
}

/// Renders a problem document. The request-log middleware renders it again with the request's
/// id and path (it finds the error in the response's extensions) and logs 5xx cause chains.
pub fn render(err: &ApiError, instance: Option<String>, request_id: Option<String>) -> Response {
    let status = StatusCode::from_u16(err.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&Problem::from_error(err, instance, request_id)).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if err.code() == ErrorCode::Unauthorized
        || err.code() == ErrorCode::InvalidToken
        || err.code() == ErrorCode::TokenExpired
    {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(secs) = err.retry_after_secs() {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response.extensions_mut().insert(err.clone());
    response
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        render(&self.0, None, None)
    }
}
