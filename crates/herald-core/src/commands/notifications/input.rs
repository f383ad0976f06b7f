//! The input of `notifications.create` and its checks: the fields, each step, and the digest that
//! tells a repeat of a request from an idempotency key reused for another.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    error::{ApiError, FieldError},
    notice,
    notify::{NoticeChannel, NoticeType},
};

/// One step of a new notice.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepInput {
    /// `realtime` (an event on the person's stream and an inbox entry), `email`, `sms` or `webhook`.
    pub channel: NoticeChannel,
    /// Seconds after the notice is made (0 when left out); the step goes only if nobody
    /// acknowledged it by then.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2592000, default = 0)]
    pub after: u32,
}

/// Input of `notifications.create`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "user_id": "0192f0c1-0000-7000-8000-000000000001",
    "type": "invoice.due",
    "title": "Your invoice is due",
    "body": "Invoice 42 is due tomorrow.",
    "steps": [{"channel": "realtime", "after": 0}, {"channel": "email", "after": 30}, {"channel": "sms", "after": 300}],
    "idempotency_key": "invoice-42-due"
}))]
pub struct NotifyInput {
    /// Whom it is for.
    pub user_id: Uuid,
    /// The sender's type for it (`invoice.due`); the person's preferences may turn channels off by type.
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^[a-z0-9._-]{1,64}$")]
    pub kind: NoticeType,
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub body: String,
    /// Anything the app wants with it, carried in the in-app event and the webhook (8 KiB at most).
    #[serde(default)]
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
    /// What to try, in order; each step goes `after` seconds from now unless it was acknowledged.
    #[schema(min_items = 1, max_items = 8)]
    pub steps: Vec<StepInput>,
    /// Ignores the person's quiet hours.
    #[serde(default)]
    pub urgent: bool,
    /// The same key from the same caller answers the first notice instead of making another.
    #[schema(min_length = 1, max_length = 200)]
    pub idempotency_key: Option<String>,
    /// Nothing more is sent from then on.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A digest of the request, to tell a repeat from a key reused for something else.
pub(super) fn request_hash(input: &NotifyInput) -> String {
    let mut unkeyed = input.clone();
    unkeyed.idempotency_key = None;
    let digest = Sha256::digest(serde_json::to_vec(&unkeyed).unwrap_or_default());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn checked(input: &NotifyInput, now: DateTime<Utc>) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if input.title.trim().is_empty() {
        errors.push(FieldError::new("title", "must not be blank"));
    } else if input.title.chars().count() > notice::TITLE_MAX {
        errors.push(FieldError::new("title", "must be at most 200 characters"));
    }
    if input.body.chars().count() > notice::BODY_MAX {
        errors.push(FieldError::new("body", "must be at most 4000 characters"));
    }
    if input.data.as_ref().is_some_and(|d| serde_json::to_vec(d).map_or(usize::MAX, |b| b.len()) > notice::DATA_MAX) {
        errors.push(FieldError::new("data", "must be at most 8 KiB of JSON"));
    }
    if input.steps.is_empty() {
        errors.push(FieldError::new("steps", "must name at least one step"));
    } else if input.steps.len() > notice::MAX_STEPS {
        errors.push(FieldError::new("steps", "must have at most 8 steps"));
    }
    for (i, step) in input.steps.iter().enumerate() {
        if notice::second_in_app(input.steps[..=i].iter().map(|s| s.channel)) {
            errors.push(FieldError::new(format!("steps.{i}.channel"), "a notice has one realtime step at most"));
        }
        if step.after > notice::MAX_AFTER_SECS {
            errors.push(FieldError::new(format!("steps.{i}.after"), "must be at most 2592000 (30 days)"));
        }
    }
    if input.expires_at.is_some_and(|at| at <= now) {
        errors.push(FieldError::new("expires_at", "must be in the future"));
    }
    if input.idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 200) {
        errors.push(FieldError::new("idempotency_key", "must be 1 to 200 characters"));
    }
    if errors.is_empty() { Ok(()) } else { Err(ApiError::validation(errors)) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn input(value: serde_json::Value) -> NotifyInput {
        serde_json::from_value(value).expect("input")
    }

    #[test]
    fn a_repeat_hashes_alike_and_a_changed_request_does_not() {
        let base = json!({"user_id": Uuid::nil(), "type": "alert", "title": "Hi", "steps": [{"channel": "email", "after": 5}]});
        let mut keyed = base.clone();
        keyed["idempotency_key"] = json!("k1");
        assert_eq!(request_hash(&input(base.clone())), request_hash(&input(keyed)), "the key is not part of it");
        let mut changed = base.clone();
        changed["title"] = json!("Hello");
        assert_ne!(request_hash(&input(base)), request_hash(&input(changed)));
    }

    #[test]
    fn bad_notices_are_refused_field_by_field() {
        let now = Utc::now();
        let bad = input(json!({
            "user_id": Uuid::nil(), "type": "alert", "title": "  ", "steps": [],
            "expires_at": now - chrono::Duration::seconds(1),
        }));
        let err = checked(&bad, now).expect_err("refused");
        let mut fields: Vec<&str> = err.field_errors().iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["expires_at", "steps", "title"]);
        let late = input(
            json!({"user_id": Uuid::nil(), "type": "a", "title": "t", "steps": [{"channel": "sms", "after": 2_592_001}]}),
        );
        assert_eq!(checked(&late, now).expect_err("refused").field_errors()[0].field, "steps.0.after");
    }
}
