//! `attachments.*`: the streamed upload and download (commands with a byte stream beside their
//! JSON, on every transport), the list and the delete.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    body::Body,
    change::ChangeEvent,
    command::{Access, Command, Ctx, DownloadCommand, UploadCommand},
    error::{ApiError, ErrorCode},
    files::{StoredFile, remove_attachment_files},
    services::Services,
    task::{Attachment, AttachmentId, TaskId, clean_content_type, clean_file_name},
};

use crate::shapes::Deleted;

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

fn not_found(what: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no such {what}"))
}

/// Input of `attachments.upload`; the file is the call's byte stream.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadInput {
    /// The task the file is attached to.
    pub task_id: Uuid,
    /// The client's name for the file, kept as metadata only (cleaned of paths and controls,
    /// cut to 255 characters).
    pub file_name: Option<String>,
    /// Its media type; anything but `type/subtype` is kept as `application/octet-stream`.
    pub content_type: Option<String>,
}

/// Streams a file to storage, computing its size and SHA-256, and records it as an attachment.
#[derive(Debug)]
pub struct Upload;

#[async_trait]
impl UploadCommand for Upload {
    const NAME: &'static str = "attachments.upload";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Attach a file to a task (streamed)";
    type Input = UploadInput;
    type Output = AttachmentView;

    async fn run(
        &self,
        svc: &Services,
        cx: &Ctx,
        input: UploadInput,
        mut body: Body,
    ) -> Result<AttachmentView, ApiError> {
        let identity = cx.identity()?;
        let task = TaskId(input.task_id);
        // The task first: nothing is read from a caller who may not attach to it.
        svc.store.task(identity.user_id, task).await?.ok_or_else(|| not_found("task"))?;
        let max = svc.max_upload;
        if body.length().is_some_and(|length| length > max) {
            return Err(too_large(max));
        }
        // Held until the upload has ended, whatever way: one user's uploads at once are bounded
        // before a byte is stored, so a few slow clients cannot hold every upload's memory.
        let _slot = svc.uploads.try_begin(identity.user_id).ok_or_else(|| too_many_uploads(svc.uploads.limit()))?;
        let mut upload = svc.files.begin_upload().await.map_err(file_error)?;
        let mut written: u64 = 0;
        let stored = loop {
            let chunk = match body.next().await {
                None => break upload.finish().await.map_err(file_error)?,
                Some(Ok(chunk)) => chunk,
                Some(Err(err)) => {
                    upload.abort().await;
                    return Err(err);
                }
            };
            // Refused before it is written: no byte past the limit reaches the file store.
            written = written.saturating_add(chunk.len() as u64);
            if written > max {
                upload.abort().await;
                return Err(too_large(max));
            }
            if let Err(err) = upload.write(&chunk).await {
                upload.abort().await;
                return Err(file_error(err));
            }
        };
        let view = attach(svc, cx, task, stored, input.file_name.as_deref(), input.content_type.as_deref()).await?;
        Ok(view)
    }
}

/// A file store failure: `unavailable` (503) when the store turned the upload away for want of
/// capacity (`ResourceBusy`, e.g. the object store's upload memory in use), else `internal`.
fn file_error(err: std::io::Error) -> ApiError {
    if err.kind() == std::io::ErrorKind::ResourceBusy {
        ApiError::new(ErrorCode::Unavailable, "too many uploads at once; retry later").with_source(err)
    } else {
        ApiError::internal(err)
    }
}

/// `too_many_requests` for a user who has `limit` uploads in progress.
fn too_many_uploads(limit: usize) -> ApiError {
    ApiError::too_many_requests(
        format!(
            "this user has {limit} uploads in progress, the most allowed (HERALD_UPLOADS_PER_USER); \
             retry when one has finished"
        ),
        Duration::from_secs(1),
    )
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(ErrorCode::PayloadTooLarge, format!("attachments are limited to {max} bytes"))
}

/// Records a finished upload as an attachment of `task`. When the task is gone by now the file
/// is removed and the answer is `not_found`.
async fn attach(
    svc: &Services,
    cx: &Ctx,
    task: TaskId,
    file: StoredFile,
    file_name: Option<&str>,
    content_type: Option<&str>,
) -> Result<AttachmentView, ApiError> {
    let identity = cx.identity()?;
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
        remove_attachment_files(svc.files.as_ref(), std::slice::from_ref(&attachment)).await;
        return Err(match err {
            crate::store::StoreError::NotFound => not_found("task"),
            other => other.into(),
        });
    }
    tracing::info!(attachment_id = %attachment.id, task_id = %task, size = attachment.size, "attachment stored");
    Ok(view)
}

