//! `admin.*`: what administrators do for the workers — list the records the workers quarantined
//! (records that kept failing, see [`crate::quarantine`]) and retry one once its cause is mended.

use async_trait::async_trait;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    command::{Access, Command, Ctx},
    error::{ApiError, ErrorCode},
    page::{self, Page},
    quarantine::{HeldId, HeldRecord},
    services::Services,
};

use crate::shapes::ListInput;

/// Lists quarantined records, newest first.
#[derive(Debug)]
pub struct Quarantined;

#[async_trait]
impl Command for Quarantined {
    const NAME: &'static str = "admin.quarantined";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "List the records workers quarantined (each failed again and again)";
    type Input = ListInput;
    type Output = Page<HeldRecord>;

    async fn run(&self, svc: &Services, _cx: &Ctx, input: ListInput) -> Result<Page<HeldRecord>, ApiError> {
        let (limit, before) = page::request::<HeldId>(input.limit, input.cursor.as_deref())?;
        let rows = svc.store.quarantined(before, limit + 1).await?;
        Ok(Page::from_rows(rows, limit, |h| h.id.0, |h| h))
    }
}

/// Input naming one quarantined record's entry.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeldRef {
    /// The entry's `id` (from `admin.quarantined`).
    pub id: Uuid,
}

/// Retries a quarantined record: its entry is removed, and its worker takes the record again at
/// its next pass (a reminder message within the longest back-off, as the broker holds it).
#[derive(Debug)]
pub struct Retry;

#[async_trait]
impl Command for Retry {
    const NAME: &'static str = "admin.retry_quarantined";
    const ACCESS: Access = Access::Admin;
    const SUMMARY: &'static str = "Retry a quarantined record at its worker's next pass";
    type Input = HeldRef;
    type Output = HeldRecord;

    async fn run(&self, svc: &Services, cx: &Ctx, input: HeldRef) -> Result<HeldRecord, ApiError> {
        match svc.store.release_held(HeldId(input.id)).await? {
            Some(held) => {
                tracing::info!(held_id = %held.id, worker = %held.worker, record = %held.record,
                    by = %cx.identity()?.user_id, "a quarantined record was retried");
                Ok(held)
            }
            None => Err(ApiError::new(ErrorCode::NotFound, "no such quarantined record")),
        }
    }
}
