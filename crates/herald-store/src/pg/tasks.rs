//! PostgreSQL: tasks, attachments and the outbox.

use std::collections::HashSet;

use async_trait::async_trait;
use herald_core::{
    change::ChangeEvent,
    store::{AttachmentEvents, Constraint, DeleteEvents, StoreError, TaskStore},
    task::{Attachment, AttachmentId, Task, TaskId, TaskStatus},
    user::UserId,
};
use sqlx::Row as _;

use super::{
    PgStore, err,
    outbox::{Events, insert_events, with_events},
};
use crate::{decode, error};

#[async_trait]
impl TaskStore for PgStore {
    /// Written with the other creations waiting at the same moment (see `group`).
    async fn create_task(&self, t: &Task, events: &[ChangeEvent]) -> Result<(), StoreError> {
        self.create_task_grouped(t, events).await
    }

    async fn task(&self, owner: UserId, id: TaskId) -> Result<Option<Task>, StoreError> {
        let row = sqlx::query("SELECT * FROM tasks WHERE id = $1 AND owner_id = $2")
            .bind(id.0)
            .bind(owner.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(decode::task).transpose()
    }

    async fn list_tasks(
        &self,
        owner: UserId,
        status: Option<TaskStatus>,
        after: Option<TaskId>,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM tasks WHERE owner_id = $1 AND ($2::text IS NULL OR status = $2) \
             AND ($3::uuid IS NULL OR id > $3) ORDER BY id LIMIT $4",
        )
        .bind(owner.0)
        .bind(status.map(TaskStatus::as_str))
        .bind(after.map(|a| a.0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(decode::task).collect()
    }

    async fn update_task(&self, t: &Task, expected: i64, events: &[ChangeEvent]) -> Result<(), StoreError> {
        let events = Events::new(events);
        let write = events
            .query(with_events!(
                "UPDATE tasks SET title = $7, description = $8, status = $9, due_at = $10, version = $11, \
                 updated_at = $12 WHERE id = $13 AND owner_id = $14 AND version = $15 RETURNING 1"
            ))
            .bind(t.title.as_str())
            .bind(t.description.as_str())
            .bind(t.status.as_str())
            .bind(t.due_at)
            .bind(t.version)
            .bind(t.updated_at)
            .bind(t.id.0)
            .bind(t.owner.0)
            .bind(expected);
        if self.write_with_events(write, &events).await? > 0 {
            return Ok(());
        }
        let exists = sqlx::query("SELECT 1 FROM tasks WHERE id = $1 AND owner_id = $2")
            .bind(t.id.0)
            .bind(t.owner.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        Err(error::unchanged(exists.is_some(), Constraint::TaskVersion))
    }

    async fn delete_task(
        &self,
        owner: UserId,
        id: TaskId,
        events: &DeleteEvents<'_>,
    ) -> Result<Option<(Task, Vec<Attachment>)>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        // The row lock makes a concurrent add_attachment (which locks the task FOR SHARE) wait, so
        // the attachments read here are all the ones the cascade deletes.
        let Some(row) = sqlx::query("SELECT * FROM tasks WHERE id = $1 AND owner_id = $2 FOR UPDATE")
            .bind(id.0)
            .bind(owner.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?
        else {
            return Ok(None);
        };
        let task = decode::task(&row)?;
        let attachments = sqlx::query("SELECT * FROM attachments WHERE task_id = $1 ORDER BY id")
            .bind(id.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?
            .iter()
            .map(decode::attachment)
            .collect::<Result<Vec<_>, _>>()?;
        sqlx::query("DELETE FROM tasks WHERE id = $1").bind(id.0).execute(&mut *tx).await.map_err(err)?;
        insert_events(&mut tx, &events(&task, &attachments)).await?;
        self.commit(tx).await?;
        Ok(Some((task, attachments)))
    }

    async fn add_attachment(&self, a: &Attachment, events: &[ChangeEvent]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let task = sqlx::query("SELECT 1 FROM tasks WHERE id = $1 AND owner_id = $2 FOR SHARE")
            .bind(a.task_id.0)
            .bind(a.owner.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
        if task.is_none() {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO attachments (id, task_id, owner_id, file_name, content_type, size, sha256, storage_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(a.id.0)
        .bind(a.task_id.0)
        .bind(a.owner.0)
        .bind(&a.file_name)
        .bind(&a.content_type)
        .bind(i64::try_from(a.size).map_err(|e| StoreError::Other(Box::new(e)))?)
        .bind(&a.sha256)
        .bind(&a.storage_key)
        .bind(a.created_at)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        insert_events(&mut tx, events).await?;
        self.commit(tx).await
    }

    async fn attachment(&self, owner: UserId, id: AttachmentId) -> Result<Option<Attachment>, StoreError> {
        let row = sqlx::query("SELECT * FROM attachments WHERE id = $1 AND owner_id = $2")
            .bind(id.0)
            .bind(owner.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(decode::attachment).transpose()
    }

    async fn list_attachments(&self, owner: UserId, task: TaskId) -> Result<Option<Vec<Attachment>>, StoreError> {
        if self.task(owner, task).await?.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query("SELECT * FROM attachments WHERE task_id = $1 AND owner_id = $2 ORDER BY id")
            .bind(task.0)
            .bind(owner.0)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(decode::attachment).collect::<Result<Vec<_>, _>>().map(Some)
    }

    async fn delete_attachment(
        &self,
        owner: UserId,
        id: AttachmentId,
        events: &AttachmentEvents<'_>,
    ) -> Result<Option<Attachment>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let Some(row) = sqlx::query("DELETE FROM attachments WHERE id = $1 AND owner_id = $2 RETURNING *")
            .bind(id.0)
            .bind(owner.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?
        else {
            return Ok(None);
        };
        let attachment = decode::attachment(&row)?;
        insert_events(&mut tx, &events(&attachment)).await?;
        self.commit(tx).await?;
        Ok(Some(attachment))
    }

    async fn referenced_storage_keys(&self, keys: &[String]) -> Result<HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT storage_key FROM attachments WHERE storage_key = ANY($1)")
            .bind(keys)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(|r| r.try_get::<String, _>("storage_key").map_err(err)).collect()
    }
}
