//! `clients.*`: the recipients of mailings, for administrators. Bulk import (NDJSON) is a
//! streamed HTTP route that validates each line with [`ClientInput::into_client`].

pub mod import;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    campaign::{Client, ClientFilter, ClientId, OperatorCode, Phone, Tag, TimeZone},
    command::{Access, Command, Ctx},
    error::{ApiError, ErrorCode},
    page::{self, Page},
    services::Services,
    store::{Constraint, StoreError},
};

use crate::shapes::{ClientInput, Deleted};

/// A client as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "phone": "79161234567", "operator_code": "916", "tag": "vip", "timezone": "Europe/Moscow", "created_at": "2026-11-22T10:00:00Z", "updated_at": "2026-11-22T10:00:00Z"}))]
pub struct ClientView {
    pub id: Uuid,
    pub phone: String,
    pub operator_code: String,
    pub tag: String,
    pub timezone: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Client> for ClientView {
    fn from(c: &Client) -> Self {
        Self {
            id: c.id.0,
            phone: c.phone.as_str().to_owned(),
            operator_code: c.operator_code.as_str().to_owned(),
            tag: c.tag.as_str().to_owned(),
            timezone: c.timezone.name().to_owned(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such client")
}

fn on_conflict(err: StoreError) -> ApiError {
    match err {
        ref err if err.is_conflict_on(Constraint::ClientsPhone) => {
            ApiError::new(ErrorCode::Conflict, "a client with this phone exists already")
        }
        StoreError::NotFound => not_found(),
        err => err.into(),
    }
}

/// Adds a client.
#[derive(Debug)]
pub struct Create;

#[async_trait]
impl Command for Create {
    const NAME: &'static str = "clients.create";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "Add a client (admin)";
    type Input = ClientInput;
    type Output = ClientView;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: ClientInput) -> Result<ClientView, ApiError> {
        let client = input.into_client(svc.clock.now());
        svc.store.create_client(&client).await.map_err(on_conflict)?;
        Ok(ClientView::from(&client))
    }
}

/// Input naming one client.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientRef {
    /// The client's id.
    pub id: Uuid,
}

/// Reads one client.
#[derive(Debug)]
pub struct Get;

#[async_trait]
impl Command for Get {
    const NAME: &'static str = "clients.get";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "Read a client (admin)";
    type Input = ClientRef;
    type Output = ClientView;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: ClientRef) -> Result<ClientView, ApiError> {
        let client = svc.store.client(ClientId(input.id)).await?.ok_or_else(not_found)?;
        Ok(ClientView::from(&client))
    }
}

/// Input of `clients.list`: a page of the clients every given part matches.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = clients::ListInput)]
pub struct ListInput {
    /// Only clients whose phone starts with these digits.
    #[schema(pattern = r"^[0-9]{1,11}$", example = "7916")]
    pub phone: Option<String>,
    /// Only clients with this operator code.
    #[schema(value_type = Option<String>, pattern = r"^[0-9]{3}$")]
    pub operator_code: Option<OperatorCode>,
    /// Only clients with this tag.
    #[schema(value_type = Option<String>, max_length = 64)]
    pub tag: Option<Tag>,
    /// Items per page (default 50).
    #[schema(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[schema(max_length = 64)]
    pub cursor: Option<String>,
}

/// Lists clients, oldest first.
#[derive(Debug)]
pub struct List;

#[async_trait]
impl Command for List {
    const NAME: &'static str = "clients.list";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "List clients (admin)";
    type Input = ListInput;
    type Output = Page<ClientView>;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: ListInput) -> Result<Page<ClientView>, ApiError> {
        let (limit, after) = page::request::<ClientId>(input.limit, input.cursor.as_deref())?;
        if let Some(phone) = &input.phone
            && !(phone.len() <= 11 && !phone.is_empty() && phone.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ApiError::invalid_field("phone", "1 to 11 digits, the start of a phone"));
        }
        let filter = ClientFilter { phone_prefix: input.phone, operator_code: input.operator_code, tag: input.tag };
        let rows = svc.store.list_clients(&filter, after, limit + 1).await?;
        Ok(Page::from_rows(rows, limit, |c| c.id.0, |c| ClientView::from(&c)))
    }
}

/// Input of `clients.update`: only the fields present change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "tag": "churned"}))]
#[schema(as = clients::UpdateInput)]
pub struct UpdateInput {
    pub id: Uuid,
    /// A new phone; the operator code follows it unless it was set by hand or is given too.
    #[schema(value_type = Option<String>, pattern = r"^7[0-9]{10}$")]
    pub phone: Option<Phone>,
    #[schema(value_type = Option<String>, pattern = r"^[0-9]{3}$")]
    pub operator_code: Option<OperatorCode>,
    #[schema(value_type = Option<String>, max_length = 64)]
    pub tag: Option<Tag>,
    #[schema(value_type = Option<String>)]
    pub timezone: Option<TimeZone>,
}

/// Changes a client.
#[derive(Debug)]
pub struct Update;

#[async_trait]
impl Command for Update {
    const NAME: &'static str = "clients.update";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "Change a client (admin)";
    type Input = UpdateInput;
    type Output = ClientView;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: UpdateInput) -> Result<ClientView, ApiError> {
        let current = svc.store.client(ClientId(input.id)).await?.ok_or_else(not_found)?;
        let mut next = current.clone();
        if let Some(phone) = input.phone {
            if current.operator_code == current.phone.operator_code() {
                next.operator_code = phone.operator_code();
            }
            next.phone = phone;
        }
        if let Some(code) = input.operator_code {
            next.operator_code = code;
        }
        if let Some(tag) = input.tag {
            next.tag = tag;
        }
        if let Some(tz) = input.timezone {
            next.timezone = tz;
        }
        if next == current {
            return Ok(ClientView::from(&current));
        }
        next.updated_at = svc.clock.now();
        svc.store.update_client(&next).await.map_err(on_conflict)?;
        Ok(ClientView::from(&next))
    }
}

/// Deletes a client; its pending messages are cancelled.
#[derive(Debug)]
pub struct Delete;

#[async_trait]
impl Command for Delete {
    const NAME: &'static str = "clients.delete";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "Delete a client and cancel its pending messages (admin)";
    type Input = ClientRef;
    type Output = Deleted;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: ClientRef) -> Result<Deleted, ApiError> {
        if !svc.store.delete_client(ClientId(input.id), svc.clock.now()).await? {
            return Err(not_found());
        }
        tracing::info!(client_id = %input.id, "client deleted");
        Ok(Deleted {})
    }
}
