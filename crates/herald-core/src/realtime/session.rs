//! One session: its channels, what it sent and what its client acknowledged, independent of the
//! transport that carries it.
//!
//! Per channel a session is either *replaying* (reading the stream from its position while live
//! events wait in a small buffer) or *live* (sending each live event whose offset follows the last
//! one sent). A live event that skips an offset turns the channel back to replaying, so a lost
//! broker message is fetched from the store instead of being skipped. A `room.member_removed`
//! event that removes the session's user is the last one of that room it sends.

use parking_lot::Mutex;
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Inner;
use crate::{
    auth::{Caller, Identity},
    change::OutboxEvent,
    command::Ctx,
    error::{ApiError, ErrorCode, Problem},
    stream::{SessionCursor, SessionId, StreamName},
    wire::EventEnvelope,
};

/// Events read from the stream per store round trip while replaying.
const REPLAY_PAGE: u32 = 500;
/// How long a replay waits for room in a session's buffer before giving up on the client.
const PACED_WAIT: Duration = Duration::from_secs(30);
/// Send times kept per channel for the ack-latency histogram; older ones are forgotten.
const MAX_PENDING_TIMES: usize = 4096;

/// An event as a client receives it.
#[derive(Debug, Clone, Serialize)]
pub struct EventBody {
    pub channel: String,
    pub offset: i64,
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: Value,
    pub ts: DateTime<Utc>,
}

impl From<EventEnvelope> for EventBody {
    fn from(envelope: EventEnvelope) -> Self {
        let EventEnvelope::V1 { id, kind, channel, offset, data, ts } = envelope;
        Self { channel, offset, id, kind, data, ts }
    }
}

impl From<&OutboxEvent> for EventBody {
    fn from(event: &OutboxEvent) -> Self {
        let e = &event.event;
        Self {
            channel: e.channel.clone(),
            offset: event.channel_offset,
            id: e.id,
            kind: e.kind.clone(),
            data: e.payload.clone(),
            ts: e.created_at,
        }
    }
}

/// Why an event could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// The session's outgoing buffer is full: the client is not keeping up.
    Full,
    /// The connection is gone.
    Closed,
}

/// The transport's side of a session.
#[async_trait]
pub trait Outlet: Send + Sync + std::fmt::Debug + 'static {
    /// Queues `event` without waiting; the transport reports the client's ack to `session.ack`.
    fn send_event(&self, session: &Arc<Session>, event: &Arc<EventBody>) -> Result<(), SendFailure>;
    /// Queues `event`, waiting for room in the buffer.
    async fn send_paced(&self, session: &Arc<Session>, event: &Arc<EventBody>) -> Result<(), SendFailure>;
    /// Tells the client why (`code`, `message`) and closes the connection. Must not wait or call
    /// back into the session: it is called with the session's state locked.
    fn close(&self, code: &str, message: &str);
    /// The session has ended: let go of whatever of the transport refers back to it.
    fn release(&self) {}
}

#[derive(Debug)]
struct ChannelState {
    /// Bumped by every subscribe, so a replay of an earlier subscription stops.
    generation: u64,
    live: bool,
    /// The last offset sent (or the position the subscription started from).
    sent: i64,
    acked: i64,
    /// Live events that came while replaying.
    waiting: Vec<Arc<EventBody>>,
    /// Live events were dropped from `waiting` (it was full): read the store again.
    overflowed: bool,
    /// (offset, commit time) of events sent and not yet acknowledged.
    pending: VecDeque<(i64, DateTime<Utc>)>,
    /// The channel's head when a resuming subscription was answered: what it replays up to there
    /// was sent before or missed while away (a redelivery); what follows is new.
    redeliver_until: i64,
}

/// One client session on one connection.
#[derive(Debug)]
pub struct Session {
    gw: Arc<Inner>,
    pub identity: Identity,
    pub id: SessionId,
    /// Tells this connection apart from another one of the same session id.
    pub key: u64,
    /// The client's address (for the password-check limits of the commands it calls).
    peer: Option<IpAddr>,
    outlet: Box<dyn Outlet>,
    channels: Mutex<HashMap<String, ChannelState>>,
    closed: AtomicBool,
    /// Cancelled when the session ends: what was spawned for it stops with it.
    ended: CancellationToken,
    /// One permit per request (subscribe, call) awaiting its answer.
    requests: Arc<Semaphore>,
}

