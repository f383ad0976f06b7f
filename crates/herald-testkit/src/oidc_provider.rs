//! A small OpenID Connect provider on loopback, for Herald's single sign-on tests: discovery,
//! an authorization endpoint that signs in whoever the test names (no login page), a token
//! endpoint that checks the client's secret, the redirect URI and the PKCE verifier, and a key
//! set whose ES256 key the test can rotate. ID tokens carry `iss`, `aud`, `sub`, `email`,
//! `email_verified`, `name`, `groups`, `nonce`, `iat` and `exp`; a test may spoil one.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use parking_lot::Mutex;
use ring::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _},
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

/// The person the authorization endpoint signs in next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub subject: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    pub groups: Vec<String>,
}

/// A way to spoil the next ID token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spoil {
    /// For another client.
    Audience,
    /// Expired an hour ago.
    Expired,
    /// Signed with a key the key set does not list.
    UnlistedKey,
}

#[derive(Debug)]
struct Grant {
    person: Person,
    nonce: String,
    challenge: String,
    redirect_uri: String,
}

struct Inner {
    issuer: String,
    client_id: String,
    client_secret: String,
    /// Signing keys by id; the last is the one in use.
    keys: Vec<(String, EcdsaKeyPair)>,
    next: Person,
    spoil: Option<Spoil>,
    codes: HashMap<String, Grant>,
    jwks_fetches: u64,
}

/// The provider, running until [`TestOidcProvider::stop`].
#[derive(Clone)]
pub struct TestOidcProvider {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for TestOidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestOidcProvider").field("addr", &self.addr).finish()
    }
}

fn new_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("a P-256 key");
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).expect("the key reads back")
}

fn random() -> String {
    let mut bytes = [0u8; 24];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    B64.encode(bytes)
}

impl TestOidcProvider {
    /// Starts on a free loopback port, for the client `client_id` with `client_secret`.
    pub async fn start(client_id: &str, client_secret: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let inner = Arc::new(Mutex::new(Inner {
            issuer: format!("http://{addr}"),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            keys: vec![("key-1".to_owned(), new_key())],
            next: Person {
                subject: "subject-1".into(),
                email: "person@example.org".into(),
                email_verified: true,
                name: "Person".into(),
                groups: Vec::new(),
            },
            spoil: None,
            codes: HashMap::new(),
            jwks_fetches: 0,
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/jwks", get(jwks))
            .with_state(inner.clone());
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(until.cancelled_owned()).await;
        });
        Self { addr, inner, stop }
    }

    /// Names itself `issuer` from now on (a TLS front's `https://` URL, say), in discovery and in
    /// the tokens it signs.
    pub fn set_issuer(&self, issuer: &str) {
        self.inner.lock().issuer = issuer.to_owned();
    }

    /// Where it listens, plain HTTP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The issuer URL (`http://127.0.0.1:<port>`).
    pub fn issuer(&self) -> String {
        self.inner.lock().issuer.clone()
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Whom the next authorization signs in.
    pub fn sign_in_next(&self, person: Person) {
        self.inner.lock().next = person;
    }

    /// Spoils the next ID token.
    pub fn spoil_next(&self, spoil: Spoil) {
        self.inner.lock().spoil = Some(spoil);
    }

    /// Signs with a new key from now on; the key set lists it and the old ones.
    pub fn rotate_key(&self) {
        let mut inner = self.inner.lock();
        let kid = format!("key-{}", inner.keys.len() + 1);
        inner.keys.push((kid, new_key()));
    }

    /// How many times the key set was fetched.
    pub fn jwks_fetches(&self) -> u64 {
        self.inner.lock().jwks_fetches
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

type Shared = Arc<Mutex<Inner>>;

async fn discovery(State(inner): State<Shared>) -> Json<Value> {
    let issuer = inner.lock().issuer.clone();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn authorize(State(inner): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut inner = inner.lock();
    let field = |k: &str| q.get(k).cloned().unwrap_or_default();
    if field("client_id") != inner.client_id || field("response_type") != "code" {
        return (StatusCode::BAD_REQUEST, "unknown client or response type").into_response();
    }
    if field("code_challenge_method") != "S256" || field("code_challenge").is_empty() || field("nonce").is_empty() {
        return (StatusCode::BAD_REQUEST, "PKCE S256 and a nonce are required").into_response();
    }
    let code = random();
    let grant = Grant {
        person: inner.next.clone(),
        nonce: field("nonce"),
        challenge: field("code_challenge"),
        redirect_uri: field("redirect_uri"),
    };
    let target = format!("{}?code={code}&state={}", grant.redirect_uri, encode(&field("state")));
    inner.codes.insert(code, grant);
    Redirect::to(&target).into_response()
}

/// What RFC 3986 leaves unencoded.
const UNRESERVED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn encode(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, UNRESERVED).to_string()
}

/// A form value: `+` is a space, then percent-decoding.
fn decode(v: &str) -> String {
    percent_encoding::percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().into_owned()
}

async fn token(State(inner): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = String::from_utf8_lossy(&body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    let mut inner = inner.lock();
    let basic = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "));
    let credentials = basic.and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    let expected = format!("{}:{}", encode(&inner.client_id), encode(&inner.client_secret));
    if credentials.as_deref() != Some(expected.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let Some(grant) = inner.codes.remove(&field("code")) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
    };
    let challenge = B64.encode(Sha256::digest(field("code_verifier").as_bytes()));
    if field("grant_type") != "authorization_code"
        || grant.redirect_uri != field("redirect_uri")
        || challenge != grant.challenge
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "PKCE or redirect"})),
        )
            .into_response();
    }
    let now = chrono::Utc::now().timestamp();
    let spoil = inner.spoil.take();
    let claims = json!({
        "iss": inner.issuer,
        "aud": if spoil == Some(Spoil::Audience) { "someone-else".to_owned() } else { inner.client_id.clone() },
        "sub": grant.person.subject,
        "email": grant.person.email,
        "email_verified": grant.person.email_verified,
        "name": grant.person.name,
        "groups": grant.person.groups,
        "nonce": grant.nonce,
        "iat": now,
        "exp": if spoil == Some(Spoil::Expired) { now - 3600 } else { now + 300 },
    });
    let unlisted;
    let (kid, key) = if spoil == Some(Spoil::UnlistedKey) {
        unlisted = new_key();
        ("unlisted", &unlisted)
    } else {
        let (kid, key) = inner.keys.last().expect("a key");
        (kid.as_str(), key)
    };
    let header = B64.encode(json!({"alg": "ES256", "typ": "JWT", "kid": kid}).to_string());
    let input = format!("{header}.{}", B64.encode(claims.to_string()));
    let signature = key.sign(&SystemRandom::new(), input.as_bytes()).expect("sign");
    let id_token = format!("{input}.{}", B64.encode(signature.as_ref()));
    Json(json!({"access_token": random(), "token_type": "Bearer", "expires_in": 300, "id_token": id_token}))
        .into_response()
}

async fn jwks(State(inner): State<Shared>) -> Json<Value> {
    let mut inner = inner.lock();
    inner.jwks_fetches += 1;
    let keys: Vec<Value> = inner
        .keys
        .iter()
        .map(|(kid, key)| {
            let point = key.public_key().as_ref();
            json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])})
        })
        .collect();
    Json(json!({"keys": keys}))
}
