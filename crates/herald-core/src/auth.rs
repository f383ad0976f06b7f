//! Authentication: HS256 access tokens, argon2 password hashes, and the caller a command runs for.
//!
//! Tokens are compact JWS (RFC 7515) with exactly one accepted algorithm, HS256: the header is
//! compared byte for byte, so `alg: none` and algorithm confusion are impossible by construction.

use std::{fmt, sync::OnceLock};

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString, rand_core::OsRng},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{
    error::{ApiError, ErrorCode},
    user::{Password, Role, UserId},
};

/// Who a command runs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User(Identity),
}

/// An authenticated user, as proven by a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub user_id: UserId,
    pub role: Role,
}

/// The shortest HS256 secret accepted: 256 bits.
pub const MIN_SECRET_LEN: usize = 32;

/// The fixed header every token carries: `{"alg":"HS256","typ":"JWT"}`.
const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: UserId,
    role: Role,
    iat: i64,
    exp: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        let code = match err {
            TokenError::Expired => ErrorCode::TokenExpired,
            TokenError::Malformed | TokenError::BadSignature => ErrorCode::InvalidToken,
        };
        ApiError::new(code, err.to_string())
    }
}

/// Issues and verifies access tokens with one HMAC secret.
#[derive(Clone)]
pub struct TokenIssuer {
    mac: Hmac<Sha256>,
    ttl: Duration,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer").field("secret", &"***").field("ttl", &self.ttl).finish()
    }
}

/// A freshly issued access token, as `auth.login` answers it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccessToken {
    /// Send as `Authorization: Bearer <access_token>`.
    #[schema(example = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOi...")]
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Lifetime in seconds.
    #[schema(example = 3600)]
    pub expires_in: i64,
}

impl TokenIssuer {
    /// Callers validate the secret length at configuration time; a short secret is refused here too.
    pub fn new(secret: &[u8], ttl: Duration) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!("must be at least {MIN_SECRET_LEN} bytes"));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|e| e.to_string())?;
        Ok(Self { mac, ttl })
    }

    pub fn issue(&self, identity: Identity, now: DateTime<Utc>) -> AccessToken {
        let claims = Claims {
            sub: identity.user_id,
            role: identity.role,
            iat: now.timestamp(),
            exp: (now + self.ttl).timestamp(),
        };
        let payload = serde_json::to_vec(&claims).expect("claims serialize");
        let signing_input = format!("{HEADER}.{}", B64.encode(payload));
        let signature = B64.encode(self.sign(signing_input.as_bytes()));
        AccessToken {
            access_token: format!("{signing_input}.{signature}"),
            token_type: "Bearer",
            expires_in: self.ttl.num_seconds(),
        }
    }

    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Identity, TokenError> {
        self.verify_until(token, now).map(|(identity, _)| identity)
    }

    /// Like [`TokenIssuer::verify`], also answering when the token expires (a long-lived
    /// connection ends then).
    pub fn verify_until(&self, token: &str, now: DateTime<Utc>) -> Result<(Identity, DateTime<Utc>), TokenError> {
        let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header, payload) = signing_input.split_once('.').ok_or(TokenError::Malformed)?;
        if header != HEADER {
            return Err(TokenError::Malformed);
        }
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac.clone();
        mac.update(signing_input.as_bytes());
        mac.verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
        let payload = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if now.timestamp() >= claims.exp {
            return Err(TokenError::Expired);
        }
        let expires = DateTime::from_timestamp(claims.exp, 0).ok_or(TokenError::Malformed)?;
        Ok((Identity { user_id: claims.sub, role: claims.role }, expires))
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        let mut mac = self.mac.clone();
        mac.update(input);
        mac.finalize().into_bytes().to_vec()
    }
}

