//! Campaigns: clients, mailings and their messages. A message is a delivery on the `provider`
//! channel whose `source_id` is the mailing and `recipient_id` the client.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::delivery::{DailyWindow, DeliveryStatus};

id_type!(
    /// A client's id (UUIDv7).
    ClientId
);
id_type!(
    /// A mailing's id (UUIDv7).
    MailingId
);

/// The `kind` of every mailing message delivery.
pub const MESSAGE_KIND: &str = "mailing.message";

text_type!(
    /// A phone number as `7XXXXXXXXXX`: 11 digits, the first a 7.
    Phone,
    |raw| {
        if raw.len() == 11 && raw.starts_with('7') && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(())
        } else {
            Err("must be 11 digits starting with 7, like 79161234567")
        }
    }
);
text_type!(
    /// A mobile operator code: three digits.
    OperatorCode,
    |raw| {
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(())
        } else {
            Err("must be three digits")
        }
    }
);
text_type!(
    /// A free-text label used by mailing filters: up to 64 characters, no control characters.
    Tag,
    |raw| {
        if raw.chars().count() > 64 {
            Err("must be at most 64 characters")
        } else if raw.chars().any(char::is_control) {
            Err("must not contain control characters")
        } else {
            Ok(())
        }
    }
);
text_type!(
    /// A message text: 1 to 1,000 characters.
    MessageText,
    |raw| {
        if raw.trim().is_empty() || raw.chars().count() > 1000 {
            Err("must be between 1 and 1000 characters")
        } else {
            Ok(())
        }
    }
);

impl Phone {
    /// Digits 2 to 4: the operator code a client gets when none is given.
    pub fn operator_code(&self) -> OperatorCode {
        OperatorCode(self.0[1..4].to_owned())
    }
}

/// An IANA time zone, like `Europe/Moscow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZone(pub Tz);

impl FromStr for TimeZone {
    type Err = &'static str;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        raw.parse().map(Self).map_err(|_| "must be an IANA time zone, like Europe/Moscow")
    }
}

impl TryFrom<String> for TimeZone {
    type Error = &'static str;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        raw.parse()
    }
}

impl From<TimeZone> for String {
    fn from(tz: TimeZone) -> Self {
        tz.0.name().to_owned()
    }
}

impl TimeZone {
    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A recipient of mailings.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub id: ClientId,
    pub phone: Phone,
    pub operator_code: OperatorCode,
    pub tag: Tag,
    pub timezone: TimeZone,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which clients a list shows: those whose phone starts with `phone_prefix` (digits), with this
/// operator code, with this tag; an absent part matches every client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFilter {
    pub phone_prefix: Option<String>,
    pub operator_code: Option<OperatorCode>,
    pub tag: Option<Tag>,
}

/// Which clients a mailing goes to: a client matches when its operator code is among
/// `operator_codes` and its tag among `tags`; an absent part matches every client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"operator_codes": ["916", "903"], "tags": ["vip"]}))]
pub struct MailingFilter {
    #[schema(value_type = Option<Vec<String>>, min_items = 1, max_items = 1000)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_codes: Option<Vec<OperatorCode>>,
    #[schema(value_type = Option<Vec<String>>, min_items = 1, max_items = 1000)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
}

impl MailingFilter {
    pub fn matches(&self, client: &Client) -> bool {
        self.operator_codes.as_ref().is_none_or(|codes| codes.contains(&client.operator_code))
            && self.tags.as_ref().is_none_or(|tags| tags.contains(&client.tag))
    }
}

string_enum!(
    /// Where a mailing stands: `scheduled` until its start, `running` while messages are live, then
    /// `finished`; or `cancelled`.
    #[derive(Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    MailingStatus {
        Scheduled => "scheduled",
        Running => "running",
        Finished => "finished",
        Cancelled => "cancelled",
    }
);

/// A text sent to every matching client between `start_at` and `end_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mailing {
    pub id: MailingId,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub text: MessageText,
    pub filter: MailingFilter,
    pub window: Option<DailyWindow>,
    pub status: MailingStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// When each client's first attempt is due, by time zone. Without a send window every client
