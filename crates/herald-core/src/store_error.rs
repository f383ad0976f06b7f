//! The errors every store port reports, and the constraints commands tell apart.

use crate::error::{ApiError, ErrorCode};

/// The few errors a store reports; each tells the caller what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write; `constraint` names it (e.g. `users_email_key`).
    #[error("conflict on {constraint}")]
    Conflict { constraint: String },
    /// The backend is unreachable or overloaded; retrying may succeed.
    #[error("store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("store error")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

string_enum!(
    /// The conflicts commands tell apart, by the name both adapters give them (a unique index's
    /// name, or a check of the adapter's own). Any other constraint is reported by its name.
    Constraint {
        /// A user's email is taken.
        UsersEmail => "users_email_key",
        /// A client's phone is taken.
        ClientsPhone => "clients_phone_key",
        /// `update_task`: the task changed since it was read.
        TaskVersion => "tasks_version",
        /// A mailing change: the mailing's status moved on.
        MailingStatus => "mailings_status",
        /// A calendar event overlaps another of its owner's.
        EventsOverlap => "events_overlap",
        /// A caller's idempotency key names a notice already.
        NoticesIdempotency => "notices_idempotency_key",
    }
);

impl StoreError {
    /// A conflict on `constraint`.
    pub fn conflict(constraint: Constraint) -> Self {
        Self::Conflict { constraint: constraint.as_str().to_owned() }
    }

    /// Whether this is a conflict on `constraint`.
    pub fn is_conflict_on(&self, constraint: Constraint) -> bool {
        matches!(self, Self::Conflict { constraint: name } if name == constraint.as_str())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::new(ErrorCode::NotFound, "not found"),
            StoreError::Conflict { ref constraint } => {
                ApiError::new(ErrorCode::Conflict, format!("conflicts with an existing record ({constraint})"))
            }
            StoreError::Unavailable(_) => {
                ApiError::new(ErrorCode::Unavailable, "the store is unavailable").with_source(err)
            }
            StoreError::Other(_) => ApiError::internal(err),
        }
    }
}
