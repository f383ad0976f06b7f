//! The host's replay guard for sealed forwarded requests: a request is run only when its
//! timestamp is within the replay window of the host's clock (either way, for clock skew) and its
//! id has not been seen while it could still be accepted.
//!
//! An id is remembered until its timestamp leaves the window (`timestamp + window`): after that
//! the window check alone refuses the message, so forgetting it is safe. At most `capacity` ids are
//! remembered; when that many are still inside the window, a new request is **refused** (the cache
//! never forgets a live id to make room), and the caller is answered `unavailable`. Only requests
//! that opened with the key reach the guard, so only a key holder can fill it.

use std::collections::{BTreeSet, HashSet};

use parking_lot::Mutex;

use super::seal::RequestId;

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its timestamp is further than the window from now, in the past or the future.
    Stale,
    /// Its id was seen before.
    Replayed,
    /// Every slot holds an id still inside the window.
    Full,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Self::Stale => "stale",
            Self::Replayed => "replayed",
            Self::Full => "replay_cache_full",
        }
    }
}

/// The ids seen, with the time each may be forgotten.
pub struct ReplayGuard {
    window_ms: i64,
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    ids: HashSet<RequestId>,
    /// `(forget at, id)`, earliest first.
    by_expiry: BTreeSet<(i64, RequestId)>,
}

impl ReplayGuard {
    pub fn new(window: std::time::Duration, capacity: usize) -> Self {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 4);
        Self { window_ms, capacity: capacity.max(1), seen: Mutex::default() }
    }

    /// Lets request `id` stamped `timestamp_ms` through once, at `now_ms` (unix milliseconds).
    pub fn admit(&self, id: RequestId, timestamp_ms: i64, now_ms: i64) -> Result<(), Refused> {
        if now_ms.abs_diff(timestamp_ms) > self.window_ms.unsigned_abs() {
            return Err(Refused::Stale);
        }
        let mut seen = self.seen.lock();
        while let Some(&(forget_at, old)) = seen.by_expiry.first()
            && forget_at < now_ms
        {
            seen.by_expiry.pop_first();
            seen.ids.remove(&old);
        }
        if seen.ids.contains(&id) {
            return Err(Refused::Replayed);
        }
        if seen.ids.len() >= self.capacity {
            return Err(Refused::Full);
        }
        seen.ids.insert(id);
        seen.by_expiry.insert((timestamp_ms.saturating_add(self.window_ms), id));
        Ok(())
    }

    /// How many ids are remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.lock().ids.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const NOW: i64 = 1_790_000_000_000;

    #[test]
    fn an_id_passes_once_within_the_window_either_way() {
        let guard = ReplayGuard::new(Duration::from_secs(30), 100);
        assert_eq!(guard.admit([1; 16], NOW, NOW), Ok(()));
        assert_eq!(guard.admit([1; 16], NOW, NOW + 1), Err(Refused::Replayed));
        assert_eq!(guard.admit([2; 16], NOW - 30_000, NOW), Ok(()), "30 s behind");
        assert_eq!(guard.admit([3; 16], NOW + 30_000, NOW), Ok(()), "30 s ahead");
        assert_eq!(guard.admit([4; 16], NOW - 30_001, NOW), Err(Refused::Stale));
        assert_eq!(guard.admit([5; 16], NOW + 30_001, NOW), Err(Refused::Stale));
        // Still refused as a replay until its timestamp leaves the window, stale after.
        assert_eq!(guard.admit([1; 16], NOW, NOW + 30_000), Err(Refused::Replayed));
        assert_eq!(guard.admit([1; 16], NOW, NOW + 30_001), Err(Refused::Stale));
    }

    #[test]
    fn a_full_cache_refuses_until_its_ids_leave_the_window() {
        let guard = ReplayGuard::new(Duration::from_secs(1), 3);
        for n in 0..3 {
            assert_eq!(guard.admit([n; 16], NOW + i64::from(n), NOW), Ok(()));
        }
        assert_eq!(guard.admit([9; 16], NOW, NOW), Err(Refused::Full), "no live id is forgotten");
        assert_eq!(guard.admit([0; 16], NOW, NOW), Err(Refused::Replayed), "and every one is still known");
        // The first id's timestamp leaves the window: its slot is free again, the others kept.
        assert_eq!(guard.admit([9; 16], NOW + 1_000, NOW + 1_001), Ok(()));
        assert_eq!(guard.len(), 3);
        assert_eq!(guard.admit([2; 16], NOW + 2, NOW + 1_001), Err(Refused::Replayed));
        assert_eq!(guard.admit([8; 16], NOW + 1_001, NOW + 1_001), Err(Refused::Full));
    }
}