/// starts at once; with one, the first allowed instant depends only on the client's zone, so the
/// plan lists it for every zone and the store joins on it (one statement, whatever the count).
#[derive(Debug, Clone, PartialEq)]
pub enum FirstAttempts {
    At(DateTime<Utc>),
    ByZone(Vec<(&'static str, DateTime<Utc>)>),
}

impl FirstAttempts {
    /// The plan for a mailing starting at `now`: every IANA zone's next allowed instant.
    pub fn plan(window: Option<DailyWindow>, now: DateTime<Utc>) -> Self {
        match window {
            None => Self::At(now),
            Some(w) => {
                Self::ByZone(chrono_tz::TZ_VARIANTS.iter().map(|tz| (tz.name(), w.next_inside(now, *tz))).collect())
            }
        }
    }
}

/// How many messages of a mailing are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct MessageCounts {
    pub total: u64,
    pub pending: u64,
    pub sending: u64,
    pub sent: u64,
    pub failed: u64,
    pub expired: u64,
    pub cancelled: u64,
}

impl MessageCounts {
    pub fn add(&mut self, status: DeliveryStatus, n: u64) {
        self.total += n;
        *match status {
            DeliveryStatus::Pending => &mut self.pending,
            DeliveryStatus::Sending => &mut self.sending,
            DeliveryStatus::Sent => &mut self.sent,
            DeliveryStatus::Failed => &mut self.failed,
            DeliveryStatus::Expired => &mut self.expired,
            DeliveryStatus::Cancelled => &mut self.cancelled,
        } += n;
    }

    /// Each status with its count.
    pub fn by_status(&self) -> [(DeliveryStatus, u64); 6] {
        [
            (DeliveryStatus::Pending, self.pending),
            (DeliveryStatus::Sending, self.sending),
            (DeliveryStatus::Sent, self.sent),
            (DeliveryStatus::Failed, self.failed),
            (DeliveryStatus::Expired, self.expired),
            (DeliveryStatus::Cancelled, self.cancelled),
        ]
    }

    /// Messages that are final, whatever the outcome.
    pub fn settled(&self) -> u64 {
        self.total - self.pending - self.sending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_codes_and_zones_validate() {
        let phone = Phone::parse("79161234567").expect("phone");
        assert_eq!(phone.operator_code().as_str(), "916");
        for bad in ["89161234567", "7916123456", "791612345678", "7916123456a", "+79161234567", ""] {
            assert!(Phone::parse(bad).is_err(), "{bad} was accepted");
        }
        assert!(OperatorCode::parse("91").is_err());
        assert!("Europe/Moscow".parse::<TimeZone>().is_ok());
        assert!("Mars/Olympus".parse::<TimeZone>().is_err());
        assert!(MessageText::parse("  ").is_err());
        assert!(Tag::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn filters_match_on_each_given_part() {
        let client = Client {
            id: ClientId::new(),
            phone: Phone::parse("79161234567").expect("phone"),
            operator_code: OperatorCode::parse("916").expect("code"),
            tag: Tag::parse("vip").expect("tag"),
            timezone: "UTC".parse().expect("zone"),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        let code = |c: &str| OperatorCode::parse(c).expect("code");
        let tag = |t: &str| Tag::parse(t).expect("tag");
        assert!(MailingFilter::default().matches(&client));
        assert!(MailingFilter { operator_codes: Some(vec![code("916")]), tags: None }.matches(&client));
        assert!(!MailingFilter { operator_codes: Some(vec![code("903")]), tags: None }.matches(&client));
        assert!(
            MailingFilter { operator_codes: Some(vec![code("916")]), tags: Some(vec![tag("vip")]) }.matches(&client)
        );
        assert!(
            !MailingFilter { operator_codes: Some(vec![code("916")]), tags: Some(vec![tag("new")]) }.matches(&client)
        );
    }

    #[test]
    fn a_plan_covers_every_zone_only_with_a_window() {
        let now = Utc::now();
        assert_eq!(FirstAttempts::plan(None, now), FirstAttempts::At(now));
        let w = DailyWindow::new("09:00".parse().expect("t"), "21:00".parse().expect("t")).expect("window");
        let FirstAttempts::ByZone(zones) = FirstAttempts::plan(Some(w), now) else { panic!("no zones") };
        assert!(zones.len() > 400 && zones.iter().any(|(z, _)| *z == "Europe/Moscow"));
        assert!(zones.iter().all(|(_, at)| *at >= now));
    }
}
