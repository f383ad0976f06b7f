//! PostgreSQL: role changes and deletions of accounts. Each locks every administrator's row
//! first (in id order, so two never deadlock): of two administrators demoting or deleting each
//! other at once, the second waits, then sees the first's change and finds itself the last.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    accounts::AccountChange,
    change::ChangeEvent,
    store::AccountStore,
    store::StoreError,
    user::{Role, User, UserId},
};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{PgStore, err, outbox::insert_events};
use crate::decode;

/// The account, and whether removing its admin role would leave no administrator; the
/// administrators' rows stay locked until the transaction ends.
async fn guard(tx: &mut Transaction<'_, Postgres>, user: UserId) -> Result<Option<(User, bool)>, StoreError> {
    let admins: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM users WHERE role = 'admin' ORDER BY id FOR UPDATE")
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?;
    let row = sqlx::query(concat!("SELECT ", decode::user_columns!(), " FROM users WHERE id = $1 FOR UPDATE"))
        .bind(user.0)
        .fetch_optional(&mut **tx)
        .await
        .map_err(err)?;
    let Some(user) = row.as_ref().map(decode::user).transpose()? else { return Ok(None) };
    let last = user.role == Role::Admin && admins.iter().all(|id| *id == user.id.0);
    Ok(Some((user, last)))
}

#[async_trait]
impl AccountStore for PgStore {
    async fn change_role(&self, user: UserId, role: Role) -> Result<AccountChange, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let Some((current, last)) = guard(&mut tx, user).await? else { return Ok(AccountChange::Gone) };
        if last && role != Role::Admin {
            return Ok(AccountChange::LastAdmin);
        }
        let row = sqlx::query(concat!("UPDATE users SET role = $2 WHERE id = $1 RETURNING ", decode::user_columns!()))
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
        let mut tx = self.pool.begin().await.map_err(err)?;
        let Some((deleted, last)) = guard(&mut tx, user).await? else { return Ok(AccountChange::Gone) };
        if last {
            return Ok(AccountChange::LastAdmin);
        }
        sqlx::query(
            "UPDATE deliveries SET status = 'cancelled', updated_at = $2 WHERE recipient_id = $1 AND status = 'pending'",
        )
        .bind(user.0)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        // Everything that references the account goes with it (ON DELETE CASCADE).
        sqlx::query("DELETE FROM users WHERE id = $1").bind(user.0).execute(&mut *tx).await.map_err(err)?;
        insert_events(&mut tx, std::slice::from_ref(gone)).await?;
        self.commit(tx).await?;
        Ok(AccountChange::Done(deleted))
    }
}
