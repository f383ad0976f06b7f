//! [`S3Files`]: attachment bytes in an S3-compatible object store, through the `object_store`
//! crate (request signing, retries and multipart uploads are its own).
//!
//! Objects live at `<prefix>/<key>` in one bucket; keys are fresh UUIDs (32 lower-case hex
//! digits), as with [`crate::LocalFiles`], and [`Files::scan`] reports nothing else, so the
//! collector never touches an object Herald did not write. An upload is buffered up to one part
//! ([`S3Options::part_size`]: 5 MiB, more when the largest upload would need over 10,000 parts): a
//! smaller file is stored with one PUT when it finishes, a file of a part or more goes up as a
//! multipart upload with at most [`PARTS_IN_FLIGHT`] parts on the wire, so one upload holds at
//! most `(1 + PARTS_IN_FLIGHT) × part size` bytes, whatever the file's size. All uploads of a
//! process share a budget of memory ([`S3Options::upload_memory`], counted in MiB): a buffer grows
//! only with memory taken from it, and a part keeps its share until it is on the store, then gives
//! it back to its upload, for the next part. Only an upload's admission can fail: its first MiB,
//! and the whole part it takes when it outgrows one MiB. An upload that finds the budget spent
//! then fails with [`io::ErrorKind::ResourceBusy`] instead of waiting; once its multipart upload
//! has started, it always has memory of its own to wait for (parts in flight), so it is never
//! refused midway, after most of its bytes are stored. An unfinished multipart upload is not an
//! object: nothing is visible under the key until it completes, and an aborted or dropped upload
//! is aborted at the store. Uploads cut off by a crash are the bucket lifecycle rule's
//! (`AbortIncompleteMultipartUpload`): the S3 API lists them apart from objects, so
//! [`Files::scan`] never reports partial entries here.
//!
//! Every call to the store is bounded in time: connecting by [`CONNECT_TIMEOUT`], each request
//! (retries included) by [`REQUEST_TIMEOUT`], a download by [`READ_IDLE_TIMEOUT`] between chunks,
//! so a dead endpoint fails requests instead of hanging them, and a slow reader is never cut off.
//! Errors name what was being done and the store's status, never the text of its answer (an S3
//! error body may quote the access key and the signed request).

mod errors;
mod options;
mod upload;

use std::{fmt, io, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt as _, stream::BoxStream};
use herald_core::files::{FileEntry, Files, Opened, Upload};
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, RetryConfig,
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    path::Path,
};
use tokio::sync::Semaphore;
use uuid::Uuid;

use self::errors::{bounded, is_not_found, store_error, timed_out};
pub use self::options::{S3Endpoint, S3Location, S3Options};
use crate::files::{check_key, is_herald_key};

const MIB: u64 = 1024 * 1024;
/// The unit of the upload memory budget, and the most a small file's buffer grows to before
/// it takes a whole part.
const SMALL: usize = MIB as usize;
/// The smallest part of a multipart upload (S3's smallest allowed part, but for the last), and
/// the part size while the largest upload fits in [`MAX_PARTS`] of them.
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// The most parts one multipart upload may have (S3's limit).
pub const MAX_PARTS: u64 = 10_000;
/// The largest object S3 stores.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * MIB;
/// Parts of one upload sent at once; the next waits for one of them to finish.
pub const PARTS_IN_FLIGHT: usize = 2;
/// Longest wait for a connection to the store.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one call to the store may take, its retries included (a download: until its body
/// starts; a listing: per page).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the next chunk of a download's body from the store.
pub const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Attachment bytes in an S3-compatible object store.
#[derive(Clone)]
pub struct S3Files {
    store: Arc<dyn ObjectStore>,
    location: S3Location,
    endpoint: Option<S3Endpoint>,
    prefix: Path,
    part_size: usize,
    /// The upload memory left, in MiB.
    budget: Arc<Semaphore>,
    budget_mib: u64,
}

