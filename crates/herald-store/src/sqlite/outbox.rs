//! SQLite: how events are stored with their offsets (the outbox's queries are in
//! [`crate::sql::outbox`]). One writer at a time makes `seq` commit order, so no visibility
//! horizon is needed; the relay in this process is woken through a `Notify`.

use std::collections::BTreeMap;

use herald_core::{change::ChangeEvent, store::StoreError};
use sqlx::{Sqlite, Transaction, types::Json};

use super::err;
use crate::columns::Stamp;

/// Writes events with their stream offsets, inside the caller's transaction. Each stream's
/// counter is bumped once for all its events, streams in name order: two transactions writing to
/// the same streams lock them in the same order, so they queue instead of deadlocking. Within a
/// stream the events keep their order.
pub(super) async fn insert_events(tx: &mut Transaction<'_, Sqlite>, events: &[ChangeEvent]) -> Result<(), StoreError> {
    let mut by_stream: BTreeMap<String, Vec<&ChangeEvent>> = BTreeMap::new();
    for e in events {
        by_stream.entry(e.stream.to_string()).or_default().push(e);
    }
    for (stream, events) in by_stream {
        let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
        let last: i64 = sqlx::query_scalar(
            "INSERT INTO channel_offsets (channel, last_offset) VALUES ($1, $2) \
             ON CONFLICT (channel) DO UPDATE SET last_offset = last_offset + $2 RETURNING last_offset",
        )
        .bind(&stream)
        .bind(count)
        .fetch_one(&mut **tx)
        .await
        .map_err(err)?;
        for (offset, e) in (last - count + 1..).zip(events) {
            sqlx::query(
                "INSERT INTO outbox (id, kind, channel, channel_offset, payload, trace_context, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(e.id)
            .bind(&e.kind)
            .bind(&stream)
            .bind(offset)
            .bind(Json(&e.payload))
            .bind(&e.trace_context)
            .bind(Stamp(e.created_at))
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
    }
    Ok(())
}
