//! [`MemoryBroker`]: the in-process broker behind `herald serve`. Work queues keep their messages
//! in memory with in-flight leases (ack deadline, nack with delay, release when a consumer is
//! dropped); topics fan out to every live subscription; message ids are de-duplicated per queue
//! within a window. Nothing survives the process, which is fine for a single binary whose store is
//! the truth: the relay republishes what was not yet delivered.

use parking_lot::{Mutex, MutexGuard};
use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    fmt,
    pin::pin,
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use herald_core::broker::{
    Acker, Broker, BrokerError, ConsumeOptions, Message, QueueConsumer, QueueMessage, Subscription,
};
use tokio::{
    sync::{Notify, mpsc},
    time::Instant,
};
use uuid::Uuid;

use crate::{error::AdapterError, names::check_name};

/// How long a message id is remembered for de-duplication by default (as JetStream's default).
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(120);

/// The in-process broker. Cheap to clone; clones share the same queues and topics.
#[derive(Clone)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Woken on every change a waiting consumer may care about.
    changed: Notify,
    dedup_window: Duration,
}

#[derive(Default)]
struct State {
    closed: bool,
    queues: HashMap<String, Queue>,
    topics: HashMap<String, Vec<mpsc::UnboundedSender<Message>>>,
    next_consumer: u64,
}

#[derive(Default)]
struct Queue {
    next_seq: u64,
    next_token: u64,
    /// Ready messages by publish sequence, so a redelivery goes back to its original place.
    ready: BTreeMap<u64, Entry>,
    delayed: BTreeMap<(Instant, u64), Entry>,
    in_flight: HashMap<u64, Lease>,
    seen: HashSet<Uuid>,
    seen_order: VecDeque<(Instant, Uuid)>,
}

struct Entry {
    seq: u64,
    message: Message,
    redelivered: bool,
}

struct Lease {
    entry: Entry,
    consumer: u64,
    deadline: Instant,
}

impl fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBroker").field("dedup_window", &self.inner.dedup_window).finish_non_exhaustive()
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBroker {
    /// An empty broker that de-duplicates message ids within [`DEFAULT_DEDUP_WINDOW`].
    pub fn new() -> Self {
        Self::with_dedup_window(DEFAULT_DEDUP_WINDOW)
    }

    /// An empty broker that remembers message ids for `window` (zero turns de-duplication off).
    pub fn with_dedup_window(window: Duration) -> Self {
        Self { inner: Arc::new(Inner { state: Mutex::default(), changed: Notify::new(), dedup_window: window }) }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data behind (every change is one step).
        self.state.lock()
    }
}

