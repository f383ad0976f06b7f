//! Sign-in through an OpenID Connect provider (`HERALD_OIDC_*`): `GET /api/v1/auth/oidc` says
//! whether it is on, `/start` sends the browser to the provider (authorization code with PKCE,
//! state and nonce sealed in a short-lived HttpOnly cookie, so any instance can finish it), and
//! `/callback` exchanges the code, verifies the ID token against the issuer's keys
//! ([`herald_core::oidc`]) and sends the browser back to the page it came from with a Herald access
//! token in the URL fragment (which no server sees).
//!
//! The provider is the operator's, not a user's: its URLs come from configuration and from its
//! discovery document, and the ID token comes from its token endpoint (a browser never hands one
//! in). Every fetch has a timeout and a size bound; the keys are fetched again hourly, and when a
//! token names a key they lack (a rotation), once per sign-in.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::Engine as _;
use bytes::Bytes;
use herald_core::{
    Herald,
    error::{ApiError, ErrorCode},
    oidc::{self, Discovery, IdTokenError, Jwks, OidcSettings, PENDING_PURPOSE, Pending},
    redact::url_password,
};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use crate::problem::HttpError;

/// The cookie that carries a sign-in from its start to its callback.
const COOKIE: &str = "herald_oidc";
/// How long one exchange with the provider may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long discovery and the key set are reused (the keys are also fetched again as soon as a
/// token names one they lack), so a key the provider withdrew stops being trusted within it.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

/// An OpenID Connect provider and what Herald knows of it.
#[derive(Debug)]
pub struct OidcClient {
    settings: OidcSettings,
    /// The longest answer read from the provider (`HERALD_OIDC_ANSWER_LIMIT`).
    max_answer: usize,
    client: herald_egress::reqwest::Client,
    discovery: tokio::sync::Mutex<Option<(Instant, Discovery)>>,
    keys: Mutex<(Option<Instant>, Arc<Jwks>)>,
}

impl OidcClient {
    /// The provider `settings` name, reached through `client` (the one outbound client's, see
    /// `herald-egress`: TLS with the system roots and `HERALD_HTTP_CA_FILE`, no redirects).
    pub fn new(settings: OidcSettings, max_answer: usize, client: herald_egress::reqwest::Client) -> Self {
        Self {
            settings,
            max_answer,
            client,
            discovery: tokio::sync::Mutex::new(None),
            keys: Mutex::new((None, Arc::new(Jwks::default()))),
        }
    }

    async fn discovery(&self) -> Result<Discovery, ApiError> {
        let mut cached = self.discovery.lock().await;
        if let Some((at, d)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(d.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.settings.issuer.trim_end_matches('/'));
        let d: Discovery = serde_json::from_slice(&self.fetch(&url, None).await?)
            .map_err(|e| unavailable(format!("its discovery document is not one: {e}")))?;
        if d.issuer != self.settings.issuer {
            return Err(unavailable(format!("its discovery names issuer {:?}", d.issuer)));
        }
        *cached = Some((Instant::now(), d.clone()));
        Ok(d)
    }

    /// The keys, fetched when none are known yet, when they are older than [`DISCOVERY_TTL`], or
    /// (`refresh`) when a token names a key they lack.
    async fn keys(&self, d: &Discovery, refresh: bool) -> Result<Arc<Jwks>, ApiError> {
        {
            let (fetched, keys) = &*self.keys.lock();
            if fetched.is_some_and(|at| at.elapsed() < DISCOVERY_TTL) && !refresh {
                return Ok(keys.clone());
            }
        }
        let keys: Jwks = serde_json::from_slice(&self.fetch(&d.jwks_uri, None).await?)
            .map_err(|e| unavailable(format!("its key set is not one: {e}")))?;
        let keys = Arc::new(keys);
        *self.keys.lock() = (Some(Instant::now()), keys.clone());
        Ok(keys)
    }

    /// GETs `url`, or POSTs `form` to it; the body of a 2xx answer.
    async fn fetch(&self, url: &str, form: Option<(String, String)>) -> Result<Bytes, ApiError> {
        tokio::time::timeout(FETCH_TIMEOUT, self.fetch_once(url, form))
            .await
            .map_err(|_| unavailable(format!("{} did not answer within {FETCH_TIMEOUT:?}", url_password(url))))?
    }

    async fn fetch_once(&self, url: &str, form: Option<(String, String)>) -> Result<Bytes, ApiError> {
        let shown = url_password(url);
        let request = match form {
            Some((body, basic)) => self
                .client
                .post(url)
                .header(header::CONTENT_TYPE.as_str(), "application/x-www-form-urlencoded")
                .header(header::AUTHORIZATION.as_str(), basic)
                .body(body),
            None => self.client.get(url),
        };
        let answer = request
            .header(header::ACCEPT.as_str(), "application/json")
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| unavailable(format!("{shown}: {:?}", herald_egress::Outbound::of(&e))))?;
        let status = answer.status();
        let body = herald_egress::read_body(answer, self.max_answer)
            .await
            .map_err(|e| unavailable(format!("{shown}: the answer could not be read: {e}")))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                format!("single sign-on failed: the provider answered {status} ({text})"),
            ));
        }
        Ok(Bytes::from(body))
    }
}

