//! Setting value types: each parses from the one string form used by defaults, files, env and flags.

use std::{fmt, str::FromStr, time::Duration};

/// Declares a string setting that is never shown: `Debug` and `Display` print `***`.
macro_rules! redacted {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("***")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("***")
            }
        }
    };
}

redacted!(
    /// A secret key of at least `MIN_SECRET_LEN` bytes.
    Secret
);
redacted!(
    /// A credential with no length rule (a provider's API token).
    Token
);

/// An optional value: the empty string means unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Optional<T>(pub Option<T>);

impl<T: FromStr<Err = String>> FromStr for Optional<T> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() { Ok(Self(None)) } else { s.parse().map(|v| Self(Some(v))) }
    }
}

impl<T: fmt::Display> fmt::Display for Optional<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str(""),
        }
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < herald_core::auth::MIN_SECRET_LEN {
            return Err(format!("must be at least {} bytes long", herald_core::auth::MIN_SECRET_LEN));
        }
        Ok(Self(s.to_owned()))
    }
}

/// A duration written like `30s`, `15m`, `1h 30m` or `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s).map(Self).map_err(|e| format!("not a duration like `30s` or `1h`: {e}"))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

/// A size in bytes: `1048576`, `512KiB`, `1MiB`, `2GB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| format!("not a size like `1MiB`: {s:?}"))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1 << 30,
            other => return Err(format!("unknown size unit {other:?} (use B, KiB, MiB, GiB, KB, MB, GB)")),
        };
        n.checked_mul(factor).map(Self).ok_or_else(|| "size too large".into())
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
            write!(f, "{}GiB", n >> 30)
        } else if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", n >> 20)
        } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
            write!(f, "{}KiB", n >> 10)
        } else {
            write!(f, "{n}B")
        }
    }
}

/// A comma-separated list; empty means none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct List(pub Vec<String>);

impl FromStr for List {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()))
    }
}

impl fmt::Display for List {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// CORS origins: `*` or full origins like `https://app.example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origins(pub Vec<String>);

impl FromStr for Origins {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let List(items) = s.parse()?;
        for origin in &items {
            let valid = origin == "*"
                || ((origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.trim_start_matches("https://").trim_start_matches("http://").contains('/'));
            if !valid {
                return Err(format!("{origin:?} is not an origin like https://app.example.org (no path) or *"));
            }
        }
        Ok(Self(items))
    }
}

impl fmt::Display for Origins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    Auto,
    Pretty,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "pretty" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            _ => Err("must be one of auto, pretty, json".into()),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Pretty => "pretty",
            Self::Json => "json",
        })
    }
}

/// A log filter in `RUST_LOG` syntax, e.g. `info` or `info,herald_http=debug`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter(pub String);

impl FromStr for LogFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        tracing_subscriber::EnvFilter::try_new(s).map_err(|e| format!("not a log filter: {e}"))?;
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A positive count, or `auto` for one the process picks (the number of cores).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoCount(pub Option<u32>);

impl AutoCount {
    /// The count, with `auto` resolved to the cores this process may use.
    pub fn resolve(self) -> u32 {
        self.0.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        })
    }
}

impl FromStr for AutoCount {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(Self(None));
        }
        s.parse::<Count>().map(|c| Self(Some(c.0))).map_err(|_| "must be auto or a whole number above 0".into())
    }
}

impl fmt::Display for AutoCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => n.fmt(f),
            None => f.write_str("auto"),
        }
    }
}

/// A positive count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub u32);

impl FromStr for Count {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Self(n)),
            _ => Err("must be a whole number above 0".into()),
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Token {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.chars().any(|c| c.is_control() || c == ' ') {
            return Err("must not contain spaces or control characters".into());
        }
        Ok(Self(s.to_owned()))
    }
}

/// An `https://` or `http://` base URL, without a trailing slash.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl(pub String);

impl FromStr for HttpUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")) {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !s.contains(char::is_whitespace) => {
                Ok(Self(s.trim_end_matches('/').to_owned()))
            }
            _ => Err("must be an https:// or http:// URL with a host".into()),
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&herald_core::redact::url_password(&self.0))
    }
}

/// A rate limit: `unlimited`, or `<n>/s` or `<n>/m` (bursts of up to one second's worth).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit(pub Option<f64>);

