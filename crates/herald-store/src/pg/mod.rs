//! [`PgStore`]: the PostgreSQL store, for deployments that outgrow one machine.

mod accounts;
mod calendar;
mod campaigns;
mod channels;
mod deliveries;
mod escalate;
mod group;
mod notices;
mod outbox;
mod rooms;
mod tasks;
mod wakeup;

use std::{str::FromStr as _, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    apikey::{ApiKey, ApiKeyId},
    notify::Preferences,
    store::{Store, StoreError, UserStore},
    user::{ContactPhone, Email, NewUser, ProfileChange, User, UserCredentials, UserId, UserName, WebhookUrl},
};
use sqlx::{
    Row as _,
    postgres::{PgConnectOptions, PgPool, PgPoolOptions},
};

use crate::{decode, error};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Relays wait for committed events on it.
    outbox_wakeup: Arc<wakeup::Wakeup>,
    /// Schedulers wait for deliveries that became due on it.
    due_wakeup: Arc<wakeup::Wakeup>,
    /// Task creations waiting to be written together.
    task_group: Arc<group::TaskGroup>,
}

impl PgStore {
    /// Connects to `url` with at most `pool_size` connections.
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(err)?;
        Self::connect_with(options, pool_size).await
    }

    /// Connects with prepared options (tests use them to pin a `search_path`).
    pub async fn connect_with(options: PgConnectOptions, pool_size: u32) -> Result<Self, StoreError> {
        let options = options.application_name("herald");
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(err)?;
        let outbox_wakeup = Arc::new(wakeup::Wakeup::new(outbox::CHANNEL, pool.clone(), options.clone()));
        let due_wakeup = Arc::new(wakeup::Wakeup::new(DUE_CHANNEL, pool.clone(), options));
        Ok(Self { pool, outbox_wakeup, due_wakeup, task_group: Arc::default() })
    }
}

/// The `LISTEN` channel schedulers wake on.
const DUE_CHANNEL: &str = "herald_due";

impl PgStore {
    /// Wakes schedulers (in any process) waiting for due deliveries.
    fn wake_schedulers(&self) {
        self.due_wakeup.wake();
    }
}

