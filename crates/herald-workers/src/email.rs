//! The `email` channel: SMTP through lettre, TLS through rustls with ring (implicit TLS for
//! `smtps://`, STARTTLS for `smtp://`). A delivery's recipient is the address; its payload is
//! `{subject, text, html?}` (with `html`, a multipart/alternative message with both bodies).
//!
//! The server's answers map onto the delivery policy: a 4xx reply (greylisting, a full mailbox,
//! a busy server) is retried, a 5xx reply (no such user, refused) is final, a connection or TLS
//! failure and a timeout are retried.

use std::{fmt, str::FromStr, time::Duration};

use herald_core::{
    delivery::{Attempt, DeliveryJob, Failure},
    redact::SecretString,
};
use lettre::{
    AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor,
    message::{Mailbox, MultiPart, SinglePart, header::ContentType},
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
    },
};

/// How a connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtps://`: TLS from the first byte (port 465 by default).
    Implicit,
    /// `smtp://…?tls=starttls`: plain, then STARTTLS, which must succeed.
    StartTls,
    /// `smtp://` (the default): STARTTLS when the server offers it, else plain.
    Opportunistic,
    /// `smtp://…?tls=none`: never TLS (a relay on loopback).
    None,
}

/// `HERALD_SMTP_URL`: `smtp://[user[:password]@]host[:port][?tls=starttls|none]` or
/// `smtps://[user[:password]@]host[:port]`. Prints with the password as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub user: Option<String>,
    pub password: Option<SecretString>,
}

/// A `%`-escaped part of a URL's credentials, decoded.
fn decoded(raw: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "a %-escaped credential is not UTF-8".to_owned())
}

impl FromStr for SmtpUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = reqwest::Url::parse(s).map_err(|e| format!("must be smtp://… or smtps://…: {e}"))?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("must name the SMTP server's host")?;
        let tls = url.query_pairs().filter(|(k, _)| k == "tls").map(|(_, v)| v.into_owned()).last();
        let security = match (url.scheme(), tls.as_deref()) {
            ("smtps", None) => SmtpSecurity::Implicit,
            ("smtp", None | Some("opportunistic")) => SmtpSecurity::Opportunistic,
            ("smtp", Some("starttls")) => SmtpSecurity::StartTls,
            ("smtp", Some("none")) => SmtpSecurity::None,
            ("smtps", Some(_)) => return Err("smtps:// is TLS already; tls= applies to smtp:// only".into()),
            ("smtp", Some(other)) => return Err(format!("tls must be starttls, opportunistic or none, not {other:?}")),
            _ => return Err("must be smtp://… or smtps://…".into()),
        };
        let user = Some(url.username()).filter(|u| !u.is_empty()).map(decoded).transpose()?;
        let password = url.password().map(decoded).transpose()?.map(SecretString::from);
        let port = url.port().filter(|p| *p != 0).unwrap_or(if security == SmtpSecurity::Implicit { 465 } else { 587 });
        Ok(Self { host: host.trim_matches(['[', ']']).to_owned(), port, security, user, password })
    }
}

impl fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.security == SmtpSecurity::Implicit { "smtps" } else { "smtp" };
        write!(f, "{scheme}://")?;
        match (&self.user, &self.password) {
            (Some(user), Some(_)) => write!(f, "{user}:***@")?,
            (Some(user), None) => write!(f, "{user}@")?,
            _ => {}
        }
        write!(f, "{}:{}", self.host, self.port)?;
        match self.security {
            SmtpSecurity::StartTls => f.write_str("?tls=starttls"),
            SmtpSecurity::None => f.write_str("?tls=none"),
            SmtpSecurity::Implicit | SmtpSecurity::Opportunistic => Ok(()),
        }
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmtpUrl({self})")
    }
}

/// `HERALD_EMAIL_FROM`: the sender's mailbox, `noreply@example.org` or `Herald <noreply@…>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailFrom(pub Mailbox);

impl FromStr for EmailFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self).map_err(|e| format!("must be an address like Herald <noreply@example.org>: {e}"))
    }
}

impl fmt::Display for EmailFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The email channel's settings.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub url: SmtpUrl,
    pub from: EmailFrom,
    /// Longest wait for each step of the SMTP conversation.
    pub timeout: Duration,
    /// PEM certificates trusted besides the system's roots (a private CA, a test server).
    pub extra_roots: Vec<u8>,
}

/// The email channel: one pooled SMTP transport.
#[derive(Clone)]
pub struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// Longest one send may take, every step of the conversation together.
    timeout: Duration,
}

impl fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailChannel").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

/// The domain of an address, lower-cased (the email channel's breaker is per domain).
pub fn domain_of(address: &str) -> Option<String> {
    address.rsplit_once('@').map(|(_, domain)| domain.trim().to_ascii_lowercase()).filter(|d| !d.is_empty())
}