impl FromStr for RateLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "unlimited" {
            return Ok(Self(None));
        }
        let (n, per) = match s.split_once('/') {
            Some((n, "s")) => (n, 1.0),
            Some((n, "m")) => (n, 60.0),
            _ => return Err("must be unlimited, <n>/s or <n>/m".into()),
        };
        match n.trim().parse::<f64>() {
            Ok(n) if n.is_finite() && n > 0.0 => Ok(Self(Some(n / per))),
            _ => Err("the rate must be a number above 0".into()),
        }
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("unlimited"),
            Some(per_second) => write!(f, "{per_second}/s"),
        }
    }
}

/// A fraction from 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fraction(pub f64);

impl FromStr for Fraction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<f64>() {
            Ok(x) if (0.0..=1.0).contains(&x) => Ok(Self(x)),
            _ => Err("must be a number from 0 to 1".into()),
        }
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An `http://` or `https://` URL with a host, kept exactly as written (an OpenID Connect
/// issuer is compared with its tokens' `iss` character for character).
#[derive(Clone, PartialEq, Eq)]
pub struct AnyHttpUrl(pub String);

impl FromStr for AnyHttpUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
        match rest {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !s.contains(char::is_whitespace) => {
                Ok(Self(s.to_owned()))
            }
            _ => Err("must be an http:// or https:// URL with a host".into()),
        }
    }
}

/// Printed (`herald config`, logs, errors) with its userinfo and secret query values hidden; the
/// value itself is used as written.
impl fmt::Display for AnyHttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&herald_core::redact::url_password(&self.0))
    }
}

/// Redacted, as Display is: a `Config` printed whole says no more than `herald config`.
macro_rules! debug_as_display {
    ($($ty:ty),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    )*};
}
debug_as_display!(HttpUrl, AnyHttpUrl);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_values_parse() {
        assert_eq!("100/s".parse::<RateLimit>(), Ok(RateLimit(Some(100.0))));
        assert_eq!("30/m".parse::<RateLimit>(), Ok(RateLimit(Some(0.5))));
        assert_eq!("unlimited".parse::<RateLimit>(), Ok(RateLimit(None)));
        assert!("0/s".parse::<RateLimit>().is_err());
        assert!("100".parse::<RateLimit>().is_err());
        assert_eq!("http://sms.local:8080/".parse::<HttpUrl>(), Ok(HttpUrl("http://sms.local:8080".into())));
        assert!("ftp://x".parse::<HttpUrl>().is_err());
        assert_eq!("https://sms.example/".parse::<HttpUrl>(), Ok(HttpUrl("https://sms.example".into())));
        assert!("https://".parse::<HttpUrl>().is_err());
        assert!("http://".parse::<HttpUrl>().is_err());
        assert_eq!(
            format!("{}", "tok en".parse::<Token>().map(|_| ()).expect_err("a space")),
            "must not contain spaces or control characters"
        );
        assert_eq!("abc".parse::<Token>().expect("token").to_string(), "***");
        assert!("1.5".parse::<Fraction>().is_err());
    }

    #[test]
    fn values_parse_and_print_back() {
        assert_eq!("1MiB".parse::<ByteSize>(), Ok(ByteSize(1 << 20)));
        assert_eq!("512 KiB".parse::<ByteSize>(), Ok(ByteSize(512 << 10)));
        assert_eq!(ByteSize(1 << 20).to_string(), "1MiB");
        assert!("12parsecs".parse::<ByteSize>().is_err());
        assert_eq!("1h 30m".parse::<Span>().map(|s| s.0.as_secs()), Ok(5400));
        assert!("soon".parse::<Span>().is_err());
        assert_eq!("a, b,,c".parse::<List>().map(|l| l.0.len()), Ok(3));
        assert!("https://a.org".parse::<Origins>().is_ok());
        assert!("https://a.org/path".parse::<Origins>().is_err());
        assert!("a.org".parse::<Origins>().is_err());
        assert!("0".parse::<Count>().is_err());
        assert!("short".parse::<Secret>().is_err());
        assert_eq!(format!("{:?}", "x".repeat(32).parse::<Secret>().expect("secret")), "***");
        assert_eq!("".parse::<Optional<Secret>>(), Ok(Optional(None)));
        assert!("info,herald=debug".parse::<LogFilter>().is_ok());
        assert!("info,=[".parse::<LogFilter>().is_err());
    }
}
