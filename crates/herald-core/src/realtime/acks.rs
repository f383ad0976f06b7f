//! Acks go to the store in batches: a session's ack only moves its cursor in memory and queues
//! the new position; one writer merges the queue (the highest offset per cursor wins) and writes
//! it in one transaction every few milliseconds. An ack lost in a crash means the event is sent
//! once more, never that one is skipped.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    clock::Clock,
    metrics::Metrics,
    store::Store,
    stream::{SessionCursor, SessionId, StreamName},
    user::UserId,
};

/// Most acks waiting to be written; beyond it acks are dropped (and their events resent later).
const QUEUE: usize = 65_536;
/// Most cursors written per transaction.
const BATCH: usize = 2_000;
/// How long the writer gathers acks before writing.
const LINGER: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub(super) struct AckQueue {
    tx: mpsc::Sender<SessionCursor>,
    rx: tokio::sync::Mutex<mpsc::Receiver<SessionCursor>>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

type Key = (UserId, SessionId, StreamName);

impl AckQueue {
    pub(super) fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self { tx, rx: tokio::sync::Mutex::new(rx), store, metrics }
    }

    pub(super) fn push(&self, cursor: SessionCursor) {
        if self.tx.try_send(cursor).is_err() {
            tracing::warn!("the ack queue is full; an ack was dropped and its events will be sent again");
        }
    }

    /// Writes queued acks until `shutdown`, then writes what is left.
    pub(super) async fn run(&self, clock: Arc<dyn Clock>, shutdown: CancellationToken) {
        let mut rx = self.rx.lock().await;
        let mut merged: HashMap<Key, i64> = HashMap::new();
        let mut buf = Vec::with_capacity(BATCH);
        loop {
            let open = tokio::select! {
                n = rx.recv_many(&mut buf, BATCH) => n > 0,
                () = shutdown.cancelled() => false,
            };
            if open {
                // Gather a little more, so a busy gateway writes few large batches.
                tokio::time::sleep(LINGER).await;
                while buf.len() < BATCH && rx.try_recv().map(|c| buf.push(c)).is_ok() {}
            } else {
                while rx.try_recv().map(|c| buf.push(c)).is_ok() {}
            }
            for c in buf.drain(..) {
                let offset = merged.entry((c.user, c.session, c.stream)).or_insert(c.offset);
                *offset = (*offset).max(c.offset);
            }
            self.flush(&mut merged, clock.now()).await;
            if !open {
                return;
            }
        }
    }

    async fn flush(&self, merged: &mut HashMap<Key, i64>, now: chrono::DateTime<chrono::Utc>) {
        if merged.is_empty() {
            return;
        }
        let cursors: Vec<SessionCursor> = merged
            .iter()
            .map(|((user, session, stream), offset)| SessionCursor {
                user: *user,
                session: session.clone(),
                stream: *stream,
                offset: *offset,
            })
            .collect();
        match self.store.advance_cursors(&cursors, now).await {
            Ok(acknowledged) => {
                merged.clear();
                if !acknowledged.is_empty() {
                    tracing::debug!(notices = acknowledged.len(), "notices acknowledged in-app");
                    self.metrics.notices.acknowledged(&acknowledged, now);
                }
            }
            // Kept and merged into the next batch.
            Err(err) => tracing::warn!(cursors = cursors.len(), error = %err, "could not write acks; retrying"),
        }
    }
}
