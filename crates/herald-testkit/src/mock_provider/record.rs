//! What the mock has seen: every request by message id, the accepted messages, and totals by answer.

use std::collections::{BTreeMap, HashMap};

use super::server::SendBody;

/// A message the mock answered 200 for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The message id (path and body agree).
    pub id: u64,
    /// The phone number of the first accepted request with this id.
    pub phone: u64,
    /// The text of the first accepted request with this id.
    pub text: String,
    /// How many requests with this id were answered 200 (more than 1 means duplicates were sent).
    pub times: u32,
}

/// Totals since the mock started (or since [`MockProvider::reset_counts`](super::MockProvider::reset_counts)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every request received, valid or not, answered or not.
    pub requests: u64,
    /// Answers sent, by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    /// Connections closed without an answer (outage mode `Close` or a scripted `Reply::Close`).
    pub closed: u64,
    /// Requests the client gave up on before the answer was ready (its timeout, or it disconnected).
    pub abandoned: u64,
    /// Distinct message ids received, taken from the path of any request whose path id is a number.
    pub distinct_received: usize,
    /// Requests answered 200, duplicates included.
    pub accepted: u64,
    /// Distinct message ids answered 200 at least once.
    pub distinct_accepted: usize,
    /// Accepted requests whose phone or text differ from the first accepted request with the same id:
    /// a retry that is not the same message, which a provider's de-duplication would hide.
    pub inconsistent_retries: u64,
}

impl Stats {
    /// How many answers had this status.
    pub fn status(&self, status: u16) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }
}

/// What waiters watch: the two numbers they can wait on.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Progress {
    pub(super) requests: u64,
    pub(super) distinct_accepted: usize,
}

/// The counters, behind the mock's record lock.
#[derive(Debug, Default)]
pub(super) struct Record {
    requests: u64,
    received: HashMap<u64, u32>,
    accepted: HashMap<u64, Accepted>,
    by_status: BTreeMap<u16, u64>,
    closed: u64,
    abandoned: u64,
    accepted_total: u64,
    inconsistent_retries: u64,
    arrivals: Vec<std::time::Instant>,
}

impl Record {
    pub(super) fn receive(&mut self, id: Option<u64>) {
        self.requests += 1;
        self.arrivals.push(std::time::Instant::now());
        if let Some(id) = id {
            *self.received.entry(id).or_default() += 1;
        }
    }

    /// Counts one answer; `accepted` is the message when the answer is a 200 to a valid request.
    pub(super) fn answer(&mut self, status: u16, accepted: Option<&SendBody>) {
        *self.by_status.entry(status).or_default() += 1;
        let Some(message) = accepted else { return };
        self.accepted_total += 1;
        let entry = self.accepted.entry(message.id).or_insert_with(|| Accepted {
            id: message.id,
            phone: message.phone,
            text: message.text.clone(),
            times: 0,
        });
        entry.times += 1;
        if entry.phone != message.phone || entry.text != message.text {
            self.inconsistent_retries += 1;
        }
    }

    pub(super) fn close(&mut self) {
        self.closed += 1;
    }

    pub(super) fn abandon(&mut self) {
        self.abandoned += 1;
    }

    pub(super) fn progress(&self) -> Progress {
        Progress { requests: self.requests, distinct_accepted: self.accepted.len() }
    }

    pub(super) fn arrivals(&self) -> Vec<std::time::Instant> {
        self.arrivals.clone()
    }

    pub(super) fn received(&self, id: u64) -> u32 {
        self.received.get(&id).copied().unwrap_or(0)
    }

    pub(super) fn accepted(&self, id: u64) -> Option<Accepted> {
        self.accepted.get(&id).cloned()
    }

    pub(super) fn accepted_messages(&self) -> Vec<Accepted> {
        let mut all: Vec<Accepted> = self.accepted.values().cloned().collect();
        all.sort_unstable_by_key(|a| a.id);
        all
    }

    pub(super) fn accepted_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.accepted.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub(super) fn stats(&self) -> Stats {
        Stats {
            requests: self.requests,
            by_status: self.by_status.clone(),
            closed: self.closed,
            abandoned: self.abandoned,
            distinct_received: self.received.len(),
            accepted: self.accepted_total,
            distinct_accepted: self.accepted.len(),
            inconsistent_retries: self.inconsistent_retries,
        }
    }
}