impl Queue {
    /// Moves due delayed messages and expired leases back to ready.
    fn release_due(&mut self, now: Instant) {
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let entry = entry.remove();
            self.ready.insert(entry.seq, entry);
        }
        let expired: Vec<u64> = self.in_flight.iter().filter(|(_, l)| l.deadline <= now).map(|(t, _)| *t).collect();
        for token in expired {
            if let Some(lease) = self.in_flight.remove(&token) {
                self.requeue(lease.entry);
            }
        }
    }

    fn requeue(&mut self, mut entry: Entry) {
        entry.redelivered = true;
        self.ready.insert(entry.seq, entry);
    }

    /// The next instant at which `release_due` would change something.
    fn next_wake(&self) -> Option<Instant> {
        let delayed = self.delayed.keys().next().map(|(at, _)| *at);
        let deadline = self.in_flight.values().map(|l| l.deadline).min();
        delayed.into_iter().chain(deadline).min()
    }

    /// Remembers `id`; `false` when it was already seen within `window`.
    fn remember(&mut self, id: Uuid, now: Instant, window: Duration) -> bool {
        while let Some((at, old)) = self.seen_order.front() {
            if now.duration_since(*at) < window {
                break;
            }
            self.seen.remove(old);
            self.seen_order.pop_front();
        }
        if window.is_zero() {
            return true;
        }
        if !self.seen.insert(id) {
            return false;
        }
        self.seen_order.push_back((now, id));
        true
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn enqueue(&self, queue: &str, message: Message) -> Result<(), BrokerError> {
        self.enqueue_all(queue, vec![message]).await
    }

    async fn enqueue_all(&self, queue: &str, messages: Vec<Message>) -> Result<(), BrokerError> {
        check_name(queue)?;
        let now = Instant::now();
        {
            let mut state = self.inner.lock();
            if state.closed {
                return Err(BrokerError::Closed);
            }
            let q = state.queues.entry(queue.to_owned()).or_default();
            for message in messages {
                if !q.remember(message.id, now, self.inner.dedup_window) {
                    continue;
                }
                let seq = q.next_seq;
                q.next_seq += 1;
                q.ready.insert(seq, Entry { seq, message, redelivered: false });
            }
        }
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn consume(&self, queue: &str, options: ConsumeOptions) -> Result<Box<dyn QueueConsumer>, BrokerError> {
        check_name(queue)?;
        let mut state = self.inner.lock();
        if state.closed {
            return Err(BrokerError::Closed);
        }
        state.next_consumer += 1;
        let id = state.next_consumer;
        Ok(Box::new(MemoryConsumer { inner: Arc::clone(&self.inner), queue: queue.to_owned(), id, options }))
    }

    async fn broadcast(&self, topic: &str, message: Message) -> Result<(), BrokerError> {
        self.broadcast_all(topic, vec![message]).await
    }

    async fn broadcast_all(&self, topic: &str, messages: Vec<Message>) -> Result<(), BrokerError> {
        check_name(topic)?;
        let mut state = self.inner.lock();
        if state.closed {
            return Err(BrokerError::Closed);
        }
        if let Some(subscribers) = state.topics.get_mut(topic) {
            for message in messages {
                subscribers.retain(|tx| tx.send(message.clone()).is_ok());
            }
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> Result<Box<dyn Subscription>, BrokerError> {
        check_name(topic)?;
        let mut state = self.inner.lock();
        if state.closed {
            return Err(BrokerError::Closed);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        state.topics.entry(topic.to_owned()).or_default().push(tx);
        Ok(Box::new(MemorySubscription { rx }))
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        if self.inner.lock().closed { Err(BrokerError::Closed) } else { Ok(()) }
    }

    async fn close(&self) {
        {
            let mut state = self.inner.lock();
            state.closed = true;
            state.topics.clear();
        }
        self.inner.changed.notify_waiters();
    }
}

/// A competing consumer of one in-process queue.
struct MemoryConsumer {
    inner: Arc<Inner>,
    queue: String,
    id: u64,
    options: ConsumeOptions,
}

impl MemoryConsumer {
    /// Leases the next ready message, or says when to look again.
    fn try_take(&self) -> Result<Result<QueueMessage, Option<Instant>>, BrokerError> {
        let mut state = self.inner.lock();
        if state.closed {
            return Err(BrokerError::Closed);
        }
        let now = Instant::now();
        let q = state.queues.entry(self.queue.clone()).or_default();
        q.release_due(now);
        let held = q.in_flight.values().filter(|l| l.consumer == self.id).count();
        if held < usize::from(self.options.prefetch.max(1))
            && let Some((_, entry)) = q.ready.pop_first()
        {
            let token = q.next_token;
            q.next_token += 1;
            let delivery = QueueMessage::new(
                entry.message.clone(),
                entry.redelivered,
                Box::new(MemoryAcker { inner: Arc::clone(&self.inner), queue: self.queue.clone(), token }),
            );
            let deadline = now + self.options.ack_deadline;
            q.in_flight.insert(token, Lease { entry, consumer: self.id, deadline });
            return Ok(Ok(delivery));
        }
        Ok(Err(q.next_wake()))
    }
}

impl fmt::Debug for MemoryConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryConsumer").field("queue", &self.queue).field("id", &self.id).finish()
    }
}

#[async_trait]
impl QueueConsumer for MemoryConsumer {
    async fn next(&mut self) -> Result<QueueMessage, BrokerError> {
        loop {
            // Registered before looking, so a change between the look and the wait is not missed.
            let mut changed = pin!(self.inner.changed.notified());
            changed.as_mut().enable();
            let wake = match self.try_take()? {
                Ok(delivery) => return Ok(delivery),
                Err(wake) => wake,
            };
            match wake {
                Some(at) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

impl Drop for MemoryConsumer {
    /// A consumer that goes away releases what it holds, as a dropped connection would.
    fn drop(&mut self) {
        {
            let mut state = self.inner.lock();
            let Some(q) = state.queues.get_mut(&self.queue) else { return };
            let held: Vec<u64> = q.in_flight.iter().filter(|(_, l)| l.consumer == self.id).map(|(t, _)| *t).collect();
            for token in held {
                if let Some(lease) = q.in_flight.remove(&token) {
                    q.requeue(lease.entry);
                }
            }
        }
        self.inner.changed.notify_waiters();
    }
}

struct MemoryAcker {
    inner: Arc<Inner>,
    queue: String,
    token: u64,
}

impl MemoryAcker {
    fn take_lease(&self, state: &mut State) -> Result<Entry, BrokerError> {
        let q = state.queues.get_mut(&self.queue).ok_or(AdapterError::LeaseLost)?;
        // An expired lease still in the map is as good as gone.
        match q.in_flight.remove(&self.token) {
            Some(lease) if lease.deadline > Instant::now() => Ok(lease.entry),
            Some(lease) => {
                q.requeue(lease.entry);
                Err(AdapterError::LeaseLost.into())
            }
            None => Err(AdapterError::LeaseLost.into()),
        }
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        let mut state = self.inner.lock();
        self.take_lease(&mut state).map(drop)
    }

    async fn nack(self: Box<Self>, redeliver_after: Option<Duration>) -> Result<(), BrokerError> {
        {
            let mut state = self.inner.lock();
            let mut entry = self.take_lease(&mut state)?;
            entry.redelivered = true;
            if let Some(q) = state.queues.get_mut(&self.queue) {
                match redeliver_after.filter(|d| !d.is_zero()) {
                    Some(delay) => {
                        q.delayed.insert((Instant::now() + delay, entry.seq), entry);
                    }
                    None => {
                        q.ready.insert(entry.seq, entry);
                    }
                }
            }
        }
        self.inner.changed.notify_waiters();
        Ok(())
    }
}

struct MemorySubscription {
    rx: mpsc::UnboundedReceiver<Message>,
}

impl fmt::Debug for MemorySubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySubscription").finish_non_exhaustive()
    }
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Result<Message, BrokerError> {
        self.rx.recv().await.ok_or(BrokerError::Closed)
    }
}
