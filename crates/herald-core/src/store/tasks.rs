//! Tasks and their attachments, written with their change events.

use std::collections::HashSet;

use async_trait::async_trait;

use crate::store_error::StoreError;
use crate::{
    change::ChangeEvent,
    task::{Attachment, AttachmentId, Task, TaskId, TaskStatus},
    user::UserId,
};

/// Tasks and attachments. Every write stores its events in the outbox in the same transaction.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Stores a new task and its events.
    async fn create_task(&self, task: &Task, events: &[ChangeEvent]) -> Result<(), StoreError>;

    /// The task `id` if `owner` owns it.
    async fn task(&self, owner: UserId, id: TaskId) -> Result<Option<Task>, StoreError>;

    /// `owner`'s tasks in id order after `after`, optionally of one status, at most `limit`.
    async fn list_tasks(
        &self,
        owner: UserId,
        status: Option<TaskStatus>,
        after: Option<TaskId>,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError>;

    /// Replaces a task whose stored version is still `expected_version`, with its events.
    /// `NotFound` when it is gone; `Conflict` on [`Constraint::TaskVersion`] when it changed.
    ///
    /// [`Constraint::TaskVersion`]: super::Constraint::TaskVersion
    async fn update_task(&self, task: &Task, expected_version: i64, events: &[ChangeEvent]) -> Result<(), StoreError>;

    /// Deletes a task of `owner` and all its attachments, with the events `events` makes from
    /// them, in one transaction. Returns what was deleted (callers remove the files), or `None`.
    async fn delete_task(
        &self,
        owner: UserId,
        id: TaskId,
        events: &DeleteEvents<'_>,
    ) -> Result<Option<(Task, Vec<Attachment>)>, StoreError>;

    /// Stores an attachment of a task its owner owns, with its events. `NotFound` when the task
    /// is gone or not the attachment owner's.
    async fn add_attachment(&self, attachment: &Attachment, events: &[ChangeEvent]) -> Result<(), StoreError>;

    /// The attachment `id` if `owner` owns it.
    async fn attachment(&self, owner: UserId, id: AttachmentId) -> Result<Option<Attachment>, StoreError>;

    /// The attachments of a task in id order, or `None` when `owner` has no such task.
    async fn list_attachments(&self, owner: UserId, task: TaskId) -> Result<Option<Vec<Attachment>>, StoreError>;

    /// Deletes an attachment of `owner` with the events `events` makes from it; returns it.
    async fn delete_attachment(
        &self,
        owner: UserId,
        id: AttachmentId,
        events: &AttachmentEvents<'_>,
    ) -> Result<Option<Attachment>, StoreError>;

    /// Which of `keys` some attachment references.
    async fn referenced_storage_keys(&self, keys: &[String]) -> Result<HashSet<String>, StoreError>;
}

/// Builds the events of a task deletion from the task and the attachments deleted with it.
pub type DeleteEvents<'a> = dyn Fn(&Task, &[Attachment]) -> Vec<ChangeEvent> + Sync + 'a;

/// Builds the events of an attachment deletion.
pub type AttachmentEvents<'a> = dyn Fn(&Attachment) -> Vec<ChangeEvent> + Sync + 'a;
