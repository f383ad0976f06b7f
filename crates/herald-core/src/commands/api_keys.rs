//! `api_keys.*`: admins make, list and revoke the keys services call Herald with. A key is
//! shown once, when it is made; it is managed only with a person's own token (no key's scope
//! allows these commands, see [`crate::apikey`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    apikey::{self, ApiKey, ApiKeyId, ApiScope, KeyName},
    command::{Access, Command, Ctx},
    error::{ApiError, ErrorCode},
    page::{self, Page},
    services::Services,
    store::StoreError,
};

use crate::shapes::{Deleted, ListInput};

/// An API key as the API shows it (never its secret, except once in [`NewKeyView`]).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "name": "billing backend", "scopes": ["notify"], "created_by": "0192f0c1-0000-7000-8000-000000000001", "created_at": "2026-12-03T10:00:00Z", "revoked_at": null}))]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<ApiScope>,
    /// The admin who made it; the key acts as them, within its scopes.
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    /// When it was revoked; it is refused from then on.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(key: &ApiKey) -> Self {
        Self {
            id: key.id.0,
            name: key.name.as_str().to_owned(),
            scopes: key.scopes.clone(),
            created_by: key.created_by.0,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// Input of `api_keys.create`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "billing backend", "scopes": ["notify"]}))]
pub struct CreateKeyInput {
    /// What the key is for.
    #[schema(value_type = String, min_length = 1, max_length = 100)]
    pub name: KeyName,
    /// At least one of `notify`, `campaigns`, `admin`.
    #[schema(min_items = 1, max_items = 3)]
    pub scopes: Vec<ApiScope>,
}

/// A new key, with its secret: the only time Herald shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewKeyView {
    #[serde(flatten)]
    pub api_key: ApiKeyView,
    /// The secret, `hk_…`: send it as `Authorization: Bearer <key>`. Store it now; it cannot be
    /// read again.
    pub key: String,
}

/// Makes an API key.
#[derive(Debug)]
pub struct Create;

#[async_trait]
impl Command for Create {
    const NAME: &'static str = "api_keys.create";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "Make an API key (its secret is shown once)";
    type Input = CreateKeyInput;
    type Output = NewKeyView;

    async fn run(&self, svc: &Services, cx: &Ctx, input: CreateKeyInput) -> Result<NewKeyView, ApiError> {
        let mut scopes = input.scopes;
        scopes.sort_unstable_by_key(|s| s.as_str());
        scopes.dedup();
        if scopes.is_empty() {
            return Err(ApiError::invalid_field("scopes", "must name at least one scope"));
        }
        let key = ApiKey {
            id: ApiKeyId::new(),
            name: input.name,
            scopes,
            created_by: cx.identity()?.user_id,
            created_at: svc.clock.now(),
            revoked_at: None,
        };
        let secret = apikey::new_secret();
        svc.store.create_api_key(&key, &secret.hash).await?;
        tracing::info!(key_id = %key.id, scopes = ?key.scopes, "API key made");
        Ok(NewKeyView { api_key: ApiKeyView::from(&key), key: secret.key })
    }
}

/// Lists API keys, revoked ones too.
#[derive(Debug)]
pub struct List;

#[async_trait]
impl Command for List {
    const NAME: &'static str = "api_keys.list";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "List API keys (never their secrets)";
    type Input = ListInput;
    type Output = Page<ApiKeyView>;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: ListInput) -> Result<Page<ApiKeyView>, ApiError> {
        let (limit, after) = page::request::<ApiKeyId>(input.limit, input.cursor.as_deref())?;
        let rows = svc.store.list_api_keys(after, limit + 1).await?;
        Ok(Page::from_rows(rows, limit, |k| k.id.0, |k| ApiKeyView::from(&k)))
    }
}

/// Input naming one key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    /// The key's id.
    pub id: Uuid,
}

/// Revokes a key: it is refused from the next request on.
#[derive(Debug)]
pub struct Revoke;

#[async_trait]
impl Command for Revoke {
    const NAME: &'static str = "api_keys.revoke";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "Revoke an API key";
    type Input = KeyRef;
    type Output = Deleted;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: KeyRef) -> Result<Deleted, ApiError> {
        match svc.store.revoke_api_key(ApiKeyId(input.id), svc.clock.now()).await {
            Ok(key) => {
                tracing::info!(key_id = %key.id, "API key revoked");
                Ok(Deleted {})
            }
            Err(StoreError::NotFound) => Err(ApiError::new(ErrorCode::NotFound, "no such API key")),
            Err(err) => Err(err.into()),
        }
    }
}
