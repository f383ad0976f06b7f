//! Maps driver errors onto the port's few, actionable errors.

use herald_core::store::{Constraint, StoreError};

/// Classifies a sqlx error. `constraint_of` names the unique constraint a violation hit, for
/// drivers (SQLite) that only report it in the message.
pub(crate) fn classify(err: sqlx::Error, constraint_of: impl Fn(&str) -> Option<&'static str>) -> StoreError {
    match &err {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(err)),
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            let constraint = db.constraint().map(str::to_owned).or_else(|| constraint_of(db.message()).map(Into::into));
            StoreError::Conflict { constraint: constraint.unwrap_or_else(|| "unknown".into()) }
        }
        sqlx::Error::Database(db) if is_transient(db.code().as_deref()) => StoreError::Unavailable(Box::new(err)),
        _ => StoreError::Other(Box::new(err)),
    }
}

/// Classifies a sqlx error with `classify`, except that a foreign-key violation (a row the write
/// refers to is missing) is `NotFound`.
pub(crate) fn missing_as_not_found(err: sqlx::Error, classify: impl Fn(sqlx::Error) -> StoreError) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => classify(err),
    }
}

/// PostgreSQL connection, shutdown and serialisation classes; SQLite BUSY and LOCKED.
fn is_transient(code: Option<&str>) -> bool {
    match code {
        Some(code) => {
            code.starts_with("08")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
                || code == "5"
                || code == "6"
        }
        None => false,
    }
}

/// A stored row that no longer satisfies the domain's rules.
#[derive(Debug, thiserror::Error)]
#[error("corrupt {what} in store: {reason}")]
pub(crate) struct Corrupt {
    pub what: &'static str,
    pub reason: String,
}

pub(crate) fn corrupt(what: &'static str, reason: impl ToString) -> StoreError {
    StoreError::Other(Box::new(Corrupt { what, reason: reason.to_string() }))
}

/// The rule of a conditional write that changed no row, in both adapters: the row is gone
/// (`NotFound`), or it is there and its condition no longer holds (a conflict on `condition`).
pub(crate) fn unchanged(still_there: bool, condition: Constraint) -> StoreError {
    if still_there { StoreError::conflict(condition) } else { StoreError::NotFound }
}
