//! [`SqliteStore`]: the embedded store, one database file.
//!
//! SQLite allows one writer at a time. Writes go through a single-connection pool, so writers in
//! this process queue in order instead of failing with `SQLITE_BUSY`; reads use a pool of
//! read-only connections, which WAL mode lets run beside the writer.
//!
//! Its queries are the shared ones of [`crate::sql`]; here are its pools, its events and
//! wake-ups, and what it does a statement at a time where PostgreSQL takes arrays.

mod campaigns;
mod deliveries;
mod notices;
mod outbox;

use std::{path::Path, str::FromStr as _, sync::Arc, time::Duration};

use tokio::sync::Notify;

use async_trait::async_trait;
use herald_core::{
    change::ChangeEvent,
    store::{Constraint, Store, StoreError},
    task::Task,
};
use sqlx::{
    Sqlite, Transaction,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous},
};

use crate::{
    columns::Stamp,
    error,
    sql::{Adapter, Dialect, Query, Write, tasks::TaskWrites},
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The embedded store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Wakes this process's relay after a commit that wrote events.
    outbox_signal: Arc<Notify>,
    /// Wakes this process's schedulers when deliveries became due.
    due_signal: Arc<Notify>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, with up to `readers` read connections.
    /// A new file is made readable by Herald's user only (0600 on Unix; SQLite gives its `-wal` and
    /// `-shm` files the database file's mode); an existing one keeps its mode.
    pub async fn open(path: &Path, readers: u32) -> Result<Self, StoreError> {
        create_private_file(path).map_err(|e| err(sqlx::Error::Io(e)))?;
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // The one writer gets a 64 MiB page cache (SQLite's default is 2 MiB): a mailing to a
        // million clients writes a million messages and their indexes in one transaction.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone().pragma("cache_size", "-65536"))
            .await
            .map_err(err)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await
            .map_err(err)?;
        Ok(Self { writer, reader, outbox_signal: Arc::new(Notify::new()), due_signal: Arc::new(Notify::new()) })
    }
}

/// Creates `path` empty with mode 0600 (an empty file is a new SQLite database) unless it exists,
/// so that SQLite, which would create it 0644 less the umask, opens it as it is.
#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
        return Ok(());
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

#[cfg(not(unix))]
fn create_private_file(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

fn err(e: sqlx::Error) -> StoreError {
    // SQLite names the violated columns only in its message ("UNIQUE constraint failed: users.email").
    error::classify(e, |message| {
        if message.contains("users.email") {
            Some(Constraint::UsersEmail.as_str())
        } else if message.contains("clients.phone") {
            Some(Constraint::ClientsPhone.as_str())
        } else if message.contains("notices.idempotency_key") {
            Some(Constraint::NoticesIdempotency.as_str())
        } else {
            None
        }
    })
}

/// `($1, $2, …), ($n+1, …), …`: `rows` rows of `columns` placeholders, for a `VALUES` list.
fn values(rows: usize, columns: usize) -> String {
    let row = |r: usize| {
        let placeholders: Vec<String> = (1..=columns).map(|c| format!("${}", r * columns + c)).collect();
        format!("({})", placeholders.join(", "))
    };
    (0..rows).map(row).collect::<Vec<_>>().join(", ")
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.writer).await.map_err(|e| StoreError::Other(Box::new(e)))?;
        // Webhooks set before they had secrets get one (no SQL way to make base64 on both).
        let filled = herald_core::store::WebhookStore::fill_webhook_secrets(self).await?;
        if filled > 0 {
            tracing::info!(filled, "gave webhooks set before webhook secrets existed a secret each");
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await.map(drop).map_err(err)
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

impl Adapter for SqliteStore {
    type Db = Sqlite;

    const DIALECT: Dialect = Dialect::Sqlite;

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn err(e: sqlx::Error) -> StoreError {
        err(e)
    }

    /// A statement per channel and event (see [`outbox::insert_events`]).
    async fn insert_events(tx: &mut Transaction<'_, Sqlite>, events: &[ChangeEvent]) -> Result<(), StoreError> {
        outbox::insert_events(tx, events).await
    }

    /// Commits, and wakes the relay. `notify_one` keeps a permit when the relay is busy, so a
    /// wake-up between two passes is not lost.
    async fn commit(&self, tx: Transaction<'_, Sqlite>) -> Result<(), StoreError> {
        tx.commit().await.map_err(err)?;
        self.outbox_signal.notify_one();
        Ok(())
    }

    fn write_statement(write: &'static Write) -> &'static str {
        write.sql
    }

    /// In one transaction: the write, then its events when it wrote a row.
    async fn run_write(&self, statement: Query<'_, Self>, events: &[ChangeEvent]) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(err)?;
        let written = statement.execute(&mut *tx).await.map_err(err)?.rows_affected();
        if written > 0 {
            outbox::insert_events(&mut tx, events).await?;
            self.commit(tx).await?;
        }
        Ok(written)
    }

    async fn wait_for_events(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.outbox_signal.notified()).await;
    }

    /// Wakes a scheduler of this process (one permit is kept when none waits).
    fn wake_schedulers(&self) {
        self.due_signal.notify_one();
    }

    async fn wait_for_due_deliveries(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.due_signal.notified()).await;
    }
}

impl TaskWrites for SqliteStore {
    async fn write_task(&self, t: &Task, events: &[ChangeEvent]) -> Result<(), StoreError> {
        static INSERT_TASK: Write = Write::new(
            "INSERT INTO tasks (id, owner_id, title, description, status, due_at, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING 1",
        );
        self.write_with_events(&INSERT_TASK, events, |q| {
            q.bind(t.id.0)
                .bind(t.owner.0)
                .bind(t.title.as_str())
                .bind(t.description.as_str())
                .bind(t.status.as_str())
                .bind(t.due_at.map(Stamp))
                .bind(t.version)
                .bind(Stamp(t.created_at))
                .bind(Stamp(t.updated_at))
        })
        .await
        .map(drop)
    }
}

crate::sql::shared_ports!(SqliteStore);
