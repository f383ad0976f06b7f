//! The channels a sender calls: `log`, `provider` (the SMS-gateway contract), `webhook` (signed
//! POST), `email` (SMTP, see [`crate::email`]) and `realtime` (the recipient's `user:<id>`
//! channel, written by the sender through the store so that it is exactly once).

use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_core::{
    delivery::{Attempt, DeliveryJob, Failure, classify_http},
    net::Destinations,
    redact::SecretString,
    webhook::{self, WebhookKeys},
};
use herald_egress::{Egress, Outbound};
use hmac::{Hmac, Mac};
use reqwest::header;
use sha2::Sha256;

/// The header that carries a webhook's signature under the server-wide `HERALD_WEBHOOK_SECRET`:
/// `t=<unix seconds>,v1=<hex HMAC-SHA256>`, where the MAC is over `"<t>.<body>"`. Deprecated:
/// sent only while that secret is set; receivers verify the Standard Webhooks headers (each
/// webhook's own secret, see [`herald_core::webhook`]).
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

/// Webhooks.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The server-wide key of the deprecated `Herald-Signature`, sent beside each webhook's own
    /// signature while it is set. Prints as `***`.
    pub secret: Option<SecretString>,
    /// Longest wait for an answer, its body included.
    pub timeout: Duration,
    /// Most bytes of an answer's body read (see [`Channels`]).
    pub answer_limit: usize,
}

/// The channels that call out: the provider's client, the webhook client that connects only
/// where [`Destinations`] allows (both from one [`Egress`]: TLS, no redirects, a proxy only when
/// the operator names one), and the SMTP transport when email is configured.
///
/// A provider's or a receiver's answer is its status: the outcome of a call is decided by it
/// alone (a 2xx is sent, whatever follows). Its body is read only so the connection can be
/// reused, and only up to `answer_limit` bytes, chunk by chunk, within the call's timeout; a
/// longer or slower body is dropped unread and its connection closed, and the outcome stands.
#[derive(Debug, Clone)]
pub struct Channels {
    /// For the operator-configured provider URL: no destination policy.
    provider_client: reqwest::Client,
    /// For user-aimed webhooks: names resolve through the destination check.
    webhook_client: reqwest::Client,
    destinations: Destinations,
    /// Whether calls may go through a proxy, which resolves names itself.
    proxied: bool,
    provider: Option<ProviderConfig>,
    webhook: WebhookConfig,
    email: Option<crate::email::EmailChannel>,
}

impl Channels {
    /// The channels, calling out through `egress`, with webhooks limited to what
    /// `destinations` allows.
    pub fn new(
        egress: &Egress,
        provider: Option<ProviderConfig>,
        webhook: WebhookConfig,
        destinations: Destinations,
    ) -> Self {
        let provider_client = egress.open().clone();
        let webhook_client = egress.guarded(destinations.clone());
        let proxied = egress.proxied();
        let provider = provider.map(|p| ProviderConfig { url: p.url.trim_end_matches('/').to_owned(), ..p });
        Self { provider_client, webhook_client, destinations, proxied, provider, webhook, email: None }
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
        match call(request, provider.answer_limit, now).await {
            Ok(outcome) => outcome,
            Err(e) => {
                let outbound = Outbound::of(&e);
                tracing::warn!(delivery = %job.id, failure = ?outbound, "a provider call failed");
                Err(failure(outbound))
            }
        }
    }

