//! Clients, the people a mailing goes to, in both adapters: one made, read, listed, changed and
//! deleted (their pending messages cancelled, the adapter's own way; see
//! [`CampaignWrites::count_cancelled`](super::CampaignWrites::count_cancelled)). Many are
//! imported at once the adapter's own way too (see
//! [`CampaignWrites::import_clients`](super::CampaignWrites::import_clients)).

use super::{super::Dialect, Sql, after_id};

pub(crate) const CREATE_CLIENT: &str = "INSERT INTO clients (id, phone, operator_code, tag, timezone, created_at, \
     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(crate) const CLIENT: &str = "SELECT * FROM clients WHERE id = $1";

pub(crate) const UPDATE_CLIENT: &str = "UPDATE clients SET phone = $2, operator_code = $3, tag = $4, timezone = $5, \
     updated_at = $6 WHERE id = $1";

pub(crate) const DELETE_CLIENT: &str = "DELETE FROM clients WHERE id = $1";

/// Cancels the pending messages (kind `$3`) of client `$1` at `$2`; PostgreSQL's statement
/// answers how many of each mailing, as rows of `source_id` and `n`.
pub(crate) static CANCEL_CLIENT_MESSAGES: Sql = Sql::new(|d| {
    let cancel = "UPDATE deliveries SET status = 'cancelled', updated_at = $2 \
         WHERE recipient_id = $1 AND kind = $3 AND status = 'pending'";
    match d {
        Dialect::Postgres => format!(
            "WITH cancelled AS ({cancel} RETURNING source_id) \
             SELECT source_id, count(*) AS n FROM cancelled WHERE source_id IS NOT NULL GROUP BY source_id"
        ),
        Dialect::Sqlite => cancel.to_owned(),
    }
});

/// Clients after `$1` (when given), at most `$2`, of phones starting with `$3`, operator `$4` and
/// tag `$5` (those given). A plain condition for each part given, one that always holds for the
/// others (as [`after_id`] does), so each plan is a plain one and every placeholder is used.
pub(crate) fn list_clients(after: bool, phone_prefix: bool, operator_code: bool, tag: bool) -> String {
    let part = |given: bool, condition: &str, n: u8| {
        if given { condition.to_owned() } else { format!("${n} IS NULL") }
    };
    let conditions = [
        after_id(1, after),
        part(phone_prefix, "phone LIKE $3 || '%'", 3),
        part(operator_code, "operator_code = $4", 4),
        part(tag, "tag = $5", 5),
    ];
    format!("SELECT * FROM clients WHERE {} ORDER BY id LIMIT $2", conditions.join(" AND "))
}

/// Implements the client bodies of `CampaignStore` for an adapter, as its methods `store_client`,
/// `find_client`, `clients_page`, `change_client` and `remove_client` (see [`crate::sql`]).
macro_rules! client_bodies {
    ($store:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use herald_core::{
                campaign::{Client, ClientFilter, ClientId, MESSAGE_KIND},
                store::StoreError,
                timeline::Tally,
            };
            use sqlx::Row as _;
            use $crate::{
                columns::Stamp,
                decode,
                sql::{
                    Adapter, Query,
                    campaigns::{CampaignWrites, clients::*},
                },
                timeline::Tallies,
            };

            impl $store {
                /// `query` with client `c` bound as its next seven parameters, in the order of
                /// [`CREATE_CLIENT`]'s columns.
                pub(crate) fn bind_client<'q>(query: Query<'q, Self>, c: &Client) -> Query<'q, Self> {
                    query
                        .bind(c.id.0)
                        .bind(c.phone.as_str())
                        .bind(c.operator_code.as_str())
                        .bind(c.tag.as_str())
                        .bind(c.timezone.name())
                        .bind(Stamp(c.created_at))
                        .bind(Stamp(c.updated_at))
                }

                pub(crate) async fn store_client(&self, c: &Client) -> Result<(), StoreError> {
                    Self::bind_client(sqlx::query(CREATE_CLIENT), c)
                        .execute(self.writer())
                        .await
                        .map(drop)
                        .map_err(Self::err)
                }

                pub(crate) async fn find_client(&self, id: ClientId) -> Result<Option<Client>, StoreError> {
                    let row = sqlx::query(CLIENT).bind(id.0).fetch_optional(self.reader()).await.map_err(Self::err)?;
                    row.as_ref().map(decode::client).transpose()
                }

                pub(crate) async fn clients_page(
                    &self,
                    filter: &ClientFilter,
                    after: Option<ClientId>,
                    limit: u32,
                ) -> Result<Vec<Client>, StoreError> {
                    let sql = list_clients(
                        after.is_some(),
                        filter.phone_prefix.is_some(),
                        filter.operator_code.is_some(),
                        filter.tag.is_some(),
                    );
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(after.map(|a| a.0))
                        .bind(i64::from(limit))
                        .bind(filter.phone_prefix.as_deref())
                        .bind(filter.operator_code.as_ref().map(|c| c.as_str()))
                        .bind(filter.tag.as_ref().map(|t| t.as_str()))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    rows.iter().map(decode::client).collect()
                }

                pub(crate) async fn change_client(&self, c: &Client) -> Result<(), StoreError> {
                    let done = sqlx::query(UPDATE_CLIENT)
                        .bind(c.id.0)
                        .bind(c.phone.as_str())
                        .bind(c.operator_code.as_str())
                        .bind(c.tag.as_str())
                        .bind(c.timezone.name())
                        .bind(Stamp(c.updated_at))
                        .execute(self.writer())
                        .await
                        .map_err(Self::err)?;
                    if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
                }

                /// Deletes the client and cancels its pending messages, counting them in their
                /// mailings' timelines.
                pub(crate) async fn remove_client(&self, id: ClientId, now: DateTime<Utc>) -> Result<bool, StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    let done = sqlx::query(DELETE_CLIENT).bind(id.0).execute(&mut *tx).await.map_err(Self::err)?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                    let cancel = sqlx::query(CANCEL_CLIENT_MESSAGES.text(Self::DIALECT))
                        .bind(id.0)
                        .bind(Stamp(now))
                        .bind(MESSAGE_KIND);
                    let mut tallies = Tallies::default();
                    for row in Self::count_cancelled(&mut tx, cancel, id).await? {
                        let cancelled = row.try_get::<i64, _>("n").map_err(Self::err)?.max(0) as u64;
                        let mailing = row.try_get("source_id").map_err(Self::err)?;
                        tallies.0.insert(mailing, Tally { cancelled, ..Tally::default() });
                    }
                    Self::add_to_timeline(&mut tx, &tallies, now).await?;
                    tx.commit().await.map_err(Self::err)?;
                    Ok(true)
                }
            }
        };
    };
}
pub(crate) use client_bodies;
