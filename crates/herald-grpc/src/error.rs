//! The one conversion of an [`ApiError`] into a gRPC [`Status`].
//!
//! The gRPC code follows the HTTP status REST answers with, so every catalogue code (including
//! ones added later) has one: 400, 415 and 422 are `INVALID_ARGUMENT`; 401 `UNAUTHENTICATED`;
//! 403 `PERMISSION_DENIED`; 404 `NOT_FOUND`; 405 `UNIMPLEMENTED`; 409 (`conflict`,
//! `email_taken`, `date_busy`) `ALREADY_EXISTS`, because the answer to it is different input
//! (another time slot, another address), never a retry; 412 `FAILED_PRECONDITION`; 413
//! `RESOURCE_EXHAUSTED`; 416 `OUT_OF_RANGE`; 503 `UNAVAILABLE`; any other 5xx `INTERNAL`.
//!
//! Every status carries a `google.rpc.ErrorInfo` whose `reason` is the stable Herald code
//! (`date_busy`), domain `herald`; invalid input also carries a `google.rpc.BadRequest` with one
//! field violation per field error, the field named as in the command's JSON input (which is
//! the proto field name). Server errors say nothing but their title; their cause is logged.

use std::collections::HashMap;

use herald_core::error::ApiError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt as _};

/// The `google.rpc.ErrorInfo` domain of Herald's error codes.
pub const ERROR_DOMAIN: &str = "herald";

/// An [`ApiError`] on its way to a gRPC client (`impl From<GrpcError> for Status`).
///
/// A newtype because neither `ApiError` nor `Status` belongs to this crate; `?` turns an
/// `ApiError` into it.
#[derive(Debug, Clone)]
pub struct GrpcError(pub ApiError);

impl From<ApiError> for GrpcError {
    fn from(err: ApiError) -> Self {
        Self(err)
    }
}

/// The gRPC code a Herald error is answered with (see the module documentation).
pub fn grpc_code(err: &ApiError) -> Code {
    match err.code().status() {
        400 | 415 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        405 => Code::Unimplemented,
        408 => Code::DeadlineExceeded,
        409 => Code::AlreadyExists,
        412 => Code::FailedPrecondition,
        413 | 429 => Code::ResourceExhausted,
        416 => Code::OutOfRange,
        503 => Code::Unavailable,
        400..=499 => Code::InvalidArgument,
        _ => Code::Internal,
    }
}

impl From<GrpcError> for Status {
    fn from(GrpcError(err): GrpcError) -> Self {
        let code = err.code();
        let message = match err.public_detail() {
            "" => code.title(),
            detail => detail,
        };
        // An answer that lists only the first field errors says so, as REST's `errors_truncated`.
        let metadata: HashMap<String, String> =
            err.errors_truncated().then(|| ("errors_truncated".to_owned(), "true".to_owned())).into_iter().collect();
        let mut details = ErrorDetails::with_error_info(code.as_str(), ERROR_DOMAIN, metadata);
        if !err.field_errors().is_empty() {
            let violations: Vec<FieldViolation> =
                err.field_errors().iter().map(|e| FieldViolation::new(e.field.clone(), e.message.clone())).collect();
            details.set_bad_request(violations);
        }
        if let Some(secs) = err.retry_after_secs() {
            details.set_retry_info(Some(std::time::Duration::from_secs(secs)));
        }
        Status::with_error_details(grpc_code(&err), message, details)
    }
}

#[cfg(test)]
mod tests {
    use herald_core::error::{ErrorCode, FieldError};

    use super::*;

    fn status(err: ApiError) -> Status {
        GrpcError(err).into()
    }

    #[test]
    fn every_catalogue_code_has_a_grpc_code() {
        for &code in ErrorCode::ALL {
            let grpc = grpc_code(&ApiError::new(code, "x"));
            assert_ne!(grpc, Code::Ok, "{code}");
            assert_ne!(grpc, Code::Unknown, "{code}");
            let expected_server = code.status() >= 500;
            assert_eq!(matches!(grpc, Code::Internal | Code::Unavailable), expected_server, "{code}");
        }
    }

