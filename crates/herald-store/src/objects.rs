//! [`S3Files`]: attachment bytes in an S3-compatible object store, through the `object_store`
//! crate (request signing, retries and multipart uploads are its own).
//!
//! Objects live at `<prefix>/<key>` in one bucket; keys are fresh UUIDs, as with
//! [`crate::LocalFiles`]. An upload is buffered up to one part ([`PART_SIZE`]): a file no larger
//! is stored with one PUT when it finishes, a larger one goes up as a multipart upload with at
//! most [`PARTS_IN_FLIGHT`] parts on the wire, so one upload holds at most
//! `(1 + PARTS_IN_FLIGHT) × PART_SIZE` bytes, whatever the file's size. An unfinished multipart
//! upload is not an object: nothing is visible under the key until it completes, and an aborted
//! or dropped upload is aborted at the store. Uploads cut off by a crash are the bucket lifecycle
//! rule's (`AbortIncompleteMultipartUpload`): the S3 API lists them apart from objects, so
//! [`Files::scan`] never reports partial entries here.
//!
//! Every call to the store is bounded in time: connecting by [`CONNECT_TIMEOUT`], each request
//! (retries included) by [`REQUEST_TIMEOUT`], a download by [`READ_IDLE_TIMEOUT`] between chunks,
//! so a dead endpoint fails requests instead of hanging them, and a slow reader is never cut off.

use std::{fmt, io, str::FromStr, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt as _, stream::BoxStream};
use herald_core::files::{FileEntry, Files, Opened, StoredFile, Upload};
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt as _, PutPayload,
    RetryConfig,
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    path::Path,
};
use sha2::{Digest as _, Sha256};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::files::{check_key, is_plain_key};

/// The size of every part of a multipart upload but the last (S3's smallest allowed part is
/// 5 MiB, and some stores want every part but the last of one size).
pub const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts of one upload sent at once; the next waits for one of them to finish.
pub const PARTS_IN_FLIGHT: usize = 2;
/// Longest wait for a connection to the store.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one call to the store may take, its retries included (a download: until its body
/// starts; a listing: per page).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the next chunk of a download's body from the store.
pub const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where in an object store attachments live: `s3://<bucket>/<prefix>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing slashes; empty for the bucket's root.
    pub prefix: String,
}

impl FromStr for S3Location {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let rest = url.strip_prefix("s3://").ok_or("must start with s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !bucket_ok {
            return Err(format!(
                "{bucket:?} is not a bucket name (3 to 63 lower-case letters, digits, . and -): use s3://<bucket>/<prefix>"
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        let segments_ok = prefix.is_empty()
            || prefix.split('/').all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains(char::is_control));
        if !segments_ok || prefix.len() > 512 || Path::parse(prefix).is_err() {
            return Err(format!("{prefix:?} is not a prefix: segments separated by single slashes, no . or .."));
        }
        Ok(Self { bucket: bucket.to_owned(), prefix: prefix.to_owned() })
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// The endpoint of an S3-compatible store that is not AWS: `http(s)://host[:port]`, addressed
/// path-style. It never carries credentials (those come from `AWS_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Endpoint(String);

