//! `users.me`, `users.list`, and the one way a user is created; a user's own webhook in
//! [`webhook`].

pub mod accounts;
pub mod profile;
pub mod webhook;

use async_trait::async_trait;

use crate::{
    caller::account_gone,
    command::{Access, Command, Ctx},
    error::ApiError,
    page::{self, Page},
    services::Services,
    shapes::{ListInput, NoInput, UserView},
    user::UserId,
};

/// The caller's own account.
#[derive(Debug)]
pub struct Me;

#[async_trait]
impl Command for Me {
    const NAME: &'static str = "users.me";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "The authenticated user's account";
    type Input = NoInput;
    type Output = UserView;

    async fn run(&self, svc: &Services, cx: &Ctx, _input: NoInput) -> Result<UserView, ApiError> {
        let identity = cx.identity()?;
        match svc.store.user_by_id(identity.user_id).await? {
            Some(user) => Ok(user.into()),
            // A valid token for an account that is gone proves nothing any more.
            None => Err(account_gone()),
        }
    }
}

/// Every account, for administrators.
#[derive(Debug)]
pub struct List;

#[async_trait]
impl Command for List {
    const NAME: &'static str = "users.list";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "List all accounts (admin)";
    type Input = ListInput;
    type Output = Page<UserView>;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: ListInput) -> Result<Page<UserView>, ApiError> {
        let (limit, after) = page::request::<UserId>(input.limit, input.cursor.as_deref())?;
        let rows = svc.store.list_users(after, limit + 1).await?;
        Ok(Page::from_rows(rows, limit, |u| u.id.0, UserView::from))
    }
}