/// The `AWS_*` variables passed to the client: credentials (static, web identity, container)
/// and the region. The others the SDKs read (`AWS_ENDPOINT_URL`, `AWS_SKIP_SIGNATURE`,
/// `AWS_METADATA_ENDPOINT`, …) would redirect or unsign requests behind Herald's settings:
/// they are ignored.
pub const AWS_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// The client's settings from [`AWS_VARIABLES`] in `env`, at `endpoint` (path-style) or else AWS.
fn client_builder(
    location: &S3Location,
    endpoint: Option<&S3Endpoint>,
    env: impl IntoIterator<Item = (String, String)>,
) -> AmazonS3Builder {
    let mut builder = AmazonS3Builder::new();
    for (name, value) in env {
        if AWS_VARIABLES.contains(&name.as_str())
            && let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()
        {
            builder = builder.with_config(key, value);
        }
    }
    // Herald bounds each call itself (a download may stream for as long as its reader
    // takes); the client's own whole-request timeout would cut long downloads off.
    let client = ClientOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout_disabled()
        .with_allow_http(endpoint.is_some_and(S3Endpoint::is_http));
    let retry = RetryConfig { backoff: BackoffConfig::default(), max_retries: 3, retry_timeout: REQUEST_TIMEOUT };
    builder = builder.with_bucket_name(&location.bucket).with_client_options(client).with_retry(retry);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint.as_str()).with_virtual_hosted_style_request(false);
    }
    builder
}

impl fmt::Debug for S3Files {
    /// The location and endpoint only: the client holds credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Files")
            .field("location", &self.location.to_string())
            .field("endpoint", &self.endpoint.as_ref().map(S3Endpoint::as_str))
            .finish_non_exhaustive()
    }
}

impl S3Files {
    /// A client for `location`, at `endpoint` (path-style) or else AWS S3. Region and
    /// credentials come from the [`AWS_VARIABLES`] of `env` (the process passes its
    /// environment); other `AWS_*` variables are ignored. Lists one page under the prefix, so a
    /// missing bucket or refused credentials stop the start.
    pub async fn open(
        location: &S3Location,
        endpoint: Option<&S3Endpoint>,
        options: S3Options,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> io::Result<Self> {
        options
            .check_max_upload_size()
            .and_then(|()| options.check_upload_memory())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        let part_size = usize::try_from(options.part_size()).map_err(|e| invalid(e.to_string()))?;
        let budget_mib = options.upload_memory / MIB;
        let permits = usize::try_from(budget_mib).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        let store = client_builder(location, endpoint, env).build().map_err(|e| invalid(e.to_string()))?;
        let prefix = Path::parse(&location.prefix).map_err(|e| invalid(format!("{location}: {e}")))?;
        let files = Self {
            store: Arc::new(store),
            location: location.clone(),
            endpoint: endpoint.cloned(),
            prefix,
            part_size,
            budget: Arc::new(Semaphore::new(permits)),
            budget_mib,
        };
        files.check().await?;
        Ok(files)
    }

    /// Lists one page under the prefix: a listing under a prefix of a bucket that exists never
    /// fails, so any error means the bucket, the endpoint or the credentials are wrong.
    async fn check(&self) -> io::Result<()> {
        let mut listing = self.store.list(self.listed_prefix().as_ref());
        match tokio::time::timeout(REQUEST_TIMEOUT, listing.next()).await {
            Ok(None | Some(Ok(_))) => Ok(()),
            Ok(Some(Err(err))) => Err(store_error(&format!("listing {}", self.location), &err)),
            Err(_) => Err(timed_out(&format!("listing {}", self.location))),
        }
    }

    fn listed_prefix(&self) -> Option<Path> {
        (!self.location.prefix.is_empty()).then(|| self.prefix.clone())
    }

    fn path(&self, key: &str) -> io::Result<Path> {
        check_key(key)?;
        Ok(self.prefix.clone().join(key))
    }

    fn describe(&self, key: &str) -> String {
        if self.location.prefix.is_empty() {
            format!("s3://{}/{key}", self.location.bucket)
        } else {
            format!("{}/{key}", self.location)
        }
    }
}

/// A download's body: the store's stream with a bound on each wait for the next chunk, ending
/// at its first error.
fn body_stream(
    name: String,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
) -> impl futures::Stream<Item = io::Result<Bytes>> + Send + Unpin {
    Box::pin(futures::stream::unfold(Some((name, stream)), |state| async move {
        let (name, mut stream) = state?;
        match tokio::time::timeout(READ_IDLE_TIMEOUT, stream.next()).await {
            Ok(None) => None,
            Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some((name, stream)))),
            Ok(Some(Err(err))) => Some((Err(store_error(&format!("reading {name}"), &err)), None)),
            Err(_) => Some((Err(timed_out(&format!("reading {name}"))), None)),
        }
    }))
}

