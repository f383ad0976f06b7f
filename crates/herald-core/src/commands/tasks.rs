//! `tasks.*`: a user's own tasks. Every change writes a `task.*` event to the owner's stream in
//! the same transaction. Tasks of other users answer `not_found`, never `forbidden`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::Instrument as _;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    change::ChangeEvent,
    command::{Access, Command, Ctx},
    error::{ApiError, ErrorCode},
    files::remove_attachment_files,
    page::{self, Page},
    services::Services,
    shapes::{Deleted, present},
    store::{Constraint, StoreError},
    task::{Attachment, Description, Task, TaskId, TaskStatus, Title},
    trace,
};

/// A task as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "title": "Buy milk", "description": "", "status": "todo", "due_at": null, "version": 1, "created_at": "2026-11-22T10:00:00Z", "updated_at": "2026-11-22T10:00:00Z"}))]
pub struct TaskView {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub status: TaskStatus,
    pub due_at: Option<DateTime<Utc>>,
    /// Grows by one with every change; send it back as `If-Match` to update safely.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Task> for TaskView {
    fn from(t: &Task) -> Self {
        Self {
            id: t.id.0,
            title: t.title.as_str().to_owned(),
            description: t.description.as_str().to_owned(),
            status: t.status,
            due_at: t.due_at,
            version: t.version,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

fn event(task: &Task, kind: &str, now: DateTime<Utc>) -> ChangeEvent {
    ChangeEvent::for_user(task.owner, kind, json!(TaskView::from(task)), now)
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such task")
}

/// Input of `tasks.create`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "Buy milk", "description": "2 litres", "due_at": "2026-11-23T18:00:00Z"}))]
#[schema(as = tasks::CreateInput)]
pub struct CreateInput {
    #[schema(value_type = String, min_length = 1, max_length = 200)]
    pub title: Title,
    #[schema(value_type = Option<String>, max_length = 10000)]
    pub description: Option<Description>,
    /// Defaults to `todo`.
    pub status: Option<TaskStatus>,
    pub due_at: Option<DateTime<Utc>>,
}

/// Creates a task owned by the caller.
#[derive(Debug)]
pub struct Create;

#[async_trait]
impl Command for Create {
    const NAME: &'static str = "tasks.create";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Create a task";
    type Input = CreateInput;
    type Output = TaskView;

    async fn run(&self, svc: &Services, cx: &Ctx, input: CreateInput) -> Result<TaskView, ApiError> {
        let now = svc.clock.now();
        let task = Task {
            id: TaskId::new(),
            owner: cx.identity()?.user_id,
            title: input.title,
            description: input.description.unwrap_or_default(),
            status: input.status.unwrap_or(TaskStatus::Todo),
            due_at: input.due_at,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let created = [event(&task, "task.created", now)];
        svc.store.create_task(&task, &created).instrument(trace::store_span("create_task")).await?;
        Ok(TaskView::from(&task))
    }
}

/// Input naming one task.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRef {
    /// The task's id.
    pub id: Uuid,
}

/// Reads one task.
#[derive(Debug)]
pub struct Get;

#[async_trait]
impl Command for Get {
    const NAME: &'static str = "tasks.get";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Read a task";
    type Input = TaskRef;
    type Output = TaskView;

    async fn run(&self, svc: &Services, cx: &Ctx, input: TaskRef) -> Result<TaskView, ApiError> {
        let task = svc.store.task(cx.identity()?.user_id, TaskId(input.id)).await?.ok_or_else(not_found)?;
        Ok(TaskView::from(&task))
    }
}

/// Input of `tasks.list`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = tasks::ListInput)]
pub struct ListInput {
    /// Only tasks with this status.
    pub status: Option<TaskStatus>,
    /// Items per page (default 50).
    #[schema(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[schema(max_length = 64)]
    pub cursor: Option<String>,
}

/// Lists the caller's tasks, oldest first.
#[derive(Debug)]
pub struct List;

#[async_trait]
impl Command for List {
    const NAME: &'static str = "tasks.list";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "List your tasks";
    type Input = ListInput;
    type Output = Page<TaskView>;

    async fn run(&self, svc: &Services, cx: &Ctx, input: ListInput) -> Result<Page<TaskView>, ApiError> {
        let (limit, after) = page::request::<TaskId>(input.limit, input.cursor.as_deref())?;
        let rows = svc.store.list_tasks(cx.identity()?.user_id, input.status, after, limit + 1).await?;
        Ok(Page::from_rows(rows, limit, |t| t.id.0, |t| TaskView::from(&t)))
    }
}

/// Input of `tasks.update`: only the fields present change; `due_at: null` clears the due date.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "status": "done"}))]
#[schema(as = tasks::UpdateInput)]
pub struct UpdateInput {
    pub id: Uuid,
    /// The version the change is based on (REST: the `If-Match` header). A stale one answers
    /// `precondition_failed`.
    pub if_match: Option<i64>,
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200)]
    pub title: Option<Title>,
    #[schema(value_type = Option<String>, max_length = 10000)]
    pub description: Option<Description>,
    pub status: Option<TaskStatus>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub due_at: Option<Option<DateTime<Utc>>>,
}

/// Changes a task.
#[derive(Debug)]
pub struct Update;

/// Concurrent writers without `If-Match` retry this often before answering `conflict`. Each lost
/// attempt means another writer won, so a writer can lose at most once per rival; a short random
/// pause spreads the retries.
const UPDATE_ATTEMPTS: u64 = 16;

#[async_trait]
impl Command for Update {
    const NAME: &'static str = "tasks.update";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Change a task (send If-Match: <version> to refuse stale writes)";
    type Input = UpdateInput;
    type Output = TaskView;

