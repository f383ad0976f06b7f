//! Held records in both adapters: one copy of each query (`$N` placeholders, times as
//! [`Stamp`]), run on PostgreSQL's pool or on SQLite's writer and reader pools.

use chrono::{DateTime, Utc};
use herald_core::{
    quarantine::{FailurePolicy, HeldId, HeldRecord, ItemFailure, Worker},
    store::StoreError,
};
use sqlx::FromRow;
use uuid::Uuid;

use crate::{columns::Stamp, error::corrupt};

/// Most held records one claim leaves out; beyond it (thousands of records failing at once) the
/// newest failures are taken again early, which only means they fail again sooner.
pub(crate) const HELD_MAX: i64 = 10_000;

/// The records of workers `$1` and `$4` to leave out at `$2`: quarantined, or backed off past it;
/// the latest failures first, should there be more than the bound.
pub(crate) const HELD_NOW: &str = "SELECT record FROM held_records WHERE worker IN ($1, $4) \
     AND (quarantined_at IS NOT NULL OR retry_at > $2) ORDER BY last_failed_at DESC LIMIT $3";

/// Counts a failure: a new entry, or one more failure in a row of an entry there.
const COUNT_FAILURE: &str = "INSERT INTO held_records (id, worker, record, reason, error, failures, \
     first_failed_at, last_failed_at, retry_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $6, $6) \
     ON CONFLICT (worker, record) DO UPDATE SET reason = excluded.reason, error = excluded.error, \
     failures = held_records.failures + 1, last_failed_at = excluded.last_failed_at RETURNING *";

/// Sets when the record is taken again, and whether it is quarantined.
const BACK_OFF: &str = "UPDATE held_records SET retry_at = $2, \
     quarantined_at = CASE WHEN $3 THEN COALESCE(quarantined_at, $4) ELSE quarantined_at END WHERE id = $1";

const BY_RECORD: &str = "SELECT * FROM held_records WHERE worker = $1 AND record = $2";

const QUARANTINED: &str = "SELECT * FROM held_records WHERE quarantined_at IS NOT NULL \
     AND ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2";

const RELEASE: &str = "DELETE FROM held_records WHERE id = $1 RETURNING *";

const PRUNE: &str = "DELETE FROM held_records WHERE id IN (SELECT id FROM held_records \
     WHERE quarantined_at IS NULL AND retry_at < $1 LIMIT $2)";

#[derive(FromRow)]
pub(crate) struct HeldCols {
    id: Uuid,
    worker: String,
    record: String,
    reason: String,
    error: String,
    failures: i32,
    first_failed_at: Stamp,
    last_failed_at: Stamp,
    retry_at: Stamp,
    quarantined_at: Option<Stamp>,
}

crate::decode::readers! {
    /// Decodes a held record from either database's row.
    decode(HeldCols) -> HeldRecord = held_record_of, "held record";
}

fn held_record_of(c: HeldCols) -> Result<HeldRecord, StoreError> {
    Ok(HeldRecord {
        id: HeldId(c.id),
        worker: c.worker.parse().map_err(|e| corrupt("held record worker", e))?,
        record: c.record,
        reason: c.reason.parse().map_err(|e| corrupt("held record reason", e))?,
        error: c.error,
        failures: u32::try_from(c.failures).map_err(|e| corrupt("held record failures", e))?,
        first_failed_at: c.first_failed_at.0,
        last_failed_at: c.last_failed_at.0,
        retry_at: c.retry_at.0,
        quarantined_at: c.quarantined_at.map(Into::into),
    })
}

