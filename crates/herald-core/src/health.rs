//! Readiness of the parts of one process: each transport and subscription a process serves
//! registers a flag, sets it once it accepts work and clears it while it cannot; `/readyz` is
//! ready only when every flag is.

use parking_lot::Mutex;
use std::{collections::BTreeMap, sync::Arc};

/// The readiness flags of one process, by part name. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    parts: Arc<Mutex<BTreeMap<&'static str, bool>>>,
}

impl Readiness {
    /// Registers a part, not ready until its flag says so.
    pub fn register(&self, part: &'static str) -> ReadyFlag {
        self.parts.lock().insert(part, false);
        ReadyFlag { readiness: self.clone(), part }
    }

    /// Every part and whether it is ready.
    pub fn report(&self) -> BTreeMap<&'static str, bool> {
        self.parts.lock().clone()
    }
}

/// One part's readiness.
#[derive(Debug, Clone)]
pub struct ReadyFlag {
    readiness: Readiness,
    part: &'static str,
}

impl ReadyFlag {
    pub fn set(&self, ready: bool) {
        self.readiness.parts.lock().insert(self.part, ready);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_start_unready_and_report_their_flags() {
        let readiness = Readiness::default();
        let gateway = readiness.register("gateway");
        let nats = readiness.register("nats_commands");
        assert_eq!(readiness.report().values().filter(|r| **r).count(), 0);
        gateway.set(true);
        nats.set(true);
        nats.set(false);
        assert_eq!(readiness.report(), BTreeMap::from([("gateway", true), ("nats_commands", false)]));
    }
}
