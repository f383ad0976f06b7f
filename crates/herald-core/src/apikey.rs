//! API keys: long-lived credentials for services (a backend that sends notifications, a
//! campaign tool), made by an admin and limited by scopes. A key is shown once; the store keeps
//! only its SHA-256, and checking one is a single indexed read (never the password hasher's
//! queue). Revoking a key refuses it from the next request on.

use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{command_group::group_of, user::UserId};

id_type!(
    /// An API key's id (UUIDv7).
    ApiKeyId
);

/// What every key starts with, so a key is told from a JWT (and found by secret scanners).
pub const KEY_PREFIX: &str = "hk_";

text_type!(
    /// A key's name, for the people who manage keys: 1 to 100 characters, one line.
    trimmed KeyName,
    |text| crate::macros::one_line(text, 100, "must be between 1 and 100 characters")
);

string_enum!(
    /// What a key may do.
    #[derive(Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    ApiScope {
        /// Send notifications (the `notifications` commands).
        Notify => "notify",
        /// Manage clients and mailings (the `clients` and `mailings` commands).
        Campaigns => "campaigns",
        /// Everything an admin may do, except managing API keys.
        Admin => "admin",
    }
);

impl ApiScope {
    /// Whether a key with this scope may run `command`.
    pub fn allows(self, command: &str) -> bool {
        match (self, group_of(command)) {
            // Keys are managed with a person's own token: a leaked key cannot make more, nor make
            // an account an administrator (or remove the administrators) to make more with.
            (_, "api_keys") => false,
            _ if matches!(command, "users.set_role" | "users.delete") => false,
            (ApiScope::Admin, _) => true,
            (ApiScope::Campaigns, group) => matches!(group, "clients" | "mailings"),
            (ApiScope::Notify, group) => group == "notifications",
        }
    }
}

/// A stored key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub name: KeyName,
    pub scopes: Vec<ApiScope>,
    /// The admin who made it; the key acts as them, within its scopes.
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new key's secret (shown once) and the hash the store keeps.
pub struct NewSecret {
    pub key: String,
    pub hash: String,
}

impl fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSecret").field("hash", &self.hash).finish_non_exhaustive()
    }
}

/// A fresh key: the prefix and 256 random bits.
pub fn new_secret() -> NewSecret {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash(&key);
    NewSecret { key, hash }
}

/// The lower-case hex SHA-256 of a key, as the store keeps it. (A key has 256 bits of entropy:
/// a fast hash is enough, and lets a check be one indexed read.)
pub fn hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a bearer credential is an API key rather than a JWT.
pub fn is_key(token: &str) -> bool {
    token.starts_with(KEY_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_hashed() {
        let (a, b) = (new_secret(), new_secret());
        assert!(is_key(&a.key) && a.key.len() == KEY_PREFIX.len() + 43, "{}", a.key);
        assert_ne!(a.key, b.key);
        assert_eq!(a.hash, hash(&a.key));
        assert_eq!(a.hash.len(), 64);
        assert!(!format!("{a:?}").contains(&a.key), "the secret never prints");
    }
}