/// Implements `QuarantineStore` for an adapter (see [`crate::sql`]).
macro_rules! quarantine_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use herald_core::{
                quarantine::{FailurePolicy, HeldId, HeldRecord, ItemFailure, Worker},
                store::{QuarantineStore, StoreError},
            };
            use $crate::sql::{Adapter, quarantine};

            #[async_trait]
            impl QuarantineStore for $store {
                async fn record_failure(
                    &self,
                    failure: &ItemFailure,
                    policy: &FailurePolicy,
                    now: DateTime<Utc>,
                ) -> Result<HeldRecord, StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    let (query, back_off) = quarantine::count_failure(failure, now);
                    let row = query.fetch_one(&mut *tx).await.map_err(Self::err)?;
                    let mut held = quarantine::decode(&row)?;
                    let (query, quarantined) = back_off(&mut held, policy, now);
                    query.execute(&mut *tx).await.map_err(Self::err)?;
                    tx.commit().await.map_err(Self::err)?;
                    held.quarantined_at = quarantined;
                    Ok(held)
                }

                async fn held_record(&self, worker: Worker, record: &str) -> Result<Option<HeldRecord>, StoreError> {
                    let row =
                        quarantine::by_record(worker, record).fetch_optional(self.reader()).await.map_err(Self::err)?;
                    row.as_ref().map(|r| quarantine::decode(r)).transpose()
                }

                async fn quarantined(&self, before: Option<HeldId>, limit: u32) -> Result<Vec<HeldRecord>, StoreError> {
                    let rows =
                        quarantine::quarantined(before, limit).fetch_all(self.reader()).await.map_err(Self::err)?;
                    rows.iter().map(|r| quarantine::decode(r)).collect()
                }

                async fn release_held(&self, id: HeldId) -> Result<Option<HeldRecord>, StoreError> {
                    let row = quarantine::release(id).fetch_optional(self.writer()).await.map_err(Self::err)?;
                    let released = row.as_ref().map(|r| quarantine::decode(r)).transpose()?;
                    if released.is_some() {
                        // Its record may be due at once.
                        Adapter::wake_schedulers(self);
                    }
                    Ok(released)
                }

                async fn prune_held(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
                    let done = quarantine::prune(before, limit).execute(self.writer()).await.map_err(Self::err)?;
                    Ok(done.rows_affected())
                }
            }
        };
    };
}
pub(crate) use quarantine_store;

type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>;

/// The statement that counts `failure`, and what sets its back-off once the count is known.
#[allow(clippy::type_complexity)]
pub(crate) fn count_failure<'q, DB>(
    failure: &'q ItemFailure,
    now: DateTime<Utc>,
) -> (
    Query<'q, DB>,
    impl FnOnce(&mut HeldRecord, &FailurePolicy, DateTime<Utc>) -> (Query<'q, DB>, Option<DateTime<Utc>>),
)
where
    DB: sqlx::Database,
    Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Stamp: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<Stamp>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let query = sqlx::query::<DB>(COUNT_FAILURE)
        .bind(HeldId::new().0)
        .bind(failure.worker.as_str())
        .bind(failure.record.as_str())
        .bind(failure.reason.as_str())
        .bind(failure.error.as_str())
        .bind(Stamp(now));
    let back_off = move |held: &mut HeldRecord, policy: &FailurePolicy, now: DateTime<Utc>| {
        let delay = chrono::Duration::from_std(policy.delay(held.failures)).unwrap_or(chrono::Duration::MAX);
        held.retry_at = now.checked_add_signed(delay).unwrap_or(now);
        let quarantine = policy.quarantines(held.failures, held.reason);
        let at = if quarantine { Some(held.quarantined_at.unwrap_or(now)) } else { held.quarantined_at };
        let query =
            sqlx::query::<DB>(BACK_OFF).bind(held.id.0).bind(Stamp(held.retry_at)).bind(quarantine).bind(Stamp(now));
        (query, at)
    };
    (query, back_off)
}

pub(crate) fn by_record<'q, DB>(worker: Worker, record: &'q str) -> Query<'q, DB>
where
    DB: sqlx::Database,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query::<DB>(BY_RECORD).bind(worker.as_str()).bind(record)
}

pub(crate) fn quarantined<'q, DB>(before: Option<HeldId>, limit: u32) -> Query<'q, DB>
where
    DB: sqlx::Database,
    Option<Uuid>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query::<DB>(QUARANTINED).bind(before.map(|b| b.0)).bind(i64::from(limit))
}

pub(crate) fn release<'q, DB>(id: HeldId) -> Query<'q, DB>
where
    DB: sqlx::Database,
    Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query::<DB>(RELEASE).bind(id.0)
}

pub(crate) fn prune<'q, DB>(before: DateTime<Utc>, limit: u32) -> Query<'q, DB>
where
    DB: sqlx::Database,
    Stamp: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query::<DB>(PRUNE).bind(Stamp(before)).bind(i64::from(limit))
}

/// The records of `workers` to leave out at `now` (see [`HELD_NOW`]).
pub(crate) fn held_now<'q, DB>(
    workers: [Worker; 2],
    now: DateTime<Utc>,
) -> sqlx::query::QueryScalar<'q, DB, String, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Stamp: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    (String,): for<'r> FromRow<'r, DB::Row>,
{
    sqlx::query_scalar::<DB, String>(HELD_NOW)
        .bind(workers[0].as_str())
        .bind(Stamp(now))
        .bind(HELD_MAX)
        .bind(workers[1].as_str())
}
