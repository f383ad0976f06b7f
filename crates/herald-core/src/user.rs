//! Users: validated email and name newtypes, roles, and the user record.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::campaign::TimeZone;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

id_type!(
    /// A user's id (UUIDv7).
    UserId
);

/// Longest email address accepted (RFC 5321 path limit).
pub const EMAIL_MAX: usize = 254;

/// A normalised (trimmed, lower-cased) email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() || email.len() > EMAIL_MAX {
            return Err("must be between 3 and 254 characters");
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err("not a valid email address");
        };
        let valid = !local.is_empty()
            && local.len() <= 64
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if valid { Ok(Self(email)) } else { Err("not a valid email address") }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = &'static str;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Email> for String {
    fn from(email: Email) -> Self {
        email.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest display name accepted, in characters.
pub const NAME_MAX: usize = 100;

text_type!(
    /// A display name: trimmed, 1 to 100 characters, no control characters.
    trimmed UserName,
    |text| crate::macros::one_line(text, NAME_MAX, "must be between 1 and 100 characters")
);

text_type!(
    /// A person's phone number for text messages: `7XXXXXXXXXX` (as for campaign clients) or
    /// E.164 (`+` and 7 to 15 digits, the first not 0).
    ContactPhone,
    |raw| {
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let russian = raw.len() == 11 && raw.starts_with('7') && digits(raw);
        let e164 = raw
            .strip_prefix('+')
            .is_some_and(|rest| (7..=15).contains(&rest.len()) && !rest.starts_with('0') && digits(rest));
        if russian || e164 { Ok(()) } else { Err("must be 7XXXXXXXXXX or E.164, like +4915112345678") }
    }
);

/// Password length bounds. The upper bound keeps hashing cost bounded.
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;

/// A plain-text password on its way to the hasher. Never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// A password that meets the policy, for accounts being created.
    pub fn new_secret(raw: String) -> Result<Self, &'static str> {
        let len = raw.chars().count();
        if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&len) {
            return Err("must be between 8 and 128 characters");
        }
        Ok(Self(raw))
    }

    /// A password as typed at login: only the length cap applies.
    pub fn attempt(raw: String) -> Self {
        Self(raw)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

string_enum!(
    /// What a user may do. A registered user is always `user`; admins are made by an operator.
    #[derive(Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    Role {
        User => "user",
        Admin => "admin",
    }
);

/// A stored user, without credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub name: UserName,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// Where text messages reach them, if they gave it.
    pub phone: Option<ContactPhone>,
    /// Their zone, for quiet hours (UTC when unset).
    pub timezone: Option<TimeZone>,
}

/// A change to a user's own profile: `None` leaves a field, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChange {
    pub name: Option<UserName>,
    pub phone: Option<Option<ContactPhone>>,
    pub timezone: Option<Option<TimeZone>>,
}

/// A user about to be stored, password already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub user: User,
    pub password_hash: String,
}

