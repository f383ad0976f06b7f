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

/// Errors of the store as a whole, not of one record: PostgreSQL connection, shutdown,
/// serialisation, read-only after a failover (25006), statement timeout (57014), lock not
/// available (55P03) and insufficient resources (53…); SQLite BUSY, LOCKED, I/O error and disk full,
/// by their primary code (sqlx reports extended codes such as 517 or 773).
fn is_transient(code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    if let Ok(sqlite) = code.parse::<u32>() {
        return matches!(sqlite & 0xff, 5 | 6 | 10 | 13);
    }
    code.starts_with("08")
        || code.starts_with("57P")
        || code.starts_with("53")
        || matches!(code, "40001" | "40P01" | "25006" | "57014" | "55P03")
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
