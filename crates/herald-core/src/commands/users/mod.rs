//! `users.me`, `users.list`, a user's own webhook, and the one way a user is created.

pub mod accounts;
pub mod profile;

use std::net::IpAddr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    caller::account_gone,
    command::{Access, Command, Ctx},
    error::ApiError,
    net::Refusal,
    page::{self, Page},
    services::Services,
    shapes::{ListInput, NoInput, UserView},
    store::StoreError,
    user::{UserId, WebhookUrl},
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
