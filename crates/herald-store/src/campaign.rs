//! What both adapters' campaign code shares: the batch rules of `insert_clients`, the filter and
//! first-attempt plan flattened for SQL, and the reasons stored with messages the store expires.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use herald_core::campaign::{Client, FirstAttempts, MailingFilter};
use uuid::Uuid;

use crate::columns::Texts;

/// `last_error` of a message `start_mailing` stores expired.
pub(crate) const WINDOW_AFTER_END: &str = "the send window does not open before the mailing ends";

/// `last_error` of a pending message expired because its mailing now ends before its next attempt.
pub(crate) const ENDS_BEFORE_ATTEMPT: &str = "the mailing now ends before the next attempt";

/// Splits a batch of clients into the indexes to insert (the first of each phone) and those
/// skipped for repeating an earlier phone of the batch.
pub(crate) fn first_of_each_phone(clients: &[Client]) -> (Vec<usize>, Vec<usize>) {
    let mut seen = HashSet::with_capacity(clients.len());
    (0..clients.len()).partition(|&i| seen.insert(clients[i].phone.as_str()))
}

/// The indexes of `clients` skipped: `repeats` within the batch, and those of `tried` the store
/// did not insert (their id is not among `inserted`), in order.
pub(crate) fn skipped(
    clients: &[Client],
    repeats: Vec<usize>,
    tried: &[usize],
    inserted: &HashSet<Uuid>,
) -> Vec<usize> {
    let mut skipped = repeats;
    skipped.extend(tried.iter().copied().filter(|&i| !inserted.contains(&clients[i].id.0)));
    skipped.sort_unstable();
    skipped
}

/// A mailing's filter parts as lists of texts, as both adapters store them.
pub(crate) fn filter_parts(filter: &MailingFilter) -> (Option<Texts>, Option<Texts>) {
    let codes =
        filter.operator_codes.as_ref().map(|codes| Texts(codes.iter().map(|c| c.as_str().to_owned()).collect()));
    let tags = filter.tags.as_ref().map(|tags| Texts(tags.iter().map(|t| t.as_str().to_owned()).collect()));
    (codes, tags)
}

/// A first-attempt plan as SQL joins it: the instant for each listed zone (each zone once), and
/// the instant for a client whose zone is not listed. A plan without zones starts everyone at its
/// instant; a client whose zone a zoned plan misses (none, when the plan covers every IANA zone)
/// starts at `now`, and the sender still holds its first attempt to the window its payload carries.
pub(crate) struct PlanParts {
    pub zones: Vec<&'static str>,
    pub ats: Vec<DateTime<Utc>>,
    pub otherwise: DateTime<Utc>,
}

impl PlanParts {
    pub(crate) fn of(plan: &FirstAttempts, now: DateTime<Utc>) -> Self {
        match plan {
            FirstAttempts::At(at) => Self { zones: Vec::new(), ats: Vec::new(), otherwise: *at },
            FirstAttempts::ByZone(list) => {
                // A zone listed twice would give its clients two messages; the first listing wins.
                let mut by_zone = BTreeMap::new();
                for (zone, at) in list {
                    by_zone.entry(*zone).or_insert(*at);
                }
                let (zones, ats) = by_zone.into_iter().unzip();
                Self { zones, ats, otherwise: now }
            }
        }
    }
}
