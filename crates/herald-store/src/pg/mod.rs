//! [`PgStore`]: the PostgreSQL store, for deployments that outgrow one machine. Its queries are
//! the shared ones of [`crate::sql`]; here are its pools, its events and wake-ups, and what it
//! does its own way (group commit of tasks, statements over arrays, counting what a statement
//! changes).

mod campaigns;
mod deliveries;
mod group;
mod notices;
mod outbox;
mod wakeup;

use std::{
    str::FromStr as _,
    sync::{Arc, LazyLock},
    time::Duration,
};

use async_trait::async_trait;
use herald_core::{
    change::ChangeEvent,
    store::{Store, StoreError},
};
use sqlx::{
    Postgres, Transaction,
    postgres::{PgConnectOptions, PgPool, PgPoolOptions},
};

use crate::{
    error,
    sql::{Adapter, Dialect, Query, Write},
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Relays wait for committed events on it.
    outbox_wakeup: Arc<wakeup::Wakeup>,
    /// Schedulers wait for deliveries that became due on it.
    due_wakeup: Arc<wakeup::Wakeup>,
    /// Task creations waiting to be written together.
    task_group: Arc<group::TaskGroup>,
}

impl PgStore {
    /// Connects to `url` with at most `pool_size` connections.
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(err)?;
        Self::connect_with(options, pool_size).await
    }

    /// Connects with prepared options (tests use them to pin a `search_path`).
    pub async fn connect_with(options: PgConnectOptions, pool_size: u32) -> Result<Self, StoreError> {
        let options = options.application_name("herald");
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(err)?;
        let outbox_wakeup = Arc::new(wakeup::Wakeup::new(outbox::CHANNEL, pool.clone(), options.clone()));
        let due_wakeup = Arc::new(wakeup::Wakeup::new(DUE_CHANNEL, pool.clone(), options));
        Ok(Self { pool, outbox_wakeup, due_wakeup, task_group: Arc::default() })
    }
}

/// The `LISTEN` channel schedulers wake on.
const DUE_CHANNEL: &str = "herald_due";

fn err(e: sqlx::Error) -> StoreError {
    // PostgreSQL names the violated constraint itself.
    error::classify(e, |_| None)
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        // sqlx holds a PostgreSQL advisory lock while migrating, so concurrent starts are safe.
        MIGRATOR.run(&self.pool).await.map_err(|e| StoreError::Other(Box::new(e)))?;
        // Webhooks set before they had secrets get one (no SQL way to make base64 on both).
        let filled = herald_core::store::WebhookStore::fill_webhook_secrets(self).await?;
        if filled > 0 {
            tracing::info!(filled, "gave webhooks set before webhook secrets existed a secret each");
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(err)
    }

    async fn close(&self) {
        tokio::join!(self.outbox_wakeup.close(), self.due_wakeup.close());
        self.pool.close().await;
    }
}

impl Adapter for PgStore {
    type Db = Postgres;

    const DIALECT: Dialect = Dialect::Postgres;

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn err(e: sqlx::Error) -> StoreError {
        err(e)
    }

    /// In one statement (see [`outbox::with_events`]).
    async fn insert_events(tx: &mut Transaction<'_, Postgres>, events: &[ChangeEvent]) -> Result<(), StoreError> {
        static STATEMENT: LazyLock<String> = LazyLock::new(|| outbox::with_events("SELECT 1"));
        let events = outbox::Events::new(events);
        let statement = events.bind(sqlx::query(sqlx::AssertSqlSafe(STATEMENT.as_str())));
        statement.fetch_one(&mut **tx).await.map(drop).map_err(err)
    }

    async fn commit(&self, tx: Transaction<'_, Postgres>) -> Result<(), StoreError> {
        tx.commit().await.map_err(err)?;
        self.outbox_wakeup.wake();
        Ok(())
    }

    fn write_statement(write: &'static Write) -> &'static str {
        write.with_events(outbox::with_events)
    }

    async fn run_write(&self, statement: Query<'_, Self>, events: &[ChangeEvent]) -> Result<u64, StoreError> {
        let arrays = outbox::Events::new(events);
        self.run_with_events(arrays.bind(statement), &arrays).await
    }

    async fn wait_for_events(&self, timeout: Duration) {
        self.outbox_wakeup.wait(timeout).await;
    }

    /// Wakes schedulers in any process.
    fn wake_schedulers(&self) {
        self.due_wakeup.wake();
    }

    async fn wait_for_due_deliveries(&self, timeout: Duration) {
        self.due_wakeup.wait(timeout).await;
    }
}

crate::sql::shared_ports!(PgStore);
