//! A competing consumer of one queue: a named consumer of the queue's group, reading on a
//! connection of its own. A task takes entries while the consumer holds fewer than `prefetch`
//! unexpired deliveries: first the entries it nacked for now (`XCLAIM`), then, every quarter of its
//! ack deadline (at most every [`BLOCK`]), due delayed messages moved back into the stream and
//! entries pending longer than the ack deadline (`XAUTOCLAIM`), then new entries (`XREADGROUP … >`,
//! blocking up to [`BLOCK`]). When the consumer is dropped or its broker closed, the task hands
//! every entry the consumer still holds in Redis to the others before it ends.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use herald_core::broker::{BrokerError, ConsumeOptions, QueueConsumer, QueueMessage};
use parking_lot::Mutex;
use redis::{
    Value,
    aio::ConnectionManager,
    streams::{StreamAutoClaimReply, StreamClaimReply, StreamId, StreamReadReply},
};
use tokio::{
    sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod acker;
mod scripts;

use self::{
    acker::RedisAcker,
    scripts::{PROMOTE, RELEASE_SCRIPT},
};
use super::{GROUP, Shared, classify, frame};
use crate::error::chain;

/// Longest a read blocks waiting for new entries (so due and expired entries are looked at again).
const BLOCK: Duration = Duration::from_secs(1);
/// Most entries taken in one read.
const READ_BATCH: usize = 64;
/// Most delayed messages moved back into the stream per read.
const PROMOTE_BATCH: usize = 100;
/// An idle time that makes an entry claimable by any consumer at once (ten years; Redis refuses
/// idle times before the epoch).
const CLAIMABLE_NOW_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
/// How often a consumer removes the group's consumers that hold nothing and were idle for
/// [`STALE_CONSUMER`] (those of processes that are gone).
const PRUNE_EVERY: Duration = Duration::from_secs(300);
const STALE_CONSUMER: Duration = Duration::from_secs(3600);

/// An idle time an entry nacked for now keeps at least until it is taken again: entries another
/// consumer claimed in between have a small one and are left alone.
const NACKED_MIN_IDLE_MS: u64 = CLAIMABLE_NOW_MS - 24 * 3600 * 1000;
/// Most `XAUTOCLAIM` calls in one pass looking for expired entries (each scans up to ten times
/// the entries it may claim).
const CLAIM_CALLS: usize = 10;
/// Pending entries released per call, and most calls, when a consumer ends.
const RELEASE_BATCH: usize = 500;
const RELEASE_CALLS: usize = 1_000;

/// A delivery not yet settled: the prefetch slot it holds, until settled, dropped or expired.
struct Held {
    expires: Instant,
    /// Returned by `next`: from then on its deadline frees the slot. Until then it waits in the
    /// consumer's channel, holding the slot, so the channel never holds more than `prefetch`.
    handed: bool,
    _permit: OwnedSemaphorePermit,
}

/// What a consumer, its reading task and its deliveries share.
struct State {
    shared: Arc<Shared>,
    stream: String,
    delayed: String,
    name: String,
    ack_deadline: Duration,
    /// Deliveries not settled, by a number of their own (an entry claimed again after its deadline
    /// is a second delivery of the same id).
    held: Mutex<HashMap<u64, Held>>,
    deliveries: AtomicU64,
    /// Set when the consumer ends: its deliveries can no longer be settled.
    released: AtomicBool,
    /// Entries this consumer nacked for now, taken back before anything else.
    nacked: Mutex<Vec<String>>,
    /// Signalled when a delivery is handed out: its deadline now counts for the reading task.
    handed: Notify,
}

impl State {
    /// When the first held delivery's deadline passes.
    /// When the first delivery handed out and held past its deadline frees its slot.
    fn earliest_expiry(&self) -> Option<Instant> {
        self.held.lock().values().filter(|held| held.handed).map(|held| held.expires).min()
    }

    /// Forgets deliveries handed out whose deadline has passed, freeing their prefetch slots:
    /// Redis hands them out again, and settling them fails.
    fn expire(&self, now: Instant) {
        self.held.lock().retain(|_, held| !held.handed || held.expires > now);
    }
}

pub(super) struct RedisConsumer {
    rx: mpsc::UnboundedReceiver<(u64, QueueMessage)>,
    state: Arc<State>,
    stop: CancellationToken,
}

impl fmt::Debug for RedisConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConsumer").field("stream", &self.state.stream).field("name", &self.state.name).finish()
    }
}

