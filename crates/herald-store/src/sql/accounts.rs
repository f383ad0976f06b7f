//! Role changes and deletions of accounts, in both adapters. Each first reads every administrator
//! and the account itself, in the write transaction: PostgreSQL locks those rows (in id order, so
//! two never deadlock), so of two administrators demoting or deleting each other at once the
//! second waits, then sees the first's change and finds itself the last; SQLite's one writer makes
//! the reads and the write they allow one step.

use super::Sql;
use crate::decode::user_columns;

pub(crate) static ADMINS: Sql =
    Sql::new(|d| format!("SELECT id FROM users WHERE role = 'admin' ORDER BY id{}", d.lock(" FOR UPDATE")));

pub(crate) static ACCOUNT: Sql =
    Sql::new(|d| format!(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1{}"), d.lock(" FOR UPDATE")));

pub(crate) const CHANGE_ROLE: &str = concat!("UPDATE users SET role = $2 WHERE id = $1 RETURNING ", user_columns!());

pub(crate) const CANCEL_DELIVERIES: &str =
    "UPDATE deliveries SET status = 'cancelled', updated_at = $2 WHERE recipient_id = $1 AND status = 'pending'";

/// Everything that references the account goes with it (ON DELETE CASCADE).
pub(crate) const DELETE_USER: &str = "DELETE FROM users WHERE id = $1";

/// Implements `AccountStore` for an adapter (see [`crate::sql`]).
macro_rules! account_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use herald_core::{
                accounts::AccountChange,
                change::ChangeEvent,
                store::{AccountStore, StoreError},
                user::{Role, User, UserId},
            };
            use uuid::Uuid;
            use $crate::{
                columns::Stamp,
                decode,
                sql::{Adapter, accounts::*},
            };

            type Tx<'c> = sqlx::Transaction<'c, <$store as Adapter>::Db>;

            /// The account, and whether removing its admin role would leave no administrator.
            async fn guard(tx: &mut Tx<'_>, user: UserId) -> Result<Option<(User, bool)>, StoreError> {
                let dialect = <$store>::DIALECT;
                let admins: Vec<Uuid> =
                    sqlx::query_scalar(ADMINS.text(dialect)).fetch_all(&mut **tx).await.map_err(<$store>::err)?;
                let row = sqlx::query(ACCOUNT.text(dialect))
                    .bind(user.0)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(<$store>::err)?;
                let Some(user) = row.as_ref().map(decode::user).transpose()? else { return Ok(None) };
                let last = user.role == Role::Admin && admins.iter().all(|id| *id == user.id.0);
                Ok(Some((user, last)))
            }

            #[async_trait]
            impl AccountStore for $store {
                async fn change_role(&self, user: UserId, role: Role) -> Result<AccountChange, StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    let Some((current, last)) = guard(&mut tx, user).await? else { return Ok(AccountChange::Gone) };
                    if last && role != Role::Admin {
                        return Ok(AccountChange::LastAdmin);
                    }
                    let row = sqlx::query(CHANGE_ROLE)
                        .bind(current.id.0)
                        .bind(role.as_str())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    let changed = decode::user(&row)?;
                    tx.commit().await.map_err(Self::err)?;
                    Ok(AccountChange::Done(changed))
                }

                async fn delete_user(
                    &self,
                    user: UserId,
                    gone: &ChangeEvent,
                    now: DateTime<Utc>,
                ) -> Result<AccountChange, StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    let Some((deleted, last)) = guard(&mut tx, user).await? else { return Ok(AccountChange::Gone) };
                    if last {
                        return Ok(AccountChange::LastAdmin);
                    }
                    sqlx::query(CANCEL_DELIVERIES)
                        .bind(user.0)
                        .bind(Stamp(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    sqlx::query(DELETE_USER).bind(user.0).execute(&mut *tx).await.map_err(Self::err)?;
                    Self::insert_events(&mut tx, std::slice::from_ref(gone)).await?;
                    self.commit(tx).await?;
                    Ok(AccountChange::Done(deleted))
                }
            }
        };
    };
}
pub(crate) use account_store;
