//! A competing consumer of one queue: a named consumer of the queue's group, reading on a
//! connection of its own. A task takes entries while the consumer holds fewer than `prefetch`:
//! first what is due (delayed messages moved back into the stream, entries pending longer than the
//! ack deadline or nacked, claimed with `XAUTOCLAIM`), then new entries (`XREADGROUP … >`, blocking
//! up to [`BLOCK`]).

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
use herald_core::broker::{Acker, BrokerError, ConsumeOptions, QueueConsumer, QueueMessage};
use parking_lot::Mutex;
use redis::{
    Value,
    aio::ConnectionManager,
    streams::{StreamAutoClaimReply, StreamId, StreamReadReply},
};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{GROUP, Shared, classify, frame};
use crate::error::{AdapterError, chain};

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

/// Moves due entries of the delayed set `KEYS[2]` into the stream `KEYS[1]`, flagged as
/// redeliveries. `ARGV[1]`: most to move.
const PROMOTE: &str = r"
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ms, 'LIMIT', 0, tonumber(ARGV[1]))
for _, frame in ipairs(due) do
  redis.call('XADD', KEYS[1], '*', 'm', frame, 'r', '1')
  redis.call('ZREM', KEYS[2], frame)
end
return #due
";

/// Whether consumer `ARGV[3]` of group `ARGV[1]` still holds entry `ARGV[2]` of stream `KEYS[1]`.
const HELD: &str = r"
local function held()
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
  return #p == 1 and p[1][2] == ARGV[3]
end
";

/// Acks and deletes the entry if still held.
const ACK: &str = r"
if not held() then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
";

/// Makes the entry claimable at once if still held. `ARGV[4]`: the idle time to set.
const NACK_NOW: &str = r"
if not held() then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'IDLE', ARGV[4], 'JUSTID')
return 1
";

/// Moves the entry to the delayed set `KEYS[2]` if still held. `ARGV[4]`: delay in ms;
/// `ARGV[5]`: the frame.
const NACK_LATER: &str = r"
if not held() then return 0 end
local now = redis.call('TIME')
local due = now[1] * 1000 + math.floor(now[2] / 1000) + tonumber(ARGV[4])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], due, ARGV[5])
return 1
";

/// Makes every entry in `ARGV[5..]` that consumer `ARGV[3]` still holds claimable at once.
const RELEASE: &str = r"
local released = 0
for i = 5, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[3] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[i], 'IDLE', ARGV[4], 'JUSTID')
    released = released + 1
  end
end
return released
";

/// What a consumer, its reading task and its deliveries share.
struct State {
    shared: Arc<Shared>,
    stream: String,
    delayed: String,
    name: String,
    ack_deadline: Duration,
    /// Deliveries not settled (by a number of their own: an entry claimed again after its
    /// deadline is a second delivery of the same id), released when the consumer is dropped.
    held: Mutex<HashMap<u64, String>>,
    deliveries: AtomicU64,
    /// Set when the consumer is dropped: its deliveries can no longer be settled.
    released: AtomicBool,
    /// A delivery was nacked for now: claim before reading new entries.
    claim_now: AtomicBool,
}

impl State {
    /// Runs `script` (after the `held` helper) on the entry `id`.
    async fn settle(&self, script: &str, id: &str, extra: &[&[u8]]) -> Result<bool, BrokerError> {
        let mut connection = self.shared.commands()?;
        let mut call = redis::cmd("EVAL");
        call.arg(format!("{HELD}{script}"))
            .arg(2)
            .arg(&self.stream)
            .arg(&self.delayed)
            .arg(GROUP)
            .arg(id)
            .arg(&self.name);
        for arg in extra {
            call.arg(*arg);
        }
        let done: i64 = call.query_async(&mut connection).await.map_err(classify)?;
        Ok(done == 1)
    }
}

