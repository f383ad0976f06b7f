//! `mailings.messages`: a mailing's messages, a page at a time, and how the API shows them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::not_found;
use crate::{
    campaign::MailingId,
    command::{Access, Command, Ctx},
    delivery::{Delivery, DeliveryId, DeliveryStatus},
    error::ApiError,
    page::{self, Page},
    services::Services,
};

/// One message of a mailing.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = mailings::MessageView)]
pub struct MessageView {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    #[schema(value_type = String, example = "sent")]
    pub status: &'static str,
    pub mailing_id: Option<Uuid>,
    pub client_id: Option<Uuid>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    /// While pending: when the next attempt is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl From<Delivery> for MessageView {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id.0,
            created_at: d.created_at,
            status: d.status.as_str(),
            mailing_id: d.source_id,
            client_id: d.recipient_id,
            attempts: d.attempts,
            last_error: d.last_error,
            sent_at: d.sent_at,
            next_attempt_at: (d.status == DeliveryStatus::Pending).then_some(d.next_attempt_at),
        }
    }
}

/// A page of messages. (Not `Page<MessageView>`: a generic page does not carry its item's schema
/// into the OpenAPI document, and no other command outputs a message.)
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    pub items: Vec<MessageView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A message status, as a filter.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Pending,
    Sending,
    Sent,
    Failed,
    Expired,
    Cancelled,
}

impl From<MessageStatus> for DeliveryStatus {
    fn from(s: MessageStatus) -> Self {
        match s {
            MessageStatus::Pending => Self::Pending,
            MessageStatus::Sending => Self::Sending,
            MessageStatus::Sent => Self::Sent,
            MessageStatus::Failed => Self::Failed,
            MessageStatus::Expired => Self::Expired,
            MessageStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// Input of `mailings.messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessagesInput {
    /// The mailing's id.
    pub id: Uuid,
    /// Only messages with this status.
    pub status: Option<MessageStatus>,
    /// Items per page (default 50).
    #[schema(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[schema(max_length = 64)]
    pub cursor: Option<String>,
}

/// A mailing's messages, a page at a time.
#[derive(Debug)]
pub struct Messages;

#[async_trait]
impl Command for Messages {
    const NAME: &'static str = "mailings.messages";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "A mailing's messages, optionally of one status (admin)";
    type Input = MessagesInput;
    type Output = MessagePage;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: MessagesInput) -> Result<MessagePage, ApiError> {
        let mailing = MailingId(input.id);
        svc.store.mailing(mailing).await?.ok_or_else(not_found)?;
        let (limit, after) = page::request::<DeliveryId>(input.limit, input.cursor.as_deref())?;
        let rows = svc.store.list_messages(mailing, input.status.map(Into::into), after, limit + 1).await?;
        let page = Page::from_rows(rows, limit, |d| d.id.0, MessageView::from);
        Ok(MessagePage { items: page.items, next_cursor: page.next_cursor })
    }
}
