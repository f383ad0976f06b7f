//! Commands over NATS request-reply: every command in the registry answers on
//! `<namespace>.cmd.<command name>` with the same validation, errors and access rules as REST.
//!
//! A request's body is the command's JSON input (an empty body means `{}`), except for a command
//! that reads a byte stream (`attachments.upload`, `clients.import`): its body is the bytes, up to
//! the server's `max_payload`, and its JSON input is the `Herald-Input` header. A command that
//! answers with bytes (`attachments.download`) replies with them as the body and its JSON output
//! in the `Herald-Output` header (413 when they exceed `max_payload`: ask for a range). The NATS header
//! `Authorization: Bearer <token>` names the caller; as over HTTP, a present but invalid token is
//! refused even on public commands. The reply body is `{"ok": true, "output": …}` or
//! `{"ok": false, "error": <RFC 9457 problem document>}`, and the reply header `Herald-Status`
//! carries the HTTP status REST would have answered with. Every Herald process joins one queue
//! group per namespace, so each request is answered by exactly one of them; a process that hosts
//! only some command groups (`HERALD_COMMANDS`) subscribes to those groups' subjects only, and
//! reaches the others through [`super::forward`]. A request's `traceparent` header makes its
//! server span continue the caller's trace. The same commands answer Herald's own forwarded calls
//! on `<namespace>.fwd.<command>` (queue group `<namespace>.fwd`), sealed when the deployment has a
//! signing key (see [`super::forwarded`]); this public API is not: it needs NATS's own TLS and
//! permissions.