/// Hashes and checks passwords with argon2id (the crate's recommended parameters), off the
/// async executor since one hash costs tens of milliseconds of CPU.
#[derive(Debug, Default)]
pub struct PasswordHasher {
    /// A hash to verify against when the account does not exist, so a login for an unknown
    /// email costs the same time as a wrong password and does not reveal which emails exist.
    decoy: OnceLock<String>,
}

impl PasswordHasher {
    pub async fn hash(&self, password: &Password) -> Result<String, ApiError> {
        let password = password.clone();
        tokio::task::spawn_blocking(move || hash_blocking(password.expose())).await.map_err(ApiError::internal)?
    }

    /// Whether `password` matches `hash`; with no hash, spends the same time and answers false.
    pub async fn verify(&self, password: &Password, hash: Option<&str>) -> Result<bool, ApiError> {
        let known = hash.is_some();
        let hash = match hash {
            Some(hash) => hash.to_owned(),
            None => self.decoy()?.to_owned(),
        };
        let password = password.clone();
        let matches = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).map_err(|e| ApiError::internal(HashError(e.to_string())))?;
            Ok::<_, ApiError>(Argon2::default().verify_password(password.expose().as_bytes(), &parsed).is_ok())
        })
        .await
        .map_err(ApiError::internal)??;
        Ok(known && matches)
    }

    fn decoy(&self) -> Result<&str, ApiError> {
        if let Some(decoy) = self.decoy.get() {
            return Ok(decoy);
        }
        let hash = hash_blocking("decoy password that matches nothing")?;
        Ok(self.decoy.get_or_init(|| hash))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
struct HashError(String);

fn hash_blocking(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| ApiError::internal(HashError(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(&[7u8; 32], Duration::hours(1)).expect("issuer")
    }

    fn identity() -> Identity {
        Identity { user_id: UserId::new(), role: Role::Admin }
    }

    #[test]
    fn header_constant_is_the_hs256_header() {
        assert_eq!(B64.decode(HEADER).expect("b64"), br#"{"alg":"HS256","typ":"JWT"}"#);
    }

    #[test]
    fn a_token_round_trips_until_it_expires() {
        let now = Utc::now();
        let id = identity();
        let token = issuer().issue(id, now).access_token;
        assert_eq!(issuer().verify(&token, now), Ok(id));
        assert_eq!(issuer().verify(&token, now + Duration::minutes(59)), Ok(id));
        assert_eq!(issuer().verify(&token, now + Duration::hours(1)), Err(TokenError::Expired));
    }

    #[test]
    fn forged_and_mangled_tokens_are_refused() {
        let now = Utc::now();
        let token = issuer().issue(identity(), now).access_token;
        let other = TokenIssuer::new(&[8u8; 32], Duration::hours(1)).expect("issuer");
        assert_eq!(other.verify(&token, now), Err(TokenError::BadSignature));

        // Elevating the role in the payload breaks the signature.
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: serde_json::Value = serde_json::from_slice(&B64.decode(parts[1]).expect("b64")).expect("json");
        claims["role"] = "admin".into();
        claims["sub"] = UserId::new().to_string().into();
        let forged = format!("{}.{}.{}", parts[0], B64.encode(claims.to_string()), parts[2]);
        assert_eq!(issuer().verify(&forged, now), Err(TokenError::BadSignature));

        // `alg: none` with an empty signature.
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        assert_eq!(issuer().verify(&none, now), Err(TokenError::Malformed));
        for junk in ["", "a", "a.b", "a.b.c", &format!("{HEADER}.!!.x")] {
            assert!(issuer().verify(junk, now).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(TokenIssuer::new(b"short", Duration::hours(1)).is_err());
    }

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let hasher = PasswordHasher::default();
        let pw = Password::attempt("correct horse".into());
        let hash = hasher.hash(&pw).await.expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher.verify(&pw, Some(&hash)).await.expect("verify"));
        assert!(!hasher.verify(&Password::attempt("wrong horse".into()), Some(&hash)).await.expect("verify"));
        assert!(!hasher.verify(&pw, None).await.expect("verify decoy"));
    }
}
