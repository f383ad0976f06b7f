//! PostgreSQL: a notice's steps stored in one statement, and acknowledgements (by reading, or by a
//! cursor reaching a notice's in-app event) as one statement each, what they leave to come
//! cancelled in it (the other notice queries are in [`crate::sql::notices`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use herald_core::{
    notice::{Acknowledged, NoticeId, NoticeStep},
    store::StoreError,
    stream::SessionCursor,
    user::UserId,
};
use sqlx::{Postgres, Row as _, Transaction};
use uuid::Uuid;

use super::{PgStore, err};
use crate::sql::{notices::NoticeWrites, streams::CursorBatches};

/// The statement that cancels what an acknowledgement leaves to come of the notices `acked`
/// (a CTE of `id`s): steps not yet due, and deliveries of steps not yet claimed by a sender.
/// Appended to a statement that defines `acked`; `$now` is the time parameter.
macro_rules! cancel_rest {
    ($now:literal) => {
        concat!(
            ", rest AS (UPDATE notice_steps SET status = 'cancelled', reason = 'acknowledged first' \
             WHERE notice_id IN (SELECT id FROM acked) AND status IN ('pending', 'deferred')), \
             held AS (UPDATE deliveries SET status = 'cancelled', updated_at = ",
            $now,
            " WHERE id IN (SELECT delivery_id FROM notice_steps WHERE notice_id IN (SELECT id FROM acked) \
             AND status = 'sending') AND status = 'pending' RETURNING id), \
             held_steps AS (UPDATE notice_steps SET status = 'cancelled', reason = 'acknowledged first' \
             WHERE delivery_id IN (SELECT id FROM held) AND status = 'sending') \
             SELECT id, created_at FROM acked"
        )
    };
}

/// Reads acknowledged notices from a statement ending in [`cancel_rest`].
fn acknowledged(rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<Acknowledged>, StoreError> {
    rows.iter()
        .map(|row| {
            Ok(Acknowledged {
                id: NoticeId(row.try_get("id").map_err(err)?),
                created_at: row.try_get("created_at").map_err(err)?,
            })
        })
        .collect()
}

impl NoticeWrites for PgStore {
    async fn insert_steps(
        tx: &mut Transaction<'_, Postgres>,
        notice: NoticeId,
        steps: &[NoticeStep],
    ) -> Result<(), StoreError> {
        let indexes: Vec<i32> = (0..steps.len()).map(|i| i32::try_from(i).unwrap_or(i32::MAX)).collect();
        let channels: Vec<&str> = steps.iter().map(|s| s.channel.as_str()).collect();
        let afters: Vec<i32> = steps.iter().map(|s| i32::try_from(s.after).unwrap_or(i32::MAX)).collect();
        let statuses: Vec<&str> = steps.iter().map(|s| s.status.as_str()).collect();
        let due: Vec<DateTime<Utc>> = steps.iter().map(|s| s.due_at).collect();
        let sent: Vec<Option<DateTime<Utc>>> = steps.iter().map(|s| s.sent_at).collect();
        sqlx::query(
            "INSERT INTO notice_steps (notice_id, idx, channel, after_secs, status, due_at, sent_at) \
             SELECT $1, i, c, a, s, d, t FROM unnest($2::int[], $3::text[], $4::int[], $5::text[], $6::timestamptz[], \
             $7::timestamptz[]) AS x(i, c, a, s, d, t)",
        )
        .bind(notice.0)
        .bind(&indexes)
        .bind(&channels)
        .bind(&afters)
        .bind(&statuses)
        .bind(&due)
        .bind(&sent)
        .execute(&mut **tx)
        .await
        .map(drop)
        .map_err(err)
    }

    async fn acknowledge_read(
        tx: &mut Transaction<'_, Postgres>,
        user: UserId,
        id: Option<NoticeId>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Acknowledged>, StoreError> {
        let rows = sqlx::query(concat!(
            "WITH acked AS (UPDATE notices SET status = 'acknowledged', acknowledged_at = $3 WHERE user_id = $1 \
             AND ($2 IS NULL OR id = $2) AND event_offset IS NOT NULL AND status = 'pending' \
             RETURNING id, created_at)",
            cancel_rest!("$3")
        ))
        .bind(user.0)
        .bind(id.map(|i| i.0))
        .bind(now)
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?;
        acknowledged(rows)
    }
}

impl CursorBatches for PgStore {
    /// One statement for the batch, one row per cursor (the highest offset wins), sorted so that
    /// concurrent batches lock rows in one order. The same statement acknowledges the pending
    /// notices whose in-app event a cursor reached, and cancels what they had to come.
    async fn advance_session_cursors(
        &self,
        cursors: &[SessionCursor],
        now: DateTime<Utc>,
    ) -> Result<Vec<Acknowledged>, StoreError> {
        let mut highest: BTreeMap<(Uuid, &str, String), i64> = BTreeMap::new();
        for c in cursors {
            let offset = highest.entry((c.user.0, c.session.as_str(), c.stream.to_string())).or_insert(c.offset);
            *offset = (*offset).max(c.offset);
        }
        let users: Vec<Uuid> = highest.keys().map(|k| k.0).collect();
        let sessions: Vec<&str> = highest.keys().map(|k| k.1).collect();
        let streams: Vec<&str> = highest.keys().map(|k| k.2.as_str()).collect();
        let offsets: Vec<i64> = highest.values().copied().collect();
        let rows = sqlx::query(concat!(
            "WITH moved AS (INSERT INTO session_cursors (user_id, session_id, channel, acked, updated_at) \
             SELECT u, s, c, o, $5 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[]) AS t(u, s, c, o) \
             ON CONFLICT (user_id, session_id, channel) DO UPDATE \
             SET acked = greatest(session_cursors.acked, excluded.acked), updated_at = excluded.updated_at \
             RETURNING channel, acked), \
             reached AS (SELECT channel, max(acked) AS acked FROM moved GROUP BY channel), \
             acked AS (UPDATE notices n SET status = 'acknowledged', acknowledged_at = $5 FROM reached r \
             WHERE n.status = 'pending' AND n.event_offset IS NOT NULL AND n.event_channel = r.channel \
             AND n.event_offset <= r.acked RETURNING n.id, n.created_at)",
            cancel_rest!("$5")
        ))
        .bind(&users)
        .bind(&sessions)
        .bind(&streams)
        .bind(&offsets)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        acknowledged(rows)
    }
}
