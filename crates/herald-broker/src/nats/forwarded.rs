//! Forwarded commands between Herald processes, on subjects of their own: `<namespace>.fwd.<command>`
//! (the public NATS command API stays on `<namespace>.cmd.<command>`). [`ForwardSealing`] says how
//! they travel: sealed (see [`super::seal`]) when the deployment has a broker signing key, in the
//! clear otherwise. [`ForwardHost`] is the host's side: it opens a sealed request, lets it through
//! the [`ReplayGuard`] once, and seals the reply for that request; what fails is dropped without a
//! reply, logged at warn (subject and reason, never contents) and counted in
//! `herald_forward_rejected_messages_total{reason}`.

use std::{sync::Arc, time::Duration};

use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use herald_core::metrics::{Metrics, RejectionLabels};

use super::{
    replay::{Refused, ReplayGuard},
    seal::{ForwardKey, RequestId, Unopenable, Way, now_ms},
};
use crate::signed::ShortSigningKey;

/// How long a forwarded request's timestamp is accepted either side of the host's clock.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(30);

/// Most request ids a host remembers at once.
pub const DEFAULT_REPLAY_IDS: usize = 100_000;

/// The subject a command is forwarded on: `<namespace>.fwd.<command>`.
pub fn fwd_subject(namespace: &str, command: &str) -> String {
    format!("{namespace}.fwd.{command}")
}

/// How forwarded commands travel; the same for the forwarding processes and the hosts.
#[derive(Debug, Clone)]
pub struct ForwardSealing {
    pub(crate) key: Option<Arc<ForwardKey>>,
    pub(crate) window: Duration,
    pub(crate) replay_ids: usize,
}

impl Default for ForwardSealing {
    /// In the clear.
    fn default() -> Self {
        Self { key: None, window: DEFAULT_REPLAY_WINDOW, replay_ids: DEFAULT_REPLAY_IDS }
    }
}

impl ForwardSealing {
    /// Sealed with a key derived from `signing_key` when there is one, in the clear otherwise;
    /// a host accepts a request stamped within `window` of its clock, and remembers at most
    /// `replay_ids` request ids.
    pub fn new(signing_key: Option<&[u8]>, window: Duration, replay_ids: usize) -> Result<Self, ShortSigningKey> {
        let key = signing_key.map(ForwardKey::derive).transpose()?.map(Arc::new);
        Ok(Self { key, window, replay_ids })
    }

    /// Whether forwarded commands are sealed.
    pub fn is_sealed(&self) -> bool {
        self.key.is_some()
    }

    /// The key, for a process (or a test) that seals and opens envelopes itself.
    pub fn key(&self) -> Option<&ForwardKey> {
        self.key.as_deref()
    }
}

/// How one request is answered: in the clear, or sealed for its id.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Answering {
    Plain,
    Sealed(RequestId),
}

/// What a message on a forwarding subject turned out to be.
pub(crate) enum Inbound {
    /// A request to run: the message as its sender wrote it (headers and payload opened).
    Run(Message, Answering),
    /// A genuine request the host cannot take now (the replay cache is full of live ids).
    Busy(Answering),
}

/// The host's side: opens requests, guards against replays, seals replies.
pub(crate) struct ForwardHost {
    key: Option<Arc<ForwardKey>>,
    replay: ReplayGuard,
    metrics: Arc<Metrics>,
}

impl ForwardHost {
    pub(crate) fn new(sealing: &ForwardSealing, metrics: Arc<Metrics>) -> Self {
        for reason in ["unopenable", Refused::Stale.label(), Refused::Replayed.label(), Refused::Full.label()] {
            count(&metrics, reason, 0);
        }
        Self { key: sealing.key.clone(), replay: ReplayGuard::new(sealing.window, sealing.replay_ids), metrics }
    }

    /// The request a message on a forwarding subject carries; `None` when it is dropped.
    pub(crate) fn open(&self, mut message: Message) -> Option<Inbound> {
        let Some(key) = &self.key else { return Some(Inbound::Run(message, Answering::Plain)) };
        let subject = message.subject.as_str();
        let reply = message.reply.as_ref().map_or("", |r| r.as_str());
        let opened = match key.open(Way::Request, subject, reply, &message.payload) {
            Ok(opened) => opened,
            Err(Unopenable) => return self.drop(subject, "unopenable"),
        };
        match self.replay.admit(opened.id, opened.timestamp_ms, now_ms()) {
            Ok(()) => {}
            Err(Refused::Full) => {
                self.drop::<Inbound>(subject, Refused::Full.label());
                return Some(Inbound::Busy(Answering::Sealed(opened.id)));
            }
            Err(refused) => return self.drop(subject, refused.label()),
        }
        message.headers = Some(opened.headers);
        message.payload = opened.payload;
        Some(Inbound::Run(message, Answering::Sealed(opened.id)))
    }

    /// The headers and payload to publish to `reply_to` for an answer of `headers` and `payload`.
    pub(crate) fn reply(
        &self,
        answering: Answering,
        reply_to: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> (HeaderMap, Bytes) {
        match (answering, &self.key) {
            (Answering::Sealed(id), Some(key)) => {
                let sealed = key.seal(Way::Reply, reply_to, "", id, now_ms(), &headers, &payload);
                (HeaderMap::new(), sealed)
            }
            _ => (headers, payload),
        }
    }

    fn drop<T>(&self, subject: &str, reason: &'static str) -> Option<T> {
        tracing::warn!(subject, reason, "dropping a forwarded command request");
        count(&self.metrics, reason, 1);
        None
    }
}

/// Counts a dropped forwarded message (a request at the host, a reply at the caller).
pub(crate) fn count(metrics: &Metrics, reason: &str, by: u64) {
    metrics.forward_rejected_messages.get_or_create(&RejectionLabels { reason: reason.to_owned() }).inc_by(by);
}