fn err(e: sqlx::Error) -> StoreError {
    // PostgreSQL names the violated constraint itself.
    error::classify(e, |_| None)
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        // sqlx holds a PostgreSQL advisory lock while migrating, so concurrent starts are safe.
        MIGRATOR.run(&self.pool).await.map_err(|e| StoreError::Other(Box::new(e)))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(err)
    }

    async fn close(&self) {
        tokio::join!(self.outbox_wakeup.close(), self.due_wakeup.close());
        self.pool.close().await;
    }
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, new: &NewUser) -> Result<(), StoreError> {
        let u = &new.user;
        sqlx::query(
            "INSERT INTO users (id, email, name, role, password_hash, created_at, phone, timezone) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(u.id.0)
        .bind(u.email.as_str())
        .bind(u.name.as_str())
        .bind(u.role.as_str())
        .bind(&new.password_hash)
        .bind(u.created_at)
        .bind(u.phone.as_ref().map(ContactPhone::as_str))
        .bind(u.timezone.map(|tz| tz.0.name()))
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(err)
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", decode::user_columns!(), " FROM users WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(decode::user).transpose()
    }

    async fn user_by_identity(&self, issuer: &str, subject: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            decode::user_columns!(),
            " FROM users WHERE id = (SELECT user_id FROM user_identities WHERE issuer = $1 AND subject = $2)"
        ))
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.as_ref().map(decode::user).transpose()
    }

    async fn linked_subject(&self, issuer: &str, user: UserId) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT subject FROM user_identities WHERE issuer = $1 AND user_id = $2 LIMIT 1")
            .bind(issuer)
            .bind(user.0)
            .fetch_optional(&self.pool)
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
        sqlx::query("INSERT INTO user_identities (issuer, subject, user_id, created_at) VALUES ($1, $2, $3, $4)")
            .bind(issuer)
            .bind(subject)
            .bind(user.0)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn set_role(&self, user: UserId, role: herald_core::user::Role) -> Result<User, StoreError> {
        let row = sqlx::query(concat!("UPDATE users SET role = $2 WHERE id = $1 RETURNING ", decode::user_columns!()))
            .bind(user.0)
            .bind(role.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(decode::user).transpose()?.ok_or(StoreError::NotFound)
    }

    async fn credentials_by_email(&self, email: &Email) -> Result<Option<UserCredentials>, StoreError> {
        let row =
            sqlx::query(concat!("SELECT ", decode::user_columns!(), ", password_hash FROM users WHERE email = $1"))
                .bind(email.as_str())
                .fetch_optional(&self.pool)
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
            " FROM users WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.map(|a| a.0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(decode::user).collect()
    }

    async fn set_webhook(&self, user: UserId, url: Option<&WebhookUrl>) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET webhook_url = $1 WHERE id = $2")
            .bind(url.map(WebhookUrl::as_str))
            .bind(user.0)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn webhook(&self, user: UserId) -> Result<Option<WebhookUrl>, StoreError> {
        let url: Option<Option<String>> = sqlx::query_scalar("SELECT webhook_url FROM users WHERE id = $1")
            .bind(user.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        url.flatten().map(|u| WebhookUrl::parse(&u).map_err(|e| error::corrupt("webhook url", e))).transpose()
    }

    async fn update_profile(&self, user: UserId, change: &ProfileChange) -> Result<User, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE users SET name = COALESCE($2, name), ",
            "phone = CASE WHEN $3 THEN $4 ELSE phone END, timezone = CASE WHEN $5 THEN $6 ELSE timezone END ",
            "WHERE id = $1 RETURNING ",
            decode::user_columns!()
        ))
        .bind(user.0)
        .bind(change.name.as_ref().map(UserName::as_str))
        .bind(change.phone.is_some())
        .bind(change.phone.as_ref().and_then(|p| p.as_ref().map(ContactPhone::as_str)))
        .bind(change.timezone.is_some())
        .bind(change.timezone.and_then(|tz| tz.map(|tz| tz.0.name())))
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.as_ref().map(decode::user).transpose()?.ok_or(StoreError::NotFound)
    }

    async fn preferences(&self, user: UserId) -> Result<Option<Preferences>, StoreError> {
        let stored: Option<Option<String>> = sqlx::query_scalar("SELECT preferences FROM users WHERE id = $1")
            .bind(user.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        stored.map(decode::preferences).transpose()
    }

    async fn set_preferences(&self, user: UserId, preferences: &Preferences) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET preferences = $1 WHERE id = $2")
            .bind(decode::preferences_json(preferences)?)
            .bind(user.0)
            .execute(&self.pool)
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
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(key.id.0)
        .bind(key.name.as_str())
        .bind(hash)
        .bind(decode::scopes(key))
        .bind(key.created_by.0)
        .bind(crate::columns::Stamp(key.created_at))
        .bind(key.revoked_at.map(crate::columns::Stamp))
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(err)
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", decode::api_key_columns!(), " FROM api_keys WHERE key_hash = $1"))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(decode::api_key).transpose()
    }

    async fn list_api_keys(&self, after: Option<ApiKeyId>, limit: u32) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            decode::api_key_columns!(),
            " FROM api_keys WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.map(|a| a.0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(decode::api_key).collect()
    }

    async fn revoke_api_key(&self, id: ApiKeyId, at: DateTime<Utc>) -> Result<ApiKey, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING ",
            decode::api_key_columns!()
        ))
        .bind(id.0)
        .bind(crate::columns::Stamp(at))
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.as_ref().map(decode::api_key).transpose()?.ok_or(StoreError::NotFound)
    }
}
crate::quarantine::quarantine_store!(PgStore, pool, pool, err);

/// The ids of the records `workers` hold back at `now`.
async fn held_ids(
    pool: impl sqlx::PgExecutor<'_>,
    workers: [herald_core::quarantine::Worker; 2],
    now: DateTime<Utc>,
) -> Result<Vec<uuid::Uuid>, StoreError> {
    let held = crate::quarantine::held_now(workers, now).fetch_all(pool).await.map_err(err)?;
    Ok(held.iter().filter_map(|r| r.parse().ok()).collect())
}
