//! The channels a sender calls: `log`, `provider` (the SMS-gateway contract), `webhook` (signed
//! POST), `email` (SMTP, see [`crate::email`]) and `realtime` (the recipient's `user:<id>`
//! channel, written by the sender through the store so that it is exactly once).

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use chrono::{DateTime, Utc};
use herald_core::{
    delivery::{Attempt, DeliveryJob, Failure, classify_http},
    net::{Destinations, Refusal},
    redact::SecretString,
};
use hmac::{Hmac, Mac};
use reqwest::header;
use sha2::Sha256;

/// The header that carries a webhook's signature: `t=<unix seconds>,v1=<hex HMAC-SHA256>`, where
/// the MAC is over `"<t>.<body>"` with the shared secret. Receivers recompute it and refuse
/// timestamps too far from their clock (replays).
pub const SIGNATURE_HEADER: &str = "Herald-Signature";

/// The SMS-style provider: `POST {url}/v1/send/{number}` with a bearer token.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Base URL, without a trailing slash.
    pub url: String,
    /// Prints as `***`.
    pub token: SecretString,
    /// Longest wait for an answer, its body included.
    pub timeout: Duration,
    /// Most bytes of an answer's body read (see [`Channels`]).
    pub answer_limit: usize,
}

/// Signed webhooks.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The HMAC key; without one, webhook deliveries fail (never go out unsigned). Prints as `***`.
    pub secret: Option<SecretString>,
    /// Longest wait for an answer, its body included.
    pub timeout: Duration,
    /// Most bytes of an answer's body read (see [`Channels`]).
    pub answer_limit: usize,
}

/// The channels that call out: the provider's client, the webhook client that connects only
/// where [`Destinations`] allows, and the SMTP transport when email is configured.
///
/// A provider's or a receiver's answer is its status: the outcome of a call is decided by it
/// alone (a 2xx is sent, whatever follows). Its body is read only so the connection can be
/// reused, and only up to `answer_limit` bytes, chunk by chunk, within the call's timeout; a
/// longer or slower body is dropped unread and its connection closed, and the outcome stands.
#[derive(Debug, Clone)]
pub struct Channels {
    /// For the operator-configured provider URL: no destination policy.
    provider_client: reqwest::Client,
    /// For user-aimed webhooks: names resolve through the destination check, no proxies.
    webhook_client: reqwest::Client,
    destinations: Destinations,
    provider: Option<ProviderConfig>,
    webhook: WebhookConfig,
    email: Option<crate::email::EmailChannel>,
}

