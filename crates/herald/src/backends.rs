//! Opening the backends the configuration names: the data directory, the store, the broker and
//! the file store, each chosen once here, at the edge.

use std::sync::Arc;

use anyhow::Context as _;
use herald_core::{broker::Broker, files::Files, metrics::Metrics, store::Store};
use herald_store::{FilesUrl, LocalFiles, S3Files, StoreUrl};

use crate::config::Config;

/// Creates `dir` (and missing parents) readable by this user only: it holds the database, the
/// generated secret and uploaded files. An existing directory keeps its permissions.
pub fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Opens the configured store and applies its migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if let StoreUrl::Sqlite(path) = &config.store_url
        && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
    {
        create_private_dir(parent)?;
    }
    let store = config
        .store_url
        .open(config.store_pool_size.0)
        .await
        .with_context(|| format!("opening the store at {}", config.store_url))?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// Opens the configured broker. With `HERALD_BROKER_SIGNING_KEY` set it is wrapped in a
/// [`herald_broker::SignedBroker`]: what it publishes is signed, and what it receives unsigned or
/// forged is dropped and counted in `metrics`. Every role gets its broker here.
pub async fn open_broker(config: &Config, metrics: &Arc<Metrics>) -> anyhow::Result<Arc<dyn Broker>> {
    let key = config.broker_signing_key.0.as_ref().map(|key| key.expose().as_bytes());
    if let Some(key) = key
        && key.len() < herald_broker::MIN_KEY_LEN
    {
        anyhow::bail!("HERALD_BROKER_SIGNING_KEY must be at least {} bytes", herald_broker::MIN_KEY_LEN);
    }
    let broker = config
        .broker_url
        .open(&config.broker_namespace.0)
        .await
        .with_context(|| format!("opening the broker at {}", config.broker_url))?;
    let Some(key) = key else {
        if config.broker_url != herald_broker::BrokerUrl::Memory {
            tracing::warn!(
                "HERALD_BROKER_SIGNING_KEY is unset: every message on the broker is trusted, whoever sent it"
            );
        }
        return Ok(broker);
    };
    let signed = herald_broker::SignedBroker::new(broker, key, metrics.clone()).context("HERALD_BROKER_SIGNING_KEY")?;
    Ok(Arc::new(signed))
}

/// Opens the configured file store: a private local directory, or a bucket whose region and
/// credentials come from the process's `AWS_*` variables (read here, at the edge).
pub async fn open_files(config: &Config) -> anyhow::Result<Arc<dyn Files>> {
    match &config.files_url {
        FilesUrl::Local(dir) => {
            create_private_dir(dir)?;
            let files = LocalFiles::open(dir)
                .await
                .with_context(|| format!("opening the files directory {}", dir.display()))?;
            Ok(Arc::new(files))
        }
        FilesUrl::S3(location) => {
            let endpoint = config.s3_endpoint.0.as_ref();
            // Variables that are not Unicode cannot be AWS settings; `vars()` would panic on them.
            let env = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
            let files = S3Files::open(location, endpoint, config.s3_options(), env).await.with_context(|| {
                let at = endpoint.map(|e| format!(" at {e}")).unwrap_or_default();
                format!("opening the object store {location}{at}")
            })?;
            tracing::info!(files = %location, "attachment files live in an object store");
            Ok(Arc::new(files))
        }
    }
}
