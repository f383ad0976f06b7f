//! Records a worker cannot handle: each failure backs its record off (a growing delay) while the
//! worker goes on with every other record, and a record that keeps failing is quarantined until
//! an administrator retries it.
//!
//! A record is what one worker takes one at a time: a notice (escalation), a delivery (the
//! scheduler's claim and the sender), a reminder message (the router), a stream (the relay, which
//! holds back a stream rather than skip one of its events). Only errors that retrying cannot
//! mend count; an unavailable store or broker backs off the whole pass instead.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::store_error::StoreError;

id_type!(
    /// The id of a held record's entry (UUIDv7), which an administrator retries by.
    HeldId
);

string_enum!(
    /// The worker that could not handle a record.
    #[derive(Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    Worker {
        /// Notice steps falling due (the record is the notice).
        Escalation => "escalation",
        /// Due deliveries claimed for senders (the record is the delivery).
        Scheduler => "scheduler",
        /// Deliveries being sent or recorded (the record is the delivery).
        Sender => "sender",
        /// Calendar reminders turned into deliveries (the record is the queue message).
        Router => "router",
        /// Outbox events published to the broker (the record is the stream held back).
        Relay => "relay",
    }
);

string_enum!(
    /// Why a record failed, from a fixed set.
    #[derive(Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    FailureReason {
        /// The stored record cannot be read (a value outside its type).
        Unreadable => "unreadable",
        /// A write for it collides with a record already there.
        Conflict => "conflict",
        /// The broker refused it (too large, or not acceptable).
        Refused => "refused",
        /// Another error that retrying did not mend.
        Failing => "failing",
    }
);

/// One failure of one record.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemFailure {
    pub worker: Worker,
    /// The record's id (a UUID) or, for the relay, its stream's name.
    pub record: String,
    pub reason: FailureReason,
    /// What went wrong, for the administrator (no secrets: store and broker errors only).
    pub error: String,
}

impl ItemFailure {
    /// The longest error text kept.
    pub const ERROR_MAX: usize = 500;

    pub fn new(worker: Worker, record: impl Into<String>, reason: FailureReason, error: impl fmt::Display) -> Self {
        let mut error = error.to_string();
        error.truncate(error.floor_char_boundary(Self::ERROR_MAX));
        Self { worker, record: record.into(), reason, error }
    }
}

impl ItemFailure {
    /// The failure of `record` that the store error `err` comes to (with its causes); `None` when
    /// retrying may mend it.
    pub fn of_store(worker: Worker, record: impl Into<String>, err: &StoreError) -> Option<Self> {
        let reason = reason_of(err)?;
        Some(Self::new(worker, record, reason, with_causes(err)))
    }
}

/// An error and its causes, on one line.
pub fn with_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        // Many errors show their cause in their own text already.
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A record that failed: backed off until `retry_at`, or quarantined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeldRecord {
    #[schema(value_type = String, format = Uuid)]
    pub id: HeldId,
    pub worker: Worker,
    pub record: String,
    pub reason: FailureReason,
    pub error: String,
    /// Failures in a row.
    pub failures: u32,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    /// When its worker takes it again (while not quarantined).
    pub retry_at: DateTime<Utc>,
    /// When it was quarantined: its worker leaves it alone until an administrator retries it.
    pub quarantined_at: Option<DateTime<Utc>>,
}

/// How failing records are backed off, and when they are quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// The delay after the first failure; it doubles with each further one.
    pub first_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// The failure that quarantines a record.
    pub quarantine_after: u32,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self { first_delay: Duration::from_secs(5), max_delay: Duration::from_secs(600), quarantine_after: 5 }
    }
}

impl FailurePolicy {
    /// The delay after the `failures`-th failure in a row (1 for the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first_delay.saturating_mul(1 << doublings).min(self.max_delay)
    }

    /// Whether the `failures`-th failure in a row, for `reason`, quarantines the record: a
    /// record that cannot be read at once (reading it again changes nothing until someone mends
    /// it), any other at the policy's count.
    pub fn quarantines(&self, failures: u32, reason: FailureReason) -> bool {
        reason == FailureReason::Unreadable || failures >= self.quarantine_after.max(1)
    }
}

/// Uuid ids of records, as the store keeps them.
pub fn record_of(id: Uuid) -> String {
    id.to_string()
}

/// What a store error that one record met comes to: `None` when retrying may mend it (the store
/// is unavailable: the whole pass backs off, no record is blamed).
pub fn reason_of(err: &StoreError) -> Option<FailureReason> {
    match err {
        StoreError::Unavailable(_) => None,
        StoreError::Conflict { .. } => Some(FailureReason::Conflict),
        StoreError::NotFound | StoreError::Other(_) => Some(FailureReason::Failing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_longest_and_quarantine_comes_after_n() {
        let p = FailurePolicy {
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(10),
            quarantine_after: 3,
        };
        let delays: Vec<u64> = (1..=5).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 10, 10]);
        assert_eq!(p.delay(u32::MAX).as_secs(), 10);
        assert!(!p.quarantines(2, FailureReason::Conflict));
        assert!(p.quarantines(3, FailureReason::Failing));
        assert!(p.quarantines(1, FailureReason::Unreadable), "an unreadable record waits for someone to mend it");
    }

    #[test]
    fn errors_are_cut_on_a_character_boundary() {
        let long = "é".repeat(400);
        let failure = ItemFailure::new(Worker::Relay, "user:1", FailureReason::Refused, &long);
        assert!(failure.error.len() <= ItemFailure::ERROR_MAX);
        assert!(long.starts_with(&failure.error));
    }

    #[test]
    fn names_round_trip() {
        for w in Worker::ALL {
            assert_eq!(serde_json::to_value(w).expect("json"), w.as_str());
        }
        for r in FailureReason::ALL {
            assert_eq!(serde_json::to_value(r).expect("json"), r.as_str());
        }
    }
}