#[async_trait]
impl Files for S3Files {
    async fn begin_upload(&self) -> io::Result<Box<dyn Upload>> {
        let key = Uuid::now_v7().simple().to_string();
        Ok(Box::new(self.upload(self.path(&key)?, self.describe(&key), key)))
    }

    async fn open(&self, key: &str, range: Option<(u64, u64)>) -> io::Result<Option<Opened>> {
        let path = self.path(key)?;
        let name = self.describe(key);
        let empty = |size| Opened { size, reader: Box::new(tokio::io::empty()) };
        let range = match range {
            // S3 has no empty range: the size alone answers.
            Some((_, 0)) => {
                return match bounded(|| format!("reading {name}"), self.store.head(&path)).await {
                    Ok(meta) => Ok(Some(empty(meta.size))),
                    Err(err) if is_not_found(&err) => Ok(None),
                    Err(err) => Err(err),
                };
            }
            Some((start, len)) => Some((start, GetRange::Bounded(start..start.saturating_add(len)))),
            None => None,
        };
        let options = GetOptions { range: range.as_ref().map(|(_, r)| r.clone()), ..GetOptions::default() };
        match bounded(|| format!("reading {name}"), self.store.get_opts(&path, options)).await {
            Ok(got) => {
                let size = got.meta.size;
                let reader = tokio_util::io::StreamReader::new(body_stream(name, got.into_stream()));
                Ok(Some(Opened { size, reader: Box::new(reader) }))
            }
            Err(err) if is_not_found(&err) => Ok(None),
            // A range that starts at or past the end is refused by the store; here it reads
            // nothing, as from a file.
            Err(err) => match range {
                Some((start, _)) => match bounded(|| format!("reading {name}"), self.store.head(&path)).await {
                    Ok(meta) if start >= meta.size => Ok(Some(empty(meta.size))),
                    Err(head) if is_not_found(&head) => Ok(None),
                    _ => Err(err),
                },
                None => Err(err),
            },
        }
    }

    async fn remove(&self, key: &str, partial: bool) -> io::Result<bool> {
        let path = self.path(key)?;
        if partial {
            // Never reported by scan: unfinished multipart uploads are not objects.
            return Ok(false);
        }
        let name = self.describe(key);
        // A delete of a missing object succeeds on S3: the head says whether it was there.
        match bounded(|| format!("looking up {name}"), self.store.head(&path)).await {
            Ok(_) => {}
            Err(err) if is_not_found(&err) => return Ok(false),
            Err(err) => return Err(err),
        }
        bounded(|| format!("deleting {name}"), self.store.delete(&path)).await?;
        Ok(true)
    }

    async fn scan(&self) -> io::Result<Vec<FileEntry>> {
        let what = || format!("listing {}", self.location);
        let mut listing = self.store.list(self.listed_prefix().as_ref());
        let mut out = Vec::new();
        loop {
            let meta = match tokio::time::timeout(REQUEST_TIMEOUT, listing.next()).await {
                Ok(None) => break,
                Ok(Some(Ok(meta))) => meta,
                Ok(Some(Err(err))) => return Err(store_error(&what(), &err)),
                Err(_) => return Err(timed_out(&what())),
            };
            // Only Herald's keys directly under the prefix: nothing deeper, nothing of another
            // shape is Herald's, and the collector must not delete what others keep there.
            let Some(name) = meta.location.prefix_match(&self.prefix).and_then(|mut parts| {
                let first = parts.next()?;
                parts.next().is_none().then(|| first.as_ref().to_owned())
            }) else {
                continue;
            };
            if is_herald_key(&name) {
                out.push(FileEntry { key: name, modified: meta.last_modified.into(), partial: false });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
