//! Commands this process does not host, forwarded over NATS request-reply to the process that
//! does: the same subject, headers and body a NATS client would send (see [`super::commands`]),
//! with the caller's own bearer token, so the host authenticates the caller itself.

use std::time::Duration;

use async_nats::{Client, HeaderMap, RequestErrorKind};
use async_trait::async_trait;
use herald_core::{
    body::{Answer, Body},
    broker::BrokerError,
    command::Ctx,
    error::{ApiError, ErrorCode, Problem},
    hosting::{Forward, group_of},
    trace,
    wire::TRACEPARENT_HEADER,
};
use serde::Deserialize;
use serde_json::Value;

use super::commands::{INPUT_HEADER, OUTPUT_HEADER, ascii_json, header, subject};
use crate::check_namespace;

/// The reply body of [`super::commands`].
#[derive(Deserialize)]
struct Reply {
    ok: bool,
    /// Absent or `null` for a command that answers nothing.
    #[serde(default)]
    output: Value,
    #[serde(default)]
    error: Option<Problem>,
}

/// Forwards commands over one NATS connection; cheap to share.
#[derive(Debug, Clone)]
pub struct NatsForward {
    client: Client,
    namespace: String,
    timeout: Duration,
}

impl NatsForward {
    /// Connects to NATS at `url` (credentials in the URL as for the broker). A server that is not
    /// up yet is connected to in the background: until then forwarded commands are `unavailable`.
    pub async fn connect(url: &str, namespace: &str, timeout: Duration) -> Result<Self, BrokerError> {
        check_namespace(namespace)?;
        let (address, options) = super::connect_options(url)?;
        let client = options
            .name(format!("herald forward {namespace}"))
            .retry_on_initial_connect()
            .request_timeout(Some(timeout))
            .connect(address.as_str())
            .await
            .map_err(super::connect_error)?;
        Ok(Self { client, namespace: namespace.to_owned(), timeout })
    }

    fn unavailable(&self, command: &str, why: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::Unavailable, format!("the {} commands are unavailable: {why}", group_of(command)))
    }
}

#[async_trait]
impl Forward for NatsForward {
    async fn forward(&self, command: &str, cx: &Ctx, input: Value, body: Option<Body>) -> Result<Answer, ApiError> {
        let max = self.client.server_info().max_payload;
        let mut headers = HeaderMap::new();
        // A byte stream travels as the payload, up to what one NATS message may carry, with the
        // JSON input in a header, as a NATS client would send it.
        let payload = match body {
            Some(body) => {
                headers.insert(INPUT_HEADER, ascii_json(&input).as_str());
                body.collect(max.saturating_sub(4096), "a forwarded command").await?
            }
            None => serde_json::to_vec(&input).map_err(ApiError::internal)?.into(),
        };
        if max > 0 && payload.len() > max {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the input is larger than the {max} bytes a forwarded command may carry"),
            ));
        }
        if let Some(bearer) = &cx.bearer {
            headers.insert("Authorization", bearer.header_value().as_str());
        }
        if let Some(parent) = trace::of(&tracing::Span::current()) {
            headers.insert(TRACEPARENT_HEADER, parent.as_str());
        }
        let request = async_nats::Request::new().payload(payload).headers(headers).timeout(Some(self.timeout));
        let answer = match self.client.send_request(subject(&self.namespace, command), request).await {
            Ok(answer) => answer,
            Err(err) => {
                let why = match err.kind() {
                    RequestErrorKind::NoResponders => "no running process hosts them".to_owned(),
                    RequestErrorKind::TimedOut => {
                        format!("their host did not answer within {} ms", self.timeout.as_millis())
                    }
                    RequestErrorKind::MaxPayloadExceeded => {
                        return Err(ApiError::new(
                            ErrorCode::PayloadTooLarge,
                            "the input is larger than a forwarded command may carry",
                        ));
                    }
                    RequestErrorKind::InvalidSubject | RequestErrorKind::Other => {
                        format!("NATS refused the request ({err})")
                    }
                };
                tracing::warn!(command, %why, "a forwarded command went unanswered");
                return Err(self.unavailable(command, why));
            }
        };
        if let Some(output) = header(answer.headers.as_ref(), OUTPUT_HEADER) {
            let output = serde_json::from_str(output).map_err(|e| {
                ApiError::internal(std::io::Error::other(format!("an unreadable forwarded output header: {e}")))
            })?;
            return Ok(Answer { output, body: Some(Body::from_bytes(answer.payload)) });
        }
        let reply: Reply = serde_json::from_slice(&answer.payload)
            .map_err(|e| ApiError::internal(std::io::Error::other(format!("an unreadable forwarded answer: {e}"))))?;
        match reply {
            Reply { ok: true, output, .. } => Ok(Answer::json(output)),
            Reply { ok: false, error: Some(problem), .. } => Err(ApiError::from_problem(problem)),
            _ => Err(ApiError::internal(std::io::Error::other("a forwarded answer with neither output nor error"))),
        }
    }
}
