//! One session: its streams, what it sent and what its client acknowledged, independent of the
//! transport that carries it (its replay and live path are in `replay.rs`).

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

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{EventBody, Inner, Outlet, SendFailure};
use crate::{
    body::{Body, Incoming},
    command::Ctx,
    error::{ApiError, ErrorCode, Problem},
    identity::Bearer,
    identity::{Caller, Identity},
    stream::{SessionCursor, SessionId, StreamName},
    user::Role,
};

/// Send times kept per stream for the ack-latency histogram; older ones are forgotten.
const MAX_PENDING_TIMES: usize = 4096;

#[derive(Debug)]
pub(super) struct StreamState {
    /// Bumped by every subscribe, so a replay of an earlier subscription stops.
    pub(super) generation: u64,
    pub(super) live: bool,
    /// The last offset sent (or the position the subscription started from).
    pub(super) sent: i64,
    pub(super) acked: i64,
    /// Live events that came while replaying.
    pub(super) waiting: Vec<Arc<EventBody>>,
    /// Live events were dropped from `waiting` (it was full): read the store again.
    pub(super) overflowed: bool,
    /// (offset, commit time) of events sent and not yet acknowledged.
    pub(super) pending: VecDeque<(i64, DateTime<Utc>)>,
    /// The stream's head when a resuming subscription was answered: what it replays up to there
    /// was sent before or missed while away (a redelivery); what follows is new.
    pub(super) redeliver_until: i64,
}

/// One client session on one connection.
#[derive(Debug)]
pub struct Session {
    pub(super) gw: Arc<Inner>,
    pub identity: Identity,
    pub id: SessionId,
    /// Tells this connection apart from another one of the same session id.
    pub key: u64,
    /// The client's address (for the password-check limits of the commands it calls).
    peer: Option<IpAddr>,
    /// The token the session was opened with (it ends when the token expires).
    bearer: Bearer,
    pub(super) outlet: Box<dyn Outlet>,
    pub(super) streams: Mutex<HashMap<StreamName, StreamState>>,
    pub(super) closed: AtomicBool,
    /// Cancelled when the session ends: what was spawned for it stops with it.
    ended: CancellationToken,
    /// One permit per request (subscribe, call) awaiting its answer.
    requests: Arc<Semaphore>,
    /// Bodies arriving in chunks for calls in flight (so never more than `calls_in_flight`).
    uploads: Incoming,
    /// Its place among the gateway's connections, given back when the session is dropped.
    _admission: super::Admission,
}

