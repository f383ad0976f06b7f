//! SQLite: role changes and deletions of accounts. Both run on the single writer connection, so
//! counting the administrators and the write that counting allows are one step.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    accounts::AccountChange,
    change::ChangeEvent,
    store::AccountStore,
    store::StoreError,
    user::{Role, User, UserId},
};
use sqlx::{Sqlite, Transaction};

use super::{SqliteStore, err, micros, outbox::insert_events};
use crate::decode;

/// The account, and whether removing its admin role would leave no administrator.
async fn guard(tx: &mut Transaction<'_, Sqlite>, user: UserId) -> Result<Option<(User, bool)>, StoreError> {
    let row = sqlx::query(concat!("SELECT ", decode::user_columns!(), " FROM users WHERE id = ?"))
        .bind(user.0)
        .fetch_optional(&mut **tx)
        .await
        .map_err(err)?;
    let Some(user) = row.as_ref().map(decode::user).transpose()? else { return Ok(None) };
    if user.role != Role::Admin {
        return Ok(Some((user, false)));
    }
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'admin'")
        .fetch_one(&mut **tx)
        .await
        .map_err(err)?;
    Ok(Some((user, admins <= 1)))
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn change_role(&self, user: UserId, role: Role) -> Result<AccountChange, StoreError> {
        let mut tx = self.writer.begin().await.map_err(err)?;
        let Some((current, last)) = guard(&mut tx, user).await? else { return Ok(AccountChange::Gone) };
        if last && role != Role::Admin {
            return Ok(AccountChange::LastAdmin);
        }
        let row = sqlx::query(concat!("UPDATE users SET role = ?2 WHERE id = ?1 RETURNING ", decode::user_columns!()))
            .bind(current.id.0)
            .bind(role.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
        let changed = decode::user(&row)?;
        tx.commit().await.map_err(err)?;
        Ok(AccountChange::Done(changed))
    }

    async fn delete_user(
        &self,
        user: UserId,
        gone: &ChangeEvent,
        now: DateTime<Utc>,
    ) -> Result<AccountChange, StoreError> {
        let mut tx = self.writer.begin().await.map_err(err)?;
        let Some((deleted, last)) = guard(&mut tx, user).await? else { return Ok(AccountChange::Gone) };
        if last {
            return Ok(AccountChange::LastAdmin);
        }
        sqlx::query(
            "UPDATE deliveries SET status = 'cancelled', updated_at = ?2 WHERE recipient_id = ?1 AND status = 'pending'",
        )
        .bind(user.0)
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        // Everything that references the account goes with it (ON DELETE CASCADE).
        sqlx::query("DELETE FROM users WHERE id = ?").bind(user.0).execute(&mut *tx).await.map_err(err)?;
        insert_events(&mut tx, std::slice::from_ref(gone)).await?;
        self.commit(tx).await?;
        Ok(AccountChange::Done(deleted))
    }
}
