//! Sign-in with OpenID Connect (authorization code + PKCE), without IO: the provider's discovery
//! and keys as data, the browser's sealed sign-in state, ID token verification (RS256 or ES256
//! against the issuer's JWKS; an unknown key id asks the caller to fetch the keys again, which is
//! how a rotation is followed), the Herald role from a claim, and the account a verified identity
//! signs in as. `herald-http` does the fetching and the redirects.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{
    auth::AccessToken,
    error::{ApiError, ErrorCode},
    identity::Identity,
    services::Services,
    store::{Constraint, StoreError},
    user::{Email, NewUser, Password, Role, User, UserId, UserName},
};

mod id_token;

pub use id_token::{IdClaims, IdTokenError, Jwk, Jwks, role_of, verify_id_token};

/// What an operator configures. `Debug` leaves the client secret out.
#[derive(Clone)]
pub struct OidcSettings {
    /// The issuer URL, exactly as its tokens' `iss` says it.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Herald's callback as the provider knows it: `https://<herald>/api/v1/auth/oidc/callback`.
    pub redirect_url: String,
    pub scopes: String,
    /// The claim that carries the role: a string or a list of strings (`groups`, `roles`).
    pub role_claim: String,
    /// Values of `role_claim` that make an administrator; anyone else signs in as a user.
    pub admin_values: Vec<String>,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("redirect_url", &self.redirect_url)
            .field("scopes", &self.scopes)
            .field("role_claim", &self.role_claim)
            .field("admin_values", &self.admin_values)
            .finish()
    }
}

/// The parts of the provider's discovery document Herald uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// What a browser carries (sealed, in a cookie) from the start of a sign-in to its callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// Where the browser goes once signed in: a path of this origin.
    pub to: String,
    /// Unix seconds after which the sign-in is stale.
    pub exp: i64,
}

/// The purpose a [`Pending`] is sealed for.
pub const PENDING_PURPOSE: &str = "oidc-pending";

/// How long a sign-in may take, from its start to its callback.
pub const PENDING_SECONDS: i64 = 600;

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    B64.encode(bytes)
}

impl Pending {
    /// A new sign-in to `to` at `now`: fresh state, nonce and PKCE verifier.
    pub fn new(to: String, now: DateTime<Utc>) -> Self {
        Self {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
            to,
            exp: now.timestamp() + PENDING_SECONDS,
        }
    }

    /// The PKCE challenge of its verifier (S256).
    pub fn challenge(&self) -> String {
        B64.encode(Sha256::digest(self.verifier.as_bytes()))
    }
}

/// Where a sign-in may send the browser: a path of this origin, `/admin/` when none or a bad one
/// is given, without its fragment (which will carry the token). Anything a browser might read as
/// another host is refused whole, not mended: `//host`, a scheme, a backslash, and any control,
/// space or non-ASCII character (browsers drop tabs and newlines, so `/\t/host` is `//host`).
pub fn safe_return(to: Option<&str>) -> String {
    let to = to.map(|t| t.split('#').next().unwrap_or_default());
    match to {
        Some(to)
            if to.starts_with('/')
                && !to.starts_with("//")
                && to.len() <= 512
                && to.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            to.to_owned()
        }
        _ => "/admin/".to_owned(),
    }
}

/// Signs in the person `claims` names at `issuer`: the account linked to issuer and subject; else,
/// only when the provider vouches for their email (`email_verified`), the account with that
/// email, linked now unless it is linked to another subject at this issuer, or a new account (no
/// usable password). The role follows `role`, on every sign-in. Answers the account and a Herald
/// access token, as a local login does.
pub async fn sign_in(
    svc: &Services,
    issuer: &str,
    claims: &IdClaims,
    role: Role,
) -> Result<(User, AccessToken), ApiError> {
    let store = svc.store.as_ref();
    let now = svc.clock.now();
    let user = match store.user_by_identity(issuer, &claims.subject).await? {
        Some(user) => user,
        None => {
            let email = claims.email.as_deref().and_then(|e| Email::parse(e).ok()).ok_or_else(|| {
                ApiError::new(ErrorCode::Unauthorized, "single sign-on failed: the provider gave no email")
            })?;
            // An email the provider does not vouch for makes no account and links none: else
            // someone could claim another's address first and have its owner land in their account.
            if !claims.email_verified {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "single sign-on refused: the provider does not say this person's email is verified",
                ));
            }
            let existing = store.credentials_by_email(&email).await?;
            let id = match existing {
                Some(credentials) if store.linked_subject(issuer, credentials.user.id).await?.is_some() => {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        "the account with this email is linked to another person at this provider",
                    ));
                }
                Some(credentials) => credentials.user.id,
                None => {
                    let name = claims.name.as_deref().and_then(|n| UserName::parse(n).ok());
                    let name =
                        name.or_else(|| UserName::parse(email.as_str().split('@').next().unwrap_or("user")).ok());
                    let name = name
                        .or_else(|| UserName::parse("Single sign-on user").ok())
                        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "no name for the new account"))?;
                    // A password nobody knows: this account signs in through its provider.
                    let secret =
                        Password::new_secret(random_token()).map_err(|e| ApiError::new(ErrorCode::Internal, e))?;
                    let password_hash = svc.passwords.hash(&secret).await?;
                    let user =
                        User { id: UserId::new(), email, name, role, created_at: now, phone: None, timezone: None };
                    match store.create_user(&NewUser { user: user.clone(), password_hash }).await {
                        Ok(()) => user.id,
                        Err(e) if e.is_conflict_on(Constraint::UsersEmail) => {
                            return Err(ApiError::new(
                                ErrorCode::Conflict,
                                "an account with this email was just made; sign in again",
                            ));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            match store.link_identity(issuer, &claims.subject, id, now).await {
                Ok(()) => {}
                // A racing sign-in of the same person linked it first.
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let issuer_shown = crate::redact::url_password(issuer);
            tracing::info!(user = %id, issuer = issuer_shown, "linked a single sign-on identity");
            store
                .user_by_identity(issuer, &claims.subject)
                .await?
                .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the linked account is gone"))?
        }
    };
    let user = if user.role == role { user } else { store.set_role(user.id, role).await? };
    let token = svc.tokens.issue(Identity { user_id: user.id, role: user.role }, now);
    Ok((user, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_ins_return_only_to_paths_of_this_origin() {
        assert_eq!(safe_return(Some("/admin/?x=1#/mailings")), "/admin/?x=1");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "evil",
            "/\\evil.example",
            "",
            "/\t/evil.example",
            "/\n/evil",
            "/ /x",
            "/é",
        ] {
            assert_eq!(safe_return(Some(bad)), "/admin/", "{bad}");
        }
        assert_eq!(safe_return(None), "/admin/");
        let p = Pending::new("/admin/".into(), Utc::now());
        assert_eq!(p.challenge(), B64.encode(Sha256::digest(p.verifier.as_bytes())));
        assert_ne!(p.state, p.nonce);
    }
}