    #[test]
    fn codes_map_as_documented() {
        let cases = [
            (ErrorCode::ValidationFailed, Code::InvalidArgument),
            (ErrorCode::MalformedRequest, Code::InvalidArgument),
            (ErrorCode::NotFound, Code::NotFound),
            (ErrorCode::Conflict, Code::AlreadyExists),
            (ErrorCode::EmailTaken, Code::AlreadyExists),
            (ErrorCode::Unauthorized, Code::Unauthenticated),
            (ErrorCode::InvalidToken, Code::Unauthenticated),
            (ErrorCode::TokenExpired, Code::Unauthenticated),
            (ErrorCode::Forbidden, Code::PermissionDenied),
            (ErrorCode::PreconditionFailed, Code::FailedPrecondition),
            (ErrorCode::Unavailable, Code::Unavailable),
            (ErrorCode::Internal, Code::Internal),
        ];
        for (code, grpc) in cases {
            assert_eq!(grpc_code(&ApiError::new(code, "x")), grpc, "{code}");
        }
    }

    #[test]
    fn a_date_busy_like_conflict_is_already_exists() {
        // Whatever the exact code, a 409 means the request conflicts with what exists.
        let conflict = ErrorCode::ALL.iter().filter(|c| c.status() == 409);
        for &code in conflict {
            let status = status(ApiError::new(code, "busy"));
            assert_eq!(status.code(), Code::AlreadyExists, "{code}");
            let info = status.get_error_details().error_info().cloned().expect("error info");
            assert_eq!(info.reason, code.as_str());
            assert_eq!(info.domain, ERROR_DOMAIN);
        }
    }

    #[test]
    fn validation_errors_carry_one_field_violation_per_field() {
        let err = ApiError::validation(vec![
            FieldError::new("duration", "must be at least 1"),
            FieldError::new("title", "must be at most 200 characters long"),
        ]);
        let status = status(err);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "the input failed validation");
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request details");
        let fields: Vec<(&str, &str)> =
            bad.field_violations.iter().map(|v| (v.field.as_str(), v.description.as_str())).collect();
        assert_eq!(fields, [("duration", "must be at least 1"), ("title", "must be at most 200 characters long")]);
        assert_eq!(details.error_info().map(|i| i.reason.as_str()), Some("validation_failed"));
    }

    #[test]
    fn a_truncated_list_of_field_errors_says_so_in_its_error_info() {
        let many = (0..herald_core::error::MAX_FIELD_ERRORS + 5).map(|i| FieldError::new(format!("k{i}"), "x"));
        let details = status(ApiError::validation(many.collect())).get_error_details();
        let listed = details.bad_request().expect("bad request details").field_violations.len();
        assert_eq!(listed, herald_core::error::MAX_FIELD_ERRORS);
        let info = details.error_info().expect("error info");
        assert_eq!(info.metadata.get("errors_truncated").map(String::as_str), Some("true"));
        let few = status(ApiError::invalid_field("title", "x")).get_error_details();
        assert!(few.error_info().expect("error info").metadata.is_empty(), "only a truncated list says so");
    }

    #[test]
    fn internal_errors_say_nothing_of_their_cause() {
        let err = ApiError::internal(std::io::Error::other("password=hunter2 at /secret/path"));
        let status = status(err);
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), ErrorCode::Internal.title());
        let body = format!("{:?}", status.details());
        assert!(!body.contains("hunter2") && !body.contains("secret"), "{body}");
        assert!(status.get_error_details().bad_request().is_none());
    }

    #[test]
    fn client_errors_keep_their_detail() {
        let status = status(ApiError::new(ErrorCode::NotFound, "no such event"));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "no such event");
    }
}
