//! `herald users set-role` and `herald users delete`: the administrators' account changes from
//! the command line, by the same use cases as `PATCH` and `DELETE /api/v1/users/{id}`.

use clap::{Args, ValueEnum};
use herald_core::{
    clock::SystemClock,
    commands::users::accounts::{delete_user, set_role},
    error::ApiError,
    store::Store,
    user::{Email, Role, UserId},
};

/// Which account: by email or by id.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Which {
    /// The account's email.
    #[arg(long)]
    email: Option<String>,
    /// The account's id.
    #[arg(long)]
    id: Option<uuid::Uuid>,
}

/// A role, as the command line names it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    User,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => Role::Admin,
            RoleArg::User => Role::User,
        }
    }
}

fn failed(e: &ApiError) -> anyhow::Error {
    anyhow::anyhow!("{} ({})", e.public_detail(), e.code().as_str())
}

async fn find(store: &dyn Store, which: Which) -> anyhow::Result<UserId> {
    if let Some(id) = which.id {
        return Ok(UserId(id));
    }
    let email =
        Email::parse(which.email.as_deref().unwrap_or_default()).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let found = store.credentials_by_email(&email).await.map_err(|e| failed(&e.into()))?;
    found.map(|c| c.user.id).ok_or_else(|| anyhow::anyhow!("no account has the email {email}"))
}

/// Gives the account `role`; prints the account as it is now.
pub async fn run_set_role(store: &dyn Store, which: Which, role: RoleArg) -> anyhow::Result<()> {
    let user = find(store, which).await?;
    let user = set_role(store, user, role.into()).await.map_err(|e| failed(&e))?;
    println!("{} is now {} ({})", user.email, user.role.as_str(), user.id);
    Ok(())
}

/// Deletes the account; prints which.
pub async fn run_delete(store: &dyn Store, which: Which) -> anyhow::Result<()> {
    let user = find(store, which).await?;
    let user = delete_user(store, &SystemClock, user).await.map_err(|e| failed(&e))?;
    println!("deleted {} {} ({})", user.role.as_str(), user.email, user.id);
    Ok(())
}
