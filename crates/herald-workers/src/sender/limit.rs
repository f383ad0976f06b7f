//! How many deliveries a sender keeps in flight: an AIMD rule on the channels' answers. While
//! every slot is busy and calls stay fast and healthy, the limit grows by a sixteenth (at least
//! one) each window; when a window's transient failures pass 5 % or its mean call time passes
//! twice the best seen, it shrinks by 30 %. Always between the configured bounds; equal bounds fix
//! it. A window is the calls made since the last decision, at least 32 of them and half the limit.

use std::time::Duration;

use parking_lot::Mutex;

/// Failures (of all calls in a window) above which the limit shrinks.
const FAILURE_SHARE: f64 = 0.05;
/// Mean call time (against the best window seen) above which the limit shrinks.
const SLOWDOWN: f64 = 2.0;
/// Calls a window needs before it decides.
const MIN_WINDOW: usize = 32;

#[derive(Debug, Default)]
struct Window {
    calls: usize,
    failures: usize,
    busy: Duration,
    /// Some job waited for a slot: the limit, not the work, bounded the window.
    saturated: bool,
}

/// The adaptive limit, shared by a sender's tasks (which record calls) and its consume loop
/// (which applies the limit).
#[derive(Debug)]
pub(super) struct Limit {
    min: usize,
    max: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: usize,
    window: Window,
    /// The lowest mean call time of a window so far; it creeps up so a provider that got slower
    /// for good is not held to its best day.
    best: Option<Duration>,
}

impl Limit {
    /// Starts at the upper bound's quarter (within the bounds).
    pub(super) fn new(min: usize, max: usize) -> Self {
        let (min, max) = (min.max(1), max.max(1));
        let (min, max) = (min.min(max), max);
        let limit = (max / 4).clamp(min, max);
        Self { min, max, state: Mutex::new(State { limit, window: Window::default(), best: None }) }
    }

    pub(super) fn max(&self) -> usize {
        self.max
    }

    pub(super) fn current(&self) -> usize {
        self.state.lock().limit
    }

    /// One channel call: how long it took and whether it failed transiently (a timeout, a lost
    /// connection, a 5xx or 429, a 4xx SMTP answer).
    pub(super) fn record(&self, took: Duration, transient_failure: bool) {
        let mut state = self.state.lock();
        state.window.calls += 1;
        state.window.busy += took;
        if transient_failure {
            state.window.failures += 1;
        }
    }

    /// A job had to wait for a slot.
    pub(super) fn saturated(&self) {
        self.state.lock().window.saturated = true;
    }

    /// Decides on the window if it is complete; the new limit, when it changed.
    pub(super) fn decide(&self) -> Option<usize> {
        let mut state = self.state.lock();
        let needed = MIN_WINDOW.max(state.limit / 2);
        if state.window.calls < needed {
            return None;
        }
        let window = std::mem::take(&mut state.window);
        let mean = window.busy / u32::try_from(window.calls).unwrap_or(u32::MAX);
        let best = match state.best {
            // Creeps up by 1 % a window towards slower times.
            Some(best) => best.min(mean).max(best.mul_f64(1.01).min(mean)),
            None => mean,
        };
        state.best = Some(best);
        let failing = window.failures as f64 > FAILURE_SHARE * window.calls as f64;
        let slow = mean.as_secs_f64() > SLOWDOWN * best.as_secs_f64() && mean > Duration::from_millis(5);
        let before = state.limit;
        if failing || slow {
            state.limit = ((state.limit as f64 * 0.7) as usize).max(self.min);
        } else if window.saturated {
            state.limit = (state.limit + (state.limit / 16).max(1)).min(self.max);
        }
        (state.limit != before).then_some(state.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(limit: &Limit, calls: usize, took_ms: u64, failures: usize, saturated: bool) -> Option<usize> {
        for i in 0..calls {
            limit.record(Duration::from_millis(took_ms), i < failures);
        }
        if saturated {
            limit.saturated();
        }
        limit.decide()
    }

    #[test]
    fn the_limit_grows_while_busy_and_healthy_and_shrinks_on_failures_or_slowness() {
        let limit = Limit::new(8, 512);
        assert_eq!(limit.current(), 128, "a quarter of the bound");
        assert_eq!(window(&limit, 10, 10, 0, true), None, "a window needs enough calls");
        assert_eq!(window(&limit, 64, 10, 0, true), Some(136), "busy and healthy: a sixteenth more");
        assert_eq!(window(&limit, 68, 10, 0, false), None, "not every slot busy: no reason to grow");
        assert_eq!(window(&limit, 68, 10, 10, true), Some(95), "15 % failing: 30 % less");
        assert_eq!(window(&limit, 48, 30, 0, true), Some(66), "three times slower than the best: 30 % less");
        for _ in 0..200 {
            window(&limit, 512, 10, 0, true);
        }
        assert_eq!(limit.current(), 512, "never above the bound");
        for _ in 0..50 {
            window(&limit, 512, 10, 512, true);
        }
        assert_eq!(limit.current(), 8, "never below the floor");
    }

    #[test]
    fn equal_bounds_fix_the_limit() {
        let fixed = Limit::new(64, 64);
        assert_eq!(fixed.current(), 64);
        assert_eq!(window(&fixed, 64, 10, 64, true), None);
        assert_eq!(window(&fixed, 64, 10, 0, true), None);
        assert_eq!(fixed.current(), 64);
    }
}