    async fn run(&self, svc: &Services, cx: &Ctx, input: UpdateInput) -> Result<TaskView, ApiError> {
        let owner = cx.identity()?.user_id;
        for attempt in 0..UPDATE_ATTEMPTS {
            if attempt > 0 {
                let pause = rand::random_range(0..=attempt.min(8)) * 2;
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            let current = svc.store.task(owner, TaskId(input.id)).await?.ok_or_else(not_found)?;
            if input.if_match.is_some_and(|v| v != current.version) {
                return Err(stale(current.version));
            }
            let mut next = current.clone();
            if let Some(title) = &input.title {
                next.title = title.clone();
            }
            if let Some(description) = &input.description {
                next.description = description.clone();
            }
            if let Some(status) = input.status {
                next.status = status;
            }
            if let Some(due_at) = input.due_at {
                next.due_at = due_at;
            }
            if next == current {
                return Ok(TaskView::from(&current));
            }
            let now = svc.clock.now();
            next.version = current.version + 1;
            next.updated_at = now;
            match svc.store.update_task(&next, current.version, &[event(&next, "task.updated", now)]).await {
                Ok(()) => return Ok(TaskView::from(&next)),
                Err(err) if err.is_conflict_on(Constraint::TaskVersion) => {
                    if input.if_match.is_some() {
                        return Err(stale(current.version + 1));
                    }
                }
                Err(StoreError::NotFound) => return Err(not_found()),
                Err(err) => return Err(err.into()),
            }
        }
        Err(ApiError::new(ErrorCode::Conflict, "the task keeps changing; retry"))
    }
}

fn stale(current: i64) -> ApiError {
    ApiError::new(ErrorCode::PreconditionFailed, format!("the task has changed; its version is now {current} or later"))
}

/// Deletes a task and its attachments.
#[derive(Debug)]
pub struct Delete;

#[async_trait]
impl Command for Delete {
    const NAME: &'static str = "tasks.delete";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Delete a task and its attachments";
    type Input = TaskRef;
    type Output = Deleted;

    async fn run(&self, svc: &Services, cx: &Ctx, input: TaskRef) -> Result<Deleted, ApiError> {
        let now = svc.clock.now();
        let events = |task: &Task, attachments: &[Attachment]| {
            let mut events: Vec<ChangeEvent> = attachments.iter().map(|a| a.deleted_event(now)).collect();
            events.push(ChangeEvent::for_user(task.owner, "task.deleted", json!({"id": task.id}), now));
            events
        };
        let (_, attachments) =
            svc.store.delete_task(cx.identity()?.user_id, TaskId(input.id), &events).await?.ok_or_else(not_found)?;
        remove_attachment_files(svc.files.as_ref(), &attachments).await;
        Ok(Deleted {})
    }
}
