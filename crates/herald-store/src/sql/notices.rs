//! Notices and their steps, in both adapters.
//!
//! PostgreSQL: an escalation pass takes due steps with their notices `FOR UPDATE … SKIP LOCKED`,
//! so passes of several schedulers never take one notice twice, and an acknowledgement (which
//! updates the notice row first) waits for a pass holding it, or the pass skips a notice being
//! acknowledged. Steps whose deliveries reported, and notices whose every step ended, are settled
//! by separate statements, never while a notice row is held: no pass waits on an acknowledgement
//! that waits on it. SQLite: writes go through the one writer connection, so a pass and an
//! acknowledgement take turns as whole transactions: of a racing acknowledgement and due step,
//! whichever commits first wins and the other sees it.
//!
//! How an acknowledgement cancels what is left of its notices, and how steps are stored, is each
//! adapter's own (see [`NoticeWrites::acknowledge_read`]).

use chrono::{DateTime, Utc};
use herald_core::{
    notice::{Acknowledged, NoticeId, NoticeStep},
    store::StoreError,
    user::UserId,
};

use super::{Adapter, Sql};
use crate::decode::{notice_columns, step_columns};

/// What each adapter does its own way for notices.
pub(crate) trait NoticeWrites: Adapter {
    /// Stores the steps of `notice` in `tx` (PostgreSQL: in one statement).
    async fn insert_steps(
        tx: &mut sqlx::Transaction<'_, Self::Db>,
        notice: NoticeId,
        steps: &[NoticeStep],
    ) -> Result<(), StoreError>;

    /// Acknowledges in `tx` the pending in-app notices of `user` (only `id`, when given), and
    /// cancels what they had to come: steps not yet due, and deliveries of steps not yet claimed
    /// by a sender (PostgreSQL: in one statement).
    async fn acknowledge_read(
        tx: &mut sqlx::Transaction<'_, Self::Db>,
        user: UserId,
        id: Option<NoticeId>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Acknowledged>, StoreError>;
}

pub(crate) const CREATE_NOTICE: &str = concat!(
    "INSERT INTO notices (",
    notice_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL, NULL, NULL)"
);

/// The steps of the notices `$1`.
pub(crate) static STEPS_OF: Sql =
    Sql::new(|d| format!(concat!("SELECT ", step_columns!(), " FROM notice_steps WHERE {}"), d.in_ids("notice_id", 1)));

/// Records where a notice's in-app event went: channel `$2`, at the offset the event just took.
pub(crate) const EVENT_WRITTEN: &str = "UPDATE notices SET event_channel = $2, \
     event_offset = COALESCE(event_offset, (SELECT last_offset FROM channel_offsets WHERE channel = $2)) \
     WHERE id = $1";

pub(crate) const NOTICE: &str = concat!("SELECT ", notice_columns!(), " FROM notices WHERE id = $1");

pub(crate) const NOTICE_BY_KEY: &str =
    concat!("SELECT ", notice_columns!(), " FROM notices WHERE caller = $1 AND idempotency_key = $2");

pub(crate) const LIST_NOTICES: &str = concat!(
    "SELECT ",
    notice_columns!(),
    " FROM notices WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR status = $2) \
     AND ($3 IS NULL OR type = $3) AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
);

pub(crate) const INBOX: &str = concat!(
    "SELECT ",
    notice_columns!(),
    " FROM notices WHERE user_id = $1 AND event_offset IS NOT NULL AND (NOT $2 OR read_at IS NULL) \
     AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
);

pub(crate) const IN_INBOX: &str = "SELECT 1 FROM notices WHERE id = $1 AND user_id = $2 AND event_offset IS NOT NULL";

/// Marks read at `$3` the in-app notices of `$1` (only `$2` when given).
pub(crate) const MARK_READ: &str = "UPDATE notices SET read_at = $3 WHERE user_id = $1 AND ($2 IS NULL OR id = $2) \
     AND event_offset IS NOT NULL AND read_at IS NULL";

pub(crate) const DELETE_SETTLED: &str = "DELETE FROM notices WHERE id IN (SELECT id FROM notices \
     WHERE status <> 'pending' AND created_at < $1 ORDER BY id LIMIT $2)";