impl Channels {
    /// The channels, with webhooks limited to what `destinations` allows.
    pub fn new(provider: Option<ProviderConfig>, webhook: WebhookConfig, destinations: Destinations) -> Self {
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(256)
        };
        let provider_client = builder().build().unwrap_or_default();
        // A proxy would connect for us, past the check; every name the client looks up goes
        // through it (addresses in URLs are checked before the request, as they bypass it).
        let webhook_client = builder()
            .no_proxy()
            .dns_resolver(CheckedResolver(destinations.clone()))
            .build()
            // Never a default client in its place: that one would connect anywhere.
            .unwrap_or_else(|e| panic!("the webhook HTTP client: {e}"));
        let provider = provider.map(|p| ProviderConfig { url: p.url.trim_end_matches('/').to_owned(), ..p });
        Self { provider_client, webhook_client, destinations, provider, webhook, email: None }
    }

    /// With the email channel; without it, email deliveries fail (`HERALD_SMTP_URL` is unset).
    pub fn with_email(mut self, email: crate::email::EmailChannel) -> Self {
        self.email = Some(email);
        self
    }

    /// Sends an email delivery.
    pub async fn email(&self, job: &DeliveryJob) -> Attempt {
        match &self.email {
            Some(email) => email.send(job).await,
            None => Err(Failure::Malformed { reason: "no mail server is configured (HERALD_SMTP_URL)".into() }),
        }
    }

    /// Calls the provider for `job`. The recipient is the phone (digits) and the payload's `text`
    /// the message; the delivery's number is the provider's message id, the same on every retry.
    pub async fn provider(&self, job: &DeliveryJob, now: DateTime<Utc>) -> Attempt {
        let Some(provider) = &self.provider else {
            return Err(Failure::Malformed { reason: "no provider is configured (HERALD_PROVIDER_URL)".into() });
        };
        let phone: u64 = match job.recipient.parse() {
            Ok(phone) if job.recipient.bytes().all(|b| b.is_ascii_digit()) => phone,
            _ => {
                return Err(Failure::Malformed {
                    reason: format!("the recipient {:?} is not a phone number", job.recipient),
                });
            }
        };
        let Some(text) = job.payload.get("text").and_then(|t| t.as_str()).filter(|t| !t.is_empty()) else {
            return Err(Failure::Malformed { reason: "the payload has no text".into() });
        };
        let body = serde_json::json!({"id": job.number, "phone": phone, "text": text});
        let request = self
            .provider_client
            .post(format!("{}/v1/send/{}", provider.url, job.number))
            .bearer_auth(provider.token.expose())
            .timeout(provider.timeout)
            .json(&body);
        call(request, provider.answer_limit, now).await.map_err(|e| failure(&e))?
    }

    /// POSTs the payload to the recipient URL, signed, if the destination is one webhooks may
    /// reach. A refused destination is a [`Failure::Connection`], like a host that is down; the
    /// log says which.
    pub async fn webhook(&self, job: &DeliveryJob, now: DateTime<Utc>) -> Attempt {
        let Some(secret) = &self.webhook.secret else {
            return Err(Failure::Malformed {
                reason: "no webhook secret is configured (HERALD_WEBHOOK_SECRET)".into(),
            });
        };
        let url = match reqwest::Url::parse(&job.recipient) {
            Ok(url) if url.scheme() == "http" && url.has_host() => url,
            Ok(url) if url.scheme() == "https" => {
                return Err(Failure::Malformed { reason: "https webhooks are not supported yet".into() });
            }
            _ => return Err(Failure::Malformed { reason: format!("{:?} is not an http URL", job.recipient) }),
        };
        let host = destination_host(&url);
        // The connector takes an address in the URL as it is, without asking the resolver.
        let literal =
            url.host_str().and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok());
        if let Some(Err(refusal)) = literal.map(|ip| self.destinations.check_ip(ip)) {
            tracing::warn!(delivery = %job.id, %host, reason = %refusal, "refused a webhook destination");
            return Err(Failure::Connection);
        }
        let body = serde_json::to_vec(&job.payload).unwrap_or_default();
        let request = self
            .webhook_client
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign(secret.expose(), now.timestamp(), &body))
            .header("Herald-Delivery", job.id.to_string())
            .header("Herald-Kind", &job.kind)
            .timeout(self.webhook.timeout)
            .body(body);
        match call(request, self.webhook.answer_limit, now).await {
            Ok(outcome) => outcome,
            Err(e) => {
                match refusal_in(&e) {
                    Some(refusal) => {
                        tracing::warn!(delivery = %job.id, %host, reason = %refusal, "refused a webhook destination");
                    }
                    None => {
                        tracing::debug!(delivery = %job.id, %host, error = %error_chain(&e), "a webhook call failed")
                    }
                }
                Err(failure(&e))
            }
        }
    }
}

/// Sends `request` and classifies the answer by its status; `Err` when no answer came.
async fn call(
    request: reqwest::RequestBuilder,
    answer_limit: usize,
    now: DateTime<Utc>,
) -> Result<Attempt, reqwest::Error> {
    let mut response = request.send().await?;
    let retry_after = response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let status = response.status().as_u16();
    // The status decides; the body is read and dropped, a chunk at a time, so the connection can
    // be reused. One that is longer than the limit, breaks off or is still coming at the timeout
    // does not undo the outcome: it is dropped, and its connection with it.
    let mut read = 0usize;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read = read.saturating_add(chunk.len());
                if read > answer_limit {
                    tracing::debug!(status, answer_limit, "the channel's answer is longer than allowed; dropped");
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(status, error = %e, "the channel's answer body broke off");
                break;
            }
        }
    }
    Ok(classify_http(status, retry_after.as_deref(), now))
}

