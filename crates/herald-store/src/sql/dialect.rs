//! The few places where PostgreSQL's and SQLite's SQL differ, for queries written once: a row
//! lock, a list bound as one parameter, the column that names a row, a whole statement where
//! one engine has a function of the migration's and the other has not.

use std::sync::OnceLock;

/// One of the two SQL dialects the adapters speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// Whether writers lock rows (PostgreSQL) rather than take turns on one connection (SQLite,
    /// whose one writer holds the whole database for its transaction).
    pub(crate) fn locks_rows(self) -> bool {
        self == Self::Postgres
    }

    /// `clause` (a row lock such as ` FOR UPDATE` or ` FOR UPDATE SKIP LOCKED`) where writers lock
    /// rows; nothing in SQLite.
    pub(crate) fn lock(self, clause: &'static str) -> &'static str {
        if self.locks_rows() { clause } else { "" }
    }

    /// Whether `expr` is among the ids bound as `$n` (an [`Ids`](crate::columns::Ids)).
    pub(crate) fn in_ids(self, expr: &str, n: u8) -> String {
        match self {
            Self::Postgres => format!("{expr} = ANY(${n})"),
            Self::Sqlite => format!("{expr} IN (SELECT unhex(value) FROM json_each(${n}))"),
        }
    }

    /// Whether `expr` is among the values bound as `$n` (a [`Texts`](crate::columns::Texts) or
    /// [`Ints`](crate::columns::Ints)).
    pub(crate) fn in_list(self, expr: &str, n: u8) -> String {
        match self {
            Self::Postgres => format!("{expr} = ANY(${n})"),
            Self::Sqlite => format!("{expr} IN (SELECT value FROM json_each(${n}))"),
        }
    }

    /// The current time: PostgreSQL's clock (so processes on hosts with skewed clocks agree);
    /// SQLite runs in this process, whose clock the body binds as `$n` (see [`Self::binds_now`]).
    pub(crate) fn now(self, n: u8) -> String {
        match self {
            Self::Postgres => "now()".to_owned(),
            Self::Sqlite => format!("${n}"),
        }
    }

    /// Whether a statement of [`Self::now`] takes the current time as a parameter.
    pub(crate) fn binds_now(self) -> bool {
        self == Self::Sqlite
    }

    /// JSON object `json` with its member `text` set to the text bound as `$n`.
    pub(crate) fn with_text(self, json: &str, n: u8) -> String {
        match self {
            Self::Postgres => format!("jsonb_set({json}, '{{text}}', to_jsonb(${n}::text))"),
            Self::Sqlite => format!("json_set({json}, '$.text', ${n})"),
        }
    }

    /// The column that names a row of any table: `ctid`, or SQLite's `rowid`.
    pub(crate) fn row_id(self) -> &'static str {
        match self {
            Self::Postgres => "ctid",
            Self::Sqlite => "rowid",
        }
    }
}

/// A query whose text differs between the dialects, made from its parts by `make` on first use
/// in each (a `&'static str` from then on, as a `const` query is).
#[derive(Debug)]
pub(crate) struct Sql {
    make: fn(Dialect) -> String,
    made: [OnceLock<String>; 2],
}

impl Sql {
    pub(crate) const fn new(make: fn(Dialect) -> String) -> Self {
        Self { make, made: [OnceLock::new(), OnceLock::new()] }
    }

    /// The query in `dialect`.
    pub(crate) fn text(&'static self, dialect: Dialect) -> &'static str {
        self.made[dialect as usize].get_or_init(|| (self.make)(dialect))
    }
}

/// A write whose change events are stored with it: its statement (parameters from `$1`, ending
/// in `RETURNING 1`), and the one statement PostgreSQL makes of it to store the events too,
/// made on first use (see `pg::outbox::with_events`).
#[derive(Debug)]
pub(crate) struct Write {
    pub(crate) sql: &'static str,
    with_events: OnceLock<String>,
}

impl Write {
    pub(crate) const fn new(sql: &'static str) -> Self {
        Self { sql, with_events: OnceLock::new() }
    }

    /// The write as `wrap` makes it into a statement that stores its events too.
    pub(crate) fn with_events(&'static self, wrap: fn(&str) -> String) -> &'static str {
        self.with_events.get_or_init(|| wrap(self.sql))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dialect_gets_its_own_text_once() {
        static Q: Sql = Sql::new(|d| format!("SELECT 1{}", d.lock(" FOR UPDATE")));
        assert_eq!(Q.text(Dialect::Postgres), "SELECT 1 FOR UPDATE");
        assert_eq!(Q.text(Dialect::Sqlite), "SELECT 1");
        assert!(std::ptr::eq(Q.text(Dialect::Sqlite), Q.text(Dialect::Sqlite)));
        assert_eq!(Dialect::Sqlite.in_ids("id", 3), "id IN (SELECT unhex(value) FROM json_each($3))");
    }
}
