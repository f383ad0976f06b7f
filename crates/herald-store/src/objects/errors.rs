//! What the store's failures become: I/O errors that name what was being done and the store's
//! status, never its answer's text; and the time bound on each call.

use std::io;

use super::REQUEST_TIMEOUT;

/// An `object_store` error as an I/O error that names what was being done and, when the store
/// answered, its status. Nothing of the error's own text is kept: for an answer it holds the
/// body, and an S3 error body may quote the access key id and the signed request (with the
/// session token).
pub(super) fn store_error(what: &str, err: &object_store::Error) -> io::Error {
    use object_store::Error as E;
    let (kind, why) = match err {
        E::NotFound { .. } => (io::ErrorKind::NotFound, "not found (404)".to_owned()),
        E::PermissionDenied { .. } => (io::ErrorKind::PermissionDenied, "access denied (403)".to_owned()),
        E::Unauthenticated { .. } => (io::ErrorKind::PermissionDenied, "not authenticated (401)".to_owned()),
        E::AlreadyExists { .. } => (io::ErrorKind::AlreadyExists, "already exists (409)".to_owned()),
        E::Precondition { .. } => (io::ErrorKind::Other, "precondition failed (412)".to_owned()),
        E::NotModified { .. } => (io::ErrorKind::Other, "not modified (304)".to_owned()),
        E::InvalidPath { .. } => (io::ErrorKind::InvalidInput, "not a valid object path".to_owned()),
        E::NotSupported { .. } | E::NotImplemented { .. } => {
            (io::ErrorKind::Unsupported, "not supported by the object store".to_owned())
        }
        _ => failure(err),
    };
    io::Error::new(kind, format!("{what}: {why}"))
}

/// Why a request failed, from the transport error's kind or the status the store answered.
fn failure(err: &object_store::Error) -> (io::ErrorKind, String) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(http) = current.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            let why = match http.kind() {
                K::Connect => "could not connect to the object store",
                K::Timeout => "the object store did not answer in time",
                K::Decode => "the object store's answer could not be read",
                _ => "the request to the object store failed",
            };
            return (io::ErrorKind::Other, why.to_owned());
        }
        source = current.source();
    }
    // The status is only in the text (`… status code: 400 Bad Request: <body>`): the digits
    // after the marker, never what follows them.
    let text = err.to_string();
    let status = text.split_once("status code: ").and_then(|(_, rest)| {
        let digits = rest.get(..3).filter(|d| d.bytes().all(|b| b.is_ascii_digit()))?;
        digits.parse::<u16>().ok()
    });
    match status {
        Some(status) => {
            let kind = match status {
                404 => io::ErrorKind::NotFound,
                401 | 403 => io::ErrorKind::PermissionDenied,
                _ => io::ErrorKind::Other,
            };
            (kind, format!("the object store answered {status}"))
        }
        None => (io::ErrorKind::Other, "the object store failed the request".to_owned()),
    }
}

pub(super) fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what}: no answer from the object store within the timeout"))
}

/// `call` bounded by [`REQUEST_TIMEOUT`], its error naming `what`.
pub(super) async fn bounded<T>(
    what: impl FnOnce() -> String,
    call: impl Future<Output = object_store::Result<T>>,
) -> io::Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(store_error(&what(), &err)),
        Err(_) => Err(timed_out(&what())),
    }
}

pub(super) fn is_not_found(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound
}