pub(super) struct RedisConsumer {
    rx: mpsc::UnboundedReceiver<QueueMessage>,
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
        let connection = shared.dedicated(BLOCK + super::RESPONSE_TIMEOUT).await?;
        let state = Arc::new(State {
            stream: shared.queue_key(queue),
            delayed: shared.delayed_key(queue),
            name: Uuid::now_v7().simple().to_string(),
            ack_deadline: options.ack_deadline,
            shared,
            held: Mutex::default(),
            deliveries: AtomicU64::new(0),
            released: AtomicBool::new(false),
            claim_now: AtomicBool::new(false),
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
        self.rx.recv().await.ok_or(BrokerError::Closed)
    }
}

impl Drop for RedisConsumer {
    fn drop(&mut self) {
        self.stop.cancel();
        self.state.released.store(true, Ordering::Release);
        let held: Vec<String> = self.state.held.lock().drain().map(|(_, id)| id).collect();
        if held.is_empty() {
            return;
        }
        // Hand what this consumer held to the others now, not at its ack deadline.
        let state = Arc::clone(&self.state);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let Ok(mut connection) = state.shared.commands() else { return };
                let mut call = redis::cmd("EVAL");
                call.arg(RELEASE)
                    .arg(1)
                    .arg(&state.stream)
                    .arg(GROUP)
                    .arg("")
                    .arg(&state.name)
                    .arg(CLAIMABLE_NOW_MS)
                    .arg(&held);
                if let Err(error) = call.query_async::<i64>(&mut connection).await {
                    tracing::warn!(error = %chain(&error), stream = %state.stream, "could not release a dropped consumer's messages; they come back at their ack deadline");
                }
            });
        }
    }
}

