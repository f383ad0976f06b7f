//! The one error catalogue: every error a client can see, with its stable `code`, status and title.
//!
//! Transports convert an [`ApiError`] once (HTTP: RFC 9457 problem+json; later gRPC and socket
//! acks); nothing else decides what a client is told.

use std::{error::Error as StdError, fmt, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! error_codes {
    ($($variant:ident => ($status:literal, $code:literal, $title:literal)),* $(,)?) => {
        /// A stable, snake_case error code. Clients match on it; it never changes meaning.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant),* }

        impl ErrorCode {
            /// Every code, in catalogue order (documentation and tests walk it).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as clients see it.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code),* }
            }

            /// The code named `name` as clients see it, if the catalogue has one.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($code => Some(ErrorCode::$variant),)* _ => None }
            }

            /// The HTTP status this code is answered with.
            pub fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status),* }
            }

            /// A short, human summary of the problem type (RFC 9457 `title`).
            pub fn title(self) -> &'static str {
                match self { $(ErrorCode::$variant => $title),* }
            }
        }
    };
}

error_codes! {
    MalformedRequest => (400, "malformed_request", "The request could not be parsed"),
    Unauthorized => (401, "unauthorized", "Authentication is required"),
    InvalidToken => (401, "invalid_token", "The access token is not valid"),
    TokenExpired => (401, "token_expired", "The access token has expired"),
    AccountGone => (401, "account_gone", "The account was deleted"),
    InvalidCredentials => (401, "invalid_credentials", "Email or password is wrong"),
    Forbidden => (403, "forbidden", "This action is not allowed for your role"),
    NotFound => (404, "not_found", "The resource does not exist"),
    MethodNotAllowed => (405, "method_not_allowed", "The method is not allowed on this resource"),
    RequestTimeout => (408, "request_timeout", "The request's body did not arrive in time"),
    Conflict => (409, "conflict", "The request conflicts with the current state"),
    EmailTaken => (409, "email_taken", "The email address is already registered"),
    DateBusy => (409, "date_busy", "Another event of yours overlaps this time"),
    LastAdmin => (409, "last_admin", "Herald would be left without an administrator"),
    IdempotencyConflict => (409, "idempotency_conflict", "The idempotency key was used for a different request"),
    PreconditionFailed => (412, "precondition_failed", "The resource has changed since it was read"),
    PayloadTooLarge => (413, "payload_too_large", "The request body is too large"),
    RangeNotSatisfiable => (416, "range_not_satisfiable", "The requested range is outside the content"),
    UnsupportedMediaType => (415, "unsupported_media_type", "The request body has an unsupported content type"),
    ValidationFailed => (422, "validation_failed", "The input is not valid"),
    TooManyRequests => (429, "too_many_requests", "Too many requests; retry after the time given"),
    TooManySessions => (429, "too_many_sessions", "This user has as many open sessions as allowed"),
    TooManySubscriptions => (429, "too_many_subscriptions", "This session has as many subscriptions as allowed"),
    Internal => (500, "internal", "Internal server error"),
    Unavailable => (503, "unavailable", "A backend is unavailable; retry later"),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One invalid input field: `field` is a dotted path into the input (`filter.tags.0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// Dotted path of the offending field; empty for the input as a whole.
    #[schema(example = "email")]
    pub field: String,
    /// What is wrong with it.
    #[schema(example = "not a valid email address")]
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// The most field errors one answer lists: a validator stops once it has found one more (so an
/// object of a hundred thousand unknown keys costs no more to refuse than one bad field), and the
/// answer says `errors_truncated`.
pub const MAX_FIELD_ERRORS: usize = 20;

/// An error every transport can show a client. Cheap to clone; the cause is kept for logs only.
#[derive(Clone)]
pub struct ApiError {
    code: ErrorCode,
    detail: String,
    errors: Vec<FieldError>,
    /// More fields failed than `errors` lists.
    errors_truncated: bool,
    /// For `too_many_requests`: how long the client should wait (HTTP `Retry-After`).
    retry_after: Option<Duration>,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl ApiError {
    /// An error with a code and a detail for the client.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            errors_truncated: false,
            retry_after: None,
            source: None,
        }
    }

    /// `too_many_requests`, to be retried after `wait` (rounded up to whole seconds for clients).
    pub fn too_many_requests(detail: impl Into<String>, wait: Duration) -> Self {
        let mut err = Self::new(ErrorCode::TooManyRequests, detail);
        err.retry_after = Some(wait);
        err
    }

    /// How long the client should wait before trying again, in whole seconds (at least 1).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|wait| (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
    }

    /// `validation_failed` with one error per field: the first [`MAX_FIELD_ERRORS`] of them, and
    /// `errors_truncated` when there were more.
    pub fn validation(mut errors: Vec<FieldError>) -> Self {
        let mut err = Self::new(ErrorCode::ValidationFailed, "the input failed validation");
        err.errors_truncated = errors.len() > MAX_FIELD_ERRORS;
        errors.truncate(MAX_FIELD_ERRORS);
        err.errors = errors;
        err
    }

    /// `validation_failed` for one field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    /// A 500 whose cause goes to the log and never to the client.
    pub fn internal(source: impl StdError + Send + Sync + 'static) -> Self {
        Self::new(ErrorCode::Internal, "").with_source(source)
    }

    /// Attach the underlying cause (logged by the transport, never shown for 5xx).
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The detail a client may see: empty for server errors, whose text stays in the log.
    pub fn public_detail(&self) -> &str {
        if self.is_server_error() { "" } else { &self.detail }
    }

    pub fn field_errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// More fields failed than [`ApiError::field_errors`] lists.
    pub fn errors_truncated(&self) -> bool {
        self.errors_truncated
    }

    pub fn is_server_error(&self) -> bool {
        self.code.status() >= 500
    }

    /// The full cause chain, for logs.
    pub fn cause_chain(&self) -> String {
        let mut out = format!("{}: {}", self.code, self.detail);
        let mut next: Option<&(dyn StdError + 'static)> =
            self.source.as_deref().map(|e| e as &(dyn StdError + 'static));
        while let Some(err) = next {
            out.push_str(": ");
            out.push_str(&err.to_string());
            next = err.source();
        }
        out
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("code", &self.code)
            .field("detail", &self.detail)
            .field("errors", &self.errors)
            .field("errors_truncated", &self.errors_truncated)
            .field("retry_after", &self.retry_after)
            .field("source", &self.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cause_chain())
    }
}

impl StdError for ApiError {}

/// The RFC 9457 problem document, as the OpenAPI spec describes it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// URI reference naming the problem type: `urn:herald:problem:<code>`.
    #[serde(rename = "type")]
    #[schema(example = "urn:herald:problem:validation_failed")]
    pub kind: String,
    #[schema(example = "The input is not valid")]
    pub title: String,
    #[schema(example = 422)]
    pub status: u16,
    /// Stable snake_case code from the error catalogue.
    #[schema(example = "validation_failed")]
    pub code: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schema(example = "the input failed validation")]
    pub detail: String,
    /// The request path this problem occurred on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Correlates the answer with server logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Field errors, for `validation_failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// More fields failed than `errors` lists (it lists at most 20); absent when it lists all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub errors_truncated: bool,
    /// Seconds to wait before retrying, for `too_many_requests` (also the `Retry-After` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 12)]
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// The error another Herald process answered with, as its problem document tells it: the same
    /// code, detail, field errors and retry hint, so a forwarded command fails as a local one
    /// would. A code this build does not know is an internal error.
    pub fn from_problem(problem: Problem) -> Self {
        let Some(code) = ErrorCode::from_name(&problem.code) else {
            return Self::internal(std::io::Error::other(format!(
                "a remote answer with the unknown code {:?} (status {})",
                problem.code, problem.status
            )));
        };
        Self {
            code,
            detail: problem.detail,
            errors: problem.errors,
            errors_truncated: problem.errors_truncated,
            retry_after: problem.retry_after.map(Duration::from_secs),
            source: None,
        }
    }
}

impl Problem {
    pub fn from_error(err: &ApiError, instance: Option<String>, request_id: Option<String>) -> Self {
        let code = err.code();
        Self {
            kind: format!("urn:herald:problem:{}", code.as_str()),
            title: code.title().to_owned(),
            status: code.status(),
            code: code.as_str().to_owned(),
            detail: err.public_detail().to_owned(),
            instance,
            request_id,
            errors: err.field_errors().to_vec(),
            errors_truncated: err.errors_truncated(),
            retry_after: err.retry_after_secs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case_and_4xx_or_5xx() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
            assert!((400..600).contains(&code.status()), "{s}");
        }
    }

    #[test]
    fn server_errors_hide_their_detail_but_keep_the_chain() {
        let io = std::io::Error::other("disk on fire at /secret/path");
        let err = ApiError::internal(io);
        assert_eq!(err.public_detail(), "");
        assert!(err.cause_chain().contains("disk on fire"));
        let problem = Problem::from_error(&err, None, None);
        let body = serde_json::to_string(&problem).expect("serialize");
        assert!(!body.contains("secret"), "{body}");
    }
}
