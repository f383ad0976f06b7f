//! Chat rooms: rooms, their members and their messages, the chat behind the demo page.
//!
//! A room's events go to its stream `room:<id>` ([`crate::stream::StreamName::Room`]), which only its members
//! may follow; the owner is a room's first member.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::user::UserId;

id_type!(
    /// A room's id (UUIDv7).
    RoomId
);
id_type!(
    /// A room message's id (UUIDv7, so message order is posting order).
    RoomMessageId
);

/// The event that ends a membership; a session of the removed user stops reading the room there.
pub const MEMBER_REMOVED: &str = "room.member_removed";

/// Longest room name, in characters.
pub const ROOM_NAME_MAX: usize = 100;
/// Longest message body, in characters.
pub const MESSAGE_BODY_MAX: usize = 4000;

text_type!(
    /// A room name: trimmed, 1 to 100 characters, no control characters.
    trimmed RoomName,
    |text| crate::macros::one_line(text, ROOM_NAME_MAX, "must be between 1 and 100 characters")
);

text_type!(
    /// A message body: 1 to 4000 characters, not only white space, kept as written (new lines and
    /// tabs allowed, no other control characters).
    MessageBody,
    message_body
);

fn message_body(raw: &str) -> Result<(), &'static str> {
    if raw.trim().is_empty() || raw.chars().count() > MESSAGE_BODY_MAX {
        return Err("must be between 1 and 4000 characters, not only white space");
    }
    if raw.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
        return Err("must not contain control characters other than new lines and tabs");
    }
    Ok(())
}

/// A chat room. Its owner created it and is its first member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub id: RoomId,
    pub name: RoomName,
    pub owner: UserId,
    pub created_at: DateTime<Utc>,
}

/// A message posted to a room by one of its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMessage {
    pub id: RoomMessageId,
    pub room: RoomId,
    pub author: UserId,
    pub body: MessageBody,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(RoomName::parse("  General ").map(String::from), Ok("General".into()));
        assert!(RoomName::parse("   ").is_err());
        assert!(RoomName::parse(&"n".repeat(101)).is_err());
        assert!(RoomName::parse(&"é".repeat(100)).is_ok(), "characters, not bytes");
        assert!(RoomName::parse("a\nb").is_err());
    }

    #[test]
    fn bodies_are_bounded_and_kept_as_written() {
        assert_eq!(MessageBody::parse(" hi\n  there").map(String::from), Ok(" hi\n  there".into()));
        assert!(MessageBody::parse(" \n\t").is_err());
        assert!(MessageBody::parse(&"b".repeat(4000)).is_ok());
        assert!(MessageBody::parse(&"b".repeat(4001)).is_err());
        assert!(MessageBody::parse("bell\u{7}").is_err());
    }
}