use std::{
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::{Client, HeaderMap, Message, Subscriber, client::PublishErrorKind};
use futures::{FutureExt as _, StreamExt as _};
use herald_core::{
    Herald,
    body::{Answer, BodyUse},
    broker::BrokerError,
    error::{ApiError, ErrorCode, Problem},
    health::ReadyFlag,
    trace,
    trace::TRACEPARENT_HEADER,
};
use serde::Serialize;
use serde_json::Value;
use tokio::{sync::Semaphore, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument as _;

use super::forwarded::{Answering, ForwardHost, ForwardSealing, Inbound, fwd_subject};
use crate::{error::unavailable, names::check_namespace};

/// The namespace subjects live under unless configured otherwise.
pub const DEFAULT_NAMESPACE: &str = "herald";

/// How many requests one process runs at once; further requests wait in the subscription.
pub const MAX_IN_FLIGHT: usize = 64;

/// The reply header carrying the HTTP status of the answer (`200`, `422`, …).
pub const STATUS_HEADER: &str = "Herald-Status";

/// The request header carrying the JSON input of a command whose body is a byte stream.
pub const INPUT_HEADER: &str = "Herald-Input";

/// The reply header carrying the JSON output of a command that answers with bytes.
pub const OUTPUT_HEADER: &str = "Herald-Output";

/// Room left for headers when a reply's bytes are measured against `max_payload`.
const HEADER_ROOM: usize = 4096;

/// JSON with every non-ASCII character escaped (`\u00e9`), as a NATS header value must be.
pub(crate) fn ascii_json(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// How long connecting, and confirming the unsubscribe at shutdown, may take.
const NATS_TIMEOUT: Duration = Duration::from_secs(5);

/// The first value of the header `name` (any case), if the message has one.
pub(crate) fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    let headers = headers?;
    let (_, values) = headers.iter().find(|(key, _)| AsRef::<str>::as_ref(*key).eq_ignore_ascii_case(name))?;
    values.first().map(|v| v.as_str())
}

/// The subject a command answers on: `<namespace>.cmd.<command>`.
pub fn subject(namespace: &str, command: &str) -> String {
    format!("{namespace}.cmd.{command}")
}

/// Connects to NATS at `url` and answers every command of `herald` on
/// `<namespace>.cmd.<command>`, and the calls other Herald processes forward here on
/// `<namespace>.fwd.<command>` as `sealing` says, until `shutdown` is cancelled; then it unsubscribes, answers what
/// the server had already routed to it, waits for in-flight requests and flushes their replies.
///
/// Fails early, with [`BrokerError::Unavailable`], when NATS cannot be reached or refuses the
/// subscription; once serving, async-nats reconnects and re-subscribes by itself. `ready` is set
/// once the server has the subscription (requests sent from then on are answered) and cleared
/// while the connection is down.
pub async fn serve(
    url: &str,
    namespace: &str,
    herald: Arc<Herald>,
    sealing: &ForwardSealing,
    ready: ReadyFlag,
    shutdown: CancellationToken,
) -> Result<(), BrokerError> {
    check_namespace(namespace)?;
    let serving = Arc::new(AtomicBool::new(false));
    // Credentials in the URL become connect options, as for the broker's own connection.
    let (address, options) = crate::nats::connect_options(url)?;
    let client = options
        .name(format!("herald commands {namespace}"))
        .connection_timeout(NATS_TIMEOUT)
        .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 100).min(2_000)))
        .event_callback({
            let (ready, serving) = (ready.clone(), serving.clone());
            move |event| {
                match event {
                    async_nats::Event::Disconnected => ready.set(false),
                    // A reconnect: async-nats has sent the subscriptions again by the time it
                    // says so. (The first connect is not ready before the round trip below.)
                    async_nats::Event::Connected if serving.load(Ordering::Acquire) => ready.set(true),
                    _ => {}
                }
                async move { tracing::info!(%event, "NATS command connection event") }
            }
        })
        .connect(address.as_str())
        .await
        .map_err(crate::nats::connect_error)?;
    // Only the groups this process hosts: a command it forwards must never come back to it.
    let hosted = &herald.hosting.hosted;
    let wildcards: Vec<String> =
        if hosted.is_all() { vec![">".into()] } else { hosted.groups().iter().map(|g| format!("{g}.>")).collect() };
    let mut subscribers = Vec::with_capacity(2 * wildcards.len());
    for wanted in &wildcards {
        let (public, forwarded) = (subject(namespace, wanted), fwd_subject(namespace, wanted));
        subscribers.push(client.queue_subscribe(public, format!("{namespace}.cmd")).await.map_err(unavailable)?);
        subscribers.push(client.queue_subscribe(forwarded, format!("{namespace}.fwd")).await.map_err(unavailable)?);
    }
    // `flush` only empties the socket buffer; a message to ourselves that comes back proves the
    // server has processed the subscription before it (it reads one connection in order).
    round_trip(&client).await?;
    serving.store(true, Ordering::Release);
    ready.set(true);
    tracing::info!(namespace, groups = %herald.hosting.hosted, "answering commands over NATS request-reply");
    let forwarded = ForwardHost::new(sealing, herald.services.metrics.clone());
    let (prefix, fwd_prefix) = (subject(namespace, ""), fwd_subject(namespace, ""));
    let responder = Arc::new(Responder { client: client.clone(), herald, prefix, fwd_prefix, forwarded });
    run(responder, subscribers, shutdown).await;
    if let Err(error) = client.flush().await {
        tracing::warn!(error = %crate::error::chain(&error), "could not flush the last command replies");
    }
    Ok(())
}

/// Publishes to a fresh inbox of `client` and waits for the message to come back.
async fn round_trip(client: &Client) -> Result<(), BrokerError> {
    let inbox = client.new_inbox();
    let mut probe = client.subscribe(inbox.clone()).await.map_err(unavailable)?;
    client.publish(inbox, "ready".into()).await.map_err(unavailable)?;
    let back = tokio::time::timeout(NATS_TIMEOUT, probe.next()).await;
    let _ = probe.unsubscribe().await;
    match back {
        Ok(Some(_)) => Ok(()),
        _ => Err(BrokerError::Unavailable("the NATS server did not echo the readiness probe".into())),
    }
}

