//! Which local sessions listen to which stream: the fan-out from one broker subscription to
//! this process's sessions.

use parking_lot::RwLock;
use std::{collections::HashMap, sync::Arc};

use super::{outlet::EventBody, session::Session};
use crate::stream::StreamName;

/// Stream -> the sessions subscribed to it here, by connection key.
#[derive(Debug, Default)]
pub(super) struct Hub {
    streams: RwLock<HashMap<StreamName, HashMap<u64, Arc<Session>>>>,
}

impl Hub {
    pub(super) fn add(&self, stream: StreamName, session: &Arc<Session>) {
        let mut streams = self.streams.write();
        streams.entry(stream).or_default().insert(session.key, session.clone());
    }

    pub(super) fn remove(&self, stream: StreamName, key: u64) {
        let mut streams = self.streams.write();
        if let Some(sessions) = streams.get_mut(&stream) {
            sessions.remove(&key);
            if sessions.is_empty() {
                streams.remove(&stream);
            }
        }
    }

    /// Hands a live event to every session subscribed to its stream.
    pub(super) fn dispatch(&self, event: Arc<EventBody>) {
        let sessions: Vec<Arc<Session>> = {
            let streams = self.streams.read();
            match streams.get(&event.stream) {
                Some(sessions) => sessions.values().cloned().collect(),
                None => return,
            }
        };
        for session in sessions {
            session.on_live(&event);
        }
    }

    /// Has every session check the store for events the live path may have missed.
    pub(super) fn resync_all(&self) {
        let sessions: HashMap<u64, Arc<Session>> = {
            let streams = self.streams.read();
            streams.values().flat_map(|s| s.iter().map(|(k, s)| (*k, s.clone()))).collect()
        };
        for session in sessions.values() {
            session.resync();
        }
    }
}
