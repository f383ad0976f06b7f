//! Tasks and their attachments: the to-do domain.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use serde_json::json;

use crate::{change::ChangeEvent, user::UserId};

id_type!(
    /// A task's id (UUIDv7).
    TaskId
);
id_type!(
    /// An attachment's id (UUIDv7).
    AttachmentId
);

/// Longest task title, in characters.
pub const TITLE_MAX: usize = 200;
/// Longest task description, in characters.
pub const DESCRIPTION_MAX: usize = 10_000;

string_enum!(
    /// Where a task stands.
    #[derive(Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    TaskStatus {
        Todo => "todo",
        InProgress => "in_progress",
        Done => "done",
    }
);

text_type!(
    /// A task title: trimmed, 1 to 200 characters, no control characters.
    trimmed Title,
    |text| crate::macros::one_line(text, TITLE_MAX, "must be between 1 and 200 characters")
);

/// A task description: up to 10,000 characters (new lines allowed).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Description(String);

impl Description {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.chars().count() > DESCRIPTION_MAX {
            return Err("must be at most 10000 characters");
        }
        if raw.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
            return Err("must not contain control characters other than new lines and tabs");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Description {
    type Error = &'static str;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Description> for String {
    fn from(d: Description) -> Self {
        d.0
    }
}

/// A task. `version` starts at 1 and grows by one with every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: TaskId,
    pub owner: UserId,
    pub title: Title,
    pub description: Description,
    pub status: TaskStatus,
    pub due_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A file attached to a task. The bytes live in the file store under `storage_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub id: AttachmentId,
    pub task_id: TaskId,
    pub owner: UserId,
    /// The client's file name: metadata only, never used as a path.
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    pub storage_key: String,
    pub created_at: DateTime<Utc>,
}

/// Longest file name kept, in characters.
pub const FILE_NAME_MAX: usize = 255;

/// Cleans a client's file name for storage as metadata: the last path component, control
/// characters removed, at most 255 characters; `file` when nothing is left.
pub fn clean_file_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().filter(|c| !c.is_control()).take(FILE_NAME_MAX).collect();
    let cleaned = cleaned.trim().trim_matches('.').trim();
    if cleaned.is_empty() { "file".to_owned() } else { cleaned.to_owned() }
}

/// A content type as the client declared it, if it has the form `type/subtype`; else
/// `application/octet-stream`.
pub fn clean_content_type(raw: Option<&str>) -> String {
    let Some(raw) = raw.map(str::trim) else { return "application/octet-stream".into() };
    let essence = raw.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b));
    match essence.split_once('/') {
        Some((kind, sub)) if token(kind) && token(sub) && essence.len() <= 127 => essence,
        _ => "application/octet-stream".into(),
    }
}

impl Attachment {
    /// The `attachment.deleted` event of this attachment.
    pub fn deleted_event(&self, now: DateTime<Utc>) -> ChangeEvent {
        ChangeEvent::for_user(self.owner, "attachment.deleted", json!({"id": self.id, "task_id": self.task_id}), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_metadata_never_paths() {
        assert_eq!(clean_file_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_file_name("C:\\Users\\ada\\report.pdf"), "report.pdf");
        assert_eq!(clean_file_name("..."), "file");
        assert_eq!(clean_file_name("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(clean_file_name(&"x".repeat(300)).len(), 255);
        assert_eq!(clean_file_name("résumé v2.pdf"), "résumé v2.pdf");
    }

    #[test]
    fn content_types_are_checked() {
        assert_eq!(clean_content_type(Some("Text/Plain; charset=utf-8")), "text/plain");
        assert_eq!(clean_content_type(Some("text/html\r\nX-Evil: 1")), "application/octet-stream");
        assert_eq!(clean_content_type(Some("nonsense")), "application/octet-stream");
        assert_eq!(clean_content_type(None), "application/octet-stream");
    }

    #[test]
    fn titles_and_descriptions_have_bounds() {
        assert!(Title::parse(" ").is_err());
        assert!(Title::parse(&"t".repeat(201)).is_err());
        assert_eq!(Title::parse(" Buy milk ").map(|t| t.0), Ok("Buy milk".into()));
        assert!(Description::parse("line 1\nline 2\ttab").is_ok());
        assert!(Description::parse("bell\u{7}").is_err());
        assert!(Description::parse(&"d".repeat(10_001)).is_err());
    }
}
