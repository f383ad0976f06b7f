//! `auth.register` and `auth.login`. Both check a password (hash it or verify it), so both go
//! through the password-check limits first.

use async_trait::async_trait;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::{
    auth::AccessToken,
    command::{Access, Command, Ctx},
    error::{ApiError, ErrorCode},
    identity::Identity,
    services::Services,
    user::{Email, Password, Role, UserName},
};

use crate::{
    new_account::{NewAccount, create_user},
    shapes::UserView,
};

/// Input of `auth.register`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.org", "password": "correct horse battery", "name": "Ada Lovelace"}))]
pub struct RegisterInput {
    #[schema(value_type = String, format = Email, min_length = 3, max_length = 254)]
    pub email: Email,
    /// 8 to 128 characters.
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 128)]
    pub password: String,
    #[schema(value_type = String, min_length = 1, max_length = 100)]
    pub name: UserName,
}

/// Creates an account with the `user` role.
#[derive(Debug)]
pub struct Register;

#[async_trait]
impl Command for Register {
    const NAME: &'static str = "auth.register";
    const ACCESS: Access = Access::Public;
    const SUMMARY: &'static str = "Register a new account (role `user`)";
    type Input = RegisterInput;
    type Output = UserView;

    async fn run(&self, svc: &Services, cx: &Ctx, input: RegisterInput) -> Result<UserView, ApiError> {
        svc.throttle.password_attempt(input.email.as_str(), cx.peer)?;
        let password = Password::new_secret(input.password).map_err(|msg| ApiError::invalid_field("password", msg))?;
        let account = NewAccount { email: input.email, name: input.name, password, role: Role::User };
        let user = create_user(svc.store.as_ref(), &svc.passwords, svc.clock.as_ref(), account).await?;
        Ok(user.into())
    }
}

/// Input of `auth.login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.org", "password": "correct horse battery"}))]
pub struct LoginInput {
    #[schema(value_type = String, format = Email, min_length = 3, max_length = 254)]
    pub email: Email,
    #[schema(value_type = String, format = Password, min_length = 1, max_length = 128)]
    pub password: String,
}

/// Exchanges email and password for an access token.
#[derive(Debug)]
pub struct Login;

#[async_trait]
impl Command for Login {
    const NAME: &'static str = "auth.login";
    const ACCESS: Access = Access::Public;
    const SUMMARY: &'static str = "Log in and receive an access token";
    type Input = LoginInput;
    type Output = AccessToken;

    async fn run(&self, svc: &Services, cx: &Ctx, input: LoginInput) -> Result<AccessToken, ApiError> {
        // Before anything is read or hashed: a throttled attempt costs the server nothing.
        svc.throttle.password_attempt(input.email.as_str(), cx.peer)?;
        let credentials = svc.store.credentials_by_email(&input.email).await?;
        let password = Password::attempt(input.password);
        let hash = credentials.as_ref().map(|c| c.password_hash.as_str());
        // Verify even when the account is unknown, so timing does not reveal which emails exist.
        let valid = svc.passwords.verify(&password, hash).await?;
        match credentials {
            Some(c) if valid => {
                let identity = Identity { user_id: c.user.id, role: c.user.role };
                Ok(svc.tokens.issue(identity, svc.clock.now()))
            }
            _ => Err(ApiError::new(ErrorCode::InvalidCredentials, "email or password is wrong")),
        }
    }
}
