//! Herald's background work. Each worker is a thin loop around a `tick()` that does one pass and
//! reports what it did, so tests drive it one step at a time.

pub mod calendar;
pub mod channels;
pub mod collector;
pub mod mailings;
pub mod net;
pub mod relay;
pub mod scheduler;
pub mod sender;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `tick` every `interval` until `shutdown`, starting with one pass at once.
pub async fn every<F, Fut>(interval: Duration, shutdown: CancellationToken, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = timer.tick() => tick().await,
        }
    }
}
