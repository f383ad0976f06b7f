//! Keeping secrets out of what Herald prints.

use std::fmt;

/// A secret (a token, a key) that prints as `***` in `Debug` and `Display`; [`expose`] gives
/// the value to the one place that needs it.
///
/// [`expose`]: SecretString::expose
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Query parameters whose value is a secret: their name contains one of these words
/// (`password`, `sslpassword`, `api_key`, `access_token`, `client_secret`, `X-Amz-Signature`,
/// `sessionid`, `pass` …), case-insensitively.
const SECRET_WORDS: &[&str] = &["pass", "token", "secret", "key", "auth", "credential", "signature", "session"];

/// Short names that are secrets as a whole word of a parameter's name (`sig`, `auth_code`,
/// `pwd`), but too short to look for inside other words.
const SECRET_PARTS: &[&str] = &["sig", "pw", "pwd", "code", "hash"];

/// Schemes whose lone user part (`scheme://name@host`) names a role or an account, not a secret.
const USER_NAME_SCHEMES: &[&str] =
    &["postgres", "postgresql", "amqp", "amqps", "redis", "rediss", "smtp", "smtps", "sqlite", "file"];

/// `scheme://user:secret@host/x?password=y` -> `scheme://user:***@host/x?password=***`. A lone
/// user part is a token on most schemes (`https://TOKEN@host`, `nats://TOKEN@host`) and is hidden
/// too, but kept where it is an account name (PostgreSQL, AMQP, Redis, SMTP); so is the value of
/// every query parameter whose name says it holds a secret ([`is_secret_name`]).
pub fn url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None if USER_NAME_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) => authority.to_owned(),
            None => format!("***@{host}"),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{}", query_secrets(tail))
}

/// Hides the values of secret-named parameters in the query of a URL's path-and-query part.
fn query_secrets(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else { return tail.to_owned() };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{path}?{}", pairs.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// Whether a query parameter named `name` holds a secret: its name contains one of
/// [`SECRET_WORDS`], or one of its words (split at anything not a letter or digit) is one of
/// [`SECRET_PARTS`].
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| name.contains(word))
        || name.split(|c: char| !c.is_ascii_alphanumeric()).any(|part| SECRET_PARTS.contains(&part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens_are_hidden() {
        assert_eq!(url_password("postgres://app:pw@db:5432/h?x=1"), "postgres://app:***@db:5432/h?x=1");
        assert_eq!(url_password("postgres://app@db/h"), "postgres://app@db/h");
        assert_eq!(url_password("nats://tok3n@nats:4222"), "nats://***@nats:4222");
        assert_eq!(url_password("memory://"), "memory://");
    }

    #[test]
    fn secrets_in_the_query_are_hidden() {
        assert_eq!(url_password("postgres://app@db/h?password=hunter2"), "postgres://app@db/h?password=***");
        assert_eq!(
            url_password("postgres://db/h?sslmode=require&sslpassword=x&user=app"),
            "postgres://db/h?sslmode=require&sslpassword=***&user=app"
        );
        assert_eq!(url_password("http://sms.local/?api_key=k&Token=t#f"), "http://sms.local/?api_key=***&Token=***#f");
        assert_eq!(url_password("nats://nats:4222?pass=p"), "nats://nats:4222?pass=***");
        assert_eq!(url_password("amqp://u:p@mq/%2f?heartbeat=10"), "amqp://u:***@mq/%2f?heartbeat=10");
        assert!(!url_password("sqlite://x.db?secret=s3cr3t").contains("s3cr3t"));
    }

    #[test]
    fn secret_parameter_names_are_found_in_any_case_and_inside_longer_names() {
        // The list itself is checked on every URL setting by the configuration's tests.
        let names =
            ["X-Amz-Signature", "auth_code", "SessionId", "PWD", "url_sig", "Client_Secret", "HASH", "sslpassword"];
        for name in names {
            let url = format!("https://idp.example/realm?{name}=v4lue&keep=1");
            assert_eq!(url_password(&url), format!("https://idp.example/realm?{name}=***&keep=1"), "{name}");
        }
        for plain in ["keep", "client_id", "realm", "design", "unicode_x", "encoding", "scope", "shape"] {
            assert!(!is_secret_name(plain), "{plain}");
        }
    }

    #[test]
    fn userinfo_is_hidden_and_a_lone_user_kept_only_where_it_is_an_account() {
        assert_eq!(url_password("https://alice:pw@idp.example/x"), "https://alice:***@idp.example/x");
        assert_eq!(url_password("https://T0KEN@idp.example/x"), "https://***@idp.example/x");
        assert_eq!(url_password("tls://T0KEN@nats:4222"), "tls://***@nats:4222");
        assert_eq!(url_password("amqp://guest@mq/%2f"), "amqp://guest@mq/%2f");
        assert_eq!(url_password("redis://default@cache:6379"), "redis://default@cache:6379");
    }
}