impl S3Endpoint {
    /// Whether requests go over plain HTTP (a local store, a test server).
    pub fn is_http(&self) -> bool {
        self.0.starts_with("http://")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for S3Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim_end_matches('/');
        let authority = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
        match authority {
            Some(a) if !a.is_empty() && !a.contains(['/', '?', '#', '@']) && !a.contains(char::is_whitespace) => {
                Ok(Self(s.to_owned()))
            }
            _ => Err("must be http://host[:port] or https://host[:port], without a path or credentials \
                      (credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                .into()),
        }
    }
}

impl fmt::Display for S3Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Attachment bytes in an S3-compatible object store.
#[derive(Clone)]
pub struct S3Files {
    store: Arc<dyn ObjectStore>,
    location: S3Location,
    endpoint: Option<S3Endpoint>,
    prefix: Path,
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
    /// credentials come from the `AWS_*` entries of `env` (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` or `AWS_DEFAULT_REGION`, and the
    /// other credential sources the AWS SDKs read); the process passes its environment. Lists
    /// one page under the prefix, so a missing bucket or refused credentials stop the start.
    pub async fn open(
        location: &S3Location,
        endpoint: Option<&S3Endpoint>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> io::Result<Self> {
        let mut builder = AmazonS3Builder::new();
        for (name, value) in env {
            if name.starts_with("AWS_")
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
        let store = builder.build().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let prefix = Path::parse(&location.prefix)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{location}: {e}")))?;
        let files = Self { store: Arc::new(store), location: location.clone(), endpoint: endpoint.cloned(), prefix };
        files.check().await?;
        Ok(files)
    }

    /// Lists one page under the prefix: a listing under a prefix of a bucket that exists never
    /// fails, so any error means the bucket, the endpoint or the credentials are wrong.
    async fn check(&self) -> io::Result<()> {
        let mut listing = self.store.list(self.listed_prefix().as_ref());
        match tokio::time::timeout(REQUEST_TIMEOUT, listing.next()).await {
            Ok(None | Some(Ok(_))) => Ok(()),
            Ok(Some(Err(err))) => Err(store_error(&format!("listing {}", self.location), err)),
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

/// An `object_store` error as an I/O error that names what was being done.
fn store_error(what: &str, err: object_store::Error) -> io::Error {
    let kind = match &err {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            io::ErrorKind::PermissionDenied
        }
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("{what}: {err}"))
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what}: no answer from the object store within the timeout"))
}

/// `call` bounded by [`REQUEST_TIMEOUT`], its error naming `what`.
async fn bounded<T>(
    what: impl FnOnce() -> String,
    call: impl Future<Output = object_store::Result<T>>,
) -> io::Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(store_error(&what(), err)),
        Err(_) => Err(timed_out(&what())),
    }
}

fn is_not_found(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound
}

struct S3Upload {
    store: Arc<dyn ObjectStore>,
    path: Path,
    key: String,
    name: String,
    /// Bytes not yet sent: less than one part.
    buffer: Vec<u8>,
    /// Started once the file outgrows one part.
    multipart: Option<Box<dyn MultipartUpload>>,
    parts: JoinSet<io::Result<()>>,
    hasher: Sha256,
    size: u64,
    finished: bool,
}

impl S3Upload {
    /// Sends the full buffer as the next part, waiting while [`PARTS_IN_FLIGHT`] are on the wire.
    async fn send_part(&mut self) -> io::Result<()> {
        let data = std::mem::take(&mut self.buffer);
        let multipart = match &mut self.multipart {
            Some(multipart) => multipart,
            None => {
                let started =
                    bounded(|| format!("starting the upload of {}", self.name), self.store.put_multipart(&self.path))
                        .await?;
                self.multipart.insert(started)
            }
        };
        let part = multipart.put_part(PutPayload::from(Bytes::from(data)));
        while self.parts.len() >= PARTS_IN_FLIGHT {
            self.settle_one().await?;
        }
        let name = self.name.clone();
        self.parts.spawn(bounded(move || format!("uploading a part of {name}"), part));
        Ok(())
    }

    /// Waits for one part in flight; its failure fails the upload.
    async fn settle_one(&mut self) -> io::Result<()> {
        match self.parts.join_next().await {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(err))) => Err(err),
            Some(Err(join)) => Err(io::Error::other(format!("uploading a part of {}: {join}", self.name))),
        }
    }

    async fn complete(&mut self) -> io::Result<()> {
        if self.multipart.is_none() {
            let data = PutPayload::from(Bytes::from(std::mem::take(&mut self.buffer)));
            bounded(|| format!("storing {}", self.name), self.store.put(&self.path, data)).await?;
            return Ok(());
        }
        if !self.buffer.is_empty() {
            self.send_part().await?;
        }
        while !self.parts.is_empty() {
            self.settle_one().await?;
        }
        if let Some(multipart) = &mut self.multipart {
            bounded(|| format!("completing the upload of {}", self.name), multipart.complete()).await?;
        }
        Ok(())
    }

    /// Aborts the multipart upload at the store, once no part is on the wire.
    async fn abort_at_store(&mut self) {
        if let Some(multipart) = self.multipart.take() {
            abort_multipart(std::mem::take(&mut self.name), multipart, std::mem::take(&mut self.parts)).await;
        }
    }
}

/// Lets the parts in flight end (each is bounded), then aborts the upload: a part that reached
/// the store after its upload was aborted would hold storage until the lifecycle rule ran.
async fn abort_multipart(name: String, mut multipart: Box<dyn MultipartUpload>, mut parts: JoinSet<io::Result<()>>) {
    while parts.join_next().await.is_some() {}
    if let Err(err) = bounded(|| format!("aborting the upload of {name}"), multipart.abort()).await {
        tracing::warn!(%err, "could not abort an upload; the bucket's lifecycle rule removes its parts");
    }
}

