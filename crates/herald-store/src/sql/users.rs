//! Users, their sign-in identities, profiles and preferences, and API keys, in both adapters.

use crate::decode::{api_key_columns, user_columns};

pub(crate) const CREATE_USER: &str = "INSERT INTO users (id, email, name, role, password_hash, created_at, phone, \
     timezone) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

pub(crate) const USER_BY_ID: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");

pub(crate) const USER_BY_IDENTITY: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE id = (SELECT user_id FROM user_identities WHERE issuer = $1 AND subject = $2)"
);

pub(crate) const LINKED_SUBJECT: &str =
    "SELECT subject FROM user_identities WHERE issuer = $1 AND user_id = $2 LIMIT 1";

pub(crate) const LINK_IDENTITY: &str =
    "INSERT INTO user_identities (issuer, subject, user_id, created_at) VALUES ($1, $2, $3, $4)";

pub(crate) const SET_ROLE: &str = concat!("UPDATE users SET role = $2 WHERE id = $1 RETURNING ", user_columns!());

pub(crate) const CREDENTIALS: &str = concat!("SELECT ", user_columns!(), ", password_hash FROM users WHERE email = $1");

pub(crate) const LIST_USERS: &str =
    concat!("SELECT ", user_columns!(), " FROM users WHERE $1 IS NULL OR id > $1 ORDER BY id LIMIT $2");

/// Changes the name when `$2` is given, the phone when `$3` (to `$4`), the zone when `$5` (to `$6`).
pub(crate) const UPDATE_PROFILE: &str = concat!(
    "UPDATE users SET name = COALESCE($2, name), ",
    "phone = CASE WHEN $3 THEN $4 ELSE phone END, timezone = CASE WHEN $5 THEN $6 ELSE timezone END ",
    "WHERE id = $1 RETURNING ",
    user_columns!()
);

pub(crate) const PREFERENCES: &str = "SELECT preferences FROM users WHERE id = $1";

pub(crate) const SET_PREFERENCES: &str = "UPDATE users SET preferences = $1 WHERE id = $2";

pub(crate) const CREATE_API_KEY: &str = "INSERT INTO api_keys (id, name, key_hash, scopes, created_by, created_at, \
     revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(crate) const API_KEY_BY_HASH: &str = concat!("SELECT ", api_key_columns!(), " FROM api_keys WHERE key_hash = $1");

pub(crate) const LIST_API_KEYS: &str =
    concat!("SELECT ", api_key_columns!(), " FROM api_keys WHERE $1 IS NULL OR id > $1 ORDER BY id LIMIT $2");

pub(crate) const REVOKE_API_KEY: &str =
    concat!("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING ", api_key_columns!());

