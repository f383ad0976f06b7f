//! The real-time session engine, free of any transport: sessions, their subscriptions to streams,
//! replay, authorization, cursor batching and expiry, fed by one broker subscription per process
//! (see `docs/realtime.md`). A transport (Socket.io and `/ws` in `herald-http`) authenticates a
//! handshake here, opens a session with its [`Outlet`] and hands the session its client's
//! requests; everything else happens here.
//!
//! A change reaches a session twice over: live, from the broker's `events` topic, and from the
//! stream in the store whenever the live path may have missed something (a resubscribe,
//! a gap in offsets, a broker reconnect). The store is the truth; the broker only makes it fast.

mod acks;
mod hub;
mod outlet;
mod replay;
mod session;

use parking_lot::Mutex;
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Weak, atomic::AtomicU64},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use crate::{
    broker::BrokerError,
    error::{ApiError, ErrorCode},
    health::ReadyFlag,
    herald::Herald,
    identity::Bearer,
    identity::Identity,
    net::Networks,
    stream::SessionId,
    trace,
    user::UserId,
    wire::{EVENTS_TOPIC, EventEnvelope},
};

pub use outlet::{EventBody, Outlet, SendFailure};
pub use session::{Session, Subscribed, error_body};

/// How the engine behaves; from the configuration.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Events a session may have queued for sending; beyond it the session is disconnected.
    pub session_buffer: usize,
    /// A session's cursors are forgotten after this long without an ack or a subscribe.
    pub session_idle_timeout: Duration,
    /// How long a new connection has to authenticate.
    pub handshake_timeout: Duration,
    /// Most sessions one user may have open on this gateway.
    pub sessions_per_user: usize,
    /// Most connections this gateway holds at once, sessions and handshakes in progress alike.
    pub max_sessions: usize,
    /// Most streams one session may subscribe to.
    pub subscriptions_per_session: usize,
    /// Most requests (subscribe, call) one session may have unanswered.
    pub calls_in_flight: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Networks,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            session_buffer: 1024,
            session_idle_timeout: Duration::from_secs(24 * 3600),
            handshake_timeout: Duration::from_secs(10),
            sessions_per_user: 100,
            max_sessions: 50_000,
            subscriptions_per_session: 256,
            calls_in_flight: 16,
            trusted_proxies: Networks::default(),
        }
    }
}

/// A handshake that proved who connects, under which session id, until when.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub identity: Identity,
    pub session: SessionId,
    pub expires: chrono::DateTime<chrono::Utc>,
    /// The client's address, for the password-check limits of the commands it calls.
    pub peer: Option<IpAddr>,
    /// The token it was opened with, which the commands it calls carry when forwarded.
    pub bearer: Bearer,
}

/// The session engine of one process: its sessions, their streams, and the writer of their acks.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    herald: Arc<Herald>,
    options: EngineOptions,
    hub: hub::Hub,
    acks: acks::AckQueue,
    /// Open sessions by user and session id: a second connection of one session replaces the
    /// first. A session leaves when it ends, and a user with none leaves too.
    open: Mutex<HashMap<UserId, HashMap<SessionId, Weak<Session>>>>,
    /// Numbers connections, so one of two connections of a session id can be told apart.
    next_key: AtomicU64,
    /// Set while the live-event subscription is up: without it sessions would get only replays.
    ready: ReadyFlag,
    /// One permit per connection admitted (`max_sessions`), from before its handshake until it
    /// closes.
    admissions: Arc<tokio::sync::Semaphore>,
}

