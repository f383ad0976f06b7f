//! Webhooks a receiver can verify, to the Standard Webhooks specification
//! (<https://www.standardwebhooks.com>): each user's webhook has a secret of its own, and every
//! call carries `webhook-id`, `webhook-timestamp` and `webhook-signature`, the HMAC-SHA256 of
//! `"<id>.<timestamp>.<body>"` under that secret. During a rotation the previous secret signs
//! beside the new one, so a receiver may switch over at its own pace.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;

/// The header that names a call; the same on every retry of one delivery.
pub const ID_HEADER: &str = "webhook-id";
/// The header with the call's time, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The header with the call's signatures: `v1,<base64>`, separated by spaces.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// How long a rotated-out secret still signs beside the new one.
pub const ROTATION_OVERLAP: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Random bytes in a new secret (the specification asks for 24 to 64).
const SECRET_BYTES: usize = 32;
const PREFIX: &str = "whsec_";

/// A webhook's signing secret: `whsec_` and the base64 of its key. Prints as `whsec_***`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// A new secret of 32 random bytes.
    pub fn generate() -> Self {
        let mut key = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut key);
        Self(format!("{PREFIX}{}", STANDARD.encode(key)))
    }

    /// Reads a stored secret: `whsec_` and base64 of 24 to 64 bytes.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let key = raw.strip_prefix(PREFIX).ok_or("must start with whsec_")?;
        let bytes = STANDARD.decode(key).map_err(|_| "must be whsec_ and base64")?;
        if !(24..=64).contains(&bytes.len()) {
            return Err("must hold 24 to 64 bytes");
        }
        Ok(Self(raw.to_owned()))
    }

    /// The secret as the user is given it (once) and as it is stored.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn key(&self) -> Vec<u8> {
        // Checked by `parse` and `generate`: the part after the prefix is base64.
        STANDARD.decode(&self.0[PREFIX.len()..]).unwrap_or_default()
    }

    /// `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`.
    fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        #[allow(clippy::expect_used, reason = "HMAC takes keys of any length")]
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key()).expect("any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}***")
    }
}

/// The secrets that sign a user's webhook calls now: the current one, and the one it replaced
/// while that is within [`ROTATION_OVERLAP`] of the rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookKeys {
    pub current: WebhookSecret,
    pub previous: Option<WebhookSecret>,
}

impl WebhookKeys {
    /// The keys as stored: `previous` counts only until `previous_until`.
    pub fn at(
        current: WebhookSecret,
        previous: Option<WebhookSecret>,
        previous_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        let previous = previous.filter(|_| previous_until.is_some_and(|until| now < until));
        Self { current, previous }
    }

    /// The `webhook-signature` value of a call: one signature per key, the current one first.
    pub fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut value = self.current.sign(id, timestamp, body);
        if let Some(previous) = &self.previous {
            value.push(' ');
            value.push_str(&previous.sign(id, timestamp, body));
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_whsec_and_base64_and_never_printed() {
        let secret = WebhookSecret::generate();
        assert!(secret.expose().starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(secret.expose()), Ok(secret.clone()));
        assert_eq!(format!("{secret:?}"), "whsec_***");
        assert_ne!(WebhookSecret::generate(), secret, "random");
        for bad in ["", "whsec_", "whsec_!!!", "abc", "whsec_AAAA"] {
            assert!(WebhookSecret::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// The specification's own example: secret, id, timestamp, body and the signature its
    /// reference libraries compute.
    #[test]
    fn signatures_match_the_specifications_example() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("the example secret");
        let keys = WebhookKeys { current: secret, previous: None };
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            keys.signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_rotated_out_secret_signs_beside_the_new_one_for_a_day() {
        let (old, new) = (WebhookSecret::generate(), WebhookSecret::generate());
        let now = Utc::now();
        let keys = WebhookKeys::at(new.clone(), Some(old.clone()), Some(now + ROTATION_OVERLAP), now);
        let signature = keys.signature("d1", 5, b"{}");
        let parts: Vec<&str> = signature.split(' ').collect();
        assert_eq!(parts, [new.sign("d1", 5, b"{}"), old.sign("d1", 5, b"{}")]);
        let later = now + ROTATION_OVERLAP;
        assert_eq!(WebhookKeys::at(new, Some(old), Some(now + ROTATION_OVERLAP), later).previous, None);
    }
}
