//! Group commit of task creations: concurrent `create_task` calls are written together, as one
//! statement in one transaction, instead of one transaction each.
//!
//! A caller queues its task and, while fewer than [`WRITERS`] batches are being written, starts
//! a writer; a writer takes everything queued (up to [`MAX_BATCH`]) and writes it, then the next
//! lot, until the queue is empty. So a lone write goes at once, on its own (no lingering), and
//! under load the writes that arrive while batches are on their way form the next batch. The
//! queue holds only calls that are waiting for their answer, so the callers in flight (bounded by
//! the HTTP and socket limits, and by the pool's connections behind them) bound it.
//!
//! A batch that fails for anything but an unreachable database is written again one task at a
//! time, so a bad task (its owner deleted meanwhile) fails alone.

use std::collections::VecDeque;

use herald_core::{change::ChangeEvent, store::StoreError, task::Task};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::{
    PgStore,
    outbox::{Events, with_events},
};

/// Batches written at once.
const WRITERS: usize = 4;
/// Most tasks in one batch.
const MAX_BATCH: usize = 256;

/// One queued creation and where its answer goes.
#[derive(Debug)]
struct Queued {
    task: Task,
    events: Vec<ChangeEvent>,
    answer: oneshot::Sender<Result<(), StoreError>>,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Queued>,
    writers: usize,
}

/// The queue of task creations waiting to be written, and how many writers are at it.
#[derive(Debug, Default)]
pub(super) struct TaskGroup {
    state: Mutex<State>,
}

/// A writer's place among the [`WRITERS`], for a writer that ends without emptying the queue
/// (its task cancelled with the runtime, or a panic): the place is given back, and when no writer
/// is left, what is still queued is failed (its callers get `Unavailable`) rather than left
/// waiting for a writer that only the next caller would start.
struct WriterSlot<'a>(&'a TaskGroup);

impl Drop for WriterSlot<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.writers -= 1;
        if state.writers == 0 {
            state.queue.clear();
        }
    }
}

impl PgStore {
    /// Writes `task` and its `events` with whatever other creations are waiting; answers once
    /// the batch that holds them has committed.
    pub(super) async fn create_task_grouped(&self, task: &Task, events: &[ChangeEvent]) -> Result<(), StoreError> {
        let (answer, answered) = oneshot::channel();
        let queued = Queued { task: task.clone(), events: events.to_vec(), answer };
        let start_writer = {
            let mut state = self.task_group.state.lock();
            state.queue.push_back(queued);
            let start = state.writers < WRITERS;
            if start {
                state.writers += 1;
            }
            start
        };
        if start_writer {
            let store = self.clone();
            tokio::spawn(async move { store.write_task_batches().await });
        }
        answered.await.map_err(|_| StoreError::Unavailable("the task writer stopped".into()))?
    }

    /// Writes queued batches until the queue is empty.
    async fn write_task_batches(&self) {
        let slot = WriterSlot(&self.task_group);
        loop {
            let batch: Vec<Queued> = {
                let mut state = self.task_group.state.lock();
                if state.queue.is_empty() {
                    // Given back in the same critical section as the check, so a caller that
                    // queues right after finds a free place and starts a writer.
                    state.writers -= 1;
                    std::mem::forget(slot);
                    return;
                }
                let n = state.queue.len().min(MAX_BATCH);
                state.queue.drain(..n).collect()
            };
            match self.insert_tasks(&batch).await {
                Ok(()) => {
                    for queued in batch {
                        let _ = queued.answer.send(Ok(()));
                    }
                }
                Err(StoreError::Unavailable(e)) => {
                    let reason = e.to_string();
                    for queued in batch {
                        let _ = queued.answer.send(Err(StoreError::Unavailable(reason.clone().into())));
                    }
                }
                Err(first) if batch.len() == 1 => {
                    if let Some(queued) = batch.into_iter().next() {
                        let _ = queued.answer.send(Err(first));
                    }
                }
                Err(_) => {
                    for queued in batch {
                        let alone = self.insert_tasks(std::slice::from_ref(&queued)).await;
                        let _ = queued.answer.send(alone);
                    }
                }
            }
        }
    }

    /// One statement: the tasks and their events (see [`with_events!`]), in queue order.
    async fn insert_tasks(&self, batch: &[Queued]) -> Result<(), StoreError> {
        let tasks = batch.iter().map(|q| &q.task);
        let events = Events::new(batch.iter().flat_map(|q| &q.events));
        let write = events
            .query(with_events!(
                "INSERT INTO tasks (id, owner_id, title, description, status, due_at, version, created_at, updated_at) \
                 SELECT * FROM unnest($7::uuid[], $8::uuid[], $9::text[], $10::text[], $11::text[], \
                 $12::timestamptz[], $13::bigint[], $14::timestamptz[], $15::timestamptz[]) RETURNING 1"
            ))
            .bind(tasks.clone().map(|t| t.id.0).collect::<Vec<_>>())
            .bind(tasks.clone().map(|t| t.owner.0).collect::<Vec<_>>())
            .bind(tasks.clone().map(|t| t.title.as_str()).collect::<Vec<_>>())
            .bind(tasks.clone().map(|t| t.description.as_str()).collect::<Vec<_>>())
            .bind(tasks.clone().map(|t| t.status.as_str()).collect::<Vec<_>>())
            .bind(tasks.clone().map(|t| t.due_at).collect::<Vec<_>>())
            .bind(tasks.clone().map(|t| t.version).collect::<Vec<_>>())
            .bind(tasks.clone().map(|t| t.created_at).collect::<Vec<_>>())
            .bind(tasks.map(|t| t.updated_at).collect::<Vec<_>>());
        self.write_with_events(write, &events).await.map(drop)
    }
}