/// Why a channel reads its stream: a subscription starting from its position (what it sends up
/// to the head it answered with is redelivered: sent before, or missed while away), or a gap in
/// the live path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    Resume,
    Gap,
}

/// The answer to `subscribe`.
#[derive(Debug, Clone, Serialize)]
pub struct Subscribed {
    pub channel: String,
    pub epoch: String,
    pub offset: i64,
    pub recovered: bool,
}

impl Session {
    pub(super) fn new(
        gw: Arc<Inner>,
        identity: Identity,
        id: SessionId,
        peer: Option<IpAddr>,
        outlet: Box<dyn Outlet>,
    ) -> Arc<Self> {
        let key = gw.next_key.fetch_add(1, Ordering::Relaxed);
        let requests = Arc::new(Semaphore::new(gw.options.calls_in_flight.max(1)));
        Arc::new(Self {
            gw,
            identity,
            id,
            key,
            peer,
            outlet,
            channels: Mutex::default(),
            closed: AtomicBool::new(false),
            ended: CancellationToken::new(),
            requests,
        })
    }

    /// Cancelled when the session ends.
    pub fn ended_token(&self) -> CancellationToken {
        self.ended.clone()
    }

    /// Takes one of the session's request slots for a subscribe or call, held until it is
    /// answered; refused with `too_many_requests` when every slot is taken.
    pub fn begin_request(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.requests.clone().try_acquire_owned().map_err(|_| {
            let limit = self.gw.options.calls_in_flight;
            ApiError::too_many_requests(
                format!("this session has {limit} requests unanswered, the most allowed; wait for their answers"),
                Duration::from_secs(1),
            )
        })
    }

    /// Refuses a channel this session is not subscribed to yet when it has as many as allowed.
    fn check_subscription_room(&self, channels: &HashMap<String, ChannelState>, channel: &str) -> Result<(), ApiError> {
        let limit = self.gw.options.subscriptions_per_session;
        if channels.len() >= limit && !channels.contains_key(channel) {
            return Err(ApiError::new(
                ErrorCode::TooManySubscriptions,
                format!("this session has {limit} subscriptions, the most allowed; unsubscribe from one first"),
            ));
        }
        Ok(())
    }

    /// Subscribes to `channel` from `since` (or the session's cursor), answering where it starts;
    /// then replays what follows. The answer goes out before the first replayed event because
    /// the replay starts only when `start` (the transport's reply) has been queued.
    pub async fn subscribe(
        self: &Arc<Self>,
        channel: &str,
        since: Option<i64>,
        epoch: Option<&str>,
    ) -> Result<(Subscribed, u64), ApiError> {
        let stream = StreamName::parse(channel)?;
        self.check_subscription_room(&self.channels.lock(), channel)?;
        self.authorize(stream).await?;
        let svc = &self.gw.herald.services;
        let head = svc.store.stream_head(channel).await?;
        let known = match since {
            Some(since) => Some(since),
            None => svc.store.session_cursor(self.identity.user_id, &self.id, channel).await?,
        };
        let same_epoch = epoch.is_none_or(|e| e == head.epoch);
        let (position, result) = match known {
            Some(p) if same_epoch && head.holds_after(p) => (p, "recovered"),
            Some(_) => (head.offset, "lost"),
            None => (head.offset, "fresh"),
        };
        let cursor = SessionCursor {
            user: self.identity.user_id,
            session: self.id.clone(),
            channel: channel.to_owned(),
            offset: position,
        };
        svc.store.set_cursor(&cursor, svc.clock.now()).await?;
        svc.metrics.realtime.subscriptions.get_or_create(&result_labels(result)).inc();

        let generation = {
            let mut channels = self.channels.lock();
            // Checked again: other subscribes may have filled the room while this one waited.
            self.check_subscription_room(&channels, channel)?;
            let generation = channels.get(channel).map_or(0, |c| c.generation + 1);
            channels.insert(
                channel.to_owned(),
                ChannelState {
                    generation,
                    live: false,
                    sent: position,
                    acked: position,
                    waiting: Vec::new(),
                    overflowed: false,
                    pending: VecDeque::new(),
                    redeliver_until: if result == "recovered" { head.offset } else { position },
                },
            );
            generation
        };
        self.gw.hub.add(channel, self);
        if self.closed.load(Ordering::Acquire) {
            // The connection ended while this subscribe waited on the store.
            self.gw.hub.remove(channel, self.key);
            return Err(ApiError::new(ErrorCode::Unavailable, "the session has ended"));
        }
        let answer = Subscribed {
            channel: channel.to_owned(),
            epoch: head.epoch,
            offset: head.offset,
            recovered: result == "recovered",
        };
        Ok((answer, generation))
    }