/// The subscription loop: one task per request, at most [`MAX_IN_FLIGHT`] at once.
async fn run(responder: Arc<Responder>, mut subscribers: Vec<Subscriber>, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let tasks = TaskTracker::new();
    let dispatch = |message: Message| {
        let (responder, limit, tasks) = (responder.clone(), limit.clone(), tasks.clone());
        async move {
            // Waiting here leaves further requests queued in the subscription: back-pressure.
            let Ok(permit) = limit.acquire_owned().await else { return };
            tasks.spawn(async move {
                responder.answer(message).await;
                drop(permit);
            });
        }
    };
    let mut incoming = futures::stream::select_all(subscribers.iter_mut());
    loop {
        let message = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            message = incoming.next() => message,
        };
        let Some(message) = message else {
            tracing::warn!("the NATS command subscription ended");
            break;
        };
        dispatch(message).await;
    }
    drop(incoming);
    // Drain: unsubscribe, then answer what the server routed here before it saw the unsubscribe,
    // rather than leave those requesters to time out.
    for subscriber in &mut subscribers {
        if let Err(error) = subscriber.drain().await {
            tracing::warn!(error = %error, "could not unsubscribe from NATS commands");
        }
    }
    let leftovers = async {
        let mut leftovers = futures::stream::select_all(subscribers.iter_mut());
        while let Some(message) = leftovers.next().await {
            dispatch(message).await;
        }
    };
    if tokio::time::timeout(NATS_TIMEOUT, leftovers).await.is_err() {
        tracing::warn!("NATS did not confirm the unsubscribe in time; stopping anyway");
    }
    tasks.close();
    tasks.wait().await;
    tracing::info!("stopped answering commands over NATS");
}

/// Answers one request at a time; shared by every request task.
struct Responder {
    client: Client,
    herald: Arc<Herald>,
    /// `<namespace>.cmd.`, stripped from a subject to get the command name.
    prefix: String,
    /// `<namespace>.fwd.`, the same for a forwarded call.
    fwd_prefix: String,
    forwarded: ForwardHost,
}

/// The reply body.
#[derive(Serialize)]
struct Reply {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Problem>,
}

impl Reply {
    fn new(result: Result<Value, ApiError>, subject: &str) -> Self {
        match result {
            Ok(output) => Self { ok: true, output: Some(output), error: None },
            Err(err) => {
                Self { ok: false, output: None, error: Some(Problem::from_error(&err, Some(subject.into()), None)) }
            }
        }
    }
}

impl Responder {
    async fn answer(&self, message: Message) {
        let Some(reply_to) = message.reply.clone() else {
            tracing::debug!(subject = message.subject.as_str(), "ignoring a command request without a reply subject");
            return;
        };
        let started = Instant::now();
        let (message, answering) = match message.subject.clone() {
            subject if !subject.starts_with(self.fwd_prefix.as_str()) => (message, Answering::Plain),
            subject => match self.forwarded.open(message) {
                Some(Inbound::Run(message, answering)) => (message, answering),
                Some(Inbound::Busy(answering)) => return self.busy(&subject, &reply_to, answering).await,
                None => return,
            },
        };
        let subject = message.subject.as_str();
        let command = subject.strip_prefix(&self.prefix).or_else(|| subject.strip_prefix(&self.fwd_prefix));
        let command = command.unwrap_or_default();
        let parent = header(message.headers.as_ref(), TRACEPARENT_HEADER);
        let span = trace::child_of(parent, || {
            tracing::info_span!("nats command", otel.name = subject, otel.kind = "server", messaging.system = "nats")
        });
        self.respond(command, &message, &reply_to, answering, started).instrument(span).await;
    }

    /// Answers a genuine forwarded request this host cannot take now with `503`, sealed for it.
    async fn busy(&self, subject: &str, reply_to: &async_nats::Subject, answering: Answering) {
        let err = ApiError::new(ErrorCode::Unavailable, "the host is at its limit of forwarded requests");
        if let Err(error) = self.send(reply_to, 503, Reply::new(Err(err), subject), answering).await {
            tracing::warn!(subject, error = %crate::error::chain(&error), "could not send a command reply");
        }
    }