/// Implements `UserStore` for an adapter (see [`crate::sql`]).
macro_rules! user_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use herald_core::{
                apikey::{ApiKey, ApiKeyId},
                notify::Preferences,
                store::{StoreError, UserStore},
                user::{ContactPhone, Email, NewUser, ProfileChange, Role, User, UserCredentials, UserId, UserName},
            };
            use sqlx::Row as _;
            use $crate::{
                columns::Stamp,
                decode,
                sql::{Adapter, users::*},
            };

            #[async_trait]
            impl UserStore for $store {
                async fn create_user(&self, new: &NewUser) -> Result<(), StoreError> {
                    let u = &new.user;
                    sqlx::query(CREATE_USER)
                        .bind(u.id.0)
                        .bind(u.email.as_str())
                        .bind(u.name.as_str())
                        .bind(u.role.as_str())
                        .bind(&new.password_hash)
                        .bind(Stamp(u.created_at))
                        .bind(u.phone.as_ref().map(ContactPhone::as_str))
                        .bind(u.timezone.map(|tz| tz.0.name()))
                        .execute(self.writer())
                        .await
                        .map(drop)
                        .map_err(Self::err)
                }

                async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
                    let row =
                        sqlx::query(USER_BY_ID).bind(id.0).fetch_optional(self.reader()).await.map_err(Self::err)?;
                    row.as_ref().map(decode::user).transpose()
                }

                async fn user_by_identity(&self, issuer: &str, subject: &str) -> Result<Option<User>, StoreError> {
                    let row = sqlx::query(USER_BY_IDENTITY)
                        .bind(issuer)
                        .bind(subject)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(Self::err)?;
                    row.as_ref().map(decode::user).transpose()
                }

                async fn linked_subject(&self, issuer: &str, user: UserId) -> Result<Option<String>, StoreError> {
                    sqlx::query_scalar(LINKED_SUBJECT)
                        .bind(issuer)
                        .bind(user.0)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(Self::err)
                }

                async fn link_identity(
                    &self,
                    issuer: &str,
                    subject: &str,
                    user: UserId,
                    now: DateTime<Utc>,
                ) -> Result<(), StoreError> {
                    sqlx::query(LINK_IDENTITY)
                        .bind(issuer)
                        .bind(subject)
                        .bind(user.0)
                        .bind(Stamp(now))
                        .execute(self.writer())
                        .await
                        .map_err(Self::err)?;
                    Ok(())
                }

                async fn set_role(&self, user: UserId, role: Role) -> Result<User, StoreError> {
                    let row = sqlx::query(SET_ROLE)
                        .bind(user.0)
                        .bind(role.as_str())
                        .fetch_optional(self.writer())
                        .await
                        .map_err(Self::err)?;
                    row.as_ref().map(decode::user).transpose()?.ok_or(StoreError::NotFound)
                }

                async fn credentials_by_email(&self, email: &Email) -> Result<Option<UserCredentials>, StoreError> {
                    let row = sqlx::query(CREDENTIALS)
                        .bind(email.as_str())
                        .fetch_optional(self.reader())
                        .await
                        .map_err(Self::err)?;
                    row.map(|row| {
                        let password_hash = row.try_get("password_hash").map_err(Self::err)?;
                        Ok(UserCredentials { user: decode::user(&row)?, password_hash })
                    })
                    .transpose()
                }

                async fn list_users(&self, after: Option<UserId>, limit: u32) -> Result<Vec<User>, StoreError> {
                    let rows = sqlx::query(LIST_USERS)
                        .bind(after.map(|a| a.0))
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    rows.iter().map(decode::user).collect()
                }

                async fn update_profile(&self, user: UserId, change: &ProfileChange) -> Result<User, StoreError> {
                    let row = sqlx::query(UPDATE_PROFILE)
                        .bind(user.0)
                        .bind(change.name.as_ref().map(UserName::as_str))
                        .bind(change.phone.is_some())
                        .bind(change.phone.as_ref().and_then(|p| p.as_ref().map(ContactPhone::as_str)))
                        .bind(change.timezone.is_some())
                        .bind(change.timezone.and_then(|tz| tz.map(|tz| tz.0.name())))
                        .fetch_optional(self.writer())
                        .await
                        .map_err(Self::err)?;
                    row.as_ref().map(decode::user).transpose()?.ok_or(StoreError::NotFound)
                }

                async fn preferences(&self, user: UserId) -> Result<Option<Preferences>, StoreError> {
                    let stored: Option<Option<String>> = sqlx::query_scalar(PREFERENCES)
                        .bind(user.0)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(Self::err)?;
                    stored.map(decode::preferences).transpose()
                }

                async fn set_preferences(&self, user: UserId, preferences: &Preferences) -> Result<(), StoreError> {
                    let done = sqlx::query(SET_PREFERENCES)
                        .bind(decode::preferences_json(preferences)?)
                        .bind(user.0)
                        .execute(self.writer())
                        .await
                        .map_err(Self::err)?;
                    if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
                }

                async fn create_api_key(&self, key: &ApiKey, hash: &str) -> Result<(), StoreError> {
                    sqlx::query(CREATE_API_KEY)
                        .bind(key.id.0)
                        .bind(key.name.as_str())
                        .bind(hash)
                        .bind(decode::scopes(key))
                        .bind(key.created_by.0)
                        .bind(Stamp(key.created_at))
                        .bind(key.revoked_at.map(Stamp))
                        .execute(self.writer())
                        .await
                        .map(drop)
                        .map_err(Self::err)
                }

                async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
                    let row = sqlx::query(API_KEY_BY_HASH)
                        .bind(hash)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(Self::err)?;
                    row.as_ref().map(decode::api_key).transpose()
                }

                async fn list_api_keys(&self, after: Option<ApiKeyId>, limit: u32) -> Result<Vec<ApiKey>, StoreError> {
                    let rows = sqlx::query(LIST_API_KEYS)
                        .bind(after.map(|a| a.0))
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    rows.iter().map(decode::api_key).collect()
                }

                async fn revoke_api_key(&self, id: ApiKeyId, at: DateTime<Utc>) -> Result<ApiKey, StoreError> {
                    let row = sqlx::query(REVOKE_API_KEY)
                        .bind(id.0)
                        .bind(Stamp(at))
                        .fetch_optional(self.writer())
                        .await
                        .map_err(Self::err)?;
                    row.as_ref().map(decode::api_key).transpose()?.ok_or(StoreError::NotFound)
                }
            }
        };
    };
}
pub(crate) use user_store;
