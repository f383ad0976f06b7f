//! The kernel's macros and the one-line text check every text type uses: declared first in
//! `lib.rs` (`#[macro_use]`), so that every module below can use them by name.

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
pub(crate) fn one_line(text: &str, max: usize, bounds: &'static str) -> Result<(), &'static str> {
    if text.is_empty() || text.chars().count() > max {
        return Err(bounds);
    }
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(())
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