    /// Runs the request's command and sends the reply.
    async fn respond(
        &self,
        command: &str,
        message: &Message,
        reply_to: &async_nats::Subject,
        answering: Answering,
        started: Instant,
    ) {
        let subject = message.subject.as_str();
        let result = match self.call(command, message).await {
            Ok(Answer { output, body: Some(body) }) => {
                let max = self.client.server_info().max_payload.saturating_sub(HEADER_ROOM);
                body.collect(max, "a NATS reply (ask for a byte range)").await.map(|bytes| (output, Some(bytes)))
            }
            Ok(Answer { output, body: None }) => Ok((output, None)),
            Err(err) => Err(err),
        };
        let status = match &result {
            Ok(_) => 200,
            Err(err) => err.code().status(),
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        match &result {
            Err(err) if err.is_server_error() => {
                tracing::error!(subject, status, latency_ms, error = %err.cause_chain(), "NATS command failed");
            }
            Err(err) => tracing::info!(subject, status, latency_ms, code = %err.code(), "NATS command refused"),
            Ok(_) => tracing::info!(subject, status, latency_ms, "NATS command answered"),
        }
        let sent = match result {
            Ok((output, Some(bytes))) => {
                let mut headers = HeaderMap::new();
                headers.insert(STATUS_HEADER, "200");
                headers.insert(OUTPUT_HEADER, ascii_json(&output).as_str());
                self.publish(reply_to, headers, bytes, answering).await
            }
            Ok((output, None)) => self.send(reply_to, status, Reply::new(Ok(output), subject), answering).await,
            Err(err) => self.send(reply_to, status, Reply::new(Err(err), subject), answering).await,
        };
        if let Err(error) = sent {
            if error.kind() == PublishErrorKind::MaxPayloadExceeded {
                // Too big for the server's max_payload: tell the requester rather than let it time out.
                let err = ApiError::internal(error);
                tracing::error!(subject, error = %err.cause_chain(), "NATS command reply too large");
                let fallback = self.send(reply_to, 500, Reply::new(Err(err), subject), answering).await;
                if let Err(error) = fallback {
                    tracing::warn!(subject, error = %crate::error::chain(&error), "could not send a command reply");
                }
            } else {
                tracing::warn!(subject, error = %crate::error::chain(&error), "could not send a command reply");
            }
        }
    }

    /// Runs the command for the caller the headers name, with the body as input (or, for a
    /// command that reads bytes, as its bytes beside the `Herald-Input` header's input).
    async fn call(&self, command: &str, message: &Message) -> Result<Answer, ApiError> {
        // The caller first, as REST does: a bad token is refused before the body is looked at.
        let headers = message.headers.as_ref();
        let cx = self.herald.authenticate(header(headers, "authorization").map(str::as_bytes)).await?;
        let json = |raw: &[u8], what: &str| {
            if raw.is_empty() {
                return Ok(Value::Object(Default::default()));
            }
            serde_json::from_slice(raw)
                .map_err(|e| ApiError::new(ErrorCode::MalformedRequest, format!("{what} is not valid JSON: {e}")))
        };
        let takes = self.herald.commands.get(command).is_some_and(|info| info.body == BodyUse::Takes);
        let (input, body) = if takes {
            let input = json(header(headers, INPUT_HEADER).unwrap_or_default().as_bytes(), "the Herald-Input header")?;
            (input, Some(herald_core::body::Body::from_bytes(message.payload.clone())))
        } else {
            (json(&message.payload, "the body")?, None)
        };
        AssertUnwindSafe(self.herald.call_body(cx, command, input, body))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(ApiError::new(ErrorCode::Internal, "the command panicked")))
    }

    async fn send(
        &self,
        reply_to: &async_nats::Subject,
        status: u16,
        reply: Reply,
        answering: Answering,
    ) -> Result<(), async_nats::PublishError> {
        let body = match serde_json::to_vec(&reply) {
            Ok(body) => body,
            // Values and problem documents always serialise; answer something valid regardless.
            Err(error) => {
                tracing::error!(error = %error, "could not serialise a command reply");
                br#"{"ok":false,"error":{"code":"internal","status":500}}"#.to_vec()
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(STATUS_HEADER, status.to_string().as_str());
        self.publish(reply_to, headers, body.into(), answering).await
    }

    /// Publishes a reply, sealed when its request was.
    async fn publish(
        &self,
        reply_to: &async_nats::Subject,
        headers: HeaderMap,
        body: bytes::Bytes,
        answering: Answering,
    ) -> Result<(), async_nats::PublishError> {
        let (headers, body) = self.forwarded.reply(answering, reply_to.as_str(), headers, body);
        self.client.publish_with_headers(reply_to.clone(), headers, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_json_is_ascii_and_still_the_same_json() {
        let value = serde_json::json!({"file_name": "résumé 📎.pdf", "n": 1});
        let ascii = ascii_json(&value);
        assert!(ascii.is_ascii(), "{ascii}");
        assert_eq!(serde_json::from_str::<Value>(&ascii).expect("json"), value);
    }

    #[test]
    fn subjects_name_the_command_under_the_namespace() {
        assert_eq!(subject(DEFAULT_NAMESPACE, "auth.register"), "herald.cmd.auth.register");
        assert_eq!(subject("t_1", "users.me"), "t_1.cmd.users.me");
    }
}
