//! Replay and the live path of a session. Per stream a session is either *replaying* (reading
//! the stream from its position while live events wait in a small buffer) or *live* (sending each
//! live event whose offset follows the last one sent). A live event that skips an offset turns the
//! stream back to replaying, so a lost broker message is fetched from the store instead of being
//! skipped. A `room.member_removed` event that removes the session's user is the last one of that
//! room it sends.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use uuid::Uuid;

use super::{outlet::EventBody, session::Session};
use crate::stream::{SessionCursor, StreamName};

/// Events read from the stream per store round trip while replaying.
const REPLAY_PAGE: u32 = 500;
/// How long a replay waits for room in a session's buffer before giving up on the client.
const PACED_WAIT: Duration = Duration::from_secs(30);

/// Why a session reads a stream: a subscription starting from its position (what it sends up
/// to the head it answered with is redelivered: sent before, or missed while away), or a gap in
/// the live path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    Resume,
    Gap,
}

impl Session {
    /// Starts sending what the stream holds after the subscription's position, then goes live.
    pub fn start_replay(self: &Arc<Self>, stream: StreamName, generation: u64) {
        self.spawn_replay(stream, generation, Replay::Resume);
    }

    fn spawn_replay(self: &Arc<Self>, stream: StreamName, generation: u64, why: Replay) {
        let session = self.clone();
        tokio::spawn(async move { session.replay(stream, generation, why).await });
    }

    /// Sends the stream after the subscription's position at the client's pace (waiting for room in
    /// its buffer, not disconnecting it), then what came live meanwhile, then turns live.
    async fn replay(self: Arc<Self>, stream: StreamName, generation: u64, why: Replay) {
        let svc = &self.gw.herald.services;
        let Some(redeliver_until) = self.with_stream(stream, generation, |c| c.redeliver_until) else { return };
        loop {
            let Some(from) = self.with_stream(stream, generation, |c| c.sent) else { return };
            let page = match svc.store.read_stream(stream, from, REPLAY_PAGE).await {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(%stream, error = %err, "could not read a stream; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let full = page.len() == REPLAY_PAGE as usize;
            if page.first().is_some_and(|e| e.stream_offset > from + 1) {
                // Pruned since the subscription was answered: the gap is gone after all.
                self.close_with("stream_moved", "the stream no longer holds the gap; subscribe again");
                return;
            }
            let mut next = from;
            for event in page.iter().filter(|e| e.stream_offset > from) {
                if event.stream_offset != next + 1 {
                    break;
                }
                let body = Arc::new(EventBody::from(event));
                if !self.send_paced(stream, generation, body.clone()).await {
                    return;
                }
                next = event.stream_offset;
                if why == Replay::Resume && event.stream_offset <= redeliver_until {
                    svc.metrics.realtime.redeliveries.inc();
                }
                if self.left_after(stream, &body).await {
                    return;
                }
            }
            if full {
                continue;
            }
            // Caught up with the store: what came live meanwhile follows, unless it left a gap.
            let waiting = {
                let mut streams = self.streams.lock();
                let Some(state) = streams.get_mut(&stream).filter(|c| c.generation == generation) else { return };
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
                let Some(sent) = self.with_stream(stream, generation, |c| c.sent) else { return };
                if event.offset <= sent {
                    continue;
                }
                // A gap: the store has the missing ones; read it again.
                if event.offset != sent + 1 || !self.send_paced(stream, generation, event.clone()).await {
                    break;
                }
                if self.left_after(stream, &event).await {
                    return;
                }
            }
        }
    }

    /// Sends one event of a replaying stream, waiting for room; false when the session or the
    /// subscription is gone (or the client stayed stuck too long and was disconnected).
    async fn send_paced(self: &Arc<Self>, stream: StreamName, generation: u64, event: Arc<EventBody>) -> bool {
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
        let mut streams = self.streams.lock();
        let Some(state) = streams.get_mut(&stream).filter(|c| c.generation == generation) else { return false };
        self.sent(state, &event);
        true
    }

    /// A live event of a stream this session is subscribed to.
    pub(super) fn on_live(self: &Arc<Self>, event: &Arc<EventBody>) {
        let mut streams = self.streams.lock();
        let Some(state) = streams.get_mut(&event.stream) else { return };
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
                drop(streams);
                self.leave_removed(event.stream, event.offset);
            }
            return;
        }
        // A gap: something was missed on the way; the store has it.
        state.live = false;
        state.waiting.push(event.clone());
        let generation = state.generation;
        drop(streams);
        self.spawn_replay(event.stream, generation, Replay::Gap);
    }

    /// Turns every live stream back to replaying, to pick up what the live path may have missed.
    pub(super) fn resync(self: &Arc<Self>) {
        let mut restart = Vec::new();
        {
            let mut streams = self.streams.lock();
            for (name, state) in streams.iter_mut().filter(|(_, c)| c.live) {
                state.live = false;
                restart.push((*name, state.generation));
            }
        }
        for (stream, generation) in restart {
            self.spawn_replay(stream, generation, Replay::Gap);
        }
    }

    /// Whether `event` removes this session's user from the room whose stream carries it: the
    /// last event of that stream they receive.
    fn ends_membership(&self, event: &EventBody) -> bool {
        event.kind == crate::room::MEMBER_REMOVED
            && matches!(event.stream, StreamName::Room(_))
            && event.data["user"].as_str().and_then(|u| u.parse::<Uuid>().ok()) == Some(self.identity.user_id.0)
    }

    /// After a replay sent `event` on `stream`: when it removed this session's user and they are
    /// not a member now (a replay may meet an old removal of a member added again since), leaves
    /// the stream and answers true.
    async fn left_after(self: &Arc<Self>, stream: StreamName, event: &EventBody) -> bool {
        if !self.ends_membership(event) {
            return false;
        }
        let StreamName::Room(room) = stream else { return false };
        let member = self.gw.herald.services.store.is_member(room, self.identity.user_id).await;
        if matches!(member, Ok(true)) {
            return false;
        }
        self.leave_removed(stream, event.offset);
        true
    }

    /// Stops reading a room's stream after the event (`offset`) that removed this session's user,
    /// and keeps the cursor there, so that being added again resumes after it.
    fn leave_removed(self: &Arc<Self>, stream: StreamName, offset: i64) {
        self.unsubscribe(stream);
        self.gw.acks.push(SessionCursor { user: self.identity.user_id, session: self.id.clone(), stream, offset });
    }
}