fn unavailable(detail: String) -> ApiError {
    tracing::warn!(%detail, "the OpenID Connect provider could not be used");
    ApiError::new(ErrorCode::Unavailable, "the single sign-on provider could not be reached")
}

#[derive(Debug, Clone)]
struct OidcState {
    herald: Arc<Herald>,
    client: Option<Arc<OidcClient>>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (for the sign-in limit).
    trusted: herald_core::net::Networks,
}

/// `/api/v1/auth/oidc`, `/start` and `/callback`; with `client` unset sign-in through a provider
/// is off (the first says so, the others answer 404). Each callback takes one attempt from its
/// client address's budget of password checks (`HERALD_AUTH_ADDRESS_RATE`): it makes Herald call
/// the provider.
pub fn routes(herald: Arc<Herald>, client: Option<Arc<OidcClient>>, trusted: herald_core::net::Networks) -> Router {
    Router::new()
        .route("/api/v1/auth/oidc", get(status))
        .route("/api/v1/auth/oidc/start", get(start))
        .route("/api/v1/auth/oidc/callback", get(callback))
        .with_state(OidcState { herald, client, trusted })
}

async fn status(State(s): State<OidcState>) -> Json<serde_json::Value> {
    Json(json!({"enabled": s.client.is_some()}))
}

fn off() -> HttpError {
    HttpError::new(ErrorCode::NotFound, "single sign-on is not configured (HERALD_OIDC_ISSUER)")
}

#[derive(Debug, Deserialize)]
struct StartQuery {
    to: Option<String>,
}

async fn start(State(s): State<OidcState>, Query(q): Query<StartQuery>) -> Result<Response, HttpError> {
    let client = s.client.as_ref().ok_or_else(off)?;
    let d = client.discovery().await.map_err(HttpError::from)?;
    let now = s.herald.services.clock.now();
    let pending = Pending::new(oidc::safe_return(q.to.as_deref()), now);
    let settings = &client.settings;
    let query = form(&[
        ("response_type", "code"),
        ("client_id", settings.client_id.as_str()),
        ("redirect_uri", settings.redirect_url.as_str()),
        ("scope", settings.scopes.as_str()),
        ("state", pending.state.as_str()),
        ("nonce", pending.nonce.as_str()),
        ("code_challenge", &pending.challenge()),
        ("code_challenge_method", "S256"),
    ]);
    let separator = if d.authorization_endpoint.contains('?') { '&' } else { '?' };
    let location = format!("{}{separator}{query}", d.authorization_endpoint);
    #[allow(clippy::expect_used, reason = "a struct of strings and a number always serialises")]
    let sealed = s.herald.services.tokens.seal(PENDING_PURPOSE, &serde_json::to_vec(&pending).expect("serialise"));
    let secure = if settings.redirect_url.starts_with("https://") { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={sealed}; Path=/api/v1/auth/oidc; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        oidc::PENDING_SECONDS
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(|_| HttpError::from(unavailable("a bad authorization URL".into())))?,
    );
    headers.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| HttpError::new(ErrorCode::Internal, ""))?,
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((StatusCode::FOUND, headers).into_response())
}

