//! `users.set_role` and `users.delete`: administrators change an account's role or delete it,
//! never leaving Herald without an administrator (`409 last_admin`). `herald users set-role` and
//! `herald users delete` run the same use cases, [`set_role`] and [`delete_user`].

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    accounts::{ACCOUNT_GONE_EVENT, AccountChange},
    change::ChangeEvent,
    clock::Clock,
    command::{Access, Command, Ctx},
    error::{ApiError, ErrorCode},
    services::Services,
    store::Store,
    user::{Role, User, UserId},
};

use crate::shapes::{Deleted, UserView};

fn refused(change: AccountChange, what: &str) -> Result<User, ApiError> {
    match change {
        AccountChange::Done(user) => Ok(user),
        AccountChange::Gone => Err(ApiError::new(ErrorCode::NotFound, "no such user")),
        AccountChange::LastAdmin => Err(ApiError::new(
            ErrorCode::LastAdmin,
            format!("this is the only administrator: {what} would leave Herald without one; make another admin first"),
        )),
    }
}

/// Gives `user` `role` (effective on their next request, and for their API keys). Refuses to
/// demote the only administrator.
pub async fn set_role(store: &dyn Store, user: UserId, role: Role) -> Result<User, ApiError> {
    let changed = refused(store.change_role(user, role).await?, "demoting them")?;
    tracing::info!(user_id = %user, role = role.as_str(), "role changed");
    Ok(changed)
}

/// Deletes `user` and everything that is theirs; their tokens and API keys stop at once and
/// their open real-time sessions are closed with `account_gone` (on every gateway, by the
/// `account.gone` event on their stream). Refuses to delete the only administrator.
pub async fn delete_user(store: &dyn Store, clock: &dyn Clock, user: UserId) -> Result<User, ApiError> {
    let now = clock.now();
    let gone = ChangeEvent::for_user(user, ACCOUNT_GONE_EVENT, json!({"user_id": user}), now);
    let deleted = refused(store.delete_user(user, &gone, now).await?, "deleting them")?;
    tracing::info!(user_id = %user, "account deleted");
    Ok(deleted)
}

/// Input of `users.set_role`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "role": "user"}))]
pub struct SetRoleInput {
    /// The account's id.
    pub id: Uuid,
    /// `admin` or `user`.
    pub role: Role,
}

/// Changes an account's role.
#[derive(Debug)]
pub struct SetRole;

#[async_trait]
impl Command for SetRole {
    const NAME: &'static str = "users.set_role";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "Change an account's role (admin); the only administrator cannot be demoted";
    type Input = SetRoleInput;
    type Output = UserView;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: SetRoleInput) -> Result<UserView, ApiError> {
        set_role(svc.store.as_ref(), UserId(input.id), input.role).await.map(UserView::from)
    }
}

/// Input naming one account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRef {
    /// The account's id.
    pub id: Uuid,
}

/// Deletes an account and everything that is theirs.
#[derive(Debug)]
pub struct Delete;

#[async_trait]
impl Command for Delete {
    const NAME: &'static str = "users.delete";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str =
        "Delete an account with its tasks, events, rooms, notices and API keys (admin); not the only administrator";
    type Input = UserRef;
    type Output = Deleted;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: UserRef) -> Result<Deleted, ApiError> {
        delete_user(svc.store.as_ref(), svc.clock.as_ref(), UserId(input.id)).await.map(|_| Deleted {})
    }
}