/// One byte range as a client asked for it (the `Range` header's single-range form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=a-b` or `bytes=a-`.
    From(u64, Option<u64>),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl RangeSpec {
    /// Parses a single `bytes=` range; `None` for several ranges or anything else.
    pub fn parse(spec: &str) -> Option<Self> {
        let spec = spec.trim().strip_prefix("bytes=")?;
        if spec.contains(',') {
            return None;
        }
        let (start, end) = spec.split_once('-')?;
        let (start, end) = (start.trim(), end.trim());
        if start.is_empty() {
            return end.parse().ok().map(RangeSpec::Suffix);
        }
        let start: u64 = start.parse().ok()?;
        let end: Option<u64> = if end.is_empty() { None } else { Some(end.parse().ok()?) };
        if end.is_some_and(|e| e < start) {
            return None;
        }
        Some(RangeSpec::From(start, end))
    }

    /// `(start, length)` within a content of `size` bytes, or `None` when unsatisfiable.
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            RangeSpec::From(start, _) if start >= size => None,
            RangeSpec::From(start, end) => {
                let last = end.map_or(size - 1, |e| e.min(size - 1));
                Some((start, last - start + 1))
            }
            RangeSpec::Suffix(0) => None,
            RangeSpec::Suffix(_) if size == 0 => None,
            RangeSpec::Suffix(n) => {
                let len = n.min(size);
                Some((size - len, len))
            }
        }
    }
}

/// Input of `attachments.download`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DownloadInput {
    /// The attachment's id.
    pub id: Uuid,
    /// One byte range, as the HTTP `Range` header gives it (`bytes=0-1023`, `bytes=1024-`,
    /// `bytes=-500`); the whole content without it.
    #[schema(max_length = 64, example = "bytes=0-1023")]
    pub range: Option<String>,
}

/// What `attachments.download` answers beside the bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttachmentContent {
    pub attachment: AttachmentView,
    /// Offset of the first byte sent.
    pub start: u64,
    /// Bytes sent.
    pub length: u64,
    /// Whether only the requested range is sent.
    pub partial: bool,
}

/// Streams an attachment the caller owns, or one byte range of it.
#[derive(Debug)]
pub struct Download;

#[async_trait]
impl DownloadCommand for Download {
    const NAME: &'static str = "attachments.download";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Download an attachment (streamed; single byte ranges)";
    type Input = DownloadInput;
    type Output = AttachmentContent;

    async fn run(&self, svc: &Services, cx: &Ctx, input: DownloadInput) -> Result<(AttachmentContent, Body), ApiError> {
        let range = match input.range.as_deref() {
            None => None,
            Some(spec) => Some(RangeSpec::parse(spec).ok_or_else(|| {
                ApiError::invalid_field(
                    "range",
                    "must be one byte range such as bytes=0-1023, bytes=1024- or bytes=-500",
                )
            })?),
        };
        let identity = cx.identity()?;
        let attachment = svc
            .store
            .attachment(identity.user_id, AttachmentId(input.id))
            .await?
            .ok_or_else(|| not_found("attachment"))?;
        let size = attachment.size;
        let resolved = match range {
            None => None,
            Some(range) => Some(range.resolve(size).ok_or_else(|| {
                ApiError::new(ErrorCode::RangeNotSatisfiable, format!("the content is {size} bytes long"))
            })?),
        };
        let file = svc
            .files
            .open(&attachment.storage_key, resolved)
            .await
            .map_err(ApiError::internal)?
            // The row was deleted between the read and the open: it no longer exists.
            .ok_or_else(|| not_found("attachment"))?;
        let (start, length) = resolved.unwrap_or((0, file.size));
        let content = AttachmentContent {
            attachment: AttachmentView::from(&attachment),
            start,
            length,
            partial: resolved.is_some(),
        };
        Ok((content, Body::from_reader(file.reader, length)))
    }
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
        let events = |a: &Attachment| vec![a.deleted_event(now)];
        let deleted = svc
            .store
            .delete_attachment(cx.identity()?.user_id, AttachmentId(input.id), &events)
            .await?
            .ok_or_else(|| not_found("attachment"))?;
        remove_attachment_files(svc.files.as_ref(), std::slice::from_ref(&deleted)).await;
        Ok(Deleted {})
    }
}

#[cfg(test)]
mod tests {
    use super::RangeSpec;

    #[test]
    fn ranges_parse_and_resolve() {
        let resolve = |spec: &str, size| RangeSpec::parse(spec).map(|r| r.resolve(size));
        assert_eq!(resolve("bytes=0-9", 100), Some(Some((0, 10))));
        assert_eq!(resolve("bytes=90-", 100), Some(Some((90, 10))));
        assert_eq!(resolve("bytes=90-500", 100), Some(Some((90, 10))));
        assert_eq!(resolve("bytes=-5", 100), Some(Some((95, 5))));
        assert_eq!(resolve("bytes=-500", 100), Some(Some((0, 100))));
        assert_eq!(resolve("bytes=100-", 100), Some(None));
        assert_eq!(resolve("bytes=-0", 100), Some(None));
        assert_eq!(RangeSpec::parse("bytes=0-1,5-6"), None);
        assert_eq!(RangeSpec::parse("bytes=5-1"), None);
        assert_eq!(RangeSpec::parse("items=0-1"), None);
        assert_eq!(RangeSpec::parse("bytes=x-1"), None);
    }
}