impl EmailChannel {
    /// Checks `config`'s TLS settings (a bad `extra_roots` PEM is an error) without connecting
    /// or needing a runtime.
    pub fn check(config: &EmailConfig) -> Result<(), String> {
        Self::security(config).map(drop)
    }

    fn security(config: &EmailConfig) -> Result<Tls, String> {
        let tls = || {
            let mut params = TlsParameters::builder(config.url.host.clone());
            if !config.extra_roots.is_empty() {
                let root = Certificate::from_pem(&config.extra_roots)
                    .map_err(|e| format!("holds no usable PEM certificate: {e}"))?;
                params = params.add_root_certificate(root);
            }
            params.build_rustls().map_err(|e| format!("the SMTP TLS settings: {e}"))
        };
        Ok(match config.url.security {
            SmtpSecurity::Implicit => Tls::Wrapper(tls()?),
            SmtpSecurity::StartTls => Tls::Required(tls()?),
            SmtpSecurity::Opportunistic => Tls::Opportunistic(tls()?),
            SmtpSecurity::None => Tls::None,
        })
    }

    /// The channel for `config` (inside a Tokio runtime: the connection pool runs on it).
    pub fn new(config: &EmailConfig) -> Result<Self, String> {
        let url = &config.url;
        let security = Self::security(config)?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(url.host.as_str())
            .port(url.port)
            .tls(security)
            .timeout(Some(config.timeout));
        if let Some(user) = &url.user {
            let password = url.password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Self { transport: builder.build(), from: config.from.0.clone(), timeout: config.timeout })
    }

    /// Sends `job`'s message to its recipient.
    pub async fn send(&self, job: &DeliveryJob) -> Attempt {
        let message = self.message(job)?;
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(classify(&err)),
            Err(_) => Err(Failure::Timeout),
        }
    }

    fn message(&self, job: &DeliveryJob) -> Result<Message, Failure> {
        let malformed = |reason: String| Failure::Malformed { reason };
        let to: Mailbox =
            job.recipient.parse().map_err(|_| malformed(format!("{:?} is not an email address", job.recipient)))?;
        let text = |field: &str| job.payload.get(field).and_then(|v| v.as_str()).filter(|v| !v.is_empty());
        let subject = text("subject").ok_or_else(|| malformed("the payload has no subject".into()))?;
        let body = text("text").ok_or_else(|| malformed("the payload has no text".into()))?;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            // The delivery's id, the same on every retry: a receiver can drop a repeat.
            .message_id(Some(format!("<{}@herald>", job.id)));
        let built = match text("html") {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(body.to_owned(), html.to_owned())),
            None => builder.singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(body.to_owned())),
        };
        built.map_err(|e| malformed(format!("the message could not be built: {e}")))
    }
}

/// An SMTP failure as the delivery policy sees it.
fn classify(err: &lettre::transport::smtp::Error) -> Failure {
    if let Some(code) = err.status() {
        let code = u16::from(code);
        return Failure::Smtp { code };
    }
    if err.is_timeout() { Failure::Timeout } else { Failure::Connection }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_parse_and_print_without_the_password() {
        let url: SmtpUrl = "smtp://mailer:p%40ss@mail.example.org:2525?tls=starttls".parse().expect("url");
        assert_eq!((url.host.as_str(), url.port, url.security), ("mail.example.org", 2525, SmtpSecurity::StartTls));
        assert_eq!((url.user.as_deref(), url.password.as_ref().map(|p| p.expose())), (Some("mailer"), Some("p@ss")));
        assert_eq!(url.to_string(), "smtp://mailer:***@mail.example.org:2525?tls=starttls");
        assert!(!format!("{url:?}").contains("p@ss"));
        let tls: SmtpUrl = "smtps://relay.example.org".parse().expect("url");
        assert_eq!((tls.port, tls.security), (465, SmtpSecurity::Implicit));
        let plain: SmtpUrl = "smtp://127.0.0.1:25?tls=none".parse().expect("url");
        assert_eq!((plain.port, plain.security, plain.user), (25, SmtpSecurity::None, None));
        assert_eq!(
            "smtp://mx".parse::<SmtpUrl>().map(|u| (u.port, u.security)),
            Ok((587, SmtpSecurity::Opportunistic))
        );
        for bad in ["http://mx", "smtp://", "smtp://mx:port", "smtp://mx?tls=maybe", "smtps://mx?tls=none", "mx:25"] {
            assert!(bad.parse::<SmtpUrl>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn from_addresses_and_domains() {
        assert!("Herald <noreply@example.org>".parse::<EmailFrom>().is_ok());
        assert!("not an address".parse::<EmailFrom>().is_err());
        assert_eq!(domain_of("Ada@Example.ORG").as_deref(), Some("example.org"));
        assert_eq!(domain_of("nobody"), None);
    }
}
