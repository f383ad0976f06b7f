//! `users.me`, `users.list`, a user's own webhook, and the one way a user is created.

use std::net::IpAddr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    auth::PasswordHasher,
    clock::Clock,
    command::{Access, Command, Ctx},
    error::{ApiError, ErrorCode},
    net::Refusal,
    page::{self, Page},
    services::Services,
    store::{Constraint, Store, StoreError},
    user::{Email, NewUser, Password, Role, User, UserId, UserName, WebhookUrl},
};

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "email": "ada@example.org", "name": "Ada Lovelace", "role": "user", "created_at": "2026-11-22T10:00:00Z", "phone": "+4915112345678", "timezone": "Europe/Berlin"}))]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// Where text messages reach them (`7XXXXXXXXXX` or E.164), or null.
    pub phone: Option<String>,
    /// Their IANA zone, or null (UTC).
    pub timezone: Option<String>,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            id: user.id.0,
            email: user.email.into(),
            name: user.name.into(),
            role: user.role,
            created_at: user.created_at,
            phone: user.phone.map(Into::into),
            timezone: user.timezone.map(|tz| tz.0.name().to_owned()),
        }
    }
}

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

pub(crate) use crate::caller::account_gone;

/// An input with no fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

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

/// A user's webhook: where their calendar reminders are POSTed, signed (`Herald-Signature`).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    /// The `http://` URL, or null when none is set.
    pub url: Option<String>,
}

/// Reads the caller's webhook.
#[derive(Debug)]
pub struct Webhook;

#[async_trait]
impl Command for Webhook {
    const NAME: &'static str = "users.webhook";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Your webhook for calendar reminders";
    type Input = NoInput;
    type Output = WebhookView;

    async fn run(&self, svc: &Services, cx: &Ctx, _input: NoInput) -> Result<WebhookView, ApiError> {
        let url = svc.store.webhook(cx.identity()?.user_id).await?;
        Ok(WebhookView { url: url.map(String::from) })
    }
}

/// Input of `users.set_webhook`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "http://hooks.internal:8000/herald"}))]
pub struct SetWebhookInput {
    /// An `http://` URL (at most 2048 characters), or null to remove it.
    #[schema(value_type = Option<String>, max_length = 2048)]
    pub url: Option<WebhookUrl>,
}

/// Sets or removes the caller's webhook.
#[derive(Debug)]
pub struct SetWebhook;

#[async_trait]
impl Command for SetWebhook {
    const NAME: &'static str = "users.set_webhook";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Set (or, with null, remove) your webhook for calendar reminders";
    type Input = SetWebhookInput;
    type Output = WebhookView;

    async fn run(&self, svc: &Services, cx: &Ctx, input: SetWebhookInput) -> Result<WebhookView, ApiError> {
        let user = cx.identity()?.user_id;
        if let Some(url) = &input.url {
            check_destination(svc, user, url).await?;
        }
        match svc.store.set_webhook(user, input.url.as_ref()).await {
            Ok(()) => Ok(WebhookView { url: input.url.map(String::from) }),
            Err(StoreError::NotFound) => Err(account_gone()),
            Err(err) => Err(err.into()),
        }
    }
}

/// Longest wait for a webhook's host name to resolve when it is set.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Refuses a webhook whose host is, or resolves now to, an address webhooks may not reach. The
/// sender checks again at connect time, when the name may point elsewhere.
///
/// A literal address is refused naming its class. A name is refused with one message whether it
/// does not resolve or resolves inward, so the answer does not tell which internal names exist.
///
/// A name costs a look-up the user chooses, so each account may have only so many looked up
/// (`throttle`), and the resolver runs only so many at once.
async fn check_destination(svc: &Services, user: UserId, url: &WebhookUrl) -> Result<(), ApiError> {
    let (host, port) = url.host_and_port().map_err(|message| ApiError::invalid_field("url", message))?;
    let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok();
    if !literal {
        svc.throttle.destination_lookup(user)?;
    }
    let checked = tokio::time::timeout(RESOLVE_TIMEOUT, svc.destinations.check_host(&host, port))
        .await
        .unwrap_or(Err(Refusal::Unresolved));
    let Err(refusal) = checked else { return Ok(()) };
    tracing::debug!(%host, port, reason = %refusal, "refused a webhook destination");
    let message = match refusal {
        Refusal::Internal { class, .. } if literal => {
            let article = if class == "unspecified" { "an" } else { "a" };
            format!("points at {article} {class} address, which webhooks may not reach")
        }
        _ => "names a host that does not resolve, or resolves to an address webhooks may not reach".to_owned(),
    };
    Err(ApiError::invalid_field("url", message))
}

/// Input of `users.list`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = users::ListInput)]
pub struct ListInput {
    /// Items per page (default 50).
    #[schema(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[schema(max_length = 64)]
    pub cursor: Option<String>,
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
