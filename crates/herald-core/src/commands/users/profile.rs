//! A person's own profile and preferences: `users.update_me` (name, phone, zone),
//! `users.preferences` and `users.set_preferences` (channels, per-type switches, quiet hours).

use async_trait::async_trait;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::{
    campaign::TimeZone,
    command::{Access, Command, Ctx},
    error::ApiError,
    notify::Preferences,
    services::Services,
    store::StoreError,
    user::{ContactPhone, ProfileChange, UserName},
};

use crate::{
    caller::account_gone,
    shapes::{NoInput, UserView, present},
};

/// Input of `users.update_me`: only the fields present change; `phone: null` and
/// `timezone: null` clear them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada Lovelace", "phone": "+4915112345678", "timezone": "Europe/Berlin"}))]
pub struct UpdateMeInput {
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100)]
    pub name: Option<UserName>,
    /// `7XXXXXXXXXX` or E.164 (`+` and 7 to 15 digits).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = r"^(7[0-9]{10}|\+[1-9][0-9]{6,14})$")]
    pub phone: Option<Option<ContactPhone>>,
    /// An IANA zone, like `Europe/Berlin`: quiet hours are in it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "Europe/Berlin")]
    pub timezone: Option<Option<TimeZone>>,
}

/// Changes the caller's name, phone or zone.
#[derive(Debug)]
pub struct UpdateMe;

#[async_trait]
impl Command for UpdateMe {
    const NAME: &'static str = "users.update_me";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Change your name, phone or time zone";
    type Input = UpdateMeInput;
    type Output = UserView;

    async fn run(&self, svc: &Services, cx: &Ctx, input: UpdateMeInput) -> Result<UserView, ApiError> {
        let change = ProfileChange { name: input.name, phone: input.phone, timezone: input.timezone };
        match svc.store.update_profile(cx.identity()?.user_id, &change).await {
            Ok(user) => Ok(user.into()),
            Err(StoreError::NotFound) => Err(account_gone()),
            Err(err) => Err(err.into()),
        }
    }
}

/// Reads the caller's preferences (the defaults until they set some: every channel on, no
/// quiet hours).
#[derive(Debug)]
pub struct GetPreferences;

#[async_trait]
impl Command for GetPreferences {
    const NAME: &'static str = "users.preferences";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Your notification preferences";
    type Input = NoInput;
    type Output = Preferences;

    async fn run(&self, svc: &Services, cx: &Ctx, _input: NoInput) -> Result<Preferences, ApiError> {
        svc.store.preferences(cx.identity()?.user_id).await?.ok_or_else(account_gone)
    }
}

/// Replaces the caller's preferences.
#[derive(Debug)]
pub struct SetPreferences;

#[async_trait]
impl Command for SetPreferences {
    const NAME: &'static str = "users.set_preferences";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Replace your notification preferences";
    type Input = Preferences;
    type Output = Preferences;

    async fn run(&self, svc: &Services, cx: &Ctx, input: Preferences) -> Result<Preferences, ApiError> {
        match svc.store.set_preferences(cx.identity()?.user_id, &input).await {
            Ok(()) => Ok(input),
            Err(StoreError::NotFound) => Err(account_gone()),
            Err(err) => Err(err.into()),
        }
    }
}