#[async_trait]
impl Upload for S3Upload {
    async fn write(&mut self, chunk: &[u8]) -> io::Result<u64> {
        if self.finished {
            return Err(io::Error::other("upload already finished"));
        }
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.buffer.capacity() == 0 {
                self.buffer.reserve_exact(PART_SIZE);
            }
            let (now, later) = rest.split_at(rest.len().min(PART_SIZE - self.buffer.len()));
            self.buffer.extend_from_slice(now);
            rest = later;
            if self.buffer.len() == PART_SIZE {
                self.send_part().await?;
            }
        }
        Ok(self.size)
    }

    async fn finish(mut self: Box<Self>) -> io::Result<StoredFile> {
        if self.finished {
            return Err(io::Error::other("upload already finished"));
        }
        if let Err(err) = self.complete().await {
            self.abort_at_store().await;
            return Err(err);
        }
        self.finished = true;
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        Ok(StoredFile { key: std::mem::take(&mut self.key), size: self.size, sha256 })
    }

    async fn abort(mut self: Box<Self>) {
        self.finished = true;
        self.abort_at_store().await;
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        // Dropped mid-way (client gone, task cancelled): the multipart upload is aborted in the
        // background, after its parts in flight, rather than left to the lifecycle rule.
        if self.finished {
            return;
        }
        let Some(multipart) = self.multipart.take() else { return };
        let name = std::mem::take(&mut self.name);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(abort_multipart(name, multipart, std::mem::take(&mut self.parts)));
            }
            Err(_) => {
                tracing::warn!(%name, "an upload dropped outside the runtime is left to the bucket's lifecycle rule")
            }
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
            Ok(Some(Err(err))) => Some((Err(store_error(&format!("reading {name}"), err)), None)),
            Err(_) => Some((Err(timed_out(&format!("reading {name}"))), None)),
        }
    }))
}

#[async_trait]
impl Files for S3Files {
    async fn begin_upload(&self) -> io::Result<Box<dyn Upload>> {
        let key = Uuid::now_v7().simple().to_string();
        Ok(Box::new(S3Upload {
            store: self.store.clone(),
            path: self.path(&key)?,
            name: self.describe(&key),
            key,
            buffer: Vec::new(),
            multipart: None,
            parts: JoinSet::new(),
            hasher: Sha256::new(),
            size: 0,
            finished: false,
        }))
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
                Ok(Some(Err(err))) => return Err(store_error(&what(), err)),
                Err(_) => return Err(timed_out(&what())),
            };
            // Only plain keys directly under the prefix: nothing deeper is Herald's.
            let Some(name) = meta.location.prefix_match(&self.prefix).and_then(|mut parts| {
                let first = parts.next()?;
                parts.next().is_none().then(|| first.as_ref().to_owned())
            }) else {
                continue;
            };
            if is_plain_key(&name) {
                out.push(FileEntry { key: name, modified: meta.last_modified.into(), partial: false });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_endpoints_parse() {
        let loc: S3Location = "s3://herald-files/attachments/prod/".parse().expect("location");
        assert_eq!((loc.bucket.as_str(), loc.prefix.as_str()), ("herald-files", "attachments/prod"));
        assert_eq!(loc.to_string(), "s3://herald-files/attachments/prod");
        let root: S3Location = "s3://bucket".parse().expect("bucket only");
        assert_eq!(root.prefix, "");
        for bad in ["s3://", "s3://B/x", "s3://ab/x", "s3://b@c/x", "s3://bucket/a//b", "s3://bucket/../x", "file:///x"]
        {
            assert!(bad.parse::<S3Location>().is_err(), "{bad}");
        }
        let ep: S3Endpoint = "http://127.0.0.1:9000/".parse().expect("endpoint");
        assert_eq!((ep.as_str(), ep.is_http()), ("http://127.0.0.1:9000", true));
        assert!(!"https://s3.example.org".parse::<S3Endpoint>().expect("https").is_http());
        for bad in ["http://key:secret@host", "ftp://host", "http://", "http://host/path", "host:9000"] {
            assert!(bad.parse::<S3Endpoint>().is_err(), "{bad}");
        }
    }
}