/// What RFC 3986 leaves unencoded: letters, digits and `-._~`.
const UNRESERVED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, UNRESERVED).to_string()
}

/// `k=v&…`, each value percent-encoded: a query string or a form body.
fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&")
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
}

async fn callback(
    State(s): State<OidcState>,
    parts: axum::http::request::Parts,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, HttpError> {
    let client = s.client.as_ref().ok_or_else(off)?;
    let headers = &parts.headers;
    let address = crate::peer::client_ip(&parts, &s.trusted);
    s.herald.services.throttle.sign_in_attempt(address).map_err(HttpError::from)?;
    let refused = |detail: String| HttpError::new(ErrorCode::Unauthorized, format!("single sign-on failed: {detail}"));
    if let Some(error) = q.error {
        let detail = q.error_description.unwrap_or_default();
        return Err(refused(format!(
            "the provider answered {error}: {}",
            detail.chars().take(200).collect::<String>()
        )));
    }
    let svc = &s.herald.services;
    let now = svc.clock.now();
    let pending: Pending = cookie(headers)
        .and_then(|sealed| svc.tokens.open(PENDING_PURPOSE, sealed))
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| refused("this browser did not start the sign-in (no or a bad sign-in cookie)".into()))?;
    if pending.exp <= now.timestamp() {
        return Err(refused("the sign-in took too long; start again".into()));
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return Err(HttpError::new(ErrorCode::ValidationFailed, "the callback needs code and state"));
    };
    if !bool::from(subtle_eq(state.as_bytes(), pending.state.as_bytes())) {
        return Err(refused("the state does not match this browser's sign-in".into()));
    }
    let settings = &client.settings;
    let d = client.discovery().await.map_err(HttpError::from)?;
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", settings.redirect_url.as_str()),
        ("client_id", settings.client_id.as_str()),
        ("code_verifier", pending.verifier.as_str()),
    ]);
    let credentials = format!("{}:{}", encode(&settings.client_id), encode(&settings.client_secret));
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials));
    let answer: TokenAnswer =
        serde_json::from_slice(&client.fetch(&d.token_endpoint, Some((body, basic))).await.map_err(HttpError::from)?)
            .map_err(|_| refused("the provider's token answer is not JSON".into()))?;
    let id_token = answer.id_token.ok_or_else(|| refused("the provider gave no ID token".into()))?;
    let verify = |keys: &Jwks| {
        oidc::verify_id_token(&id_token, keys, &settings.issuer, &settings.client_id, &pending.nonce, now)
    };
    let keys = client.keys(&d, false).await.map_err(HttpError::from)?;
    let claims = match verify(&keys) {
        Err(IdTokenError::UnknownKey) => verify(&*client.keys(&d, true).await.map_err(HttpError::from)?),
        other => other,
    }
    .map_err(|e| HttpError::from(ApiError::from(e)))?;
    let role = oidc::role_of(&claims, &settings.role_claim, &settings.admin_values);
    let (user, token) = oidc::sign_in(svc, &settings.issuer, &claims, role).await.map_err(HttpError::from)?;
    tracing::info!(user = %user.id, role = %user.role.as_str(), "signed in through single sign-on");
    let location = format!("{}#access_token={}", pending.to, encode(&token.access_token));
    let mut out = HeaderMap::new();
    out.insert(header::LOCATION, HeaderValue::from_str(&location).map_err(|_| refused("a bad return path".into()))?);
    out.insert(
        header::SET_COOKIE,
        HeaderValue::from_static("herald_oidc=; Path=/api/v1/auth/oidc; Max-Age=0; HttpOnly; SameSite=Lax"),
    );
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((StatusCode::SEE_OTHER, out).into_response())
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

fn subtle_eq(a: &[u8], b: &[u8]) -> subtle::Choice {
    use subtle::ConstantTimeEq as _;
    if a.len() == b.len() { a.ct_eq(b) } else { subtle::Choice::from(0) }
}