    /// POSTs the payload to the recipient URL, if the destination is one webhooks may reach,
    /// signed to the Standard Webhooks specification with the recipient's `keys` (and with
    /// `Herald-Signature` too while `HERALD_WEBHOOK_SECRET` is set). A refused destination is a
    /// [`Failure::Connection`], like a host that is down; the log says which.
    pub async fn webhook(&self, job: &DeliveryJob, keys: Option<&WebhookKeys>, now: DateTime<Utc>) -> Attempt {
        if keys.is_none() && self.webhook.secret.is_none() {
            return Err(Failure::Malformed { reason: "the recipient has no webhook any more".into() });
        }
        let url = match reqwest::Url::parse(&job.recipient) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => url,
            _ => return Err(Failure::Malformed { reason: format!("{:?} is not an http(s) URL", job.recipient) }),
        };
        let host = destination_host(&url);
        if let Err(refusal) = self.check_destination(&url).await {
            tracing::warn!(delivery = %job.id, %host, reason = %refusal, "refused a webhook destination");
            return Err(Failure::Connection);
        }
        let body = serde_json::to_vec(&job.payload).unwrap_or_default();
        let (id, timestamp) = (job.id.to_string(), now.timestamp());
        let mut request = self
            .webhook_client
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header("Herald-Delivery", &id)
            .header("Herald-Kind", &job.kind)
            .timeout(self.webhook.timeout);
        if let Some(keys) = keys {
            request = request
                .header(webhook::ID_HEADER, &id)
                .header(webhook::TIMESTAMP_HEADER, timestamp.to_string())
                .header(webhook::SIGNATURE_HEADER, keys.signature(&id, timestamp, &body));
        }
        if let Some(secret) = &self.webhook.secret {
            // Deprecated, kept while the operator sets HERALD_WEBHOOK_SECRET.
            request = request.header(SIGNATURE_HEADER, sign(secret.expose(), timestamp, &body));
        }
        let request = request.body(body);
        match call(request, self.webhook.answer_limit, now).await {
            Ok(outcome) => outcome,
            Err(e) => {
                let outbound = Outbound::of(&e);
                match &outbound {
                    Outbound::Refused(refusal) => {
                        tracing::warn!(delivery = %job.id, %host, reason = %refusal, "refused a webhook destination");
                    }
                    Outbound::Tls(reason) => {
                        // The user is told `tls`; which certificate problem it was is the operator's.
                        tracing::warn!(delivery = %job.id, %host, %reason, "a webhook's TLS handshake failed");
                    }
                    other => tracing::debug!(delivery = %job.id, %host, failure = ?other, "a webhook call failed"),
                }
                Err(failure(outbound))
            }
        }
    }
}

impl Channels {
    /// The guard's check before a webhook call: an address in the URL always (no resolver sees
    /// it); a name too when a proxy may carry the call, since the proxy resolves it, not Herald —
    /// checked here first, so a refused destination is refused before the proxy is asked.
    async fn check_destination(&self, url: &reqwest::Url) -> Result<(), herald_core::net::Refusal> {
        herald_egress::check_literal(&self.destinations, url)?;
        if self.proxied && url.scheme() == "https" {
            let host = url.host_str().unwrap_or_default();
            self.destinations.check_host(host, url.port_or_known_default().unwrap_or(443)).await?;
        }
        Ok(())
    }
}

/// Sends `request` and classifies the answer by its status; `Err` when no answer came.
async fn call(
    request: reqwest::RequestBuilder,
    answer_limit: usize,
    now: DateTime<Utc>,
) -> Result<Attempt, reqwest::Error> {
    let answer = herald_egress::send(request, answer_limit).await?;
    Ok(classify_http(answer.status, answer.retry_after.as_deref(), now))
}

/// The delivery failure of a call that got no answer.
fn failure(outbound: Outbound) -> Failure {
    match outbound {
        Outbound::Timeout => Failure::Timeout,
        Outbound::Tls(_) => Failure::Tls,
        Outbound::Refused(_) | Outbound::Unreachable(_) => Failure::Connection,
        Outbound::Invalid(reason) => Failure::Malformed { reason },
    }
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

/// What a webhook delivery's `last_error` says of `failure`: `unreachable`, `tls` (any
/// certificate or handshake problem) or `rejected with HTTP <status>`, nothing a user could
/// learn the network from (whether a port is open, what answers on it, which certificate it
/// shows). A request Herald could not make says why, in Herald's own words.
pub fn webhook_error(failure: &Failure) -> String {
    match failure {
        Failure::Timeout | Failure::Connection => "unreachable".to_owned(),
        Failure::Tls => "tls".to_owned(),
        Failure::Server { status, .. } | Failure::Rejected { status } => format!("rejected with HTTP {status}"),
        Failure::RateLimited { .. } => "rejected with HTTP 429".to_owned(),
        Failure::Malformed { .. } | Failure::Smtp { .. } => failure.to_string(),
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
