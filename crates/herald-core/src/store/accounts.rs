//! The accounts port beyond their own fields: changing a role and deleting an account, each
//! refused when it would leave Herald without an administrator.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::store_error::StoreError;
use crate::{
    accounts::AccountChange,
    change::ChangeEvent,
    user::{Role, UserId},
};

/// Role changes and deletions. Both are atomic against each other and against themselves: two
/// administrators demoting or deleting each other at once leave one administrator, never none.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Gives `user` `role`, unless that demotes the only administrator.
    async fn change_role(&self, user: UserId, role: Role) -> Result<AccountChange, StoreError>;

    /// Deletes `user`, unless they are the only administrator, with everything that is theirs
    /// (their tasks, events, rooms, notices, API keys, identities, cursors: every row that
    /// references the account goes with it, `ON DELETE CASCADE`), cancels their pending
    /// deliveries (those whose `recipient_id` is the account) at `now`, and stores `gone` in the
    /// outbox: all in one transaction.
    async fn delete_user(
        &self,
        user: UserId,
        gone: &ChangeEvent,
        now: DateTime<Utc>,
    ) -> Result<AccountChange, StoreError>;
}
