//! The mock's programmable behaviour (latency, fault rates, outages, scripted replies) and the plan it
//! draws for each request from it.

use std::{collections::VecDeque, time::Duration};

use bytes::Bytes;
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::time::Instant;

/// The seed a fresh mock starts with, so that two runs of one test draw the same faults.
pub const DEFAULT_SEED: u64 = 0x4845_5241_4c44; // "HERALD" in ASCII

/// How the mock treats requests during an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutageMode {
    /// Every request answers 503 Service Unavailable (the default).
    #[default]
    Unavailable,
    /// The connection is closed without an answer, as when the gateway's process dies mid-request.
    Close,
    /// The request is held this long and then answered 503, so a client whose timeout is shorter sees a
    /// timeout. [`MockProvider::stop`](super::MockProvider::stop) ends the wait early.
    Hang(Duration),
}

/// A broken answer, to test how the sender reads the provider's successes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Malformed {
    /// 200 with a `text/plain` body that is not JSON (the default).
    #[default]
    NotJson,
    /// 200 with `Content-Type: application/json` and a JSON body cut in the middle.
    Truncated,
    /// 418 I'm a teapot: a status the contract never mentions.
    Teapot,
}

/// One scripted reply for one upcoming request, queued with
/// [`MockProvider::then`](super::MockProvider::then). A scripted reply wins over outages, validation
/// and fault rates; a scripted 200 counts as accepted only when the request itself was valid.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Answer exactly this. A status outside `100..=999` is answered as 500; header names or values
    /// that HTTP does not allow are left out.
    Answer {
        /// The HTTP status.
        status: u16,
        /// The body, sent as is.
        body: Bytes,
        /// Extra headers, in order.
        headers: Vec<(String, String)>,
    },
    /// A malformed answer.
    Malformed(Malformed),
    /// Close the connection without an answer.
    Close,
    /// Hold the request this long, then answer 503.
    Hang(Duration),
}

/// What one request gets, decided when it arrives.
#[derive(Debug)]
pub(super) enum Plan {
    /// The next scripted reply.
    Scripted(Reply),
    /// The outage's answer.
    Outage(OutageMode),
    /// The validation's 4xx.
    Reject,
    /// 429 with `Retry-After: <seconds>`.
    Throttle(u32),
    /// 500.
    Fail,
    /// A malformed answer.
    Malformed(Malformed),
    /// 200: sent.
    Accept,
}

#[derive(Debug, Clone, Copy)]
enum Outage {
    Off,
    On,
    Until(Instant),
}

/// The programmable state, behind the mock's control lock.
#[derive(Debug)]
pub(super) struct Control {
    latency: Duration,
    jitter: Duration,
    failure_rate: f64,
    throttle_rate: f64,
    throttle_next: u32,
    retry_after: u32,
    malformed_rate: f64,
    malformed: Malformed,
    outage: Outage,
    outage_mode: OutageMode,
    script: VecDeque<Reply>,
    rng: StdRng,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            failure_rate: 0.0,
            throttle_rate: 0.0,
            throttle_next: 0,
            retry_after: 1,
            malformed_rate: 0.0,
            malformed: Malformed::default(),
            outage: Outage::Off,
            outage_mode: OutageMode::default(),
            script: VecDeque::new(),
            rng: StdRng::seed_from_u64(DEFAULT_SEED),
        }
    }
}

/// A probability from any float: NaN and negatives become 0, anything above 1 becomes 1.
fn rate(r: f64) -> f64 {
    if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) }
}

impl Control {
    pub(super) fn set_latency(&mut self, latency: Duration, jitter: Duration) {
        self.latency = latency;
        self.jitter = jitter;
    }

    pub(super) fn set_seed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }

    pub(super) fn set_failure_rate(&mut self, r: f64) {
        self.failure_rate = rate(r);
    }

    pub(super) fn set_throttle_rate(&mut self, r: f64, retry_after_secs: u32) {
        self.throttle_rate = rate(r);
        self.retry_after = retry_after_secs;
    }

    pub(super) fn throttle_next(&mut self, n: u32, retry_after_secs: u32) {
        self.throttle_next = n;
        self.retry_after = retry_after_secs;
    }

    pub(super) fn set_malformed_rate(&mut self, r: f64, kind: Malformed) {
        self.malformed_rate = rate(r);
        self.malformed = kind;
    }

    pub(super) fn set_outage(&mut self, on: bool) {
        self.outage = if on { Outage::On } else { Outage::Off };
    }

    pub(super) fn outage_for(&mut self, d: Duration) {
        self.outage = Outage::Until(Instant::now() + d);
    }

    pub(super) fn set_outage_mode(&mut self, mode: OutageMode) {
        self.outage_mode = mode;
    }

    pub(super) fn push(&mut self, reply: Reply) {
        self.script.push_back(reply);
    }

    /// Back to a healthy provider; the random sequence goes on where it was.
    pub(super) fn heal(&mut self) {
        let rng = self.rng.clone();
        *self = Self { rng, ..Self::default() };
    }

    pub(super) fn outage_active(&self, now: Instant) -> bool {
        match self.outage {
            Outage::Off => false,
            Outage::On => true,
            Outage::Until(end) => now < end,
        }
    }

    /// The delay and the fate of one request. Every request draws exactly two numbers (jitter, then one
    /// roll), whatever its fate, so a seed gives the same sequence of faults for the same sequence of
    /// requests. The roll is split into consecutive shares: `[0, throttle)` is 429, the next
    /// `failure` is 500, the next `malformed` is a malformed answer; past 1, later shares get what is left.
    pub(super) fn plan(&mut self, valid: bool, now: Instant) -> (Duration, Plan) {
        let jitter =
            if self.jitter.is_zero() { Duration::ZERO } else { self.rng.random_range(Duration::ZERO..=self.jitter) };
        let roll: f64 = self.rng.random();
        let delay = self.latency + jitter;
        if let Some(reply) = self.script.pop_front() {
            return (delay, Plan::Scripted(reply));
        }
        if self.outage_active(now) {
            return (delay, Plan::Outage(self.outage_mode));
        }
        if !valid {
            return (delay, Plan::Reject);
        }
        if self.throttle_next > 0 {
            self.throttle_next -= 1;
            return (delay, Plan::Throttle(self.retry_after));
        }
        let plan = if roll < self.throttle_rate {
            Plan::Throttle(self.retry_after)
        } else if roll < self.throttle_rate + self.failure_rate {
            Plan::Fail
        } else if roll < self.throttle_rate + self.failure_rate + self.malformed_rate {
            Plan::Malformed(self.malformed)
        } else {
            Plan::Accept
        };
        (delay, plan)
    }
}
