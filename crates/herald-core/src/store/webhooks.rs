//! Users' webhooks: where their reminders and notices are POSTed, and the secrets that sign them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::store_error::StoreError;
use crate::{
    user::{UserId, WebhookUrl},
    webhook::{WebhookKeys, WebhookSecret},
};

/// Webhooks and their signing secrets (see [`crate::webhook`]).
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Sets or clears (`None`) a user's webhook; `NotFound` when the user is gone. A webhook set
    /// where there was none takes `fresh` as its secret, which is answered (the one time it is
    /// shown); setting another URL keeps the secret (answer `None`); clearing forgets it.
    async fn set_webhook(
        &self,
        user: UserId,
        url: Option<&WebhookUrl>,
        fresh: &WebhookSecret,
    ) -> Result<Option<WebhookSecret>, StoreError>;

    /// A user's webhook, if they set one (`None` too when the user is gone).
    async fn webhook(&self, user: UserId) -> Result<Option<WebhookUrl>, StoreError>;

    /// Makes `fresh` the secret of a user's webhook; the one it replaces keeps signing until
    /// `previous_until`. `false` (nothing written) when the user has no webhook.
    async fn rotate_webhook_secret(
        &self,
        user: UserId,
        fresh: &WebhookSecret,
        previous_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The secrets that sign a user's webhook calls at `now`; `None` when they have no webhook.
    async fn webhook_keys(&self, user: UserId, now: DateTime<Utc>) -> Result<Option<WebhookKeys>, StoreError>;

    /// Gives every webhook set before webhooks had secrets a secret of its own; answers how many.
    /// Part of migrating: their owners fetch it by rotating.
    async fn fill_webhook_secrets(&self) -> Result<u64, StoreError>;
}
