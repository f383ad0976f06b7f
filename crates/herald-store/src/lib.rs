//! Store port adapters: [`SqliteStore`] (embedded default) and [`PgStore`], each with its own
//! migrations under `migrations/<backend>/`. [`StoreUrl`] picks one from a URL, once, at the edge.
//! Files port adapters: [`LocalFiles`] (embedded default) and [`S3Files`], picked by [`FilesUrl`].

mod campaign;
mod columns;
mod decode;
mod error;
mod escalation;
mod files;
mod objects;
mod pg;
mod sql;
mod sqlite;
mod timeline;
mod unreadable;

use std::{fmt, path::PathBuf, str::FromStr, sync::Arc};

use herald_core::store::{Store, StoreError};

pub use files::LocalFiles;
pub use objects::{MIN_PART_SIZE as S3_MIN_PART_SIZE, S3Endpoint, S3Files, S3Location, S3Options};
pub use pg::PgStore;
pub use sqlite::SqliteStore;

/// Which store to open, parsed from `HERALD_STORE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://<path>`: a database file, created when missing.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`, passed to the driver as is.
    Postgres(String),
}

impl FromStr for StoreUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Err("a sqlite URL needs a file path, e.g. sqlite://./herald-data/herald.db".into());
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else {
            Err("must start with sqlite:// or postgres://".into())
        }
    }
}

impl fmt::Display for StoreUrl {
    /// Shows the URL with any password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => {
                f.write_str(&herald_core::redact::url_password(&format!("sqlite://{}", path.display())))
            }
            Self::Postgres(url) => f.write_str(&herald_core::redact::url_password(url)),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl StoreUrl {
    /// Opens the store this URL names, with at most `pool_size` connections.
    pub async fn open(&self, pool_size: u32) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            Self::Sqlite(path) => Arc::new(SqliteStore::open(path, pool_size).await?),
            Self::Postgres(url) => Arc::new(PgStore::connect(url, pool_size).await?),
        })
    }
}

/// Where attachment bytes live, parsed from `HERALD_FILES_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum FilesUrl {
    /// `file://<dir>`: a local directory.
    Local(PathBuf),
    /// `s3://<bucket>/<prefix>`: an S3-compatible object store.
    S3(S3Location),
}

impl FromStr for FilesUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if let Some(dir) = url.strip_prefix("file://") {
            if dir.is_empty() {
                return Err("a file URL needs a directory, e.g. file://./herald-data/files".into());
            }
            Ok(Self::Local(PathBuf::from(dir)))
        } else if url.starts_with("s3://") {
            url.parse().map(Self::S3)
        } else {
            Err("must be file://<dir> or s3://<bucket>/<prefix>".into())
        }
    }
}

impl fmt::Display for FilesUrl {
    /// Shows the URL with any userinfo password or secret-named query value replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = match self {
            Self::Local(dir) => format!("file://{}", dir.display()),
            Self::S3(location) => location.to_string(),
        };
        f.write_str(&herald_core::redact::url_password(&url))
    }
}

impl fmt::Debug for FilesUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_redact() {
        assert_eq!("sqlite://./d/h.db".parse(), Ok(StoreUrl::Sqlite("./d/h.db".into())));
        assert_eq!("sqlite:///abs/h.db?mode=rwc".parse(), Ok(StoreUrl::Sqlite("/abs/h.db".into())));
        assert!("sqlite::memory:".parse::<StoreUrl>().is_err());
        assert!("mysql://x".parse::<StoreUrl>().is_err());
        let pg: StoreUrl = "postgres://app:s3cret@db:5432/herald?sslmode=disable".parse().expect("pg");
        assert_eq!(pg.to_string(), "postgres://app:***@db:5432/herald?sslmode=disable");
    }

    #[test]
    fn files_urls_parse() {
        assert_eq!("file://./d/files".parse(), Ok(FilesUrl::Local("./d/files".into())));
        assert_eq!("file:///srv/files".parse::<FilesUrl>().map(|u| u.to_string()), Ok("file:///srv/files".into()));
        let s3: FilesUrl = "s3://herald/att".parse().expect("s3");
        assert_eq!(s3, FilesUrl::S3(S3Location { bucket: "herald".into(), prefix: "att".into() }));
        for bad in ["file://", "/srv/files", "gs://b/p", "s3://B"] {
            assert!(bad.parse::<FilesUrl>().is_err(), "{bad}");
        }
    }
}
