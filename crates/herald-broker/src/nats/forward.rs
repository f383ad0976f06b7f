//! Commands this process does not host, forwarded over NATS request-reply to the process that
//! does, on `<namespace>.fwd.<command>`: the headers and body a NATS client would send to the
//! public `<namespace>.cmd.<command>` (see [`super::commands`]), with the caller's own bearer
//! token, so the host authenticates the caller itself. With a signing key they travel sealed
//! (see [`super::forwarded`]): the request goes out with a reply subject of its own, and only a
//! reply that opens for this request's id is taken; any other message on that inbox is dropped
//! (counted as `bad_reply`) and the wait goes on until the real reply or the timeout.

use std::{sync::Arc, time::Duration};

use async_nats::{Client, HeaderMap, Message, StatusCode, client::PublishErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use herald_core::{
    body::{Answer, Body},
    broker::BrokerError,
    command::Ctx,
    command_group::group_of,
    error::{ApiError, ErrorCode, Problem},
    forward::Forward,
    metrics::Metrics,
    trace,
    trace::TRACEPARENT_HEADER,
};
use serde::Deserialize;
use serde_json::Value;

use super::{
    commands::{INPUT_HEADER, OUTPUT_HEADER, ascii_json, header},
    forwarded::{ForwardSealing, count, fwd_subject},
    seal::{ForwardKey, RequestId, Way, now_ms},
};
use crate::names::check_namespace;

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

/// The reason label of a reply that does not open for its request.
const BAD_REPLY: &str = "bad_reply";

/// Why a forwarded request has no answer.
enum Failure {
    /// Larger than one NATS message may carry.
    TooLarge,
    /// No host, no answer in time, or no connection: why, for the `unavailable` error.
    Unanswered(String),
}

/// Forwards commands over one NATS connection; cheap to share.
#[derive(Debug, Clone)]
pub struct NatsForward {
    client: Client,
    namespace: String,
    timeout: Duration,
    key: Option<Arc<ForwardKey>>,
    metrics: Arc<Metrics>,
}

impl NatsForward {
    /// Connects to NATS at `url` (credentials in the URL as for the broker). A server that is not
    /// up yet is connected to in the background: until then forwarded commands are `unavailable`.
    /// Replies that do not open are counted in `metrics`.
    pub async fn connect(
        url: &str,
        namespace: &str,
        timeout: Duration,
        sealing: &ForwardSealing,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BrokerError> {
        check_namespace(namespace)?;
        let (address, options) = super::connect_options(url)?;
        let client = options
            .name(format!("herald forward {namespace}"))
            .retry_on_initial_connect()
            .request_timeout(Some(timeout))
            .connect(address.as_str())
            .await
            .map_err(super::connect_error)?;
        count(&metrics, BAD_REPLY, 0);
        Ok(Self { client, namespace: namespace.to_owned(), timeout, key: sealing.key.clone(), metrics })
    }

    /// Sends one request on the command's forwarding subject, from an inbox of its own, and waits
    /// for its reply: the reply's headers and payload, opened when sealed.
    async fn exchange(&self, command: &str, headers: HeaderMap, payload: Bytes) -> Result<(HeaderMap, Bytes), Failure> {
        let subject = fwd_subject(&self.namespace, command);
        let inbox = self.client.new_inbox();
        let refused = |e: &dyn std::fmt::Display| Failure::Unanswered(format!("NATS refused the request ({e})"));
        let mut replies = self.client.subscribe(inbox.clone()).await.map_err(|e| refused(&e))?;
        let sealed = self.key.as_ref().map(|key| (key, key.request_id()));
        let (headers, payload) = match sealed {
            Some((key, id)) => {
                let envelope = key.seal(Way::Request, &subject, &inbox, id, now_ms(), &headers, &payload);
                (HeaderMap::new(), envelope)
            }
            None => (headers, payload),
        };
        self.client.publish_with_reply_and_headers(subject, inbox.clone(), headers, payload).await.map_err(|e| {
            if e.kind() == PublishErrorKind::MaxPayloadExceeded { Failure::TooLarge } else { refused(&e) }
        })?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let message = match tokio::time::timeout_at(deadline, replies.next()).await {
                Ok(Some(message)) => message,
                Ok(None) => return Err(Failure::Unanswered("the NATS connection closed".into())),
                Err(_) => {
                    let why = format!("their host did not answer within {} ms", self.timeout.as_millis());
                    return Err(Failure::Unanswered(why));
                }
            };
            // The server's own answer when nothing subscribes to the subject. It cannot be
            // authenticated; someone who could forge it could as well take the request away.
            if message.status == Some(StatusCode::NO_RESPONDERS) {
                return Err(Failure::Unanswered("no running process hosts them".into()));
            }
            if let Some(answer) = self.open(&inbox, sealed.map(|(_, id)| id), message) {
                return Ok(answer);
            }
        }
    }

    /// A reply's headers and payload; `None` for a sealed request's reply that does not open for
    /// its id, which is dropped and counted.
    fn open(&self, inbox: &str, id: Option<RequestId>, message: Message) -> Option<(HeaderMap, Bytes)> {
        let (Some(key), Some(id)) = (&self.key, id) else {
            return Some((message.headers.unwrap_or_default(), message.payload));
        };
        match key.open(Way::Reply, inbox, "", &message.payload) {
            Ok(opened) if opened.id == id => Some((opened.headers, opened.payload)),
            _ => {
                tracing::warn!(reason = BAD_REPLY, "dropping a forwarded command reply not sealed for its request");
                count(&self.metrics, BAD_REPLY, 1);
                None
            }
        }
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
        let (headers, payload) = match self.exchange(command, headers, payload).await {
            Ok(answer) => answer,
            Err(Failure::TooLarge) => {
                return Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "the input is larger than a forwarded command may carry",
                ));
            }
            Err(Failure::Unanswered(why)) => {
                tracing::warn!(command, %why, "a forwarded command went unanswered");
                return Err(self.unavailable(command, why));
            }
        };
        if let Some(output) = header(Some(&headers), OUTPUT_HEADER) {
            let output = serde_json::from_str(output).map_err(|e| {
                ApiError::internal(std::io::Error::other(format!("an unreadable forwarded output header: {e}")))
            })?;
            return Ok(Answer { output, body: Some(Body::from_bytes(payload)) });
        }
        let reply: Reply = serde_json::from_slice(&payload)
            .map_err(|e| ApiError::internal(std::io::Error::other(format!("an unreadable forwarded answer: {e}"))))?;
        match reply {
            Reply { ok: true, output, .. } => Ok(Answer::json(output)),
            Reply { ok: false, error: Some(problem), .. } => Err(ApiError::from_problem(problem)),
            _ => Err(ApiError::internal(std::io::Error::other("a forwarded answer with neither output nor error"))),
        }
    }
}
