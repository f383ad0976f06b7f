//! SQLite: batches of delivery reports and of claims to check, a statement at a time (the other
//! delivery queries are in [`crate::sql::deliveries`]).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use herald_core::{
    delivery::{DeliveryId, DeliveryReport},
    store::StoreError,
};
use uuid::Uuid;

use super::{SqliteStore, err, values};
use crate::{columns::Stamp, sql::deliveries::DeliveryBatches, timeline::Tallies};

impl DeliveryBatches for SqliteStore {
    /// One transaction on the writer, a statement per report.
    async fn record_reports(&self, reports: &[DeliveryReport], now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(err)?;
        let mut applied = 0;
        let mut tallies = Tallies::default();
        for r in reports {
            if let Some((kind, source)) = Self::apply_report(&mut tx, r, now).await? {
                applied += 1;
                tallies.count(&kind, source, r);
            }
        }
        Self::add_to_timeline(&mut tx, &tallies, now).await?;
        tx.commit().await.map_err(err)?;
        Ok(applied)
    }

    async fn claims_still_held(
        &self,
        claims: &[(DeliveryId, DateTime<Utc>)],
    ) -> Result<HashSet<DeliveryId>, StoreError> {
        let mut current = HashSet::new();
        // One statement per bounded chunk keeps under SQLite's bound-parameter limit.
        for chunk in claims.chunks(400) {
            let pairs = values(chunk.len(), 2);
            let sql = format!(
                "WITH c (id, lease_until) AS (VALUES {pairs}) SELECT d.id FROM deliveries d JOIN c \
                 ON d.id = c.id AND d.lease_until = c.lease_until WHERE d.status = 'sending'"
            );
            // Only the number of placeholders varies.
            let mut query = sqlx::query_scalar::<_, Uuid>(sqlx::AssertSqlSafe(sql));
            for (id, lease) in chunk {
                query = query.bind(id.0).bind(Stamp(*lease));
            }
            current.extend(query.fetch_all(&self.reader).await.map_err(err)?.into_iter().map(DeliveryId));
        }
        Ok(current)
    }
}