/// A user with the hash needed to check a login.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(Email::parse("  Ada@Example.ORG ").map(|e| e.0), Ok("ada@example.org".into()));
        for bad in ["", "ada", "ada@", "@example.org", "ada@example", "a b@example.org", "a@b@c.org", "a@.org"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@example.org", "a".repeat(65))).is_err());
    }

    #[test]
    fn contact_phones_are_russian_or_e164() {
        for good in ["79161234567", "+79161234567", "+4915112345678", "+1234567"] {
            assert!(ContactPhone::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "89161234567", "7916123456", "+0123456789", "+123456", "+1234567890123456", "+49 151 1234"] {
            assert!(ContactPhone::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_and_passwords_have_bounds() {
        assert!(UserName::parse("  ").is_err());
        assert!(UserName::parse(&"x".repeat(101)).is_err());
        assert!(UserName::parse("bell\u{7}").is_err());
        assert_eq!(UserName::parse(" Ada ").map(|n| n.0), Ok("Ada".into()));
        assert!(Password::new_secret("short".into()).is_err());
        assert!(Password::new_secret("x".repeat(129)).is_err());
        assert!(Password::new_secret("long enough".into()).is_ok());
        assert_eq!(format!("{:?}", Password::attempt("hunter22".into())), "Password(***)");
    }

    #[test]
    fn a_webhook_url_names_the_host_and_port_it_connects_to() {
        let host_port = |raw: &str| WebhookUrl::parse(raw).expect(raw).host_and_port();
        for (raw, host, port) in [
            ("http://hooks.example.org/r", "hooks.example.org", 80),
            ("http://Hooks.Example.ORG:8080/r?x=1", "hooks.example.org", 8080),
            ("http://127.0.0.1:18999/internal", "127.0.0.1", 18999),
            ("http://[::1]/", "[::1]", 80),
            ("http://[FE80::1]:9000", "[fe80::1]", 9000),
            ("http://[::ffff:127.0.0.1]:81/", "[::ffff:127.0.0.1]", 81),
            ("http://user:pass@10.0.0.1:81/", "10.0.0.1", 81),
            ("http://a@b@169.254.169.254/", "169.254.169.254", 80),
            ("http://evil.example\\@127.0.0.1/", "evil.example", 80),
            ("http://localhost:/", "localhost", 80),
            ("http://localhost./x", "localhost", 80),
            ("http://127.0.0.1./", "127.0.0.1", 80),
            ("http://hook#frag", "hook", 80),
            ("http://my_host.example:0080", "my_host.example", 80),
            ("https://hooks.example.org/r", "hooks.example.org", 443),
            ("https://hooks.example.org:8443/r", "hooks.example.org", 8443),
            ("https://[::1]/", "[::1]", 443),
        ] {
            assert_eq!(host_port(raw), Ok((host.to_owned(), port)), "{raw}");
        }
        for raw in [
            "http://127.1/",
            "http://0x7f.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://host.0x/",
            "http://127.0.0.%31/",
            "http://ⓛocalhost/",
            "http://[::1/",
            "http://[::1]x/",
            "http://[not-v6]/",
            "http://a:b:c/",
            "http://host:65536/",
            "http://host:0/",
            "http://host:8o/",
            "http://user@/",
        ] {
            assert!(host_port(raw).is_err(), "{raw} accepted");
        }
    }
}

/// A webhook URL's scheme's default port and what follows `scheme://`.
fn split_scheme(url: &str) -> Option<(u16, &str)> {
    url.strip_prefix("https://").map(|rest| (443, rest)).or_else(|| url.strip_prefix("http://").map(|rest| (80, rest)))
}

/// Where a user's own notifications are POSTed: an `https://` or `http://` URL with a host, at
/// most 2048 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let url = raw.trim();
        if url.len() > 2048 {
            return Err("must be at most 2048 characters");
        }
        let Some((_, rest)) = split_scheme(url) else { return Err("must be an https:// or http:// URL") };
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() || host.starts_with(':') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must be an https:// or http:// URL with a host");
        }
        Ok(Self(url.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host (a lower-cased name, a dotted IPv4 address, or an IPv6 address in brackets) and
    /// the port (443 for `https://`, 80 for `http://`, unless given) this URL connects to.
    ///
    /// Stricter than [`WebhookUrl::parse`], which stored URLs are read back with: a host that a
    /// URL parser would read as something else is refused, so the host checked when the URL is
    /// set is the one connected to later. Userinfo (`user:pass@`) is skipped; a backslash ends
    /// the authority as a slash does; percent-escapes and non-ASCII hosts (which IDNA maps:
    /// `ⓛocalhost`) are refused, and so are numeric forms other than a dotted quad (`127.1`,
    /// `0x7f.1`, `2130706433`), which parsers read as IPv4 addresses.
    pub fn host_and_port(&self) -> Result<(String, u16), &'static str> {
        const BAD_HOST: &str = "must name its host as a DNS name, a dotted IPv4 address or a bracketed IPv6 address";
        let (default_port, rest) = split_scheme(&self.0).ok_or("must be an https:// or http:// URL")?;
        let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, host_port)| host_port);
        let (host, port) = match host_port.strip_prefix('[') {
            Some(v6) => {
                let (addr, after) = v6.split_once(']').ok_or(BAD_HOST)?;
                addr.parse::<std::net::Ipv6Addr>().map_err(|_| BAD_HOST)?;
                let port = match after {
                    "" => None,
                    _ => Some(after.strip_prefix(':').ok_or(BAD_HOST)?),
                };
                (format!("[{}]", addr.to_ascii_lowercase()), port)
            }
            None => {
                let (host, port) = match host_port.rsplit_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (host_port, None),
                };
                if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
                    return Err(BAD_HOST);
                }
                let bare = host.strip_suffix('.').unwrap_or(host);
                let last = bare.rsplit('.').next().unwrap_or_default();
                if is_ipv4_number(last) && bare.parse::<std::net::Ipv4Addr>().is_err() {
                    return Err(BAD_HOST);
                }
                (bare.to_ascii_lowercase(), port)
            }
        };
        let port = match port {
            None | Some("") => default_port,
            Some(port) if port.bytes().all(|b| b.is_ascii_digit()) => {
                port.parse().map_err(|_| "must have a port from 1 to 65535")?
            }
            Some(_) => return Err("must have a port from 1 to 65535"),
        };
        if port == 0 {
            return Err("must have a port from 1 to 65535");
        }
        Ok((host, port))
    }
}

/// Whether a host's last label is a number, as the URL standard reads one (decimal or `0x` hex,
/// then the whole host is parsed as an IPv4 address).
fn is_ipv4_number(label: &str) -> bool {
    let hex = label.strip_prefix("0x").or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

impl TryFrom<String> for WebhookUrl {
    type Error = &'static str;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<WebhookUrl> for String {
    fn from(url: WebhookUrl) -> Self {
        url.0
    }
}
