//! Authentication: HS256 access tokens and argon2 password hashes.
//!
//! Tokens are compact JWS (RFC 7515) with exactly one accepted algorithm, HS256: the header is
//! compared byte for byte, so `alg: none` and algorithm confusion are impossible by construction.

use parking_lot::Mutex;
use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::{self, Output, ParamsString, PasswordHash, SaltString, rand_core::OsRng},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use tokio::sync::{OnceCell, Semaphore};

use crate::{
    error::{ApiError, ErrorCode},
    identity::Identity,
    user::{Password, Role, UserId},
};

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

    /// `payload` with a signature for `purpose` (`<payload>.<signature>`, base64url), for state a
    /// browser carries between two requests (a sign-in's cookie); [`TokenIssuer::open`] checks it.
    pub fn seal(&self, purpose: &str, payload: &[u8]) -> String {
        let body = B64.encode(payload);
        let signature = B64.encode(self.sign(format!("{purpose}.{body}").as_bytes()));
        format!("{body}.{signature}")
    }

    /// The payload of a [`TokenIssuer::seal`] for `purpose`, if its signature holds.
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        let (body, signature) = sealed.split_once('.')?;
        let signature = B64.decode(signature).ok()?;
        let mut mac = self.mac.clone();
        mac.update(format!("{purpose}.{body}").as_bytes());
        mac.verify_slice(&signature).ok()?;
        B64.decode(body).ok()
    }

    pub fn issue(&self, identity: Identity, now: DateTime<Utc>) -> AccessToken {
        let claims = Claims {
            sub: identity.user_id,
            role: identity.role,
            iat: now.timestamp(),
            exp: (now + self.ttl).timestamp(),
        };
        #[allow(clippy::expect_used, reason = "a struct of ids, a role and numbers always serialises")]
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
/// async executor since one hash costs tens of milliseconds of CPU and 19 MiB of memory.
///
/// At most `concurrency` hashes run at once, each in a memory block taken from a pool and put
/// back after, so hashing holds at most `concurrency` blocks whatever the load (the allocator
/// never sees the 19 MiB allocations it would keep). At most `queue` checks wait for a slot;
/// beyond that they are refused with `too_many_requests`.
#[derive(Debug)]
pub struct PasswordHasher {
    slots: Arc<Semaphore>,
    queue: usize,
    waiting: AtomicUsize,
    /// Memory blocks of finished hashes, for the next ones.
    pool: Arc<Mutex<Vec<Vec<Block>>>>,
    /// A hash to verify against when the account does not exist, so a login for an unknown
    /// email costs the same time as a wrong password and does not reveal which emails exist.
    decoy: OnceCell<String>,
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get() as u32), 64)
    }
}

impl PasswordHasher {
    pub fn new(concurrency: u32, queue: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            queue: queue as usize,
            waiting: AtomicUsize::new(0),
            pool: Arc::default(),
            decoy: OnceCell::new(),
        }
    }

    pub async fn hash(&self, password: &Password) -> Result<String, ApiError> {
        let password = password.clone();
        self.run(move |memory| hash_blocking(password.expose(), memory)).await?
    }

    /// Whether `password` matches `hash`; with no hash, spends the same time and answers false.
    pub async fn verify(&self, password: &Password, hash: Option<&str>) -> Result<bool, ApiError> {
        let known = hash.is_some();
        let hash = match hash {
            Some(hash) => hash.to_owned(),
            None => self.decoy().await?.to_owned(),
        };
        let password = password.clone();
        let matches = self.run(move |memory| verify_blocking(password.expose(), &hash, memory)).await??;
        Ok(known && matches)
    }

    /// Runs `work` on the blocking pool once a slot is free, with a pooled memory block.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(ApiError::too_many_requests(
                        "the server is busy checking passwords; retry shortly",
                        std::time::Duration::from_secs(1),
                    ));
                }
                let permit = self.slots.clone().acquire_owned().await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                permit.map_err(ApiError::internal)?
            }
        };
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut memory = pool.lock().pop().unwrap_or_default();
            let out = work(&mut memory);
            pool.lock().push(memory);
            drop(permit);
            out
        })
        .await
        .map_err(ApiError::internal)
    }

    async fn decoy(&self) -> Result<&str, ApiError> {
        let decoy = self
            .decoy
            .get_or_try_init(|| async {
                let decoy = Password::attempt("decoy password that matches nothing".to_owned());
                self.hash(&decoy).await
            })
            .await?;
        Ok(decoy)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
struct HashError(String);

fn hash_error(e: impl fmt::Display) -> ApiError {
    ApiError::internal(HashError(e.to_string()))
}

/// Hashes with argon2id's default parameters into `memory`, grown to the blocks they need.
fn hash_blocking(password: &str, memory: &mut Vec<Block>) -> Result<String, ApiError> {
    let params = Params::default();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(hash_error)?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    memory.resize(params.block_count(), Block::default());
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        argon2.hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, &mut memory[..]).map_err(|e| {
            tracing::debug!(error = %e, "argon2 failed");
            password_hash::Error::Crypto
        })
    })
    .map_err(hash_error)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(hash_error)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Checks `password` against a PHC `hash` (any argon2 variant and parameters), in `memory`.
fn verify_blocking(password: &str, hash: &str, memory: &mut Vec<Block>) -> Result<bool, ApiError> {
    let parsed = PasswordHash::new(hash).map_err(hash_error)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(hash_error)?;
    let version = parsed.version.map(Version::try_from).transpose().map_err(hash_error)?.unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(hash_error)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(hash_error("the stored hash has no salt or no output"));
    };
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(hash_error)?;
    // A stored hash with a larger memory cost than ours gets a block of its own, not the pool's.
    let mut own = Vec::new();
    let memory = if params.block_count() <= Params::default().block_count() { memory } else { &mut own };
    memory.resize(params.block_count(), Block::default());
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, &mut memory[..params.block_count()])
        .map_err(hash_error)?;
    Ok(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
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

    #[tokio::test]
    async fn hashes_made_by_the_argon2_crate_still_verify() {
        use argon2::password_hash::PasswordHasher as _;
        let salt = SaltString::generate(&mut OsRng);
        let old = Argon2::default().hash_password(b"correct horse", &salt).expect("hash").to_string();
        let hasher = PasswordHasher::default();
        assert!(hasher.verify(&Password::attempt("correct horse".into()), Some(&old)).await.expect("verify"));
        assert!(!hasher.verify(&Password::attempt("wrong horse".into()), Some(&old)).await.expect("verify"));
        let ours = hasher.hash(&Password::attempt("correct horse".into())).await.expect("hash");
        let parsed = PasswordHash::new(&ours).expect("phc");
        use argon2::PasswordVerifier as _;
        assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok(), "the crate accepts ours");
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_without_hashing() {
        let hasher = Arc::new(PasswordHasher::new(1, 1));
        let pw = Password::attempt("correct horse".into());
        let (a, b, c) = tokio::join!(hasher.hash(&pw), hasher.hash(&pw), hasher.hash(&pw));
        let codes: Vec<_> = [a, b, c].into_iter().map(|r| r.err().map(|e| e.code())).collect();
        assert_eq!(codes.iter().filter(|c| c.is_none()).count(), 2, "{codes:?}");
        assert!(codes.contains(&Some(ErrorCode::TooManyRequests)), "{codes:?}");
        assert!(hasher.pool.lock().len() <= 1, "one slot uses one block");
    }
}