/// Takes entries while permits last, until stopped.
async fn read(
    state: Arc<State>,
    mut connection: ConnectionManager,
    permits: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<QueueMessage>,
    stop: CancellationToken,
) {
    // Expired entries are looked for four times per ack deadline (at most once per read).
    let claim_every = (state.ack_deadline / 4).clamp(Duration::from_millis(50), BLOCK);
    let mut next_claim = Instant::now();
    let mut next_prune = Instant::now() + PRUNE_EVERY;
    let mut cursor = "0-0".to_owned();
    let mut backoff = Duration::from_millis(50);
    loop {
        let first = tokio::select! {
            () = stop.cancelled() => return,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < READ_BATCH {
            match Arc::clone(&permits).try_acquire_owned() {
                Ok(permit) => batch.push(permit),
                Err(_) => break,
            }
        }
        let claim = state.claim_now.swap(false, Ordering::AcqRel) || Instant::now() >= next_claim;
        let started = Instant::now();
        let taken = tokio::select! {
            () = stop.cancelled() => return,
            taken = take(&state, &mut connection, batch.len(), claim, &mut cursor, next_claim) => taken,
        };
        if claim {
            next_claim = started + claim_every;
        }
        match taken {
            Ok(entries) => {
                backoff = Duration::from_millis(50);
                for (entry, redelivered) in entries {
                    let Some(permit) = batch.pop() else { break };
                    match delivery(&state, entry, redelivered, started, permit) {
                        Ok(delivery) => {
                            if tx.send(delivery).is_err() {
                                return;
                            }
                        }
                        Err(id) => discard(&state, &id).await,
                    }
                }
            }
            Err(error) if error.code() == Some("NOGROUP") => {
                // The stream and its group are gone (Redis restarted without its data): make
                // them again and go on.
                if let Err(error) = state.shared.ensure_group(&state.stream).await {
                    tracing::warn!(error = %chain(&error), stream = %state.stream, "could not create the consumer group");
                    tokio::time::sleep(backoff).await;
                }
            }
            Err(error) => {
                tracing::warn!(error = %chain(&error), stream = %state.stream, "Redis consumer could not read; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
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
}

/// Up to `count` entries: due and expired ones when `claim`, else (or when there are none) new
/// ones, blocking until `next_claim` at most. Each comes with whether it was delivered before.
async fn take(
    state: &State,
    connection: &mut ConnectionManager,
    count: usize,
    claim: bool,
    cursor: &mut String,
    next_claim: Instant,
) -> redis::RedisResult<Vec<(StreamId, bool)>> {
    if claim {
        let min_idle = u64::try_from(state.ack_deadline.as_millis()).unwrap_or(u64::MAX);
        let (_, claimed): (i64, StreamAutoClaimReply) = redis::pipe()
            .cmd("EVAL")
            .arg(PROMOTE)
            .arg(2)
            .arg(&state.stream)
            .arg(&state.delayed)
            .arg(PROMOTE_BATCH)
            .cmd("XAUTOCLAIM")
            .arg(&state.stream)
            .arg(GROUP)
            .arg(&state.name)
            .arg(min_idle)
            .arg(&*cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(connection)
            .await?;
        *cursor = claimed.next_stream_id;
        if !claimed.claimed.is_empty() {
            return Ok(claimed.claimed.into_iter().map(|entry| (entry, true)).collect());
        }
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
    Ok(reply
        .into_iter()
        .flat_map(|reply| reply.keys)
        .flat_map(|key| key.ids)
        .map(|entry| {
            let redelivered = entry.map.contains_key("r");
            (entry, redelivered)
        })
        .collect())
}

/// A delivery for `entry`, or its id when it holds no message Herald wrote.
fn delivery(
    state: &Arc<State>,
    entry: StreamId,
    redelivered: bool,
    read_at: Instant,
    permit: OwnedSemaphorePermit,
) -> Result<QueueMessage, String> {
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
    let number = state.deliveries.fetch_add(1, Ordering::Relaxed);
    state.held.lock().insert(number, entry.id.clone());
    // The deadline runs from before the read: Redis counts it from the delivery, which is later,
    // so a delivery can never be settled after another consumer could have claimed it.
    let expires = read_at + state.ack_deadline;
    let acker = RedisAcker { state: Arc::clone(state), number, id: entry.id, frame, expires, _permit: permit };
    Ok(QueueMessage::new(message, redelivered, Box::new(acker)))
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
    let consumers: Vec<std::collections::HashMap<String, Value>> =
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

struct RedisAcker {
    state: Arc<State>,
    number: u64,
    id: String,
    frame: Vec<u8>,
    expires: Instant,
    _permit: OwnedSemaphorePermit,
}

impl RedisAcker {
    /// Takes the right to settle: the consumer is still there and the deadline has not passed.
    fn take_lease(&self) -> Result<(), BrokerError> {
        let held = self.state.held.lock().remove(&self.number).is_some();
        if !held || self.state.released.load(Ordering::Acquire) || Instant::now() >= self.expires {
            return Err(AdapterError::LeaseLost.into());
        }
        Ok(())
    }
}

impl Drop for RedisAcker {
    fn drop(&mut self) {
        // Settled or not, the consumer no longer hands this one over when dropped: an unsettled
        // delivery is left to its ack deadline.
        self.state.held.lock().remove(&self.number);
    }
}

#[async_trait]
impl Acker for RedisAcker {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        self.take_lease()?;
        if self.state.settle(ACK, &self.id, &[]).await? { Ok(()) } else { Err(AdapterError::LeaseLost.into()) }
    }

    async fn nack(self: Box<Self>, redeliver_after: Option<Duration>) -> Result<(), BrokerError> {
        self.take_lease()?;
        let settled = match redeliver_after.filter(|delay| !delay.is_zero()) {
            None => {
                let idle = CLAIMABLE_NOW_MS.to_string();
                let settled = self.state.settle(NACK_NOW, &self.id, &[idle.as_bytes()]).await?;
                self.state.claim_now.store(true, Ordering::Release);
                settled
            }
            Some(delay) => {
                let delay = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX).to_string();
                self.state.settle(NACK_LATER, &self.id, &[delay.as_bytes(), &self.frame]).await?
            }
        };
        if settled { Ok(()) } else { Err(AdapterError::LeaseLost.into()) }
    }
}
