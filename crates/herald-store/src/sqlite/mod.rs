//! [`SqliteStore`]: the embedded store, one database file.
//!
//! SQLite allows one writer at a time. Writes go through a single-connection pool, so writers in
//! this process queue in order instead of failing with `SQLITE_BUSY`; reads use a pool of
//! read-only connections, which WAL mode lets run beside the writer.

mod accounts;
mod calendar;
mod campaigns;
mod channels;
mod deliveries;
mod escalate;
mod notices;
mod outbox;
mod rooms;
mod tasks;

use std::{path::Path, str::FromStr as _, sync::Arc, time::Duration};

use tokio::sync::Notify;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    apikey::{ApiKey, ApiKeyId},
    notify::Preferences,
    store::{Constraint, Store, StoreError, UserStore},
    user::{ContactPhone, Email, NewUser, ProfileChange, User, UserCredentials, UserId, UserName, WebhookUrl},
};
use sqlx::{
    Row as _,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous},
};

use crate::{decode, error};

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

    /// Commits a write that stored events, and wakes the relay. `notify_one` keeps a permit when
    /// the relay is busy, so a wake-up between two passes is not lost.
    async fn commit(&self, tx: sqlx::Transaction<'_, sqlx::Sqlite>) -> Result<(), StoreError> {
        tx.commit().await.map_err(err)?;
        self.outbox_signal.notify_one();
        Ok(())
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

impl SqliteStore {
    /// Wakes a scheduler waiting for due deliveries (one permit is kept when none waits).
    fn wake_schedulers(&self) {
        self.due_signal.notify_one();
    }
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

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_micros(us: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| error::corrupt("timestamp", us))
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.writer).await.map_err(|e| StoreError::Other(Box::new(e)))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await.map(drop).map_err(err)
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, new: &NewUser) -> Result<(), StoreError> {
        let u = &new.user;
        sqlx::query(
            "INSERT INTO users (id, email, name, role, password_hash, created_at, phone, timezone) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(u.id.0)
        .bind(u.email.as_str())
        .bind(u.name.as_str())
        .bind(u.role.as_str())
        .bind(&new.password_hash)
        .bind(micros(u.created_at))
        .bind(u.phone.as_ref().map(ContactPhone::as_str))
        .bind(u.timezone.map(|tz| tz.0.name()))
        .execute(&self.writer)
        .await
        .map(drop)
        .map_err(err)
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", decode::user_columns!(), " FROM users WHERE id = ?"))
            .bind(id.0)
            .fetch_optional(&self.reader)
            .await
            .map_err(err)?;
        row.as_ref().map(decode::user).transpose()
    }

    async fn user_by_identity(&self, issuer: &str, subject: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            decode::user_columns!(),
            " FROM users WHERE id = (SELECT user_id FROM user_identities WHERE issuer = ?1 AND subject = ?2)"
        ))
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&self.reader)
        .await
        .map_err(err)?;
        row.as_ref().map(decode::user).transpose()
    }

    async fn linked_subject(&self, issuer: &str, user: UserId) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT subject FROM user_identities WHERE issuer = ?1 AND user_id = ?2 LIMIT 1")
            .bind(issuer)
            .bind(user.0)
            .fetch_optional(&self.reader)
            .await
            .map_err(err)
    }

    async fn link_identity(
        &self,
        issuer: &str,
        subject: &str,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO user_identities (issuer, subject, user_id, created_at) VALUES (?1, ?2, ?3, ?4)")
            .bind(issuer)
            .bind(subject)
            .bind(user.0)
            .bind(micros(now))
            .execute(&self.writer)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn set_role(&self, user: UserId, role: herald_core::user::Role) -> Result<User, StoreError> {
        let row = sqlx::query(concat!("UPDATE users SET role = ?2 WHERE id = ?1 RETURNING ", decode::user_columns!()))
            .bind(user.0)
            .bind(role.as_str())
            .fetch_optional(&self.writer)
            .await
            .map_err(err)?;
        row.as_ref().map(decode::user).transpose()?.ok_or(StoreError::NotFound)
    }

    async fn credentials_by_email(&self, email: &Email) -> Result<Option<UserCredentials>, StoreError> {
        let row =
            sqlx::query(concat!("SELECT ", decode::user_columns!(), ", password_hash FROM users WHERE email = ?"))
                .bind(email.as_str())
                .fetch_optional(&self.reader)
                .await
                .map_err(err)?;
        row.map(|row| {
            Ok(UserCredentials { user: decode::user(&row)?, password_hash: row.try_get("password_hash").map_err(err)? })
        })
        .transpose()
    }

    async fn list_users(&self, after: Option<UserId>, limit: u32) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            decode::user_columns!(),
            " FROM users WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2"
        ))
        .bind(after.map(|a| a.0))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        rows.iter().map(decode::user).collect()
    }

    async fn set_webhook(&self, user: UserId, url: Option<&WebhookUrl>) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET webhook_url = ? WHERE id = ?")
            .bind(url.map(WebhookUrl::as_str))
            .bind(user.0)
            .execute(&self.writer)
            .await
            .map_err(err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn webhook(&self, user: UserId) -> Result<Option<WebhookUrl>, StoreError> {
        let url: Option<Option<String>> = sqlx::query_scalar("SELECT webhook_url FROM users WHERE id = ?")
            .bind(user.0)
            .fetch_optional(&self.reader)
            .await
            .map_err(err)?;
        url.flatten().map(|u| WebhookUrl::parse(&u).map_err(|e| error::corrupt("webhook url", e))).transpose()
    }

    async fn update_profile(&self, user: UserId, change: &ProfileChange) -> Result<User, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE users SET name = COALESCE(?2, name), ",
            "phone = CASE WHEN ?3 THEN ?4 ELSE phone END, timezone = CASE WHEN ?5 THEN ?6 ELSE timezone END ",
            "WHERE id = ?1 RETURNING ",
            decode::user_columns!()
        ))
        .bind(user.0)
        .bind(change.name.as_ref().map(UserName::as_str))
        .bind(change.phone.is_some())
        .bind(change.phone.as_ref().and_then(|p| p.as_ref().map(ContactPhone::as_str)))
        .bind(change.timezone.is_some())
        .bind(change.timezone.and_then(|tz| tz.map(|tz| tz.0.name())))
        .fetch_optional(&self.writer)
        .await
        .map_err(err)?;
        row.as_ref().map(decode::user).transpose()?.ok_or(StoreError::NotFound)
    }

    async fn preferences(&self, user: UserId) -> Result<Option<Preferences>, StoreError> {
        let stored: Option<Option<String>> = sqlx::query_scalar("SELECT preferences FROM users WHERE id = ?")
            .bind(user.0)
            .fetch_optional(&self.reader)
            .await
            .map_err(err)?;
        stored.map(decode::preferences).transpose()
    }

    async fn set_preferences(&self, user: UserId, preferences: &Preferences) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET preferences = ? WHERE id = ?")
            .bind(decode::preferences_json(preferences)?)
            .bind(user.0)
            .execute(&self.writer)
            .await
            .map_err(err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
    async fn create_api_key(&self, key: &ApiKey, hash: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, key_hash, scopes, created_by, created_at, revoked_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(key.id.0)
        .bind(key.name.as_str())
        .bind(hash)
        .bind(decode::scopes(key))
        .bind(key.created_by.0)
        .bind(crate::columns::Stamp(key.created_at))
        .bind(key.revoked_at.map(crate::columns::Stamp))
        .execute(&self.writer)
        .await
        .map(drop)
        .map_err(err)
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", decode::api_key_columns!(), " FROM api_keys WHERE key_hash = ?1"))
            .bind(hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(err)?;
        row.as_ref().map(decode::api_key).transpose()
    }

    async fn list_api_keys(&self, after: Option<ApiKeyId>, limit: u32) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            decode::api_key_columns!(),
            " FROM api_keys WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2"
        ))
        .bind(after.map(|a| a.0))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        rows.iter().map(decode::api_key).collect()
    }

    async fn revoke_api_key(&self, id: ApiKeyId, at: DateTime<Utc>) -> Result<ApiKey, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1 RETURNING ",
            decode::api_key_columns!()
        ))
        .bind(id.0)
        .bind(crate::columns::Stamp(at))
        .fetch_optional(&self.writer)
        .await
        .map_err(err)?;
        row.as_ref().map(decode::api_key).transpose()?.ok_or(StoreError::NotFound)
    }
}
crate::quarantine::quarantine_store!(SqliteStore, writer, reader, err);

/// The ids of the records `workers` hold back at `now`, as a JSON array of their hex forms (for
/// `id NOT IN (SELECT unhex(value) FROM json_each(…))`).
async fn held_ids(
    pool: impl sqlx::SqliteExecutor<'_>,
    workers: [herald_core::quarantine::Worker; 2],
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let held = crate::quarantine::held_now(workers, now).fetch_all(pool).await.map_err(err)?;
    let hex: Vec<String> =
        held.iter().filter_map(|r| r.parse::<uuid::Uuid>().ok()).map(|id| id.simple().to_string()).collect();
    serde_json::to_string(&hex).map_err(|e| StoreError::Other(Box::new(e)))
}
