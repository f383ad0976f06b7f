//! Tasks and their attachments, in both adapters. A task is created the adapter's own way (see
//! [`TaskWrites::write_task`]); an update is a [`Write`] stored with its events.

use herald_core::{change::ChangeEvent, store::StoreError, task::Task};

use super::{Adapter, Sql, Write};

/// What each adapter does its own way for tasks.
pub(crate) trait TaskWrites: Adapter {
    /// Stores a new task and its events (PostgreSQL writes it with the other creations waiting
    /// at the same moment: see `pg::group`).
    async fn write_task(&self, task: &Task, events: &[ChangeEvent]) -> Result<(), StoreError>;
}

pub(crate) const TASK: &str = "SELECT * FROM tasks WHERE id = $1 AND owner_id = $2";

pub(crate) const LIST_TASKS: &str = "SELECT * FROM tasks WHERE owner_id = $1 AND ($2 IS NULL OR status = $2) \
     AND ($3 IS NULL OR id > $3) ORDER BY id LIMIT $4";

/// Changes task `$7` of owner `$8` if it is still at version `$9`.
pub(crate) static UPDATE_TASK: Write = Write::new(
    "UPDATE tasks SET title = $1, description = $2, status = $3, due_at = $4, version = $5, updated_at = $6 \
     WHERE id = $7 AND owner_id = $8 AND version = $9 RETURNING 1",
);

pub(crate) const TASK_EXISTS: &str = "SELECT 1 FROM tasks WHERE id = $1 AND owner_id = $2";

/// The task, locked in PostgreSQL: a concurrent `add_attachment` (which locks it `FOR SHARE`)
/// waits, so the attachments read after it are all the ones the cascade deletes.
pub(crate) static TASK_TO_DELETE: Sql =
    Sql::new(|d| format!("SELECT * FROM tasks WHERE id = $1 AND owner_id = $2{}", d.lock(" FOR UPDATE")));

pub(crate) const ATTACHMENTS_OF_TASK: &str = "SELECT * FROM attachments WHERE task_id = $1 ORDER BY id";

/// Attachments go with the task (ON DELETE CASCADE).
pub(crate) const DELETE_TASK: &str = "DELETE FROM tasks WHERE id = $1";

pub(crate) static TASK_TO_ATTACH_TO: Sql =
    Sql::new(|d| format!("SELECT 1 FROM tasks WHERE id = $1 AND owner_id = $2{}", d.lock(" FOR SHARE")));

pub(crate) const ADD_ATTACHMENT: &str = "INSERT INTO attachments (id, task_id, owner_id, file_name, content_type, \
     size, sha256, storage_key, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

pub(crate) const ATTACHMENT: &str = "SELECT * FROM attachments WHERE id = $1 AND owner_id = $2";

pub(crate) const LIST_ATTACHMENTS: &str = "SELECT * FROM attachments WHERE task_id = $1 AND owner_id = $2 ORDER BY id";

pub(crate) const DELETE_ATTACHMENT: &str = "DELETE FROM attachments WHERE id = $1 AND owner_id = $2 RETURNING *";

pub(crate) static REFERENCED_KEYS: Sql =
    Sql::new(|d| format!("SELECT storage_key FROM attachments WHERE {}", d.in_list("storage_key", 1)));

