//! Stores provisioned per test: a temporary SQLite file, or a fresh PostgreSQL schema, so tests
//! run in parallel without seeing each other.

use std::sync::Arc;

use herald_core::store::Store;
use herald_store::{PgStore, SqliteStore};
use sqlx::{Connection as _, PgConnection};
use tempfile::TempDir;
use uuid::Uuid;

/// The store backends under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store for one test, removed by [`TestStore::finish`].
#[derive(Debug)]
pub struct TestStore {
    pub store: Arc<dyn Store>,
    /// The URL the store was opened with (the app spawner opens its own from it).
    pub url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Dir(#[allow(dead_code)] TempDir),
    Schema { admin_url: String, schema: String },
}

impl TestStore {
    /// Provisions `backend`, or `None` when it is not configured (after saying so loudly).
    pub async fn new(backend: Backend, test: &str) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite().await),
            Backend::Postgres => Self::postgres(test).await,
        }
    }

    /// A migrated SQLite store in a temporary directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("herald.db");
        let store = SqliteStore::open(&path, 4).await.expect("open sqlite");
        store.migrate().await.expect("migrate sqlite");
        Self { store: Arc::new(store), url: format!("sqlite://{}", path.display()), cleanup: Cleanup::Dir(dir) }
    }

    /// A migrated PostgreSQL store in a schema of its own, when `HERALD_TEST_POSTGRES_URL` is set.
    pub async fn postgres(test: &str) -> Option<Self> {
        let admin_url = crate::test_env::backend_url("HERALD_TEST_POSTGRES_URL", test)?;
        let schema = format!("herald_t_{}", Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&admin_url).await.expect("connect to HERALD_TEST_POSTGRES_URL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
            .execute(&mut admin)
            .await
            .expect("create schema");
        admin.close().await.ok();
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options[search_path]={schema}");
        let store = PgStore::connect(&url, 4).await.expect("connect pg store");
        store.migrate().await.expect("migrate pg");
        Some(Self { store: Arc::new(store), url, cleanup: Cleanup::Schema { admin_url, schema } })
    }

    /// Runs `sql` on this store's database with a connection of its own.
    pub async fn raw_sql(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        if let Some(path) = self.url.strip_prefix("sqlite://") {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await.expect("connect sqlite");
            sqlx::raw_sql(sql).execute(&mut conn).await.expect("raw sql");
            conn.close().await.ok();
        } else {
            let mut conn = PgConnection::connect(&self.url).await.expect("connect postgres");
            sqlx::raw_sql(sql).execute(&mut conn).await.expect("raw sql");
            conn.close().await.ok();
        }
    }

    /// Closes the store and removes its data.
    pub async fn finish(self) {
        self.store.close().await;
        if let Cleanup::Schema { admin_url, schema } = self.cleanup
            && let Ok(mut admin) = PgConnection::connect(&admin_url).await
        {
            let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&mut admin).await.ok();
            admin.close().await.ok();
        }
    }
}
