//! `attachments.*`, and the use cases behind the streamed upload and download, which are not
//! commands because their bodies are byte streams rather than JSON.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    Services,
    auth::Identity,
    change::ChangeEvent,
    command::{Access, Command, Ctx},
    error::{ApiError, ErrorCode},
    files::{Opened, StoredFile},
    task::{Attachment, AttachmentId, TaskId, clean_content_type, clean_file_name},
};

use super::tasks::Deleted;

/// An attachment as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": "0192f0c2-0000-7000-8000-000000000001", "task_id": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "file_name": "receipt.pdf", "content_type": "application/pdf", "size": 48213, "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "created_at": "2026-11-22T10:05:00Z"}))]
pub struct AttachmentView {
    pub id: Uuid,
    pub task_id: Uuid,
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the content (also its `ETag`).
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

impl From<&Attachment> for AttachmentView {
    fn from(a: &Attachment) -> Self {
        Self {
            id: a.id.0,
            task_id: a.task_id.0,
            file_name: a.file_name.clone(),
            content_type: a.content_type.clone(),
            size: a.size,
            sha256: a.sha256.clone(),
            created_at: a.created_at,
        }
    }
}

/// The `attachment.deleted` event of `attachment`.
pub fn deleted_event(attachment: &Attachment, now: DateTime<Utc>) -> ChangeEvent {
    ChangeEvent::for_user(
        attachment.owner,
        "attachment.deleted",
        json!({"id": attachment.id, "task_id": attachment.task_id}),
        now,
    )
}

/// Removes the files of deleted attachments. Failures are logged: the orphan collector removes
/// whatever is left, since no row references those files any more.
pub async fn remove_files(svc: &Services, attachments: &[Attachment]) {
    for a in attachments {
        if let Err(err) = svc.files.remove(&a.storage_key, false).await {
            tracing::warn!(attachment_id = %a.id, key = %a.storage_key, %err, "could not remove a deleted attachment's file; the collector will");
        }
    }
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no such {what}"))
}

/// Checks, before an upload is streamed, that the caller owns the task.
pub async fn check_task(svc: &Services, identity: Identity, task: TaskId) -> Result<(), ApiError> {
    match svc.store.task(identity.user_id, task).await? {
        Some(_) => Ok(()),
        None => Err(not_found("task")),
    }
}

/// Records a finished upload as an attachment of `task`. When the task is gone by now the file
/// is removed and the answer is `not_found`.
pub async fn attach(
    svc: &Services,
    identity: Identity,
    task: TaskId,
    file: StoredFile,
    file_name: Option<&str>,
    content_type: Option<&str>,
) -> Result<AttachmentView, ApiError> {
    let now = svc.clock.now();
    let attachment = Attachment {
        id: AttachmentId::new(),
        task_id: task,
        owner: identity.user_id,
        file_name: clean_file_name(file_name.unwrap_or_default()),
        content_type: clean_content_type(content_type),
        size: file.size,
        sha256: file.sha256,
        storage_key: file.key,
        created_at: now,
    };
    let view = AttachmentView::from(&attachment);
    let event = ChangeEvent::for_user(identity.user_id, "attachment.added", json!(view), now);
    if let Err(err) = svc.store.add_attachment(&attachment, &[event]).await {
        remove_files(svc, std::slice::from_ref(&attachment)).await;
        return Err(match err {
            crate::store::StoreError::NotFound => not_found("task"),
            other => other.into(),
        });
    }
    tracing::info!(attachment_id = %attachment.id, task_id = %task, size = attachment.size, "attachment stored");
    Ok(view)
}

/// An attachment opened for download.
#[derive(Debug)]
pub struct Download {
    pub attachment: Attachment,
    pub file: Opened,
}

/// Opens an attachment the caller owns, positioned at `range` when given.
pub async fn open(
    svc: &Services,
    identity: Identity,
    id: AttachmentId,
    range: impl FnOnce(u64) -> Result<Option<(u64, u64)>, ApiError>,
) -> Result<Download, ApiError> {
    let attachment = svc.store.attachment(identity.user_id, id).await?.ok_or_else(|| not_found("attachment"))?;
    let range = range(attachment.size)?;
    let file = svc
        .files
        .open(&attachment.storage_key, range)
        .await
        .map_err(ApiError::internal)?
        // The row was deleted between the read and the open: it no longer exists.
        .ok_or_else(|| not_found("attachment"))?;
    Ok(Download { attachment, file })
}

/// Input naming one task, for its attachments.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskAttachments {
    /// The task's id.
    pub id: Uuid,
}

/// The attachments of one task.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttachmentList {
    pub items: Vec<AttachmentView>,
}

/// Lists a task's attachments.
#[derive(Debug)]
pub struct List;

#[async_trait]
impl Command for List {
    const NAME: &'static str = "attachments.list";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "List a task's attachments";
    type Input = TaskAttachments;
    type Output = AttachmentList;

    async fn run(&self, svc: &Services, cx: &Ctx, input: TaskAttachments) -> Result<AttachmentList, ApiError> {
        let rows = svc
            .store
            .list_attachments(cx.identity()?.user_id, TaskId(input.id))
            .await?
            .ok_or_else(|| not_found("task"))?;
        Ok(AttachmentList { items: rows.iter().map(AttachmentView::from).collect() })
    }
}

/// Input naming one attachment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRef {
    /// The attachment's id.
    pub id: Uuid,
}

/// Deletes one attachment and its file.
#[derive(Debug)]
pub struct Delete;

#[async_trait]
impl Command for Delete {
    const NAME: &'static str = "attachments.delete";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Delete an attachment";
    type Input = AttachmentRef;
    type Output = Deleted;

    async fn run(&self, svc: &Services, cx: &Ctx, input: AttachmentRef) -> Result<Deleted, ApiError> {
        let now = svc.clock.now();
        let events = |a: &Attachment| vec![deleted_event(a, now)];
        let deleted = svc
            .store
            .delete_attachment(cx.identity()?.user_id, AttachmentId(input.id), &events)
            .await?
            .ok_or_else(|| not_found("attachment"))?;
        remove_files(svc, std::slice::from_ref(&deleted)).await;
        Ok(Deleted {})
    }
}
