//! Single sign-on through an OpenID Connect provider (the testkit's, on loopback): accounts by
//! issuer and subject, linking by verified email only, the role from a claim, key rotation,
//! and every way a sign-in can be forged or spoiled refused with a clear 4xx.

use herald_testkit::oidc_provider::{Person, Spoil, TestOidcProvider};
use reqwest::{StatusCode, header};
use serde_json::json;

/// The callback URL Herald registers with the provider. Its host is a placeholder (Herald
/// listens on a port of its own choosing): the test's browser goes to the app's real address.
const CALLBACK: &str = "http://herald.test/api/v1/auth/oidc/callback";

async fn app_with(provider: &TestOidcProvider, test: &str) -> herald_testkit::TestApp {
    app_tweaked(provider, test, |_| {}).await
}

async fn app_tweaked(
    provider: &TestOidcProvider,
    test: &str,
    tweak: impl FnOnce(&mut std::collections::BTreeMap<String, String>),
) -> herald_testkit::TestApp {
    let issuer = provider.issuer();
    herald_testkit::TestApp::start_with(herald_testkit::Backend::Sqlite, test, |env| {
        tweak(env);
        env.insert("HERALD_OIDC_ISSUER".into(), issuer);
        env.insert("HERALD_OIDC_CLIENT_ID".into(), "herald".into());
        env.insert("HERALD_OIDC_CLIENT_SECRET".into(), "s3cret/with&odd=chars".into());
        env.insert("HERALD_OIDC_REDIRECT_URL".into(), CALLBACK.into());
    })
    .await
    .expect("SQLite")
}

