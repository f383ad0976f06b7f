//! The input and output shapes several use cases share, below every one of them: a use case
//! does not import another's types. Their OpenAPI names stay those they had in their first
//! command's module.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    campaign::{Client, ClientId, OperatorCode, Phone, Tag, TimeZone},
    user::{Role, User},
};

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "email": "ada@example.org", "name": "Ada Lovelace", "role": "user", "created_at": "2026-11-22T10:00:00Z", "phone": "+4915112345678", "timezone": "Europe/Berlin"}))]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// Where text messages reach them (`7XXXXXXXXXX` or E.164), or null.
    pub phone: Option<String>,
    /// Their IANA zone, or null (UTC).
    pub timezone: Option<String>,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            id: user.id.0,
            email: user.email.into(),
            name: user.name.into(),
            role: user.role,
            created_at: user.created_at,
            phone: user.phone.map(Into::into),
            timezone: user.timezone.map(|tz| tz.0.name().to_owned()),
        }
    }
}

/// Input of `users.list`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = users::ListInput)]
pub struct ListInput {
    /// Items per page (default 50).
    #[schema(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[schema(max_length = 64)]
    pub cursor: Option<String>,
}

/// An input with no fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

/// Nothing: the answer of a deletion.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {}

/// `Some(None)` for an explicit `null`, `None` (by `default`) for an absent field.
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Input of `clients.create`, and one line of a bulk import.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"phone": "79161234567", "tag": "vip", "timezone": "Europe/Moscow"}))]
pub struct ClientInput {
    /// `7` and ten digits.
    #[schema(value_type = String, pattern = r"^7[0-9]{10}$")]
    pub phone: Phone,
    /// Three digits; defaults to digits 2 to 4 of the phone.
    #[schema(value_type = Option<String>, pattern = r"^[0-9]{3}$")]
    pub operator_code: Option<OperatorCode>,
    /// Free text used by mailing filters (default empty).
    #[schema(value_type = Option<String>, max_length = 64)]
    pub tag: Option<Tag>,
    /// IANA time zone (default `UTC`); send windows are in this zone.
    #[schema(value_type = Option<String>, example = "Europe/Moscow")]
    pub timezone: Option<TimeZone>,
}

impl ClientInput {
    /// The client this input describes, new at `now`.
    pub fn into_client(self, now: DateTime<Utc>) -> Client {
        Client {
            id: ClientId::new(),
            operator_code: self.operator_code.unwrap_or_else(|| self.phone.operator_code()),
            phone: self.phone,
            tag: self.tag.unwrap_or_else(|| Tag::parse("").unwrap_or_else(|_| unreachable!("empty tags are valid"))),
            timezone: self.timezone.unwrap_or(TimeZone(chrono_tz::UTC)),
            created_at: now,
            updated_at: now,
        }
    }
}
