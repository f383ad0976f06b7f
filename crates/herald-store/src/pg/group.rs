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
use crate::sql::{Write, tasks::TaskWrites};

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

/// The queue and its writers' count, apart from what is queued so the bounds can be tested alone.
#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    writers: usize,
}

impl<T> Default for State<T> {
    fn default() -> Self {
        Self { queue: VecDeque::new(), writers: 0 }
    }
}

impl<T> State<T> {
    /// Queues `item`; true when the caller is to start a writer (fewer than [`WRITERS`] run).
    fn enqueue(&mut self, item: T) -> bool {
        self.queue.push_back(item);
        let start = self.writers < WRITERS;
        if start {
            self.writers += 1;
        }
        start
    }

    /// A writer's next batch (at most [`MAX_BATCH`]), or `None` when the queue is empty: then the
    /// writer's place is given back in the same critical section, so a caller that queues right
    /// after finds it free and starts a writer.
    fn next_batch(&mut self) -> Option<Vec<T>> {
        if self.queue.is_empty() {
            self.writers -= 1;
            return None;
        }
        let n = self.queue.len().min(MAX_BATCH);
        Some(self.queue.drain(..n).collect())
    }

    /// A writer ended without emptying the queue (cancelled with the runtime, or a panic): its
    /// place is given back and, when no writer is left, what is queued is dropped (its callers
    /// get `Unavailable`) rather than left waiting for a writer only the next caller would start.
    fn abandon(&mut self) {
        self.writers -= 1;
        if self.writers == 0 {
            self.queue.clear();
        }
    }
}

/// The queue of task creations waiting to be written, and how many writers are at it.
#[derive(Debug, Default)]
pub(super) struct TaskGroup {
    state: Mutex<State<Queued>>,
}

/// A writer's place among the [`WRITERS`], given back by [`State::abandon`] when the writer ends
/// without emptying the queue.
struct WriterSlot<'a>(&'a TaskGroup);

impl Drop for WriterSlot<'_> {
    fn drop(&mut self) {
        self.0.state.lock().abandon();
    }
}

impl PgStore {
    /// Writes `task` and its `events` with whatever other creations are waiting; answers once
    /// the batch that holds them has committed.
    async fn create_task_grouped(&self, task: &Task, events: &[ChangeEvent]) -> Result<(), StoreError> {
        let (answer, answered) = oneshot::channel();
        let queued = Queued { task: task.clone(), events: events.to_vec(), answer };
        let start_writer = self.task_group.state.lock().enqueue(queued);
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
            let Some(batch) = self.task_group.state.lock().next_batch() else {
                std::mem::forget(slot);
                return;
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

    /// One statement: the tasks and their events (see [`with_events`]), in queue order.
    async fn insert_tasks(&self, batch: &[Queued]) -> Result<(), StoreError> {
        static INSERT_TASKS: Write = Write::new(
            "INSERT INTO tasks (id, owner_id, title, description, status, due_at, version, created_at, updated_at) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], \
             $7::bigint[], $8::timestamptz[], $9::timestamptz[]) RETURNING 1",
        );
        let tasks = batch.iter().map(|q| &q.task);
        let events = Events::new(batch.iter().flat_map(|q| &q.events));
        let statement = sqlx::query(INSERT_TASKS.with_events(with_events))
            .bind(tasks.clone().map(|t| t.id.0).collect::<Vec<_>>())
            .bind(tasks.clone().map(|t| t.owner.0).collect::<Vec<_>>())
            .bind(tasks.clone().map(|t| t.title.as_str()).collect::<Vec<_>>())
            .bind(tasks.clone().map(|t| t.description.as_str()).collect::<Vec<_>>())
            .bind(tasks.clone().map(|t| t.status.as_str()).collect::<Vec<_>>())
            .bind(tasks.clone().map(|t| t.due_at).collect::<Vec<_>>())
            .bind(tasks.clone().map(|t| t.version).collect::<Vec<_>>())
            .bind(tasks.clone().map(|t| t.created_at).collect::<Vec<_>>())
            .bind(tasks.map(|t| t.updated_at).collect::<Vec<_>>());
        self.run_with_events(events.bind(statement), &events).await.map(drop)
    }
}

impl TaskWrites for PgStore {
    /// Written with the other creations waiting at the same moment.
    async fn write_task(&self, task: &Task, events: &[ChangeEvent]) -> Result<(), StoreError> {
        self.create_task_grouped(task, events).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_four_writers_start_and_each_batch_is_bounded() {
        let mut state = State::default();
        let started = (0..1000).filter(|&i| state.enqueue(i)).count();
        assert_eq!(started, WRITERS, "every caller queues; only the first four start a writer");
        let first = state.next_batch().expect("a batch");
        assert_eq!(first, (0..256).collect::<Vec<_>>(), "queue order, at most MAX_BATCH");
        let sizes: Vec<usize> = std::iter::from_fn(|| state.next_batch().map(|b| b.len())).collect();
        assert_eq!(sizes, [256, 256, 232], "the rest, in batches");
        assert_eq!(state.writers, WRITERS - 1, "the writer that found the queue empty gave its place back");
        assert!(state.enqueue(1000), "a free place: the next caller starts a writer");
    }

    #[test]
    fn the_last_writer_to_abandon_drops_what_is_queued() {
        let mut state = State::default();
        assert!(state.enqueue(1) && state.enqueue(2));
        state.abandon();
        assert_eq!(state.queue.len(), 2, "another writer is still at it");
        state.abandon();
        assert!(state.queue.is_empty(), "nobody left to write them: their callers are answered");
        assert_eq!(state.writers, 0);
    }
}
