//! Column and parameter types whose storage differs between the adapters, so that one row struct
//! (see [`crate::decode`]) decodes from either database and one value binds to either: a time, and
//! lists (PostgreSQL arrays, JSON arrays in SQLite read back with `json_each`; see the dialect's
//! `in_list`).

use chrono::{DateTime, Utc};
use sqlx::{
    Decode, Encode, Postgres, Sqlite, Type,
    encode::IsNull,
    error::BoxDynError,
    postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef},
    sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef},
};
use uuid::Uuid;

/// A point in time: `timestamptz` in PostgreSQL, microseconds since the Unix epoch (`INTEGER`) in
/// SQLite, which has no time type and compares integers exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp(pub DateTime<Utc>);

/// A list of texts: `text[]` in PostgreSQL, a JSON array in SQLite.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Texts(pub Vec<String>);

/// A list of ids bound as one parameter: `uuid[]` in PostgreSQL, a JSON array of their hex forms
/// in SQLite (read back with `unhex`: see the dialect's `in_ids`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ids(pub Vec<Uuid>);

/// A list of integers bound as one parameter: `bigint[]` in PostgreSQL, a JSON array in SQLite.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ints(pub Vec<i64>);

/// A length of time: an `interval` in PostgreSQL, microseconds in SQLite (as [`Stamp`]s are, so
/// that one added to a time is a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span(pub chrono::Duration);

impl From<Stamp> for DateTime<Utc> {
    fn from(s: Stamp) -> Self {
        s.0
    }
}

/// Binds (and, given `decode`, reads) a wrapper as PostgreSQL binds its field, of type `$inner`.
macro_rules! as_in_postgres {
    ($outer:ident: $inner:ty) => {
        impl Type<Postgres> for $outer {
            fn type_info() -> PgTypeInfo {
                <$inner as Type<Postgres>>::type_info()
            }

            fn compatible(ty: &PgTypeInfo) -> bool {
                <$inner as Type<Postgres>>::compatible(ty)
            }
        }

        impl Encode<'_, Postgres> for $outer {
            fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <$inner as Encode<Postgres>>::encode_by_ref(&self.0, buf)
            }
        }
    };
    ($outer:ident: $inner:ty, decode) => {
        as_in_postgres!($outer: $inner);

        impl<'r> Decode<'r, Postgres> for $outer {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                <$inner as Decode<Postgres>>::decode(value).map(Self)
            }
        }
    };
}

as_in_postgres!(Stamp: DateTime<Utc>, decode);
as_in_postgres!(Texts: Vec<String>, decode);
as_in_postgres!(Ids: Vec<Uuid>);
as_in_postgres!(Ints: Vec<i64>);
as_in_postgres!(Span: chrono::Duration);

/// Gives a wrapper SQLite's type `$inner` (the storage class it is bound as).
macro_rules! stored_in_sqlite_as {
    ($($outer:ident: $inner:ty),+) => {$(
        impl Type<Sqlite> for $outer {
            fn type_info() -> SqliteTypeInfo {
                <$inner as Type<Sqlite>>::type_info()
            }

            fn compatible(ty: &SqliteTypeInfo) -> bool {
                <$inner as Type<Sqlite>>::compatible(ty)
            }
        }
    )+};
}

stored_in_sqlite_as!(Stamp: i64, Span: i64, Texts: String, Ids: String, Ints: String);

impl Encode<'_, Sqlite> for Span {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        let us = self.0.num_microseconds().ok_or("span out of range")?;
        <i64 as Encode<Sqlite>>::encode_by_ref(&us, buf)
    }
}

impl Encode<'_, Sqlite> for Stamp {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Sqlite>>::encode_by_ref(&self.0.timestamp_micros(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Stamp {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let us = <i64 as Decode<Sqlite>>::decode(value)?;
        DateTime::from_timestamp_micros(us).map(Self).ok_or_else(|| format!("timestamp out of range: {us} µs").into())
    }
}

/// Binds `json` (a list as a JSON array) as SQLite text.
fn json_text(json: Result<String, serde_json::Error>, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
    <String as Encode<Sqlite>>::encode(json?, buf)
}

impl Encode<'_, Sqlite> for Texts {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        json_text(serde_json::to_string(&self.0), buf)
    }
}

impl Encode<'_, Sqlite> for Ints {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        json_text(serde_json::to_string(&self.0), buf)
    }
}

impl Encode<'_, Sqlite> for Ids {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        let hex: Vec<String> = self.0.iter().map(|id| id.simple().to_string()).collect();
        json_text(serde_json::to_string(&hex), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Texts {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let json = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(Self(serde_json::from_str(json)?))
    }
}
