//! Users' webhooks and their signing secrets, in both adapters.

/// Sets the URL (`$1`, null to clear); a webhook set where there was none takes `$2` as its
/// secret; clearing forgets the secrets. Answers the secret now held.
pub(crate) const SET_WEBHOOK: &str = "UPDATE users SET webhook_url = $1, \
     webhook_secret = CASE WHEN $1 IS NULL THEN NULL ELSE COALESCE(webhook_secret, $2) END, \
     webhook_previous_secret = CASE WHEN $1 IS NULL THEN NULL ELSE webhook_previous_secret END, \
     webhook_previous_until = CASE WHEN $1 IS NULL THEN NULL ELSE webhook_previous_until END \
     WHERE id = $3 RETURNING webhook_secret";

pub(crate) const WEBHOOK: &str = "SELECT webhook_url FROM users WHERE id = $1";

pub(crate) const ROTATE: &str = "UPDATE users SET webhook_previous_secret = webhook_secret, \
     webhook_previous_until = $2, webhook_secret = $1 WHERE id = $3 AND webhook_url IS NOT NULL";

pub(crate) const KEYS: &str = "SELECT webhook_secret, webhook_previous_secret, webhook_previous_until \
     FROM users WHERE id = $1 AND webhook_url IS NOT NULL";

pub(crate) const WITHOUT_SECRET: &str = "SELECT id FROM users WHERE webhook_url IS NOT NULL AND webhook_secret IS NULL";

pub(crate) const FILL_SECRET: &str = "UPDATE users SET webhook_secret = $1 WHERE id = $2 AND webhook_secret IS NULL";

/// Implements `WebhookStore` for an adapter (see [`crate::sql`]).
macro_rules! webhook_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use herald_core::{
                store::{StoreError, WebhookStore},
                user::{UserId, WebhookUrl},
                webhook::{WebhookKeys, WebhookSecret},
            };
            use sqlx::Row as _;
            use uuid::Uuid;
            use $crate::{
                columns::Stamp,
                error,
                sql::{Adapter, webhooks::*},
            };

            fn secret(raw: String) -> Result<WebhookSecret, StoreError> {
                WebhookSecret::parse(&raw).map_err(|e| error::corrupt("webhook secret", e))
            }

            #[async_trait]
            impl WebhookStore for $store {
                async fn set_webhook(
                    &self,
                    user: UserId,
                    url: Option<&WebhookUrl>,
                    fresh: &WebhookSecret,
                ) -> Result<Option<WebhookSecret>, StoreError> {
                    let held: Option<Option<String>> = sqlx::query_scalar(SET_WEBHOOK)
                        .bind(url.map(WebhookUrl::as_str))
                        .bind(fresh.expose())
                        .bind(user.0)
                        .fetch_optional(self.writer())
                        .await
                        .map_err(Self::err)?;
                    match held {
                        None => Err(StoreError::NotFound),
                        Some(held) => Ok(held.filter(|h| h == fresh.expose()).map(|_| fresh.clone())),
                    }
                }

                async fn webhook(&self, user: UserId) -> Result<Option<WebhookUrl>, StoreError> {
                    let url: Option<Option<String>> = sqlx::query_scalar(WEBHOOK)
                        .bind(user.0)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(Self::err)?;
                    let parse = |u: String| WebhookUrl::parse(&u).map_err(|e| error::corrupt("webhook url", e));
                    url.flatten().map(parse).transpose()
                }

                async fn rotate_webhook_secret(
                    &self,
                    user: UserId,
                    fresh: &WebhookSecret,
                    previous_until: DateTime<Utc>,
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query(ROTATE)
                        .bind(fresh.expose())
                        .bind(Stamp(previous_until))
                        .bind(user.0)
                        .execute(self.writer())
                        .await
                        .map_err(Self::err)?;
                    Ok(done.rows_affected() > 0)
                }

                async fn webhook_keys(
                    &self,
                    user: UserId,
                    now: DateTime<Utc>,
                ) -> Result<Option<WebhookKeys>, StoreError> {
                    let Some(row) =
                        sqlx::query(KEYS).bind(user.0).fetch_optional(self.reader()).await.map_err(Self::err)?
                    else {
                        return Ok(None);
                    };
                    let current: Option<String> = row.try_get("webhook_secret").map_err(Self::err)?;
                    let Some(current) = current else { return Ok(None) };
                    let previous: Option<String> = row.try_get("webhook_previous_secret").map_err(Self::err)?;
                    let until: Option<Stamp> = row.try_get("webhook_previous_until").map_err(Self::err)?;
                    Ok(Some(WebhookKeys::at(
                        secret(current)?,
                        previous.map(secret).transpose()?,
                        until.map(|u| u.0),
                        now,
                    )))
                }

                async fn fill_webhook_secrets(&self) -> Result<u64, StoreError> {
                    let ids: Vec<Uuid> =
                        sqlx::query_scalar(WITHOUT_SECRET).fetch_all(self.writer()).await.map_err(Self::err)?;
                    let mut filled = 0;
                    for id in ids {
                        let done = sqlx::query(FILL_SECRET)
                            .bind(WebhookSecret::generate().expose())
                            .bind(id)
                            .execute(self.writer())
                            .await
                            .map_err(Self::err)?;
                        filled += done.rows_affected();
                    }
                    Ok(filled)
                }
            }
        };
    };
}
pub(crate) use webhook_store;
