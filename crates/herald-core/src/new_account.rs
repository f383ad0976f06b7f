//! Creating an account with a hashed password: registration, an administrator's `users.create`
//! and `herald users create` all go through [`create_user`].

use crate::{
    auth::PasswordHasher,
    clock::Clock,
    error::{ApiError, ErrorCode},
    store::{Constraint, Store},
    user::{Email, NewUser, Password, Role, User, UserId, UserName},
};

/// An account about to be created.
#[derive(Debug)]
pub struct NewAccount {
    pub email: Email,
    pub name: UserName,
    pub password: Password,
    pub role: Role,
}

/// Creates a user with a hashed password. Registration and `herald users create` both use it;
/// it needs only the store, the hasher and the clock.
pub async fn create_user(
    store: &dyn Store,
    passwords: &PasswordHasher,
    clock: &dyn Clock,
    account: NewAccount,
) -> Result<User, ApiError> {
    let password_hash = passwords.hash(&account.password).await?;
    let NewAccount { email, name, role, .. } = account;
    let user = User { id: UserId::new(), email, name, role, created_at: clock.now(), phone: None, timezone: None };
    match store.create_user(&NewUser { user: user.clone(), password_hash }).await {
        Ok(()) => Ok(user),
        Err(err) if err.is_conflict_on(Constraint::UsersEmail) => {
            Err(ApiError::new(ErrorCode::EmailTaken, "this email address is already registered"))
        }
        Err(err) => Err(err.into()),
    }
}