/// The answer to `subscribe`.
#[derive(Debug, Clone, Serialize)]
pub struct Subscribed {
    #[serde(rename = "channel")]
    pub stream: StreamName,
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
        bearer: Bearer,
        outlet: Box<dyn Outlet>,
        admission: super::Admission,
    ) -> Arc<Self> {
        let key = gw.next_key.fetch_add(1, Ordering::Relaxed);
        let requests = Arc::new(Semaphore::new(gw.options.calls_in_flight.max(1)));
        Arc::new(Self {
            gw,
            identity,
            id,
            key,
            peer,
            bearer,
            outlet,
            streams: Mutex::default(),
            closed: AtomicBool::new(false),
            ended: CancellationToken::new(),
            requests,
            uploads: Incoming::default(),
            _admission: admission,
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

    /// Refuses a stream this session is not subscribed to yet when it has as many as allowed.
    fn check_subscription_room(
        &self,
        streams: &HashMap<StreamName, StreamState>,
        stream: StreamName,
    ) -> Result<(), ApiError> {
        let limit = self.gw.options.subscriptions_per_session;
        if streams.len() >= limit && !streams.contains_key(&stream) {
            return Err(ApiError::new(
                ErrorCode::TooManySubscriptions,
                format!("this session has {limit} subscriptions, the most allowed; unsubscribe from one first"),
            ));
        }
        Ok(())
    }

    /// Subscribes to `stream` from `since` (or the session's cursor), answering where it starts;
    /// then replays what follows. The answer goes out before the first replayed event because
    /// the replay starts only when `start` (the transport's reply) has been queued.
    pub async fn subscribe(
        self: &Arc<Self>,
        stream: StreamName,
        since: Option<i64>,
        epoch: Option<&str>,
    ) -> Result<(Subscribed, u64), ApiError> {
        self.check_subscription_room(&self.streams.lock(), stream)?;
        self.authorize(stream).await?;
        let svc = &self.gw.herald.services;
        let head = svc.store.stream_head(stream).await?;
        let known = match since {
            Some(since) => Some(since),
            None => svc.store.session_cursor(self.identity.user_id, &self.id, stream).await?,
        };
        let same_epoch = epoch.is_none_or(|e| e == head.epoch);
        let (position, result) = match known {
            Some(p) if same_epoch && head.holds_after(p) => (p, "recovered"),
            Some(_) => (head.offset, "lost"),
            None => (head.offset, "fresh"),
        };
        let cursor = SessionCursor { user: self.identity.user_id, session: self.id.clone(), stream, offset: position };
        svc.store.set_cursor(&cursor, svc.clock.now()).await?;
        svc.metrics.realtime.subscriptions.get_or_create(&result_labels(result)).inc();

        let generation = {
            let mut streams = self.streams.lock();
            // Checked again: other subscribes may have filled the room while this one waited.
            self.check_subscription_room(&streams, stream)?;
            let generation = streams.get(&stream).map_or(0, |c| c.generation + 1);
            streams.insert(
                stream,
                StreamState {
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
        self.gw.hub.add(stream, self);
        if self.closed.load(Ordering::Acquire) {
            // The connection ended while this subscribe waited on the store.
            self.gw.hub.remove(stream, self.key);
            return Err(ApiError::new(ErrorCode::Unavailable, "the session has ended"));
        }
        let answer = Subscribed { stream, epoch: head.epoch, offset: head.offset, recovered: result == "recovered" };
        Ok((answer, generation))
    }

    /// The client acknowledged every event of `stream` up to `offset`.
    pub fn ack(&self, stream: StreamName, offset: i64) {
        let now = self.gw.herald.services.clock.now();
        let metrics = &self.gw.herald.services.metrics.realtime;
        let advanced = {
            let mut streams = self.streams.lock();
            let Some(state) = streams.get_mut(&stream) else { return };
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
            stream,
            offset: advanced,
        });
    }

    pub fn unsubscribe(self: &Arc<Self>, stream: StreamName) -> bool {
        let removed = self.streams.lock().remove(&stream).is_some();
        self.gw.hub.remove(stream, self.key);
        removed
    }

    /// Runs a command of the registry as this session's user, with the caller's bytes for one
    /// that reads them; the answer is `{ok, output | error}` and the bytes of one that gives them.
    pub async fn call(&self, command: &str, input: Value, body: Option<Body>) -> (Value, Option<Body>) {
        let cx = Ctx { caller: Caller::User(self.identity), peer: self.peer, bearer: Some(self.bearer.clone()) };
        match self.gw.herald.call_body(cx, command, input, body).await {
            Ok(answer) => (json!({"ok": true, "output": answer.output}), answer.body),
            Err(err) => {
                if err.is_server_error() {
                    tracing::error!(command, error = %err.cause_chain(), "socket command failed");
                }
                (error_body(&err), None)
            }
        }
    }

    /// [`Session::call`] with a body that arrives in chunks under `upload` (see
    /// [`Session::upload_chunk`]) while the command reads it.
    pub async fn call_with_upload(&self, command: &str, input: Value, upload: &str) -> (Value, Option<Body>) {
        let body = match self.open_upload(upload) {
            Ok(body) => body,
            Err(err) => return (error_body(&err), None),
        };
        let answer = self.call(command, input, Some(body)).await;
        self.close_upload(upload);
        answer
    }

    /// Opens the body `upload` for a call about to run (on a transport that keeps a socket's
    /// frames in order, before it reads the next one); [`Session::close_upload`] once it ended.
    pub fn open_upload(&self, upload: &str) -> Result<Body, ApiError> {
        self.uploads.open(upload, self.ended.clone())
    }

    pub fn close_upload(&self, upload: &str) {
        self.uploads.close(upload);
    }

    /// Hands one chunk of the body `upload` to its call (see [`Incoming::push`]).
    pub async fn upload_chunk(
        &self,
        upload: &str,
        seq: Option<u64>,
        data: bytes::Bytes,
        end: bool,
    ) -> Result<(), ApiError> {
        self.uploads.push(upload, seq, data, end).await
    }

    /// Queues one live event; on a full buffer the session is closed as a slow consumer.
    pub(super) fn send(self: &Arc<Self>, state: &mut StreamState, event: &Arc<EventBody>) -> bool {
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

    pub(super) fn sent(&self, state: &mut StreamState, event: &EventBody) {
        state.sent = event.offset;
        if state.pending.len() == MAX_PENDING_TIMES {
            state.pending.pop_front();
        }
        state.pending.push_back((event.offset, event.ts));
        self.gw.herald.services.metrics.realtime.events_sent.inc();
    }

    pub(super) fn slow(&self) {
        self.gw.herald.services.metrics.realtime.slow_disconnects.inc();
        tracing::info!(user = %self.identity.user_id, session = %self.id, "disconnecting a slow session");
        self.close_with("slow_consumer", "the session fell too far behind; reconnect to catch up");
    }

    pub(super) fn with_stream<T>(
        &self,
        stream: StreamName,
        generation: u64,
        f: impl FnOnce(&StreamState) -> T,
    ) -> Option<T> {
        let streams = self.streams.lock();
        streams.get(&stream).filter(|c| c.generation == generation).map(f)
    }

    /// Who may read what: a user their own stream, a room's members the room's, administrators a
    /// mailing's. The account is read first: a deleted one may read nothing (`invalid_token`),
    /// a demoted one no mailing.
    async fn authorize(&self, stream: StreamName) -> Result<(), ApiError> {
        let svc = &self.gw.herald.services;
        let identity = crate::caller::current_identity(svc.store.as_ref(), self.identity).await?;
        let me = identity.user_id;
        match stream {
            StreamName::User(user) if user == me => Ok(()),
            StreamName::User(_) => Err(ApiError::new(ErrorCode::Forbidden, "only the user may read their own stream")),
            StreamName::Mailing(_) if identity.role == Role::Admin => Ok(()),
            StreamName::Mailing(_) => {
                Err(ApiError::new(ErrorCode::Forbidden, "only administrators may follow a mailing's progress"))
            }
            StreamName::Room(room) => {
                if self.gw.herald.services.store.is_member(room, me).await? {
                    Ok(())
                } else {
                    Err(ApiError::new(ErrorCode::Forbidden, "only the room's members may read its stream"))
                }
            }
        }
    }

    /// Closes the connection with a reason; the session ends.
    pub fn close_with(&self, code: &str, message: &str) {
        self.outlet.close(code, message);
    }

    /// The connection ended: leave every stream. Unacknowledged events stay pending in the
    /// cursors, for the next connection of this session.
    pub fn ended(self: &Arc<Self>) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let streams: Vec<StreamName> = self.streams.lock().drain().map(|(name, _)| name).collect();
        for stream in streams {
            self.gw.hub.remove(stream, self.key);
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
