//! Request extraction: the caller from `Authorization`, JSON bodies and query strings as command
//! input. Every failure here is a problem response, never axum's plain-text rejection.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};
use herald_core::{
    command::Ctx,
    error::{ApiError, ErrorCode},
};
use serde_json::{Map, Value};

use crate::{pace::BodyPace, problem::HttpError, state::AppState};

/// A command call's context: anonymous without `Authorization`, a user with a valid bearer token
/// (a present but invalid token is refused outright, even on public routes), with the token it
/// presented, which the command carries if another process hosts it.
#[derive(Debug)]
pub struct CallOf(pub Ctx);

impl FromRequestParts<AppState> for CallOf {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let authorization = parts.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        Ok(Self(state.herald.authenticate(authorization).await?))
    }
}

/// A JSON request body, parsed but not yet validated.
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !json {
            return Err(HttpError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as `Content-Type: application/json`",
            ));
        }
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > state.body_limit as u64) {
            return Err(HttpError::new(ErrorCode::PayloadTooLarge, "the request body exceeds the configured limit"));
        }
        let pace = BodyPace::of(&req);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                HttpError::new(ErrorCode::PayloadTooLarge, "the request body exceeds the configured limit")
            } else {
                // Past `HERALD_HTTP_BODY_TIMEOUT`: 408, and the connection closes.
                HttpError(pace.error(ApiError::new(ErrorCode::MalformedRequest, "the request body could not be read")))
            }
        })?;
        if bytes.is_empty() {
            return Err(HttpError::new(ErrorCode::MalformedRequest, "expected a JSON body"));
        }
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| HttpError::new(ErrorCode::MalformedRequest, format!("the body is not valid JSON: {e}")))?;
        Ok(Self(value))
    }
}

/// Turns a query string into a JSON object. Values are strings, except where the command's input
/// schema says a field is an integer, number or boolean (`numeric` lists those fields).
pub fn query_object(query: Option<&str>, numeric: &[String], boolean: &[String]) -> Result<Value, HttpError> {
    let mut object = Map::new();
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (decode(key)?, decode(value)?);
        let value = if numeric.contains(&key) {
            serde_json::from_str::<serde_json::Number>(&value).map(Value::Number).unwrap_or(Value::String(value))
        } else if boolean.contains(&key) {
            value.parse::<bool>().map(Value::Bool).unwrap_or(Value::String(value))
        } else {
            Value::String(value)
        };
        if object.insert(key.clone(), value).is_some() {
            return Err(HttpError(ApiError::invalid_field(key, "is given more than once")));
        }
    }
    Ok(Value::Object(object))
}

fn decode(raw: &str) -> Result<String, HttpError> {
    let raw = raw.replace('+', " ");
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(bad_query)?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad_query())
}

fn bad_query() -> HttpError {
    HttpError::new(ErrorCode::MalformedRequest, "the query string is not valid percent-encoded UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_become_typed_objects() {
        let numeric = vec!["limit".to_owned()];
        let obj = query_object(Some("limit=20&cursor=a%2Bb&q=x+y"), &numeric, &[]).expect("parse");
        assert_eq!(obj, serde_json::json!({"limit": 20, "cursor": "a+b", "q": "x y"}));
        // A non-number stays a string, so the schema reports a type error on the field.
        assert_eq!(query_object(Some("limit=ten"), &numeric, &[]).expect("parse"), serde_json::json!({"limit": "ten"}));
        assert!(query_object(Some("limit=1&limit=2"), &numeric, &[]).is_err());
        assert!(query_object(Some("q=%ZZ"), &numeric, &[]).is_err());
        assert_eq!(query_object(None, &numeric, &[]).expect("parse"), serde_json::json!({}));
    }
}