impl RedisConsumer {
    pub(super) async fn start(shared: Arc<Shared>, queue: &str, options: ConsumeOptions) -> Result<Self, BrokerError> {
        let connection = super::connect_manager(&shared.client, BLOCK + super::RESPONSE_TIMEOUT).await?;
        let state = Arc::new(State {
            stream: shared.queue_key(queue),
            delayed: shared.delayed_key(queue),
            name: Uuid::now_v7().simple().to_string(),
            ack_deadline: options.ack_deadline,
            shared,
            held: Mutex::default(),
            deliveries: AtomicU64::new(0),
            released: AtomicBool::new(false),
            nacked: Mutex::default(),
            handed: Notify::new(),
        });
        // The channel holds at most `prefetch` deliveries: each takes a permit first.
        let (tx, rx) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(usize::from(options.prefetch.max(1))));
        let stop = state.shared.closed.child_token();
        tokio::spawn(read(Arc::clone(&state), connection, permits, tx, stop.clone()));
        Ok(Self { rx, state, stop })
    }
}

#[async_trait]
impl QueueConsumer for RedisConsumer {
    async fn next(&mut self) -> Result<QueueMessage, BrokerError> {
        loop {
            let (number, message) = self.rx.recv().await.ok_or(BrokerError::Closed)?;
            {
                let mut held = self.state.held.lock();
                if let Some(entry) = held.get_mut(&number)
                    && Instant::now() < entry.expires
                {
                    entry.handed = true;
                    self.state.handed.notify_one();
                    return Ok(message);
                }
            }
            // Its deadline passed while it waited here: dropping it frees its slot, and Redis
            // hands it out again.
            drop(message);
        }
    }
}

impl Drop for RedisConsumer {
    fn drop(&mut self) {
        // Its deliveries can no longer be settled; the reading task hands everything the consumer
        // holds in Redis to the others as it ends.
        self.state.released.store(true, Ordering::Release);
        self.stop.cancel();
    }
}