fn failure(e: &reqwest::Error) -> Failure {
    if e.is_timeout() {
        Failure::Timeout
    } else if e.is_builder() {
        Failure::Malformed { reason: e.to_string() }
    } else {
        Failure::Connection
    }
}

/// The destination refusal behind a failed request, if the resolver refused its host.
fn refusal_in(e: &reqwest::Error) -> Option<Refusal> {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(refusal) = err.downcast_ref::<Refusal>() {
            return Some(refusal.clone());
        }
        source = err.source();
    }
    None
}

/// An error and its causes, for the operator's log.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

/// The `host:port` a webhook URL connects to (the port the scheme's default when not given): the
/// unit its circuit breaker and rate limit are kept by. `None` when `recipient` is not a URL
/// with a host.
pub fn webhook_host(recipient: &str) -> Option<String> {
    reqwest::Url::parse(recipient).ok().filter(|url| url.has_host()).map(|url| destination_host(&url))
}

fn destination_host(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// What a webhook delivery's `last_error` says of `failure`: `unreachable` or `rejected with HTTP
/// <status>`, nothing a user could learn the network from (whether a port is open, what answers
/// on it). A request Herald could not make says why, in Herald's own words.
pub fn webhook_error(failure: &Failure) -> String {
    match failure {
        Failure::Timeout | Failure::Connection => "unreachable".to_owned(),
        Failure::Server { status, .. } | Failure::Rejected { status } => format!("rejected with HTTP {status}"),
        Failure::RateLimited { .. } => "rejected with HTTP 429".to_owned(),
        Failure::Malformed { .. } | Failure::Smtp { .. } => failure.to_string(),
    }
}

/// Resolves webhook hosts through [`Destinations`]: a name with any address webhooks may not
/// reach does not resolve at all, so no connection to it is tried.
#[derive(Debug, Clone)]
struct CheckedResolver(Destinations);

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (destinations, host) = (self.0.clone(), name.as_str().to_owned());
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port (or the scheme's) in its place.
            let addrs = destinations.check_host(&host, 0).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The `Herald-Signature` value for `body` sent at unix time `t`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret, t, body).finalize().into_bytes()))
}

/// The HMAC-SHA256 of `"<t>.<body>"` under `secret`, not yet finalized.
fn mac(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    #[allow(clippy::expect_used, reason = "HMAC takes keys of any length")]
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks a `Herald-Signature` as a receiver would: the MAC matches and the timestamp is within
/// `tolerance` of `now`. What a receiver's code looks like, and what the tests use.
pub fn verify(secret: &str, header: &str, body: &[u8], now: DateTime<Utc>, tolerance: Duration) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    if (now.timestamp() - t).unsigned_abs() > tolerance.as_secs() {
        return false;
    }
    mac(secret, t, body).verify_slice(&v1).is_ok()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_signature_verifies_and_forgeries_and_replays_do_not() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let body = br#"{"event_id":1}"#;
        let signed = sign("s3cret", now.timestamp(), body);
        let tolerance = Duration::from_secs(300);
        assert!(verify("s3cret", &signed, body, now, tolerance));
        assert!(!verify("other", &signed, body, now, tolerance), "another key");
        assert!(!verify("s3cret", &signed, br#"{"event_id":2}"#, now, tolerance), "another body");
        let later = now + chrono::Duration::minutes(6);
        assert!(!verify("s3cret", &signed, body, later, tolerance), "a replay after the tolerance");
        let forged = signed.replace(&format!("t={}", now.timestamp()), &format!("t={}", later.timestamp()));
        assert!(!verify("s3cret", &forged, body, later, tolerance), "a moved timestamp");
        assert!(!verify("s3cret", "v1=00", body, now, tolerance));
    }
}