/// Implements `NoticeStore` for an adapter (see [`crate::sql`]), and `write_event`, which the
/// escalation pass shares.
macro_rules! notice_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use herald_core::{
                change::ChangeEvent,
                notice::{Acknowledged, Escalation, Notice, NoticeFilter, NoticeId, StepStatus},
                notify::NoticeChannel,
                store::{NoticeStore, StepPlan, StoreError},
                user::UserId,
            };
            use sqlx::types::Json;
            use $crate::{
                columns::{Ids, Stamp},
                decode,
                error::missing_as_not_found,
                sql::{Adapter, Query, notices::*},
            };

            type Tx<'c> = sqlx::Transaction<'c, <$store as Adapter>::Db>;

            impl $store {
                /// Writes a notice's in-app event and records where it went.
                pub(crate) async fn write_event(
                    tx: &mut Tx<'_>,
                    notice: NoticeId,
                    event: &ChangeEvent,
                ) -> Result<(), StoreError> {
                    Self::insert_events(tx, std::slice::from_ref(event)).await?;
                    sqlx::query(EVENT_WRITTEN)
                        .bind(notice.0)
                        .bind(event.stream.to_string())
                        .execute(&mut **tx)
                        .await
                        .map(drop)
                        .map_err(Self::err)
                }

                /// The notices `query` reads, each with its steps.
                async fn notices_where(&self, query: Query<'_, Self>) -> Result<Vec<Notice>, StoreError> {
                    let rows = query.fetch_all(self.reader()).await.map_err(Self::err)?;
                    let notices = rows.iter().map(decode::notice).collect::<Result<Vec<_>, _>>()?;
                    if notices.is_empty() {
                        return Ok(notices);
                    }
                    let rows = sqlx::query(STEPS_OF.text(Self::DIALECT))
                        .bind(Ids(notices.iter().map(|n| n.id.0).collect()))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    let steps = rows.iter().map(decode::notice_step).collect::<Result<Vec<_>, _>>()?;
                    Ok(decode::with_steps(notices, steps))
                }
            }

            #[async_trait]
            impl NoticeStore for $store {
                async fn create_notice(&self, notice: &Notice, event: Option<&ChangeEvent>) -> Result<(), StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    sqlx::query(CREATE_NOTICE)
                        .bind(notice.id.0)
                        .bind(notice.user_id.0)
                        .bind(&notice.caller)
                        .bind(notice.kind.as_str())
                        .bind(&notice.title)
                        .bind(&notice.body)
                        .bind(notice.data.as_ref().map(Json))
                        .bind(notice.urgent)
                        .bind(notice.expires_at.map(Stamp))
                        .bind(&notice.idempotency_key)
                        .bind(&notice.request_hash)
                        .bind(notice.status.as_str())
                        .bind(Stamp(notice.created_at))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| missing_as_not_found(e, Self::err))?;
                    let mut steps = notice.steps.clone();
                    if let Some(event) = event {
                        Self::write_event(&mut tx, notice.id, event).await?;
                        if let Some(first) = steps.first_mut() {
                            first.status = StepStatus::Sent;
                            first.sent_at = Some(notice.created_at);
                        }
                    }
                    Self::insert_steps(&mut tx, notice.id, &steps).await?;
                    if event.is_some() {
                        self.commit(tx).await?;
                    } else {
                        tx.commit().await.map_err(Self::err)?;
                    }
                    // A step due at once (other than in-app) is for the scheduler to take now.
                    if notice
                        .steps
                        .iter()
                        .any(|s| s.channel != NoticeChannel::Realtime && s.due_at <= notice.created_at)
                    {
                        Adapter::wake_schedulers(self);
                    }
                    Ok(())
                }

                async fn notice(&self, id: NoticeId) -> Result<Option<Notice>, StoreError> {
                    Ok(self.notices_where(sqlx::query(NOTICE).bind(id.0)).await?.pop())
                }

                async fn notice_by_key(&self, caller: &str, key: &str) -> Result<Option<Notice>, StoreError> {
                    Ok(self.notices_where(sqlx::query(NOTICE_BY_KEY).bind(caller).bind(key)).await?.pop())
                }

                async fn list_notices(
                    &self,
                    filter: &NoticeFilter,
                    before: Option<NoticeId>,
                    limit: u32,
                ) -> Result<Vec<Notice>, StoreError> {
                    let query = sqlx::query(LIST_NOTICES)
                        .bind(filter.user.map(|u| u.0))
                        .bind(filter.status.map(|s| s.as_str()))
                        .bind(filter.kind.as_ref().map(|k| k.as_str()))
                        .bind(before.map(|b| b.0))
                        .bind(i64::from(limit));
                    self.notices_where(query).await
                }

                async fn inbox(
                    &self,
                    user: UserId,
                    unread: bool,
                    before: Option<NoticeId>,
                    limit: u32,
                ) -> Result<Vec<Notice>, StoreError> {
                    let query =
                        sqlx::query(INBOX).bind(user.0).bind(unread).bind(before.map(|b| b.0)).bind(i64::from(limit));
                    self.notices_where(query).await
                }

                async fn read_notices(
                    &self,
                    user: UserId,
                    id: Option<NoticeId>,
                    now: DateTime<Utc>,
                ) -> Result<(u64, Vec<Acknowledged>), StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    if let Some(id) = id {
                        let found = sqlx::query(IN_INBOX)
                            .bind(id.0)
                            .bind(user.0)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(Self::err)?;
                        if found.is_none() {
                            return Err(StoreError::NotFound);
                        }
                    }
                    let read = sqlx::query(MARK_READ)
                        .bind(user.0)
                        .bind(id.map(|i| i.0))
                        .bind(Stamp(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?
                        .rows_affected();
                    let acked = Self::acknowledge_read(&mut tx, user, id, now).await?;
                    tx.commit().await.map_err(Self::err)?;
                    Ok((read, acked))
                }

                async fn escalate_notices(
                    &self,
                    now: DateTime<Utc>,
                    limit: u32,
                    plan: &StepPlan<'_>,
                ) -> Result<Escalation, StoreError> {
                    self.escalate(now, limit, plan).await
                }

                async fn delete_notices_settled_before(
                    &self,
                    before: DateTime<Utc>,
                    limit: u32,
                ) -> Result<u64, StoreError> {
                    self.delete_before(DELETE_SETTLED, before, limit).await
                }
            }
        };
    };
}
pub(crate) use notice_store;