fn person(subject: &str, email: &str, verified: bool, groups: &[&str]) -> Person {
    Person {
        subject: subject.into(),
        email: email.into(),
        email_verified: verified,
        name: "Signed In".into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

/// The browser's part, by hand: start, the provider's redirect, the callback with the cookie.
/// `Ok` with where the browser lands, or the callback's status and problem.
async fn sign_in(app: &herald_testkit::TestApp, to: &str) -> Result<String, (StatusCode, serde_json::Value)> {
    sign_in_with(app, to, herald_testkit::http::builder()).await
}

/// [`sign_in`] with a browser of `browser`'s settings (one that trusts a test CA, say).
async fn sign_in_with(
    app: &herald_testkit::TestApp,
    to: &str,
    browser: reqwest::ClientBuilder,
) -> Result<String, (StatusCode, serde_json::Value)> {
    let http = browser.redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let start = http.get(app.url(&format!("/api/v1/auth/oidc/start?to={to}"))).send().await.expect("start");
    assert_eq!(start.status(), StatusCode::FOUND);
    let cookie =
        start.headers()[header::SET_COOKIE].to_str().expect("cookie").split(';').next().expect("pair").to_owned();
    assert!(start.headers()[header::SET_COOKIE].to_str().expect("cookie").contains("HttpOnly"));
    let authorize = start.headers()[header::LOCATION].to_str().expect("location").to_owned();
    assert!(authorize.contains("code_challenge_method=S256") && authorize.contains("nonce="), "{authorize}");
    let back = http.get(&authorize).send().await.expect("authorize");
    assert!(back.status().is_redirection(), "the provider sends the browser back: {}", back.status());
    let callback = back.headers()[header::LOCATION].to_str().expect("location").to_owned();
    assert!(callback.starts_with(CALLBACK), "back to the registered callback: {callback}");
    let callback = callback.replacen("http://herald.test", &app.base, 1);
    let done = http.get(&callback).header(header::COOKIE, &cookie).send().await.expect("callback");
    if done.status() != StatusCode::SEE_OTHER {
        let status = done.status();
        return Err((status, done.json().await.unwrap_or_default()));
    }
    Ok(done.headers()[header::LOCATION].to_str().expect("location").to_owned())
}

fn token_of(landing: &str) -> String {
    let (_, fragment) = landing.split_once("#access_token=").expect("a token in the fragment");
    fragment.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_links_accounts_by_subject_and_verified_email() {
    let provider = TestOidcProvider::start("herald", "s3cret/with&odd=chars").await;
    let app = app_with(&provider, "sso_accounts").await;
    assert_eq!(app.get("/api/v1/auth/oidc", None).await.body, json!({"enabled": true}));

    // A new person in the admin group: a new account, an administrator.
    provider.sign_in_next(person("ada-1", "ada@example.org", true, &["staff", "herald-admin"]));
    let landing = sign_in(&app, "/admin/%23/mailings").await.expect("signed in");
    assert!(landing.starts_with("/admin/#access_token="), "{landing}");
    let me = app.get("/api/v1/me", Some(&token_of(&landing))).await;
    assert_eq!(
        (me.body["email"].as_str(), me.body["role"].as_str()),
        (Some("ada@example.org"), Some("admin")),
        "{:?}",
        me.body
    );
    let ada = me.body["id"].clone();

    // The same subject again is the same account, whatever its email says now; out of the
    // group, it is a user.
    provider.sign_in_next(person("ada-1", "ada.new@example.org", true, &[]));
    let me = app.get("/api/v1/me", Some(&token_of(&sign_in(&app, "/admin/").await.expect("again")))).await;
    assert_eq!((me.body["id"].clone(), me.body["role"].as_str()), (ada, Some("user")));

    // A verified email links a local account, whose password keeps working.
    let local = app.user("bob@example.org").await;
    let bob = app.get("/api/v1/me", Some(&local)).await.body["id"].clone();
    provider.sign_in_next(person("bob-at-idp", "Bob@Example.org", true, &[]));
    let me = app.get("/api/v1/me", Some(&token_of(&sign_in(&app, "/admin/").await.expect("linked")))).await;
    assert_eq!(me.body["id"], bob);
    app.login("bob@example.org", "password123").await;

    // An unverified email never takes over a local account, nor makes one that its owner would
    // later land in.
    app.user("carol@example.org").await;
    for (subject, email) in [("carol-at-idp", "carol@example.org"), ("eve-1", "victim@example.org")] {
        provider.sign_in_next(person(subject, email, false, &["herald-admin"]));
        let (status, problem) = sign_in(&app, "/admin/").await.expect_err("refused");
        assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{problem}");
    }
    // A second person at the provider with the email of an account linked to the first is refused.
    provider.sign_in_next(person("ada-2", "ada@example.org", true, &["herald-admin"]));
    let (status, problem) = sign_in(&app, "/admin/").await.expect_err("refused");
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{problem}");

    // Only paths of this origin are returned to.
    for to in ["//evil.example/", "/%09/evil.example", "/%5Cevil.example", "https://evil.example"] {
        provider.sign_in_next(person("ada-1", "ada@example.org", true, &[]));
        let landing = sign_in(&app, to).await.expect("signed in");
        assert!(landing.starts_with("/admin/#access_token="), "{to}: {landing}");
    }
    app.stop().await;
    provider.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_spoiled_sign_ins_are_refused_and_rotated_keys_are_followed() {
    let provider = TestOidcProvider::start("herald", "s3cret/with&odd=chars").await;
    let app = app_with(&provider, "sso_forged").await;
    provider.sign_in_next(person("dan-1", "dan@example.org", true, &[]));
    sign_in(&app, "/admin/").await.expect("a first sign-in");
    let fetched = provider.jwks_fetches();

    // A rotated key: the key set is fetched again once, and the sign-in goes through.
    provider.rotate_key();
    sign_in(&app, "/admin/").await.expect("signed in with the new key");
    assert_eq!(provider.jwks_fetches(), fetched + 1);

    for spoil in [Spoil::Audience, Spoil::Expired, Spoil::UnlistedKey] {
        provider.spoil_next(spoil);
        let (status, problem) = sign_in(&app, "/admin/").await.expect_err("spoiled");
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized")),
            "{spoil:?}: {problem}"
        );
    }
    assert_eq!(provider.jwks_fetches(), fetched + 2, "an unlisted key has the keys fetched once more, and no more");

    // A callback without this browser's cookie, with a forged one, or with another state.
    let http = herald_testkit::http::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let callback = app.url("/api/v1/auth/oidc/callback?code=x&state=y");
    for cookie in [None, Some("herald_oidc=e30.AAAA"), Some("herald_oidc=garbage")] {
        let mut req = http.get(&callback);
        if let Some(cookie) = cookie {
            req = req.header(header::COOKIE, cookie);
        }
        let answer = req.send().await.expect("callback");
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{cookie:?}");
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/problem+json");
    }
    let start = http.get(app.url("/api/v1/auth/oidc/start")).send().await.expect("start");
    let cookie =
        start.headers()[header::SET_COOKIE].to_str().expect("cookie").split(';').next().expect("pair").to_owned();
    let answer = http.get(&callback).header(header::COOKIE, &cookie).send().await.expect("callback");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "another state");
    let answer = http.get(app.url("/api/v1/auth/oidc/callback?error=access_denied")).send().await.expect("callback");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
    provider.stop();
}

/// Without `HERALD_OIDC_ISSUER` single sign-on says it is off and its routes are 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_is_off_unless_configured() {
    let app = herald_testkit::TestApp::start(herald_testkit::Backend::Sqlite, "sso_off").await.expect("SQLite");
    assert_eq!(app.get("/api/v1/auth/oidc", None).await.body, json!({"enabled": false}));
    assert_eq!(app.get("/api/v1/auth/oidc/start", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/auth/oidc/callback?code=a&state=b", None).await.status, StatusCode::NOT_FOUND);
    app.stop().await;
}

/// Each callback makes Herald call the provider: one client address gets the budget of password
/// checks (`HERALD_AUTH_ADDRESS_RATE`) for them, then 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_from_one_address_are_limited() {
    let provider = TestOidcProvider::start("herald", "s3cret/with&odd=chars").await;
    let app = app_tweaked(&provider, "sso_limited", |env| {
        env.insert("HERALD_AUTH_ADDRESS_RATE".into(), "3/m".into());
    })
    .await;
    provider.sign_in_next(person("lim-1", "lim@example.org", true, &[]));
    sign_in(&app, "/admin/").await.expect("a sign-in within the budget");
    let http = herald_testkit::http::client();
    let callback = app.url("/api/v1/auth/oidc/callback?code=x&state=y");
    let statuses: Vec<u16> = futures::future::join_all((0..3).map(|_| http.get(&callback).send()))
        .await
        .into_iter()
        .map(|r| r.expect("callback").status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 401).count(), 2, "{statuses:?}");
    app.stop().await;
    provider.stop();
}

/// The provider's answers are read up to `HERALD_OIDC_ANSWER_LIMIT`: a discovery document longer
/// than that fails the sign-in (503), read no further.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_answers_over_their_limit_are_refused() {
    let provider = TestOidcProvider::start("herald", "s3cret/with&odd=chars").await;
    let app = app_tweaked(&provider, "sso_answer_limit", |env| {
        env.insert("HERALD_OIDC_ANSWER_LIMIT".into(), "64".into());
    })
    .await;
    let http = herald_testkit::http::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let start = http.get(app.url("/api/v1/auth/oidc/start?to=/admin/")).send().await.expect("start");
    assert_eq!(start.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(start.json::<serde_json::Value>().await.expect("problem")["code"], "unavailable");
    app.stop().await;
    provider.stop();
}

/// The provider over HTTPS, its certificate from a CA the operator names in
/// `HERALD_HTTP_CA_FILE`: discovery, the token exchange and the key set all go through the one
/// outbound client (`herald-egress`) and its TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_reaches_a_provider_over_https_through_the_operators_ca() {
    use herald_testkit::tls::{TestCa, TlsFront};
    let provider = TestOidcProvider::start("herald", "s3cret/with&odd=chars").await;
    let ca = TestCa::new();
    let front = TlsFront::start(provider.addr(), &ca.issue(&["localhost"])).await;
    provider.set_issuer(&format!("https://localhost:{}", front.addr.port()));
    let ca_file = tempfile::NamedTempFile::new().expect("CA file");
    ca.write(ca_file.path());
    let path = ca_file.path().display().to_string();
    let app = app_tweaked(&provider, "sso_over_https", |env| {
        env.insert("HERALD_HTTP_CA_FILE".into(), path);
    })
    .await;
    provider.sign_in_next(person("tls-subject", "tls@example.org", true, &[]));
    let trusted = reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("the CA");
    let browser = herald_testkit::http::builder().tls_certs_merge([trusted]);
    let landing = sign_in_with(&app, "/demo", browser).await.expect("signed in over TLS");
    let me = app.get("/api/v1/me", Some(&token_of(&landing))).await;
    assert_eq!((me.status, &me.body["email"]), (StatusCode::OK, &serde_json::json!("tls@example.org")));
    // The browser's visit, discovery, the token exchange and the key set: one handshake each at most.
    assert!(front.handshakes() >= 2, "Herald reached the provider over TLS");
    assert_eq!(front.failed_handshakes(), 0);
    app.stop().await;
}
