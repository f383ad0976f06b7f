//! Streams and session cursors: what a real-time session resumes from.
//!
//! A stream (`user:<id>`, `room:<id>`, `mailing:<id>`; the socket protocol calls its name `channel`) is the ordered
//! sequence of its outbox events: offsets 1, 2, 3, … given in the writing transaction, never reused. The stream keeps a window of recent events
//! (by age and by count); a session's cursor is the highest offset its client acknowledged.

use std::fmt;

use serde::{Deserialize, Serialize};

use uuid::Uuid;

use crate::{campaign::MailingId, error::ApiError, room::RoomId, user::UserId};

/// A stream's name, typed: `user:<id>` (a user's own changes), `room:<id>` (a room's) or
/// `mailing:<id>` (a mailing's progress, for administrators). Ids are in their canonical form
/// (lowercase, hyphenated), so one stream has one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamName {
    User(UserId),
    Room(RoomId),
    Mailing(MailingId),
}

impl StreamName {
    /// Reads a client's stream name; a bad one is refused on the field `channel`, the socket
    /// protocol's name for it.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        fn id(raw: &str) -> Option<Uuid> {
            raw.parse::<Uuid>().ok().filter(|id| id.hyphenated().to_string() == raw)
        }
        if let Some(user) = raw.strip_prefix("user:") {
            return id(user)
                .map(|id| Self::User(UserId(id)))
                .ok_or_else(|| ApiError::invalid_field("channel", "`user:<id>` needs a user id"));
        }
        if let Some(room) = raw.strip_prefix("room:") {
            return id(room)
                .map(|id| Self::Room(RoomId(id)))
                .ok_or_else(|| ApiError::invalid_field("channel", "`room:<id>` needs a room id"));
        }
        if let Some(mailing) = raw.strip_prefix("mailing:") {
            return id(mailing)
                .map(|id| Self::Mailing(MailingId(id)))
                .ok_or_else(|| ApiError::invalid_field("channel", "`mailing:<id>` needs a mailing id"));
        }
        Err(ApiError::invalid_field("channel", "expected `user:<id>`, `room:<id>` or `mailing:<id>`"))
    }
}

impl Serialize for StreamName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Read as [`StreamName::parse`] reads a client's name: a stored row or a broker message whose
/// name is not a stream's is refused, not carried on.
impl<'de> Deserialize<'de> for StreamName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(|_| serde::de::Error::custom(format!("{raw:?} is not a stream name")))
    }
}

impl std::str::FromStr for StreamName {
    type Err = ApiError;
    fn from_str(raw: &str) -> Result<Self, ApiError> {
        Self::parse(raw)
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(user) => write!(f, "user:{}", user.0.hyphenated()),
            Self::Room(room) => write!(f, "room:{}", room.0.hyphenated()),
            Self::Mailing(mailing) => write!(f, "mailing:{}", mailing.0.hyphenated()),
        }
    }
}

/// Where a stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHead {
    /// Names the stream's history; offsets of another epoch mean nothing here.
    pub epoch: String,
    /// The last offset given out (0 when the stream never had an event).
    pub offset: i64,
    /// The oldest offset the stream still holds; `offset + 1` when it holds none.
    pub first: i64,
}

impl StreamHead {
    /// Whether every event after `position` is still in the stream.
    pub fn holds_after(&self, position: i64) -> bool {
        position >= self.first - 1 && position <= self.offset
    }
}

/// A client-chosen session id: 1–64 characters of `[A-Za-z0-9_.:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let ok = (1..=64).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ApiError::invalid_field("session", "1 to 64 characters of A-Z, a-z, 0-9, _ . : -"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(|_| serde::de::Error::custom("1 to 64 characters of A-Z, a-z, 0-9, _ . : -"))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A session's position in one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCursor {
    pub user: UserId,
    pub session: SessionId,
    pub stream: StreamName,
    /// The highest offset the client acknowledged.
    pub offset: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_short_tokens() {
        assert!(SessionId::parse("tab-1").is_ok());
        assert!(SessionId::parse("a.b:c_d-9").is_ok());
        assert!(SessionId::parse(&"x".repeat(64)).is_ok());
        for bad in ["", "has space", "slash/", &"x".repeat(65), "é"] {
            assert!(SessionId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn stream_names_parse_and_print_one_way() {
        let id = Uuid::now_v7();
        let user = StreamName::parse(&format!("user:{id}")).expect("user");
        assert_eq!(user, StreamName::User(UserId(id)));
        assert_eq!(user.to_string(), format!("user:{id}"));
        let room = StreamName::parse(&format!("room:{id}")).expect("room");
        assert_eq!(room.to_string(), format!("room:{id}"));
        let mailing = StreamName::parse(&format!("mailing:{id}")).expect("mailing");
        assert_eq!(mailing, StreamName::Mailing(MailingId(id)));
        assert_eq!(mailing.to_string(), format!("mailing:{id}"));
        let upper = id.hyphenated().to_string().to_uppercase();
        for bad in [
            "user:",
            "user:nope",
            "room:1",
            "mailing:7",
            "task:x",
            "",
            &format!("user:{upper}"),
            &format!("user:{}", id.simple()),
        ] {
            assert!(StreamName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn stream_names_go_through_serde_as_their_text() {
        let room = StreamName::Room(RoomId::new());
        let json = serde_json::to_value(room).expect("serialise");
        assert_eq!(json, serde_json::json!(room.to_string()));
        assert_eq!(serde_json::from_value::<StreamName>(json).expect("read back"), room);
        let refused = serde_json::from_value::<StreamName>(serde_json::json!("room:1")).expect_err("not a stream");
        assert!(refused.to_string().contains("is not a stream name"), "{refused}");
    }

    #[test]
    fn a_head_holds_positions_within_its_window() {
        let head = StreamHead { epoch: "e".into(), offset: 10, first: 4 };
        assert!(head.holds_after(3));
        assert!(head.holds_after(10));
        assert!(!head.holds_after(2));
        assert!(!head.holds_after(11));
        let empty = StreamHead { epoch: "e".into(), offset: 0, first: 1 };
        assert!(empty.holds_after(0));
    }
}
