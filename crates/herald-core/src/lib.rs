//! Herald's core: domain types, ports, the error catalogue and the commands. No IO lives here;
//! adapters implement the ports and transports call the commands.

/// Declares a UUIDv7 id newtype: `new()` mints one, serde and `Display` show the bare UUID.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

/// Declares an enum of fixed strings: `as_str`, `FromStr`, `Display` and `ALL` (every variant, in
/// order). Extra attributes (serde, `ToSchema`) pass through; a type that derives serde renames
/// its variants to the same strings, which a test of each such type checks over `ALL`.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),* }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)*
                    other => Err(format!("unknown {} {other:?}", stringify!($name))),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Declares a validated text newtype: `parse` keeps the text (trimmed first with `trimmed`) when
/// `$check` (`fn(&str) -> Result<(), &'static str>`) accepts it; serde goes through `parse`;
/// `as_str`, `Display` and `String::from` give it back.
macro_rules! text_type {
    ($(#[$doc:meta])* trimmed $name:ident, $check:expr) => {
        text_type!(@define $(#[$doc])* $name, str::trim, $check);
    };
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        text_type!(@define $(#[$doc])* $name, |raw| raw, $check);
    };
    (@define $(#[$doc:meta])* $name:ident, $normalise:expr, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `raw`; the error says what is wrong without echoing it.
            pub fn parse(raw: &str) -> Result<Self, &'static str> {
                let normalise: fn(&str) -> &str = $normalise;
                let check: fn(&str) -> Result<(), &'static str> = $check;
                let text = normalise(raw);
                check(text)?;
                Ok(Self(text.to_owned()))
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = &'static str;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(text: $name) -> Self {
                text.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// Accepts one line of 1 to `max` characters without control characters; `bounds` is the error
/// for a bad length (it states the rule).
fn one_line(text: &str, max: usize, bounds: &'static str) -> Result<(), &'static str> {
    if text.is_empty() || text.chars().count() > max {
        return Err(bounds);
    }
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(())
}

pub mod accounts;
pub mod apikey;
pub mod auth;
pub mod body;
pub mod broker;
pub mod calendar;
pub mod caller;
pub mod campaign;
pub mod change;
pub mod clock;
pub mod command;
pub mod commands;
pub mod delivery;
pub mod error;
pub mod files;
pub mod health;
pub mod hosting;
pub mod metrics;
pub mod net;
pub mod notice;
pub mod notify;
pub mod oidc;
pub mod page;
pub mod quarantine;
pub mod realtime;
pub mod redact;
pub mod room;
pub mod schedule;
pub mod schema;
pub mod slots;
pub mod store;
pub mod store_error;
pub mod stream;
pub mod task;
pub mod throttle;
pub mod timeline;
pub mod trace;
pub mod user;
pub mod wire;

use std::sync::Arc;

use auth::{Caller, PasswordHasher, TokenIssuer};
use clock::Clock;
use command::Registry;
use error::ApiError;
use files::Files;
use serde_json::Value;
use store::Store;

/// The ports and helpers every command may use.
#[derive(Debug)]
pub struct Services {
    pub store: Arc<dyn Store>,
    pub broker: Arc<dyn broker::Broker>,
    pub files: Arc<dyn Files>,
    pub tokens: TokenIssuer,
    pub passwords: PasswordHasher,
    /// Limits on password checks, per account and per client address.
    pub throttle: throttle::Throttle,
    /// Where users may aim outbound requests (webhooks).
    pub destinations: net::Destinations,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<metrics::Metrics>,
    /// The largest attachment, in bytes (`HERALD_MAX_UPLOAD_SIZE`).
    pub max_upload: u64,
    /// Uploads each user may have in progress (`HERALD_UPLOADS_PER_USER`).
    pub uploads: files::UploadsPerUser,
    /// The zone whose days the daily report covers (`HERALD_REPORT_TIMEZONE`).
    pub report_zone: chrono_tz::Tz,
}

/// The application as every transport sees it: its services and its commands.
#[derive(Debug)]
pub struct Herald {
    pub services: Services,
    pub commands: Registry,
    /// Which commands run here and how the others are reached; every command runs here by default.
    pub hosting: hosting::Hosting,
}

impl Herald {
    pub fn new(services: Services) -> Self {
        Self { services, commands: commands::registry(), hosting: hosting::Hosting::default() }
    }

    /// This process runs only the commands `hosting` hosts, and forwards the others.
    pub fn with_hosting(mut self, hosting: hosting::Hosting) -> Self {
        self.hosting = hosting;
        self
    }

    /// The context of a call with this `Authorization` value, for every transport: anonymous
    /// without one, a user with a valid `Bearer` token, a service with a live API key; a present
    /// but malformed, forged, expired or revoked one is refused outright, even for public
    /// commands. The token is kept in case the command runs in another process. Whether its
    /// account still exists, and with which role, is read when the command runs ([`caller`]).
    pub async fn authenticate(&self, authorization: Option<&[u8]>) -> Result<command::Ctx, ApiError> {
        let Some(value) = authorization else { return Ok(Caller::Anonymous.into()) };
        let token = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| ApiError::new(error::ErrorCode::InvalidToken, "expected `Authorization: Bearer <token>`"))?;
        let svc = &self.services;
        let caller = if apikey::is_key(token) {
            let refused = || ApiError::new(error::ErrorCode::InvalidToken, "the API key is not valid or was revoked");
            let key = svc.store.api_key_by_hash(&apikey::hash(token)).await?.ok_or_else(refused)?;
            if key.revoked_at.is_some() {
                return Err(refused());
            }
            Caller::Key(apikey::KeyCaller::of(&key))
        } else {
            Caller::User(svc.tokens.verify(token, svc.clock.now())?)
        };
        Ok(command::Ctx { caller, peer: None, bearer: Some(hosting::Bearer(token.into())) })
    }

    /// Runs the command `name` for a caller (a [`Caller`], or a [`command::Ctx`] with the
    /// client's address and token) with raw JSON input: here, when this process hosts it (see
    /// [`Registry::call`]), else in the process that does.
    pub async fn call(&self, cx: impl Into<command::Ctx>, name: &str, input: Value) -> Result<Value, ApiError> {
        self.call_body(cx, name, input, None).await.map(|answer| answer.output)
    }

    /// [`Herald::call`] with the caller's byte stream (an upload, an import), answering with the
    /// command's bytes for one that gives them (a download).
    pub async fn call_body(
        &self,
        cx: impl Into<command::Ctx>,
        name: &str,
        input: Value,
        body: Option<body::Body>,
    ) -> Result<body::Answer, ApiError> {
        let cx = cx.into();
        if self.commands.get(name).is_some() && !self.hosting.hosted.hosts(name) {
            return self.hosting.forward(name, &cx, input, body).await;
        }
        self.commands.call_body(&self.services, cx, name, input, body).await
    }
}

#[cfg(test)]
mod string_enum_tests {
    /// Serde and `ToSchema` name every variant as `as_str` does, for each string enum with serde.
    #[test]
    fn serde_names_match_as_str() {
        fn check<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug + Copy>(
            all: &[T],
            as_str: fn(T) -> &'static str,
        ) {
            for &v in all {
                assert_eq!(serde_json::to_value(v).expect("serialises"), serde_json::json!(as_str(v)));
                assert_eq!(serde_json::from_value::<T>(serde_json::json!(as_str(v))).expect("reads"), v);
            }
        }
        check(crate::task::TaskStatus::ALL, crate::task::TaskStatus::as_str);
        check(crate::user::Role::ALL, crate::user::Role::as_str);
        check(crate::campaign::MailingStatus::ALL, crate::campaign::MailingStatus::as_str);
    }
}