    /// Starts sending what the stream holds after the subscription's position, then goes live.
    pub fn start_replay(self: &Arc<Self>, channel: String, generation: u64) {
        self.spawn_replay(channel, generation, Replay::Resume);
    }

    fn spawn_replay(self: &Arc<Self>, channel: String, generation: u64, why: Replay) {
        let session = self.clone();
        tokio::spawn(async move { session.replay(&channel, generation, why).await });
    }

    /// Sends the stream after the channel's position at the client's pace (waiting for room in
    /// its buffer, not disconnecting it), then what came live meanwhile, then turns live.
    async fn replay(self: Arc<Self>, channel: &str, generation: u64, why: Replay) {
        let svc = &self.gw.herald.services;
        let Some(redeliver_until) = self.with_channel(channel, generation, |c| c.redeliver_until) else { return };
        loop {
            let Some(from) = self.with_channel(channel, generation, |c| c.sent) else { return };
            let page = match svc.store.read_stream(channel, from, REPLAY_PAGE).await {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(channel, error = %err, "could not read a channel's stream; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let full = page.len() == REPLAY_PAGE as usize;
            if page.first().is_some_and(|e| e.channel_offset > from + 1) {
                // Pruned since the subscription was answered: the gap is gone after all.
                self.close_with("stream_moved", "the channel's stream no longer holds the gap; subscribe again");
                return;
            }
            let mut next = from;
            for event in page.iter().filter(|e| e.channel_offset > from) {
                if event.channel_offset != next + 1 {
                    break;
                }
                let body = Arc::new(EventBody::from(event));
                if !self.send_paced(channel, generation, body.clone()).await {
                    return;
                }
                next = event.channel_offset;
                if why == Replay::Resume && event.channel_offset <= redeliver_until {
                    svc.metrics.realtime.redeliveries.inc();
                }
                if self.left_after(channel, &body).await {
                    return;
                }
            }
            if full {
                continue;
            }
            // Caught up with the store: what came live meanwhile follows, unless it left a gap.
            let waiting = {
                let mut channels = self.channels.lock();
                let Some(state) = channels.get_mut(channel).filter(|c| c.generation == generation) else { return };
                if std::mem::take(&mut state.overflowed) {
                    state.waiting.clear();
                    continue;
                }
                if state.waiting.is_empty() {
                    state.live = true;
                    return;
                }
                std::mem::take(&mut state.waiting)
            };
            let mut waiting = waiting;
            waiting.sort_by_key(|e| e.offset);
            for event in waiting {
                let Some(sent) = self.with_channel(channel, generation, |c| c.sent) else { return };
                if event.offset <= sent {
                    continue;
                }
                // A gap: the store has the missing ones; read it again.
                if event.offset != sent + 1 || !self.send_paced(channel, generation, event.clone()).await {
                    break;
                }
                if self.left_after(channel, &event).await {
                    return;
                }
            }
        }
    }

    /// Sends one event of a replaying channel, waiting for room; false when the session or the
    /// subscription is gone (or the client stayed stuck too long and was disconnected).
    async fn send_paced(self: &Arc<Self>, channel: &str, generation: u64, event: Arc<EventBody>) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        match tokio::time::timeout(PACED_WAIT, self.outlet.send_paced(self, &event)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return false,
            Err(_) => {
                self.slow();
                return false;
            }
        }
        let mut channels = self.channels.lock();
        let Some(state) = channels.get_mut(channel).filter(|c| c.generation == generation) else { return false };
        self.sent(state, &event);
        true
    }

    /// A live event of a channel this session is subscribed to.
    pub(super) fn on_live(self: &Arc<Self>, event: &Arc<EventBody>) {
        let mut channels = self.channels.lock();
        let Some(state) = channels.get_mut(&event.channel) else { return };
        if !state.live {
            if state.waiting.len() >= self.gw.options.session_buffer {
                state.overflowed = true;
                state.waiting.clear();
            } else {
                state.waiting.push(event.clone());
            }
            return;
        }
        if event.offset <= state.sent {
            return;
        }
        if event.offset == state.sent + 1 {
            if self.send(state, event) && self.ends_membership(event) {
                drop(channels);
                self.leave_removed(&event.channel, event.offset);
            }
            return;
        }
        // A gap: something was missed on the way; the store has it.
        state.live = false;
        state.waiting.push(event.clone());
        let generation = state.generation;
        drop(channels);
        self.spawn_replay(event.channel.clone(), generation, Replay::Gap);
    }

    /// Turns every live channel back to replaying, to pick up what the live path may have missed.
    pub(super) fn resync(self: &Arc<Self>) {
        let mut restart = Vec::new();
        {
            let mut channels = self.channels.lock();
            for (name, state) in channels.iter_mut().filter(|(_, c)| c.live) {
                state.live = false;
                restart.push((name.clone(), state.generation));
            }
        }
        for (channel, generation) in restart {
            self.spawn_replay(channel, generation, Replay::Gap);
        }
    }

    /// The client acknowledged every event of `channel` up to `offset`.
    pub fn ack(&self, channel: &str, offset: i64) {
        let now = self.gw.herald.services.clock.now();
        let metrics = &self.gw.herald.services.metrics.realtime;
        let advanced = {
            let mut channels = self.channels.lock();
            let Some(state) = channels.get_mut(channel) else { return };
            // An ack beyond what was sent acknowledges only what was sent.
            let offset = offset.min(state.sent);
            if offset <= state.acked {
                return;
            }
            state.acked = offset;
            while let Some(&(sent, ts)) = state.pending.front() {
                if sent > offset {
                    break;
                }
                state.pending.pop_front();
                metrics.ack_seconds.observe((now - ts).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6);
            }
            offset
        };
        metrics.acks.inc();
        self.gw.acks.push(SessionCursor {
            user: self.identity.user_id,
            session: self.id.clone(),
            channel: channel.to_owned(),
            offset: advanced,
        });
    }

    pub fn unsubscribe(self: &Arc<Self>, channel: &str) -> bool {
        let removed = self.channels.lock().remove(channel).is_some();
        self.gw.hub.remove(channel, self.key);
        removed
    }

    /// Runs a command of the registry as this session's user; the answer is `{ok, output | error}`.
    pub async fn call(&self, command: &str, input: Value) -> Value {
        let cx = Ctx { caller: Caller::User(self.identity), peer: self.peer };
        match self.gw.herald.call(cx, command, input).await {
            Ok(output) => json!({"ok": true, "output": output}),
            Err(err) => {
                if err.is_server_error() {
                    tracing::error!(command, error = %err.cause_chain(), "socket command failed");
                }
                error_body(&err)
            }
        }
    }

    /// Queues one live event; on a full buffer the session is closed as a slow consumer.
    fn send(self: &Arc<Self>, state: &mut ChannelState, event: &Arc<EventBody>) -> bool {
        match self.outlet.send_event(self, event) {
            Ok(()) => {
                self.sent(state, event);
                true
            }
            Err(SendFailure::Full) => {
                self.slow();
                false
            }
            Err(SendFailure::Closed) => false,
        }
    }

    fn sent(&self, state: &mut ChannelState, event: &EventBody) {
        state.sent = event.offset;
        if state.pending.len() == MAX_PENDING_TIMES {
            state.pending.pop_front();
        }
        state.pending.push_back((event.offset, event.ts));
        self.gw.herald.services.metrics.realtime.events_sent.inc();
    }

    fn slow(&self) {
        self.gw.herald.services.metrics.realtime.slow_disconnects.inc();
        tracing::info!(user = %self.identity.user_id, session = %self.id, "disconnecting a slow session");
        self.close_with("slow_consumer", "the session fell too far behind; reconnect to catch up");
    }

    fn with_channel<T>(&self, channel: &str, generation: u64, f: impl FnOnce(&ChannelState) -> T) -> Option<T> {
        let channels = self.channels.lock();
        channels.get(channel).filter(|c| c.generation == generation).map(f)
    }

    /// Whether `event` removes this session's user from the room whose channel carries it: the
    /// last event of that channel they receive.
    fn ends_membership(&self, event: &EventBody) -> bool {
        event.kind == crate::commands::rooms::REMOVED
            && matches!(StreamName::parse(&event.channel), Ok(StreamName::Room(_)))
            && event.data["user"].as_str().and_then(|u| u.parse::<Uuid>().ok()) == Some(self.identity.user_id.0)
    }

    /// After a replay sent `event` on `channel`: when it removed this session's user and they are
    /// not a member now (a replay may meet an old removal of a member added again since), leaves
    /// the channel and answers true.
    async fn left_after(self: &Arc<Self>, channel: &str, event: &EventBody) -> bool {
        if !self.ends_membership(event) {
            return false;
        }
        let Ok(StreamName::Room(room)) = StreamName::parse(channel) else { return false };
        let member = self.gw.herald.services.store.is_member(room, self.identity.user_id).await;
        if matches!(member, Ok(true)) {
            return false;
        }
        self.leave_removed(channel, event.offset);
        true
    }

    /// Stops reading a room's channel after the event (`offset`) that removed this session's user,
    /// and keeps the cursor there, so that being added again resumes after it.
    fn leave_removed(self: &Arc<Self>, channel: &str, offset: i64) {
        self.unsubscribe(channel);
        self.gw.acks.push(SessionCursor {
            user: self.identity.user_id,
            session: self.id.clone(),
            channel: channel.to_owned(),
            offset,
        });
    }

    /// Who may read what: a user their own stream, a room's members the room's.
    async fn authorize(&self, stream: StreamName) -> Result<(), ApiError> {
        let me = self.identity.user_id;
        match stream {
            StreamName::User(user) if user == me => Ok(()),
            StreamName::User(_) => Err(ApiError::new(ErrorCode::Forbidden, "only the user may read their own channel")),
            StreamName::Room(room) => {
                if self.gw.herald.services.store.is_member(room, me).await? {
                    Ok(())
                } else {
                    Err(ApiError::new(ErrorCode::Forbidden, "only the room's members may read its channel"))
                }
            }
        }
    }

    /// Closes the connection with a reason; the session ends.
    pub fn close_with(&self, code: &str, message: &str) {
        self.outlet.close(code, message);
    }

    /// The connection ended: leave every channel. Unacknowledged events stay pending in the
    /// cursors, for the next connection of this session.
    pub fn ended(self: &Arc<Self>) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let channels: Vec<String> = self.channels.lock().drain().map(|(name, _)| name).collect();
        for channel in channels {
            self.gw.hub.remove(&channel, self.key);
        }
        self.ended.cancel();
        self.outlet.release();
        self.gw.forget(self);
        self.gw.herald.services.metrics.realtime.sessions.dec();
    }
}

fn result_labels(result: &str) -> crate::metrics::SubscribeLabels {
    crate::metrics::SubscribeLabels { result: result.to_owned() }
}

/// `{ok: false, error: <problem>}`.
pub fn error_body(err: &ApiError) -> Value {
    json!({"ok": false, "error": Problem::from_error(err, None, None)})
}
