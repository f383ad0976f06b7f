//! PostgreSQL: how events are stored with their offsets, and how relays wake (the outbox's
//! queries are in [`crate::sql::outbox`]).
//!
//! Order: a writer bumps its stream's row in `channel_offsets` in the same transaction as its
//! events, so writers of one stream take turns and, within a stream, `seq` order is commit
//! order. The relay reads the unpublished prefix whose transactions are all below the visibility
//! horizon, so no later commit overtakes an earlier, still-open one.
//!
//! Wake-ups: after a commit that wrote events, a coalesced `NOTIFY` is sent from outside the
//! writer's transaction (a `NOTIFY` inside it would serialise committing writers on the global
//! notification lock). It carries no payload; the relay reads the table. Polling covers lost ones.

use chrono::{DateTime, Utc};
use herald_core::{change::ChangeEvent, store::StoreError};
use sqlx::{Postgres, Row as _, postgres::PgArguments, query::Query, types::Json};

use super::{PgStore, err};

/// The `LISTEN` channel the relay wakes on.
pub(super) const CHANNEL: &str = "herald_outbox";

/// A write and the events it makes, as one statement: `write` (a data-modifying statement ending
/// in `RETURNING 1`, its parameters `$1` to `$n`) becomes the CTE `w`; when it wrote a row, each
/// stream of the events (`$n+1` to `$n+6`, bound by [`Events::bind`]) has its counter bumped
/// once for all its events, in stream-name order (two writers of the same streams lock them in
/// the same order, so they queue instead of deadlocking), and the events are inserted with the
/// offsets reserved, in their order within each stream. The counter rows' locks are taken
/// before any outbox row (and its `seq`) is made: the outbox insert reads the bump. The statement
/// answers how many rows `w` wrote.
pub(super) fn with_events(write: &str) -> String {
    let n = highest_parameter(write);
    let [ids, channels, kinds, payloads, traces, created] = [1, 2, 3, 4, 5, 6].map(|i| format!("${}", n + i));
    format!(
        "WITH w AS ({write}), events AS (SELECT e.*, row_number() OVER (PARTITION BY e.channel ORDER BY e.ord) AS rank, \
         count(*) OVER (PARTITION BY e.channel) AS n \
         FROM unnest({ids}::uuid[], {channels}::text[], {kinds}::text[], {payloads}::jsonb[], {traces}::text[], \
         {created}::timestamptz[]) WITH ORDINALITY AS e (id, channel, kind, payload, trace, created, ord) \
         WHERE EXISTS (SELECT 1 FROM w)), \
         bumped AS (INSERT INTO channel_offsets (channel, last_offset) \
         SELECT DISTINCT ON (channel) channel, n FROM events ORDER BY channel \
         ON CONFLICT (channel) DO UPDATE SET last_offset = channel_offsets.last_offset + excluded.last_offset \
         RETURNING channel, last_offset), \
         appended AS (INSERT INTO outbox (id, kind, channel, channel_offset, payload, trace_context, created_at) \
         SELECT e.id, e.kind, e.channel, b.last_offset - e.n + e.rank, e.payload, e.trace, e.created \
         FROM events e JOIN bumped b USING (channel) ORDER BY e.channel, e.rank) \
         SELECT count(*) FROM w"
    )
}

/// The highest `$n` in `sql`.
fn highest_parameter(sql: &str) -> usize {
    sql.split('$')
        .skip(1)
        .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// Events as the arrays a [`with_events`] statement binds.
#[derive(Debug, Default)]
pub(super) struct Events<'a> {
    ids: Vec<uuid::Uuid>,
    streams: Vec<String>,
    kinds: Vec<&'a str>,
    payloads: Vec<Json<&'a serde_json::Value>>,
    traces: Vec<Option<&'a str>>,
    created: Vec<DateTime<Utc>>,
}

impl<'a> Events<'a> {
    pub(super) fn new(events: impl IntoIterator<Item = &'a ChangeEvent>) -> Self {
        let mut arrays = Self::default();
        for e in events {
            arrays.ids.push(e.id);
            arrays.streams.push(e.stream.to_string());
            arrays.kinds.push(e.kind.as_str());
            arrays.payloads.push(Json(&e.payload));
            arrays.traces.push(e.trace_context.as_deref());
            arrays.created.push(e.created_at);
        }
        arrays
    }

    /// `statement` (made by [`with_events`], its write's own parameters bound) with the events
    /// bound after them; run it with [`PgStore::run_with_events`].
    pub(super) fn bind<'q>(&self, statement: Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments> {
        statement
            .bind(&self.ids)
            .bind(&self.streams)
            .bind(&self.kinds)
            .bind(&self.payloads)
            .bind(&self.traces)
            .bind(&self.created)
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl PgStore {
    /// Runs `statement` (a [`with_events`] statement with everything bound) in its own implicit
    /// transaction (one round trip, whatever the streams), answers how many rows its write made,
    /// and wakes relays when it wrote events.
    pub(super) async fn run_with_events(
        &self,
        statement: Query<'_, Postgres, PgArguments>,
        events: &Events<'_>,
    ) -> Result<u64, StoreError> {
        let written: i64 = statement.fetch_one(&self.pool).await.map_err(err)?.try_get(0).map_err(err)?;
        if written > 0 && !events.is_empty() {
            self.outbox_wakeup.wake();
        }
        Ok(u64::try_from(written).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_are_numbered_after_the_write() {
        assert_eq!(highest_parameter("UPDATE t SET a = $1, b = $12 WHERE c = $3 RETURNING 1"), 12);
        assert_eq!(highest_parameter("SELECT 1"), 0);
        let statement = with_events("UPDATE t SET a = $1 WHERE b = $2 RETURNING 1");
        assert!(statement.contains("unnest($3::uuid[], $4::text[]"), "{statement}");
        assert!(statement.contains("$8::timestamptz[]"), "{statement}");
    }
}