/// A connection's place among the gateway's `max_sessions`, held until it closes.
#[derive(Debug)]
pub struct Admission(#[allow(dead_code, reason = "held for its drop")] tokio::sync::OwnedSemaphorePermit);

impl Engine {
    /// An engine whose readiness (its live-event subscription is up) is told to `ready`.
    pub fn new(herald: Arc<Herald>, options: EngineOptions, ready: ReadyFlag) -> Self {
        let acks = acks::AckQueue::new(herald.services.store.clone(), herald.services.metrics.clone());
        let admissions = Arc::new(tokio::sync::Semaphore::new(options.max_sessions.max(1)));
        Self {
            inner: Arc::new(Inner {
                herald,
                options,
                hub: hub::Hub::default(),
                acks,
                open: Mutex::default(),
                next_key: AtomicU64::new(1),
                admissions,
                ready,
            }),
        }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    /// Admits a new connection, before its handshake: refused with `unavailable` when the
    /// gateway holds `max_sessions` connections (a load balancer can send the client elsewhere).
    pub fn admit(&self) -> Result<Admission, ApiError> {
        self.inner.admissions.clone().try_acquire_owned().map(Admission).map_err(|_| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "this gateway holds {} connections, the most it takes; try again later or another gateway",
                    self.inner.options.max_sessions
                ),
            )
        })
    }

    pub fn herald(&self) -> &Arc<Herald> {
        &self.inner.herald
    }

    /// Runs the live fan-out (one broker subscription for every session of this process), the ack
    /// writer and the cursor expiry until `shutdown`; then closes every session and writes the
    /// acks still queued.
    pub async fn run(&self, shutdown: CancellationToken) {
        let fanout = tokio::spawn(self.clone().fan_out(shutdown.clone()));
        let expiry = tokio::spawn(self.clone().expire_cursors(shutdown.clone()));
        let closer = {
            let (engine, shutdown) = (self.clone(), shutdown.clone());
            tokio::spawn(async move {
                shutdown.cancelled().await;
                engine.close_all("shutdown", "the server is stopping; reconnect to resume");
            })
        };
        self.inner.acks.run(self.inner.herald.services.clock.clone(), shutdown.clone()).await;
        let _ = closer.await;
        let _ = fanout.await;
        let _ = expiry.await;
    }

    /// Receives every live event and hands it to the sessions subscribed to its stream. After a
    /// broker error, or an interruption of the subscription, every session checks the store for
    /// what it missed (after an error, once subscribed again).
    async fn fan_out(self, shutdown: CancellationToken) {
        let broker = self.inner.herald.services.broker.clone();
        let metrics = self.inner.herald.services.metrics.clone();
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let subscribed = tokio::select! {
                () = shutdown.cancelled() => return,
                s = broker.subscribe(EVENTS_TOPIC) => s,
            };
            let mut subscription = match subscribed {
                Ok(s) => s,
                Err(err) => {
                    tracing::warn!(error = %err, "gateway could not subscribe to live events; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            // Whatever was broadcast while unsubscribed (before the first subscription too: a
            // session may subscribe while this one is being set up) is in the store.
            self.inner.hub.resync_all();
            self.inner.ready.set(true);
            backoff = Duration::from_millis(100);
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    n = subscription.next() => n,
                };
                match next {
                    Ok(message) => match EventEnvelope::decode(&message.payload) {
                        Ok(envelope) => {
                            metrics.realtime.fanout_received.inc();
                            // A child of the relay's publish: the event's trace ends here.
                            let span = trace::child_of(message.traceparent(), || {
                                tracing::info_span!(
                                    target: trace::TARGET,
                                    "gateway.fanout",
                                    otel.kind = "consumer",
                                    event.id = %message.id,
                                )
                            });
                            let body = Arc::new(EventBody::from(envelope));
                            span.in_scope(|| self.inner.hub.dispatch(body.clone()));
                            if let Some(user) = gone_account(&body) {
                                self.close_user(user);
                            }
                        }
                        Err(err) => {
                            tracing::warn!(id = %message.id, error = %err, "dropping an undecodable live event")
                        }
                    },
                    Err(BrokerError::Interrupted) => {
                        // Cut off and back: what was broadcast in between is in the store.
                        tracing::info!("live event subscription interrupted; sessions check the store");
                        self.inner.hub.resync_all();
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "live event subscription ended; subscribing again");
                        self.inner.ready.set(false);
                        break;
                    }
                }
            }
        }
    }

    async fn expire_cursors(self, shutdown: CancellationToken) {
        let idle = self.inner.options.session_idle_timeout;
        let every = (idle / 10).clamp(Duration::from_secs(1), Duration::from_secs(300));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let svc = &self.inner.herald.services;
            let Ok(idle) = chrono::Duration::from_std(idle) else { return };
            let before = svc.clock.now() - idle;
            match svc.store.expire_cursors(before, 10_000).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(expired = n, "forgot idle session cursors"),
                Err(err) => tracing::warn!(error = %err, "could not expire idle session cursors"),
            }
        }
    }

    /// Closes every open session of `user` on this process (their account was deleted).
    fn close_user(&self, user: UserId) {
        let open: Vec<Arc<Session>> =
            self.inner.open.lock().get(&user).into_iter().flat_map(|s| s.values()).filter_map(Weak::upgrade).collect();
        for session in open {
            session.close_with(ErrorCode::AccountGone.as_str(), "this account was deleted");
            session.ended();
        }
    }

    /// Closes every open session of this process.
    fn close_all(&self, code: &str, message: &str) {
        let open: Vec<Arc<Session>> =
            self.inner.open.lock().values().flat_map(|sessions| sessions.values().filter_map(Weak::upgrade)).collect();
        for session in open {
            session.close_with(code, message);
        }
    }

    /// Authenticates a handshake: the bearer token (whose account must still exist; the session
    /// gets its current role) and the client's session id; refuses a user who has as many
    /// sessions open here as allowed (unless this one resumes one of them).
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        session: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Handshake, ApiError> {
        let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
            ApiError::new(ErrorCode::Unauthorized, "the handshake carries no token (`auth: {token, session}`)")
        })?;
        let svc = &self.inner.herald.services;
        let (identity, expires) = svc.tokens.verify_until(token, svc.clock.now())?;
        let identity = crate::caller::current_identity(svc.store.as_ref(), identity).await?;
        let session = SessionId::parse(session.unwrap_or_default())?;
        let open = self.inner.open.lock();
        self.check_session_room(open.get(&identity.user_id), &session)?;
        Ok(Handshake { identity, session, expires, peer, bearer: Bearer(token.into()) })
    }

    /// Refuses a new session id for a user whose open sessions are at the limit.
    fn check_session_room(
        &self,
        open: Option<&HashMap<SessionId, Weak<Session>>>,
        id: &SessionId,
    ) -> Result<(), ApiError> {
        let limit = self.inner.options.sessions_per_user;
        match open {
            Some(sessions)
                if !sessions.contains_key(id)
                    && sessions.values().filter(|s| s.strong_count() > 0).count() >= limit =>
            {
                Err(ApiError::new(
                    ErrorCode::TooManySessions,
                    format!(
                        "this user has {limit} sessions open, the most allowed; close one (or resume one by its id)"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Opens a session on `outlet`, replacing (and closing) an open one with the same user and id.
    /// The session ends when its token expires; the client reconnects with a fresh one and resumes.
    pub fn open_session(
        &self,
        handshake: Handshake,
        outlet: Box<dyn Outlet>,
        admission: Admission,
    ) -> Result<Arc<Session>, ApiError> {
        let Handshake { identity, session: id, expires, peer, bearer } = handshake;
        let session = Session::new(self.inner.clone(), identity, id.clone(), peer, bearer, outlet, admission);
        let replaced = {
            let mut open = self.inner.open.lock();
            self.check_session_room(open.get(&identity.user_id), &id)?;
            let sessions = open.entry(identity.user_id).or_default();
            // A session whose transport vanished without a word is gone: its entry goes too.
            sessions.retain(|_, s| s.strong_count() > 0);
            sessions.insert(id, Arc::downgrade(&session))
        };
        if let Some(old) = replaced.and_then(|w| w.upgrade()) {
            old.close_with("replaced", "another connection resumed this session");
        }
        let left = (expires - self.inner.herald.services.clock.now()).to_std().unwrap_or_default();
        let (watched, ended) = (Arc::downgrade(&session), session.ended_token());
        tokio::spawn(async move {
            // Gone with the session: a closed session keeps no timer until its token's expiry.
            tokio::select! {
                () = ended.cancelled() => {}
                () = tokio::time::sleep(left) => {
                    if let Some(session) = watched.upgrade() {
                        session.close_with("token_expired", "the access token expired; reconnect with a fresh one to resume");
                        // Ends it here even if its transport never reports the close.
                        session.ended();
                    }
                }
            }
        });
        self.inner.herald.services.metrics.realtime.sessions.inc();
        Ok(session)
    }
}

impl Inner {
    /// Forgets an ended session, unless another connection has taken its id since.
    fn forget(&self, session: &Session) {
        let mut open = self.open.lock();
        let user = session.identity.user_id;
        let Some(sessions) = open.get_mut(&user) else { return };
        let ours = sessions.get(&session.id).is_some_and(|w| w.upgrade().is_none_or(|s| s.key == session.key));
        if ours {
            sessions.remove(&session.id);
        }
        if sessions.is_empty() {
            open.remove(&user);
        }
    }
}

/// The account an `account.gone` event on a user's own stream names (see [`crate::accounts`]).
fn gone_account(event: &EventBody) -> Option<UserId> {
    if event.kind != crate::accounts::ACCOUNT_GONE_EVENT {
        return None;
    }
    match event.stream {
        crate::stream::StreamName::User(user) => Some(user),
        _ => None,
    }
}
