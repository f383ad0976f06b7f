//! Slots counted per key, at most `limit` each: a key is in the map only while it holds a slot,
//! so the map never holds more entries than slots taken (uploads per user, connections per
//! client address).

use std::{collections::HashMap, hash::Hash, sync::Arc};

use parking_lot::Mutex;

/// The slots each key holds, at most `limit` each.
#[derive(Debug)]
pub struct KeyedSlots<K> {
    limit: usize,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K> Clone for KeyedSlots<K> {
    fn clone(&self) -> Self {
        Self { limit: self.limit, held: self.held.clone() }
    }
}

impl<K: Hash + Eq + Clone> KeyedSlots<K> {
    /// At most `limit` slots per key (zero refuses every one).
    pub fn new(limit: usize) -> Self {
        Self { limit, held: Arc::default() }
    }

    /// The most slots one key may hold.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// One of `key`'s slots, held until it is dropped; `None` when `key` holds `limit` already.
    pub fn try_take(&self, key: K) -> Option<Slot<K>> {
        let mut held = self.held.lock();
        let count = held.get(&key).copied().unwrap_or(0);
        if count >= self.limit {
            return None;
        }
        held.insert(key.clone(), count + 1);
        Some(Slot { held: self.held.clone(), key })
    }

    /// Keys holding a slot now.
    pub fn keys(&self) -> usize {
        self.held.lock().len()
    }
}

/// One slot of one key; dropping it gives it back (and the key leaves the map with its last).
#[derive(Debug)]
pub struct Slot<K: Hash + Eq> {
    held: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Hash + Eq> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut held = self.held.lock();
        if let Some(count) = held.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}
