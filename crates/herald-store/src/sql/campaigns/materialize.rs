//! A started mailing's messages, made in chunks of clients by id (a cursor on the mailing), in
//! both adapters; each makes a chunk's messages its own way (see
//! [`CampaignWrites::make_messages`](super::CampaignWrites::make_messages)).

use chrono::{DateTime, Utc};
use herald_core::campaign::{FirstAttempts, MailingId};
use uuid::Uuid;

/// A chunk of a started mailing's messages to make: those of the matching clients with ids in
/// `(after, upto]`, their first attempts as `plan` says.
#[derive(Debug)]
pub(crate) struct Chunk<'a> {
    pub mailing: MailingId,
    pub plan: &'a FirstAttempts,
    pub now: DateTime<Utc>,
    pub after: Uuid,
    pub upto: Uuid,
}

/// The cursor of a started mailing: the last client its messages were made for, and the last
/// client when it started.
pub(crate) const CURSOR: &str = "SELECT materialized_through, materialize_high FROM mailings WHERE id = $1";

/// The `$3`-th client after `$1` up to `$2`: the last of a chunk, found on the primary key alone.
pub(crate) const CHUNK_END: &str = "SELECT id FROM clients WHERE id > $1 AND id <= $2 ORDER BY id LIMIT 1 OFFSET $3";

/// Moves mailing `$1`'s cursor to `$2` (when given), and ends its making when `$3`.
pub(crate) const MOVE_CURSOR: &str = "UPDATE mailings SET materialized_through = COALESCE($2, materialized_through), \
     materializing = NOT $3 WHERE id = $1";

/// Marks mailing `$2` `finished` if it is `running` with no live message.
pub(crate) const FINISH_ONE: &str = "UPDATE mailings AS m SET status = 'finished', updated_at = $1 \
     WHERE m.id = $2 AND m.status = 'running' AND NOT m.materializing AND NOT EXISTS (SELECT 1 FROM deliveries d \
     WHERE d.source_id = m.id AND d.status IN ('pending', 'sending'))";

/// Implements `commit_chunk`, which makes the next chunk of a started mailing's messages, for an
/// adapter (see [`crate::sql`]).
macro_rules! chunk_bodies {
    ($store:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use herald_core::{
                campaign::{FirstAttempts, MailingId},
                store::StoreError,
            };
            use sqlx::Row as _;
            use uuid::Uuid;
            use $crate::{
                columns::Stamp,
                sql::{
                    Adapter,
                    campaigns::{CampaignWrites, materialize::*},
                },
            };

            type Tx<'c> = sqlx::Transaction<'c, <$store as Adapter>::Db>;

            impl $store {
                /// Makes the next chunk of mailing `id`'s messages in `tx` (which holds the mailing,
                /// running and materializing): those of the matching clients among the next `chunk`
                /// clients by id (found on the primary key alone, so a chunk costs its own rows
                /// whatever the filter), then moves its cursor; when the chunk reached the last
                /// client of the start, the mailing is materialized (and finished at once if no
                /// message is live). Commits, and wakes schedulers: the messages are theirs to claim.
                pub(crate) async fn commit_chunk(
                    &self,
                    mut tx: Tx<'_>,
                    id: MailingId,
                    plan: &FirstAttempts,
                    now: DateTime<Utc>,
                    chunk: u32,
                ) -> Result<Option<u64>, StoreError> {
                    let row = sqlx::query(CURSOR).bind(id.0).fetch_one(&mut *tx).await.map_err(Self::err)?;
                    let through: Option<Uuid> = row.try_get("materialized_through").map_err(Self::err)?;
                    let through = through.unwrap_or(Uuid::nil());
                    let high: Option<Uuid> = row.try_get("materialize_high").map_err(Self::err)?;
                    let mut created = 0;
                    let mut upper = None;
                    if let Some(high) = high {
                        let end: Option<Uuid> = sqlx::query_scalar(CHUNK_END)
                            .bind(through)
                            .bind(high)
                            .bind(i64::from(chunk.max(1)) - 1)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(Self::err)?;
                        let last = end.unwrap_or(high);
                        let made = Chunk { mailing: id, plan, now, after: through, upto: last };
                        created = Self::make_messages(&mut tx, &made).await?;
                        upper = Some(last);
                    }
                    let done = upper == high;
                    sqlx::query(MOVE_CURSOR)
                        .bind(id.0)
                        .bind(upper)
                        .bind(done)
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    if done {
                        sqlx::query(FINISH_ONE)
                            .bind(Stamp(now))
                            .bind(id.0)
                            .execute(&mut *tx)
                            .await
                            .map_err(Self::err)?;
                    }
                    tx.commit().await.map_err(Self::err)?;
                    Adapter::wake_schedulers(self);
                    Ok(Some(created))
                }
            }
        };
    };
}
pub(crate) use chunk_bodies;
