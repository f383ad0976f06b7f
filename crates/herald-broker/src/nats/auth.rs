//! Credentials in a NATS URL. async-nats 0.51 takes the URL only as a server address and ignores
//! any `user:password@` or `token@` in it, so a credentialed URL would connect anonymously and be
//! refused by a server that requires authentication. [`NatsTarget`] splits the credentials out and
//! hands them to async-nats as connect options.

use std::fmt;

use async_nats::ConnectOptions;

/// How a NATS connection authenticates, from the URL's userinfo (percent-decoded).
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum NatsAuth {
    /// No userinfo.
    Anonymous,
    /// `nats://user:password@host`.
    UserPassword { user: String, password: String },
    /// `nats://token@host`.
    Token(String),
}

impl fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::UserPassword { user, .. } => write!(f, "UserPassword({user:?}, ***)"),
            Self::Token(_) => f.write_str("Token(***)"),
        }
    }
}

/// A NATS URL split into the server address async-nats connects to and how to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NatsTarget {
    /// The URL without its userinfo: `nats://host:4222`.
    pub(crate) address: String,
    pub(crate) auth: NatsAuth,
}

impl NatsTarget {
    /// Splits `url` (`nats://[user:password@|token@]host[:port]`, or `tls://…`). Fails, without
    /// quoting the credentials, on an empty user, password or token, or a bad `%` escape.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url.split_once("://").ok_or("a NATS URL starts with nats:// or tls://")?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let Some((userinfo, host)) = authority.rsplit_once('@') else {
            return Ok(Self { address: url.to_owned(), auth: NatsAuth::Anonymous });
        };
        if host.is_empty() {
            return Err("the NATS URL names no host after its credentials".into());
        }
        let auth = match userinfo.split_once(':') {
            Some((user, password)) => {
                // An empty part is most often a variable that was not set: refuse it rather
                // than connect with half the credentials.
                if user.is_empty() || password.is_empty() {
                    return Err("the NATS URL's credentials need both a user and a password (user:password@)".into());
                }
                NatsAuth::UserPassword { user: percent_decode(user)?, password: percent_decode(password)? }
            }
            None if userinfo.is_empty() => return Err("the NATS URL has an empty token before '@'".into()),
            None => NatsAuth::Token(percent_decode(userinfo)?),
        };
        Ok(Self { address: format!("{scheme}://{host}{tail}"), auth })
    }

    /// Connect options that authenticate as the URL says.
    pub(crate) fn options(&self) -> ConnectOptions {
        match &self.auth {
            NatsAuth::Anonymous => ConnectOptions::new(),
            NatsAuth::UserPassword { user, password } => {
                ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            NatsAuth::Token(token) => ConnectOptions::with_token(token.clone()),
        }
    }
}

/// Decodes `%XX` escapes (RFC 3986 userinfo), requiring UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = bytes
                .get(i + 1..i + 3)
                .filter(|digits| digits.iter().all(u8::is_ascii_hexdigit))
                .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok())
                .ok_or("the NATS URL's credentials have a '%' not followed by two hex digits")?;
            decoded.push(byte);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| "the NATS URL's credentials are not UTF-8 once decoded".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> NatsTarget {
        NatsTarget::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn credentials_are_split_out_of_the_address() {
        assert_eq!(
            target("nats://herald:s3cret@nats:4222"),
            NatsTarget {
                address: "nats://nats:4222".into(),
                auth: NatsAuth::UserPassword { user: "herald".into(), password: "s3cret".into() },
            }
        );
        assert_eq!(
            target("nats://tok3n@nats:4222"),
            NatsTarget { address: "nats://nats:4222".into(), auth: NatsAuth::Token("tok3n".into()) }
        );
        assert_eq!(
            target("tls://u:p@[::1]:4443/?x=1"),
            NatsTarget {
                address: "tls://[::1]:4443/?x=1".into(),
                auth: NatsAuth::UserPassword { user: "u".into(), password: "p".into() },
            }
        );
        assert_eq!(
            target("nats://127.0.0.1:4222"),
            NatsTarget { address: "nats://127.0.0.1:4222".into(), auth: NatsAuth::Anonymous }
        );
    }

    #[test]
    fn credentials_are_percent_decoded() {
        let parsed = target("nats://us%40er:p%3Ass%2F%25w@nats");
        assert_eq!(parsed.auth, NatsAuth::UserPassword { user: "us@er".into(), password: "p:ss/%w".into() });
        assert_eq!(parsed.address, "nats://nats");
        // A raw '@' in a password (not percent-encoded) still leaves the host after the last one.
        let raw = target("nats://u:p@ss@nats:4222");
        assert_eq!(raw.auth, NatsAuth::UserPassword { user: "u".into(), password: "p@ss".into() });
        assert_eq!(raw.address, "nats://nats:4222");
        assert_eq!(target("nats://t%C3%B6k@h").auth, NatsAuth::Token("tök".into()));
    }

    #[test]
    fn incomplete_credentials_are_refused_without_quoting_them() {
        for url in [
            "nats://@nats:4222",
            "nats://:s3cret@nats:4222",
            "nats://herald:@nats:4222",
            "nats://herald:s3cret@",
            "nats://herald:s3cret%zz@nats",
            "nats://herald:s3cret%4@nats",
            "nats://herald:s3cret%+1@nats",
            "nats://herald:s3cret%ff@nats",
        ] {
            let error = NatsTarget::parse(url).expect_err(url);
            assert!(!error.contains("s3cret") && !error.contains("herald"), "{url}: {error}");
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!("{:?}", target("nats://herald:s3cret@nats"));
        assert!(shown.contains("herald") && !shown.contains("s3cret"), "{shown}");
        let shown = format!("{:?}", target("nats://tok3n@nats"));
        assert!(!shown.contains("tok3n"), "{shown}");
    }
}
