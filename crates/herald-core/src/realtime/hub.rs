//! Which local sessions listen to which channel: the fan-out from one broker subscription to
//! this process's sessions.

use parking_lot::RwLock;
use std::{collections::HashMap, sync::Arc};

use super::{outlet::EventBody, session::Session};

/// Channel name -> the sessions subscribed to it here, by connection key.
#[derive(Debug, Default)]
pub(super) struct Hub {
    channels: RwLock<HashMap<String, HashMap<u64, Arc<Session>>>>,
}

impl Hub {
    pub(super) fn add(&self, channel: &str, session: &Arc<Session>) {
        let mut channels = self.channels.write();
        channels.entry(channel.to_owned()).or_default().insert(session.key, session.clone());
    }

    pub(super) fn remove(&self, channel: &str, key: u64) {
        let mut channels = self.channels.write();
        if let Some(sessions) = channels.get_mut(channel) {
            sessions.remove(&key);
            if sessions.is_empty() {
                channels.remove(channel);
            }
        }
    }

    /// Hands a live event to every session subscribed to its channel.
    pub(super) fn dispatch(&self, event: Arc<EventBody>) {
        let sessions: Vec<Arc<Session>> = {
            let channels = self.channels.read();
            match channels.get(&event.channel) {
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
            let channels = self.channels.read();
            channels.values().flat_map(|s| s.iter().map(|(k, s)| (*k, s.clone()))).collect()
        };
        for session in sessions.values() {
            session.resync();
        }
    }
}