/// Implements `TaskStore` for an adapter (see [`crate::sql`]).
macro_rules! task_store {
    ($store:ty) => {
        const _: () = {
            use std::collections::HashSet;

            use async_trait::async_trait;
            use herald_core::{
                change::ChangeEvent,
                store::{AttachmentEvents, Constraint, DeleteEvents, StoreError, TaskStore},
                task::{Attachment, AttachmentId, Task, TaskId, TaskStatus},
                user::UserId,
            };
            use $crate::{
                columns::{Stamp, Texts},
                decode, error,
                sql::{Adapter, tasks::*},
            };

            #[async_trait]
            impl TaskStore for $store {
                async fn create_task(&self, t: &Task, events: &[ChangeEvent]) -> Result<(), StoreError> {
                    self.write_task(t, events).await
                }

                async fn task(&self, owner: UserId, id: TaskId) -> Result<Option<Task>, StoreError> {
                    let row = self.owned_row(TASK, id.0, owner.0).await?;
                    row.as_ref().map(decode::task).transpose()
                }

                async fn list_tasks(
                    &self,
                    owner: UserId,
                    status: Option<TaskStatus>,
                    after: Option<TaskId>,
                    limit: u32,
                ) -> Result<Vec<Task>, StoreError> {
                    let rows = sqlx::query(LIST_TASKS)
                        .bind(owner.0)
                        .bind(status.map(TaskStatus::as_str))
                        .bind(after.map(|a| a.0))
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    rows.iter().map(decode::task).collect()
                }

                async fn update_task(&self, t: &Task, expected: i64, events: &[ChangeEvent]) -> Result<(), StoreError> {
                    let written = self
                        .write_with_events(&UPDATE_TASK, events, |q| {
                            q.bind(t.title.as_str())
                                .bind(t.description.as_str())
                                .bind(t.status.as_str())
                                .bind(t.due_at.map(Stamp))
                                .bind(t.version)
                                .bind(Stamp(t.updated_at))
                                .bind(t.id.0)
                                .bind(t.owner.0)
                                .bind(expected)
                        })
                        .await?;
                    if written > 0 {
                        return Ok(());
                    }
                    let exists = sqlx::query(TASK_EXISTS)
                        .bind(t.id.0)
                        .bind(t.owner.0)
                        .fetch_optional(self.writer())
                        .await
                        .map_err(Self::err)?;
                    Err(error::unchanged(exists.is_some(), Constraint::TaskVersion))
                }

                async fn delete_task(
                    &self,
                    owner: UserId,
                    id: TaskId,
                    events: &DeleteEvents<'_>,
                ) -> Result<Option<(Task, Vec<Attachment>)>, StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    let Some(row) = sqlx::query(TASK_TO_DELETE.text(Self::DIALECT))
                        .bind(id.0)
                        .bind(owner.0)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(Self::err)?
                    else {
                        return Ok(None);
                    };
                    let task = decode::task(&row)?;
                    let attachments = sqlx::query(ATTACHMENTS_OF_TASK)
                        .bind(id.0)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(Self::err)?
                        .iter()
                        .map(decode::attachment)
                        .collect::<Result<Vec<_>, _>>()?;
                    sqlx::query(DELETE_TASK).bind(id.0).execute(&mut *tx).await.map_err(Self::err)?;
                    Self::insert_events(&mut tx, &events(&task, &attachments)).await?;
                    self.commit(tx).await?;
                    Ok(Some((task, attachments)))
                }

                async fn add_attachment(&self, a: &Attachment, events: &[ChangeEvent]) -> Result<(), StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    let task = sqlx::query(TASK_TO_ATTACH_TO.text(Self::DIALECT))
                        .bind(a.task_id.0)
                        .bind(a.owner.0)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    if task.is_none() {
                        return Err(StoreError::NotFound);
                    }
                    sqlx::query(ADD_ATTACHMENT)
                        .bind(a.id.0)
                        .bind(a.task_id.0)
                        .bind(a.owner.0)
                        .bind(&a.file_name)
                        .bind(&a.content_type)
                        .bind(i64::try_from(a.size).map_err(|e| StoreError::Other(Box::new(e)))?)
                        .bind(&a.sha256)
                        .bind(&a.storage_key)
                        .bind(Stamp(a.created_at))
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    Self::insert_events(&mut tx, events).await?;
                    self.commit(tx).await
                }

                async fn attachment(&self, owner: UserId, id: AttachmentId) -> Result<Option<Attachment>, StoreError> {
                    let row = self.owned_row(ATTACHMENT, id.0, owner.0).await?;
                    row.as_ref().map(decode::attachment).transpose()
                }

                async fn list_attachments(
                    &self,
                    owner: UserId,
                    task: TaskId,
                ) -> Result<Option<Vec<Attachment>>, StoreError> {
                    if self.task(owner, task).await?.is_none() {
                        return Ok(None);
                    }
                    let rows = sqlx::query(LIST_ATTACHMENTS)
                        .bind(task.0)
                        .bind(owner.0)
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    rows.iter().map(decode::attachment).collect::<Result<Vec<_>, _>>().map(Some)
                }

                async fn delete_attachment(
                    &self,
                    owner: UserId,
                    id: AttachmentId,
                    events: &AttachmentEvents<'_>,
                ) -> Result<Option<Attachment>, StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    let Some(row) = sqlx::query(DELETE_ATTACHMENT)
                        .bind(id.0)
                        .bind(owner.0)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(Self::err)?
                    else {
                        return Ok(None);
                    };
                    let attachment = decode::attachment(&row)?;
                    Self::insert_events(&mut tx, &events(&attachment)).await?;
                    self.commit(tx).await?;
                    Ok(Some(attachment))
                }

                async fn referenced_storage_keys(&self, keys: &[String]) -> Result<HashSet<String>, StoreError> {
                    let keys: HashSet<String> = sqlx::query_scalar(REFERENCED_KEYS.text(Self::DIALECT))
                        .bind(Texts(keys.to_vec()))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?
                        .into_iter()
                        .collect();
                    Ok(keys)
                }
            }
        };
    };
}
pub(crate) use task_store;
