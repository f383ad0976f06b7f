//! The channels a sender calls: `log`, `provider` (the SMS-gateway contract), `webhook` (signed
//! POST) and `realtime` (the recipient's `user:<id>` channel, written by the sender through the
//! store so that it is exactly once).

use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_core::delivery::{DeliveryJob, Failure, Outcome, classify_http};
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
    pub token: String,
    /// Longest wait for an answer.
    pub timeout: Duration,
}

/// Signed webhooks.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The HMAC key; without one, webhook deliveries fail (never go out unsigned).
    pub secret: Option<String>,
    pub timeout: Duration,
}

/// The HTTP channels, with one connection pool.
#[derive(Debug, Clone)]
pub struct HttpChannels {
    client: reqwest::Client,
    provider: Option<ProviderConfig>,
    webhook: WebhookConfig,
}

impl HttpChannels {
    pub fn new(provider: Option<ProviderConfig>, webhook: WebhookConfig) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(256)
            .build()
            .unwrap_or_default();
        let provider = provider.map(|p| ProviderConfig { url: p.url.trim_end_matches('/').to_owned(), ..p });
        Self { client, provider, webhook }
    }

    /// Calls the provider for `job`. The recipient is the phone (digits) and the payload's `text`
    /// the message; the delivery's number is the provider's message id, the same on every retry.
    pub async fn provider(&self, job: &DeliveryJob, now: DateTime<Utc>) -> Outcome {
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
            .client
            .post(format!("{}/v1/send/{}", provider.url, job.number))
            .bearer_auth(&provider.token)
            .timeout(provider.timeout)
            .json(&body);
        self.call(request, now).await
    }

    /// POSTs the payload to the recipient URL, signed.
    pub async fn webhook(&self, job: &DeliveryJob, now: DateTime<Utc>) -> Outcome {
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
        let body = serde_json::to_vec(&job.payload).unwrap_or_default();
        let request = self
            .client
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign(secret, now.timestamp(), &body))
            .header("Herald-Delivery", job.id.to_string())
            .header("Herald-Kind", &job.kind)
            .timeout(self.webhook.timeout)
            .body(body);
        self.call(request, now).await
    }

    async fn call(&self, request: reqwest::RequestBuilder, now: DateTime<Utc>) -> Outcome {
        let response = request.send().await.map_err(|e| failure(&e))?;
        let retry_after = response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let status = response.status().as_u16();
        // The status decides; the body is read (and dropped) so the connection can be reused. A
        // body that breaks off after a 2xx does not undo the send.
        if let Err(e) = response.bytes().await {
            tracing::debug!(status, error = %e, "the channel's answer body broke off");
        }
        classify_http(status, retry_after.as_deref(), now)
    }
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

/// The `Herald-Signature` value for `body` sent at unix time `t`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret, t, body).finalize().into_bytes()))
}

/// The HMAC-SHA256 of `"<t>.<body>"` under `secret`, not yet finalized.
fn mac(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
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
