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
/// (`password`, `sslpassword`, `api_key`, `access_token`, `client_secret`, `pass` …).
const SECRET_WORDS: &[&str] = &["pass", "token", "secret", "key", "auth", "credential", "signature"];

/// `scheme://user:secret@host/x?password=y` -> `scheme://user:***@host/x?password=***`. A bare user
/// part on `nats`/`tls` URLs is a token, and is hidden too; so is the value of every query
/// parameter whose name says it holds a secret.
pub fn url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None if scheme.starts_with("nats") || scheme == "tls" => format!("***@{host}"),
            None => authority.to_owned(),
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

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| name.contains(word))
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
}
