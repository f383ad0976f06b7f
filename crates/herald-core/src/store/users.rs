//! Accounts: users, linked identities, preferences and API keys.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::store_error::StoreError;
use crate::{
    apikey::{ApiKey, ApiKeyId},
    notify::Preferences,
    user::{Email, NewUser, ProfileChange, User, UserCredentials, UserId},
};

/// Accounts.
#[async_trait]
pub trait UserStore: super::accounts::AccountStore + Send + Sync {
    /// Stores a new user. A taken email is `Conflict { constraint: "users_email_key" }`.
    async fn create_user(&self, user: &NewUser) -> Result<(), StoreError>;

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;

    async fn credentials_by_email(&self, email: &Email) -> Result<Option<UserCredentials>, StoreError>;

    /// The account linked to `subject` at OpenID Connect provider `issuer`, if any.
    async fn user_by_identity(&self, issuer: &str, subject: &str) -> Result<Option<User>, StoreError>;

    /// The subject at `issuer` linked to account `user`, if any.
    async fn linked_subject(&self, issuer: &str, user: UserId) -> Result<Option<String>, StoreError>;

    /// Links `subject` at `issuer` to account `user`; `Conflict` when that identity is linked
    /// already.
    async fn link_identity(
        &self,
        issuer: &str,
        subject: &str,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Gives account `user` `role`; answers the account as it now is, `NotFound` when it is gone.
    async fn set_role(&self, user: UserId, role: crate::user::Role) -> Result<User, StoreError>;

    /// Users in id order, starting after `after`, at most `limit`.
    async fn list_users(&self, after: Option<UserId>, limit: u32) -> Result<Vec<User>, StoreError>;

    /// Changes a user's own profile: the user as it is now; `NotFound` when the user is gone.
    async fn update_profile(&self, user: UserId, change: &ProfileChange) -> Result<User, StoreError>;

    /// A user's preferences (the defaults when they set none); `None` when the user is gone.
    async fn preferences(&self, user: UserId) -> Result<Option<Preferences>, StoreError>;

    /// Replaces a user's preferences; `NotFound` when the user is gone.
    async fn set_preferences(&self, user: UserId, preferences: &Preferences) -> Result<(), StoreError>;

    /// Stores a new API key with the hash of its secret.
    async fn create_api_key(&self, key: &ApiKey, hash: &str) -> Result<(), StoreError>;

    /// The key whose secret hashes to `hash`, revoked ones too (the caller refuses those).
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;

    /// Keys in id order, after `after`, at most `limit`.
    async fn list_api_keys(&self, after: Option<ApiKeyId>, limit: u32) -> Result<Vec<ApiKey>, StoreError>;

    /// Revokes a key at `at` (one revoked already keeps its first time): the key as it is now;
    /// `NotFound` when there is no such key.
    async fn revoke_api_key(&self, id: ApiKeyId, at: DateTime<Utc>) -> Result<ApiKey, StoreError>;
}
