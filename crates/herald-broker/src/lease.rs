//! A delivery's lease: settled exactly once, either by the caller (ack, nack) or by its ack
//! deadline expiring, whichever comes first. The remote adapters use it to enforce each
//! consumer's own deadline client-side.

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{task::AbortHandle, time::Instant};

/// Who settles a delivery first.
#[derive(Debug)]
pub(crate) struct Lease {
    settled: AtomicBool,
    timer: Mutex<Option<AbortHandle>>,
    /// When the deadline passes: from then on the expiry owns the delivery, even if a busy
    /// runtime has not run its timer yet (the broker may already have redelivered it).
    expires: Instant,
}

impl Lease {
    /// A lease that runs `on_expiry` unless settled within `deadline`.
    pub(crate) fn start<F>(deadline: Duration, on_expiry: F) -> Arc<Self>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let lease = Arc::new(Self {
            settled: AtomicBool::new(false),
            timer: Mutex::new(None),
            expires: Instant::now() + deadline,
        });
        let timer = tokio::spawn({
            let lease = Arc::clone(&lease);
            async move {
                tokio::time::sleep(deadline).await;
                if lease.settled.swap(true, Ordering::AcqRel) {
                    return;
                }
                on_expiry.await;
            }
        });
        if let Ok(mut slot) = lease.timer.lock() {
            *slot = Some(timer.abort_handle());
        }
        lease
    }

    /// Takes the right to settle: `true` once, for the first caller (or the expiry timer).
    pub(crate) fn settle(&self) -> bool {
        if Instant::now() >= self.expires {
            return false;
        }
        let first = !self.settled.swap(true, Ordering::AcqRel);
        if first
            && let Ok(mut slot) = self.timer.lock()
            && let Some(timer) = slot.take()
        {
            timer.abort();
        }
        first
    }
}