/// Takes entries while permits last, until stopped; then releases what the consumer holds.
async fn read(
    state: Arc<State>,
    mut connection: ConnectionManager,
    permits: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<(u64, QueueMessage)>,
    stop: CancellationToken,
) {
    // Expired entries are looked for four times per ack deadline (at most once per read).
    let claim_every = (state.ack_deadline / 4).clamp(Duration::from_millis(50), BLOCK);
    let mut next_claim = Instant::now();
    let mut next_prune = Instant::now() + PRUNE_EVERY;
    let mut cursor = "0-0".to_owned();
    let mut backoff = Duration::from_millis(50);
    loop {
        let first = loop {
            // Registered before the deadlines are read, so a delivery handed out in between
            // wakes this wait (`notify_one` keeps the wake-up if nobody waits yet).
            let handed = state.handed.notified();
            let earliest = state.earliest_expiry();
            let expiry = async move {
                match earliest {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => break None,
                permit = Arc::clone(&permits).acquire_owned() => break permit.ok(),
                () = expiry => state.expire(Instant::now()),
                () = handed => {}
            }
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < READ_BATCH {
            match Arc::clone(&permits).try_acquire_owned() {
                Ok(permit) => batch.push(permit),
                Err(_) => break,
            }
        }
        let retake = {
            let mut nacked = state.nacked.lock();
            let keep = nacked.len().saturating_sub(batch.len());
            nacked.split_off(keep)
        };
        let claim = Instant::now() >= next_claim;
        let started = Instant::now();
        // Not cancelled by `stop`: what a read takes belongs to this consumer in Redis either way,
        // and the release below hands it on.
        let taken = take(&state, &mut connection, batch.len(), &retake, claim, &mut cursor, next_claim).await;
        if stop.is_cancelled() {
            break;
        }
        match taken {
            Ok((entries, claimed)) => {
                if claimed {
                    next_claim = started + claim_every;
                }
                backoff = Duration::from_millis(50);
                for (entry, redelivered) in entries {
                    let Some(permit) = batch.pop() else { break };
                    match delivery(&state, entry, redelivered, started, permit) {
                        Ok(delivery) => {
                            if tx.send(delivery).is_err() {
                                release(&state, &mut connection).await;
                                return;
                            }
                        }
                        Err(id) => discard(&state, &id).await,
                    }
                }
            }
            Err(error) => {
                // The retake failed (or its answer was lost): try again on the next read.
                state.nacked.lock().extend(retake);
                if error.code() == Some("NOGROUP") {
                    // The stream and its group are gone (Redis restarted without its data):
                    // make them again and go on.
                    if let Err(error) = state.shared.ensure_group(&state.stream).await {
                        tracing::warn!(error = %chain(&error), stream = %state.stream, "could not create the consumer group");
                    }
                } else {
                    tracing::warn!(error = %chain(&error), stream = %state.stream, "Redis consumer could not read; retrying");
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
        if Instant::now() >= next_prune {
            next_prune = Instant::now() + PRUNE_EVERY;
            if let Err(error) = prune(&state, &mut connection).await {
                tracing::debug!(error = %chain(&error), stream = %state.stream, "could not prune idle consumers");
            }
        }
    }
    release(&state, &mut connection).await;
}

/// Up to `count` entries: first the ones this consumer nacked for now (`retake`), then, when
/// `claim`, due delayed ones and those pending longer than the ack deadline; when there are none,
/// new ones, blocking until `next_claim` at most. Each comes with whether it was delivered before;
/// and whether the claim pass ran (the retaken entries may have filled the read).
async fn take(
    state: &State,
    connection: &mut ConnectionManager,
    count: usize,
    retake: &[String],
    claim: bool,
    cursor: &mut String,
    next_claim: Instant,
) -> redis::RedisResult<(Vec<(StreamId, bool)>, bool)> {
    let mut taken = Vec::new();
    if !retake.is_empty() {
        let reply: StreamClaimReply = redis::cmd("XCLAIM")
            .arg(&state.stream)
            .arg(GROUP)
            .arg(&state.name)
            .arg(NACKED_MIN_IDLE_MS)
            .arg(retake)
            .query_async(connection)
            .await?;
        taken.extend(reply.ids.into_iter().map(|entry| (entry, true)));
    }
    let claimed = claim && taken.len() < count;
    if claimed {
        let min_idle = u64::try_from(state.ack_deadline.as_millis()).unwrap_or(u64::MAX);
        let mut promote = true;
        for _ in 0..CLAIM_CALLS {
            let mut pipe = redis::pipe();
            // Plain EVAL: a pipeline cannot load a script Redis does not know.
            if std::mem::take(&mut promote) {
                pipe.cmd("EVAL").arg(PROMOTE).arg(2).arg(&state.stream).arg(&state.delayed).arg(PROMOTE_BATCH).ignore();
            }
            pipe.cmd("XAUTOCLAIM")
                .arg(&state.stream)
                .arg(GROUP)
                .arg(&state.name)
                .arg(min_idle)
                .arg(&*cursor)
                .arg("COUNT")
                .arg(count - taken.len());
            let reply: redis::RedisResult<(StreamAutoClaimReply,)> = pipe.query_async(connection).await;
            let (reply,) = match reply {
                Ok(reply) => reply,
                // The retaken entries are this consumer's now: hand them out, claim next time.
                Err(error) if !taken.is_empty() => {
                    tracing::debug!(error = %chain(&error), stream = %state.stream, "claim pass failed");
                    return Ok((taken, false));
                }
                Err(error) => return Err(error),
            };
            *cursor = reply.next_stream_id;
            taken.extend(reply.claimed.into_iter().map(|entry| (entry, true)));
            if !taken.is_empty() || cursor.as_str() == "0-0" {
                break;
            }
        }
    }
    if !taken.is_empty() {
        return Ok((taken, claimed));
    }
    let block = next_claim.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(10), BLOCK);
    let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(&state.name)
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(u64::try_from(block.as_millis()).unwrap_or(1000))
        .arg("STREAMS")
        .arg(&state.stream)
        .arg(">")
        .query_async(connection)
        .await?;
    let fresh = reply
        .into_iter()
        .flat_map(|reply| reply.keys)
        .flat_map(|key| key.ids)
        .map(|entry| {
            let redelivered = entry.map.contains_key("r");
            (entry, redelivered)
        })
        .collect();
    Ok((fresh, claimed))
}

/// Hands everything this consumer still holds in Redis to the other consumers at once (an idle
/// time that any claim takes), instead of at its ack deadline.
async fn release(state: &State, connection: &mut ConnectionManager) {
    state.released.store(true, Ordering::Release);
    state.held.lock().clear();
    let mut start = "-".to_owned();
    for _ in 0..RELEASE_CALLS {
        let released: redis::RedisResult<Option<String>> = RELEASE_SCRIPT
            .key(&state.stream)
            .arg(GROUP)
            .arg(&state.name)
            .arg(&start)
            .arg(RELEASE_BATCH)
            .arg(CLAIMABLE_NOW_MS)
            .invoke_async(connection)
            .await;
        match released {
            Ok(Some(last)) => start = format!("({last}"),
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(error = %chain(&error), stream = %state.stream, "could not release a consumer's messages; they come back at their ack deadline");
                return;
            }
        }
    }
}

/// A delivery for `entry`, or its id when it holds no message Herald wrote.
fn delivery(
    state: &Arc<State>,
    entry: StreamId,
    redelivered: bool,
    read_at: Instant,
    permit: OwnedSemaphorePermit,
) -> Result<(u64, QueueMessage), String> {
    let frame = match entry.map.get("m") {
        Some(Value::BulkString(bytes)) => bytes.clone(),
        _ => return Err(entry.id),
    };
    let message = match frame::decode(&frame) {
        Ok(message) => message,
        Err(error) => {
            tracing::warn!(%error, stream = %state.stream, id = %entry.id, "dropping a queue entry Herald did not write");
            return Err(entry.id);
        }
    };
    // The deadline runs from before the read: Redis counts it from the delivery, which is later,
    // so a delivery can never be settled after another consumer could have claimed it.
    let expires = read_at + state.ack_deadline;
    let number = state.deliveries.fetch_add(1, Ordering::Relaxed);
    state.held.lock().insert(number, Held { expires, handed: false, _permit: permit });
    let acker = RedisAcker { state: Arc::clone(state), number, id: entry.id, frame };
    Ok((number, QueueMessage::new(message, redelivered, Box::new(acker))))
}

/// Acks and deletes an entry that can never be delivered.
async fn discard(state: &State, id: &str) {
    if let Ok(mut connection) = state.shared.commands() {
        let removed = redis::pipe()
            .cmd("XACK")
            .arg(&state.stream)
            .arg(GROUP)
            .arg(id)
            .ignore()
            .cmd("XDEL")
            .arg(&state.stream)
            .arg(id)
            .ignore()
            .query_async::<()>(&mut connection)
            .await;
        if let Err(error) = removed {
            tracing::warn!(error = %chain(&error), stream = %state.stream, "could not remove an undeliverable entry");
        }
    }
}

/// Removes the group's consumers that hold nothing and have been idle for [`STALE_CONSUMER`].
async fn prune(state: &State, connection: &mut ConnectionManager) -> redis::RedisResult<()> {
    let consumers: Vec<HashMap<String, Value>> =
        redis::cmd("XINFO").arg("CONSUMERS").arg(&state.stream).arg(GROUP).query_async(connection).await?;
    let stale = u64::try_from(STALE_CONSUMER.as_millis()).unwrap_or(u64::MAX);
    for consumer in consumers {
        let number = |field: &str| match consumer.get(field) {
            Some(Value::Int(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        let Some(Value::BulkString(name)) = consumer.get("name") else { continue };
        if number("pending") == Some(0) && number("idle").is_some_and(|idle| idle >= stale) {
            redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(&state.stream)
                .arg(GROUP)
                .arg(name.as_slice())
                .query_async::<i64>(connection)
                .await?;
        }
    }
    Ok(())
}
