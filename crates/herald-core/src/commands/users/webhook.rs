//! A user's own webhook: `users.webhook`, `users.set_webhook` (the destination checked) and
//! `users.rotate_webhook_secret` (see [`crate::webhook`] for how calls are signed).

use std::net::IpAddr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    caller::account_gone,
    command::{Access, Command, Ctx},
    error::{ApiError, ErrorCode},
    net::Refusal,
    services::Services,
    shapes::NoInput,
    store::StoreError,
    user::{UserId, WebhookUrl},
    webhook::{ROTATION_OVERLAP, WebhookSecret},
};

/// A user's webhook: where their reminders and notices are POSTed, signed with its own secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    /// The `https://` or `http://` URL, or null when none is set.
    pub url: Option<String>,
    /// The webhook's signing secret (`whsec_…`), shown once: when a webhook is set where there
    /// was none. Setting another URL keeps it; `POST /api/v1/me/webhook/rotate-secret` makes a
    /// new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Reads the caller's webhook.
#[derive(Debug)]
pub struct Webhook;

#[async_trait]
impl Command for Webhook {
    const NAME: &'static str = "users.webhook";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Your webhook for reminders and notices";
    type Input = NoInput;
    type Output = WebhookView;

    async fn run(&self, svc: &Services, cx: &Ctx, _input: NoInput) -> Result<WebhookView, ApiError> {
        let url = svc.store.webhook(cx.identity()?.user_id).await?;
        Ok(WebhookView { url: url.map(String::from), secret: None })
    }
}

/// Input of `users.set_webhook`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://hooks.example.org/herald"}))]
pub struct SetWebhookInput {
    /// An `https://` or `http://` URL (at most 2048 characters), or null to remove it (and its
    /// secret).
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
    const SUMMARY: &'static str = "Set (or, with null, remove) your webhook; its secret is answered when first set";
    type Input = SetWebhookInput;
    type Output = WebhookView;

    async fn run(&self, svc: &Services, cx: &Ctx, input: SetWebhookInput) -> Result<WebhookView, ApiError> {
        let user = cx.identity()?.user_id;
        if let Some(url) = &input.url {
            check_destination(svc, user, url).await?;
        }
        match svc.store.set_webhook(user, input.url.as_ref(), &WebhookSecret::generate()).await {
            Ok(secret) => {
                Ok(WebhookView { url: input.url.map(String::from), secret: secret.map(|s| s.expose().to_owned()) })
            }
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

/// A webhook's new secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    /// The new signing secret (`whsec_…`), shown this once.
    pub secret: String,
    /// Until when the secret it replaced still signs beside it (24 hours).
    pub previous_valid_until: DateTime<Utc>,
}

/// Gives the caller's webhook a new secret; the old one keeps signing beside it for 24 hours,
/// so a receiver can switch over without a call it cannot verify.
#[derive(Debug)]
pub struct RotateWebhookSecret;

#[async_trait]
impl Command for RotateWebhookSecret {
    const NAME: &'static str = "users.rotate_webhook_secret";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Give your webhook a new signing secret (the old one signs beside it for 24 h)";
    type Input = NoInput;
    type Output = RotatedSecret;

    async fn run(&self, svc: &Services, cx: &Ctx, _input: NoInput) -> Result<RotatedSecret, ApiError> {
        let user = cx.identity()?.user_id;
        let fresh = WebhookSecret::generate();
        let until = svc.clock.now() + ROTATION_OVERLAP;
        if svc.store.rotate_webhook_secret(user, &fresh, until).await? {
            Ok(RotatedSecret { secret: fresh.expose().to_owned(), previous_valid_until: until })
        } else {
            Err(ApiError::new(ErrorCode::NotFound, "no webhook is set: set one first (PUT /api/v1/me/webhook)"))
        }
    }
}
