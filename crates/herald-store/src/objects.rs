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

use std::{
    fmt, io,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

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
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError},
    task::{JoinError, JoinSet},
};
use uuid::Uuid;

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
        // What the errors echo, without a password or a secret query value.
        let shown = |part: &str| herald_core::redact::url_password(&format!("s3://{part}"))[5..].to_owned();
        if !bucket_ok {
            return Err(format!(
                "{:?} is not a bucket name (3 to 63 lower-case letters, digits, . and -): use s3://<bucket>/<prefix>",
                shown(bucket)
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        let segments_ok = prefix.is_empty()
            || prefix.split('/').all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains(char::is_control));
        if !segments_ok || prefix.len() > 512 || Path::parse(prefix).is_err() {
            let prefix = shown(&format!("{bucket}/{prefix}"))[bucket.len() + 1..].to_owned();
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

/// How uploads to the store are cut and how much memory they may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Options {
    /// The largest file accepted (`max_upload_size`): it sets the part size.
    pub max_upload_size: u64,
    /// Memory all uploads of the process may hold in buffers and parts in flight
    /// (`s3_upload_memory`); whole MiB count.
    pub upload_memory: u64,
}

impl S3Options {
    /// Every part of a multipart upload but the last: [`MIN_PART_SIZE`], or the whole MiB that
    /// fit the largest upload in [`MAX_PARTS`] parts.
    pub fn part_size(&self) -> u64 {
        let fitting = self.max_upload_size.div_ceil(MAX_PARTS).div_ceil(MIB).saturating_mul(MIB);
        fitting.max(MIN_PART_SIZE)
    }

    /// The most one upload holds: a part being filled and [`PARTS_IN_FLIGHT`] on the wire.
    pub fn memory_per_upload(&self) -> u64 {
        self.part_size().saturating_mul(1 + PARTS_IN_FLIGHT as u64)
    }

    /// Whether S3 can store a file of `max_upload_size`.
    pub fn check_max_upload_size(&self) -> Result<(), String> {
        if self.max_upload_size > MAX_OBJECT_SIZE {
            return Err(format!(
                "must be at most 5TiB on an object store (S3's largest object), not {} bytes",
                self.max_upload_size
            ));
        }
        Ok(())
    }

    /// Whether the budget holds one upload of any size.
    pub fn check_upload_memory(&self) -> Result<(), String> {
        let least = self.memory_per_upload();
        if self.upload_memory < least {
            return Err(format!(
                "must be at least {}MiB: one upload holds a part being filled and {PARTS_IN_FLIGHT} on the wire, \
                 {}MiB each for max_upload_size {} bytes",
                least / MIB,
                self.part_size() / MIB,
                self.max_upload_size
            ));
        }
        Ok(())
    }
}

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

    /// A fresh upload of `key` at `path`, nothing written yet.
    fn upload(&self, path: Path, name: String, key: String) -> S3Upload {
        S3Upload {
            store: self.store.clone(),
            path,
            name,
            key,
            part_size: self.part_size,
            buffer: Vec::new(),
            held: None,
            budget: self.budget.clone(),
            budget_mib: self.budget_mib,
            multipart: None,
            parts: JoinSet::new(),
            own: Arc::default(),
            hasher: Sha256::new(),
            size: 0,
            finished: false,
        }
    }

    fn describe(&self, key: &str) -> String {
        if self.location.prefix.is_empty() {
            format!("s3://{}/{key}", self.location.bucket)
        } else {
            format!("{}/{key}", self.location)
        }
    }
}

/// An `object_store` error as an I/O error that names what was being done and, when the store
/// answered, its status. Nothing of the error's own text is kept: for an answer it holds the
/// body, and an S3 error body may quote the access key id and the signed request (with the
/// session token).
fn store_error(what: &str, err: &object_store::Error) -> io::Error {
    use object_store::Error as E;
    let (kind, why) = match err {
        E::NotFound { .. } => (io::ErrorKind::NotFound, "not found (404)".to_owned()),
        E::PermissionDenied { .. } => (io::ErrorKind::PermissionDenied, "access denied (403)".to_owned()),
        E::Unauthenticated { .. } => (io::ErrorKind::PermissionDenied, "not authenticated (401)".to_owned()),
        E::AlreadyExists { .. } => (io::ErrorKind::AlreadyExists, "already exists (409)".to_owned()),
        E::Precondition { .. } => (io::ErrorKind::Other, "precondition failed (412)".to_owned()),
        E::NotModified { .. } => (io::ErrorKind::Other, "not modified (304)".to_owned()),
        E::InvalidPath { .. } => (io::ErrorKind::InvalidInput, "not a valid object path".to_owned()),
        E::NotSupported { .. } | E::NotImplemented { .. } => {
            (io::ErrorKind::Unsupported, "not supported by the object store".to_owned())
        }
        _ => failure(err),
    };
    io::Error::new(kind, format!("{what}: {why}"))
}

/// Why a request failed, from the transport error's kind or the status the store answered.
fn failure(err: &object_store::Error) -> (io::ErrorKind, String) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(http) = current.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            let why = match http.kind() {
                K::Connect => "could not connect to the object store",
                K::Timeout => "the object store did not answer in time",
                K::Decode => "the object store's answer could not be read",
                _ => "the request to the object store failed",
            };
            return (io::ErrorKind::Other, why.to_owned());
        }
        source = current.source();
    }
    // The status is only in the text (`… status code: 400 Bad Request: <body>`): the digits
    // after the marker, never what follows them.
    let text = err.to_string();
    let status = text.split_once("status code: ").and_then(|(_, rest)| {
        let digits = rest.get(..3).filter(|d| d.bytes().all(|b| b.is_ascii_digit()))?;
        digits.parse::<u16>().ok()
    });
    match status {
        Some(status) => {
            let kind = match status {
                404 => io::ErrorKind::NotFound,
                401 | 403 => io::ErrorKind::PermissionDenied,
                _ => io::ErrorKind::Other,
            };
            (kind, format!("the object store answered {status}"))
        }
        None => (io::ErrorKind::Other, "the object store failed the request".to_owned()),
    }
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
        Ok(Err(err)) => Err(store_error(&what(), &err)),
        Err(_) => Err(timed_out(&what())),
    }
}

fn is_not_found(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound
}

/// What a part's task answers: the memory the part held, for the next one (`None` when the
/// upload keeps a part's worth without it: it went back to the budget).
type PartResult = io::Result<Option<OwnedSemaphorePermit>>;

/// A landed part's memory: back to the budget when its upload holds a part's worth without it
/// (`None`), else kept for the upload's next part. A stalled upload so holds one part, not
/// every part it sent.
fn spare_memory(memory: OwnedSemaphorePermit, own: &AtomicUsize, part_mib: usize) -> Option<OwnedSemaphorePermit> {
    let mib = memory.num_permits();
    let freed = own.fetch_update(Ordering::AcqRel, Ordering::Acquire, |own| {
        (own.saturating_sub(mib) >= part_mib).then(|| own - mib)
    });
    match freed {
        Ok(_) => None,
        Err(_) => Some(memory),
    }
}

struct S3Upload {
    store: Arc<dyn ObjectStore>,
    path: Path,
    key: String,
    name: String,
    part_size: usize,
    /// Bytes not yet sent: less than one part.
    buffer: Vec<u8>,
    /// The budget's MiB the buffer holds: one while the file is at most [`SMALL`] bytes, a
    /// whole part beyond; each part takes its share along and gives it back once on the store.
    held: Option<OwnedSemaphorePermit>,
    budget: Arc<Semaphore>,
    budget_mib: u64,
    /// Started once the file outgrows one part.
    multipart: Option<Box<dyn MultipartUpload>>,
    /// Parts on the wire; each answers with the memory it held, unless the upload had enough
    /// without it.
    parts: JoinSet<PartResult>,
    /// The budget's MiB this upload holds, for its buffer and its parts: never less than a part
    /// once its multipart upload has started, so it always has memory of its own to wait for.
    own: Arc<AtomicUsize>,
    hasher: Sha256,
    size: u64,
    finished: bool,
}

impl S3Upload {
    fn held_bytes(&self) -> usize {
        self.held.as_ref().map_or(0, |held| held.num_permits().saturating_mul(SMALL))
    }

    /// Makes room in the buffer for `extra` more bytes: a small file's buffer grows by doubling
    /// within one MiB; past it (or once the file is known to be large) the buffer is a whole
    /// part, allocated once. The memory comes from this upload's parts already on the store,
    /// else from the budget, else from its parts in flight, waited for. Only an upload with no
    /// part in flight (one not yet multipart: its first MiB, its first part) can find none left:
    /// it fails with `ResourceBusy`.
    async fn make_room(&mut self, extra: usize) -> io::Result<()> {
        let wanted = self.buffer.len() + extra;
        let small = self.multipart.is_none() && wanted <= SMALL;
        let needed = if small { SMALL } else { self.part_size };
        while self.held_bytes() < needed
            && let Some(landed) = self.parts.try_join_next()
        {
            self.reclaim(landed)?;
        }
        while self.held_bytes() < needed {
            let more = u32::try_from((needed - self.held_bytes()).div_ceil(SMALL))
                .map_err(|_| io::Error::other(format!("uploading {}: a part too large", self.name)))?;
            match self.budget.clone().try_acquire_many_owned(more) {
                Ok(permit) => {
                    self.own.fetch_add(permit.num_permits(), Ordering::AcqRel);
                    self.keep(permit);
                }
                Err(TryAcquireError::NoPermits) if !self.parts.is_empty() => self.settle_one().await?,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ResourceBusy,
                        format!(
                            "uploading {}: the memory for uploads to the object store ({} MiB, \
                             HERALD_S3_UPLOAD_MEMORY) is held by other uploads",
                            self.name, self.budget_mib
                        ),
                    ));
                }
            }
        }
        if wanted > self.buffer.capacity() {
            let capacity = if small { wanted.max(self.buffer.capacity().saturating_mul(2)).min(SMALL) } else { needed };
            self.buffer.reserve_exact(capacity - self.buffer.len());
        }
        Ok(())
    }

    /// The buffer as a payload, leaving it empty.
    fn take_buffer(&mut self) -> PutPayload {
        PutPayload::from(Bytes::from(std::mem::take(&mut self.buffer)))
    }

    /// Sends the buffer as the next part, waiting while [`PARTS_IN_FLIGHT`] are on the wire. The
    /// part keeps the buffer's memory until it is on the store, then hands it back to the upload.
    async fn send_part(&mut self) -> io::Result<()> {
        let data = self.take_buffer();
        let memory = self.held.take();
        let multipart = match &mut self.multipart {
            Some(multipart) => multipart,
            None => {
                let started =
                    bounded(|| format!("starting the upload of {}", self.name), self.store.put_multipart(&self.path))
                        .await?;
                self.multipart.insert(started)
            }
        };
        let part = multipart.put_part(data);
        while self.parts.len() >= PARTS_IN_FLIGHT {
            self.settle_one().await?;
        }
        let (name, own, part_mib) = (self.name.clone(), self.own.clone(), self.part_size / SMALL);
        self.parts.spawn(async move {
            bounded(move || format!("uploading a part of {name}"), part).await?;
            Ok(memory.and_then(|memory| spare_memory(memory, &own, part_mib)))
        });
        Ok(())
    }

    /// Waits for one part in flight and keeps its memory; its failure fails the upload.
    async fn settle_one(&mut self) -> io::Result<()> {
        match self.parts.join_next().await {
            None => Ok(()),
            Some(landed) => self.reclaim(landed),
        }
    }

    /// Keeps the memory of a part that has ended; its failure fails the upload.
    fn reclaim(&mut self, landed: Result<PartResult, JoinError>) -> io::Result<()> {
        match landed {
            Ok(Ok(memory)) => {
                if let Some(memory) = memory {
                    self.keep(memory);
                }
                Ok(())
            }
            Ok(Err(err)) => Err(err),
            Err(join) => Err(io::Error::other(format!("uploading a part of {}: {join}", self.name))),
        }
    }

    /// Adds `memory` to the buffer's, up to one part; the rest goes back to the budget.
    fn keep(&mut self, memory: OwnedSemaphorePermit) {
        let held = match &mut self.held {
            Some(held) => {
                held.merge(memory);
                held
            }
            None => self.held.insert(memory),
        };
        let part_mib = self.part_size / SMALL;
        if let Some(spare) = held.split(held.num_permits().saturating_sub(part_mib)) {
            self.own.fetch_sub(spare.num_permits(), Ordering::AcqRel);
        }
    }

    async fn complete(&mut self) -> io::Result<()> {
        if self.multipart.is_none() {
            let data = self.take_buffer();
            bounded(|| format!("storing {}", self.name), self.store.put(&self.path, data)).await?;
            self.held = None;
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

    /// Aborts the multipart upload at the store, once no part is on the wire. The abort runs as
    /// a task of its own: were this future dropped midway, the upload would still be aborted.
    async fn abort_at_store(&mut self) {
        self.held = None;
        if let Some(multipart) = self.multipart.take() {
            let name = std::mem::take(&mut self.name);
            let aborting = tokio::spawn(abort_multipart(name, multipart, std::mem::take(&mut self.parts)));
            if let Err(err) = aborting.await {
                tracing::warn!(%err, "an upload's abort did not run to its end");
            }
        }
    }
}

/// Lets the parts in flight end (each is bounded), then aborts the upload: a part that reached
/// the store after its upload was aborted would hold storage until the lifecycle rule ran.
async fn abort_multipart(name: String, mut multipart: Box<dyn MultipartUpload>, mut parts: JoinSet<PartResult>) {
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
            let (now, later) = rest.split_at(rest.len().min(self.part_size - self.buffer.len()));
            self.make_room(now.len()).await?;
            self.buffer.extend_from_slice(now);
            rest = later;
            if self.buffer.len() == self.part_size {
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
mod tests {
    use object_store::memory::InMemory;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    const SECRET: &str = "SECRETVALUE";

    fn options(max_upload_size: u64, upload_memory: u64) -> S3Options {
        S3Options { max_upload_size, upload_memory }
    }

    /// An adapter over an in-memory store, as `open` makes it.
    fn in_memory(options: S3Options) -> (S3Files, Arc<InMemory>) {
        let store = Arc::new(InMemory::new());
        let files = S3Files {
            store: store.clone(),
            location: "s3://bucket/p".parse().expect("location"),
            endpoint: None,
            prefix: Path::from("p"),
            part_size: usize::try_from(options.part_size()).expect("part size"),
            budget: Arc::new(Semaphore::new(usize::try_from(options.upload_memory / MIB).expect("permits"))),
            budget_mib: options.upload_memory / MIB,
        };
        (files, store)
    }

    async fn objects(store: &InMemory) -> Vec<String> {
        let listed: Vec<_> = store.list(None).collect().await;
        listed.into_iter().map(|meta| meta.expect("listed").location.to_string()).collect()
    }

    fn mib(n: u64) -> Vec<u8> {
        vec![7; usize::try_from(n * MIB).expect("fits")]
    }

    #[test]
    fn parts_grow_so_the_largest_upload_fits_in_ten_thousand() {
        let gib = 1024 * MIB;
        for (max, part) in [
            (100 * MIB, 5 * MIB),
            (MAX_PARTS * 5 * MIB, 5 * MIB),
            (MAX_PARTS * 5 * MIB + 1, 6 * MIB),
            (60 * gib, 7 * MIB),
            (MAX_OBJECT_SIZE, 525 * MIB),
        ] {
            let o = options(max, 4 * gib);
            assert_eq!(o.part_size(), part, "max {max}");
            assert!(o.part_size() * MAX_PARTS >= max && o.part_size().is_multiple_of(MIB), "max {max}");
            assert_eq!(o.memory_per_upload(), 3 * part);
        }
        assert!(options(MAX_OBJECT_SIZE + 1, u64::MAX).check_max_upload_size().is_err());
        assert!(options(MAX_OBJECT_SIZE, u64::MAX).check_max_upload_size().is_ok());
        let tight = options(100 * MIB, 15 * MIB);
        assert!(tight.check_upload_memory().is_ok());
        let err = options(100 * MIB, 15 * MIB - 1).check_upload_memory().expect_err("less than three parts");
        assert!(err.contains("at least 15MiB"), "{err}");
        assert!(options(60 * gib, 20 * MIB).check_upload_memory().is_err(), "three 7 MiB parts");
    }

    #[tokio::test]
    async fn uploads_share_a_memory_budget_and_fail_cleanly_beyond_it() {
        // 15 MiB: three buffers of just under a part, or one upload of any size.
        let (files, store) = in_memory(options(100 * MIB, 15 * MIB));
        let mut holders = Vec::new();
        for _ in 0..3 {
            let mut upload = files.begin_upload().await.expect("begin");
            upload.write(&vec![1; 5 * MIB as usize - 1]).await.expect("fits the budget");
            holders.push(upload);
        }
        assert_eq!(files.budget.available_permits(), 0);
        let mut refused = files.begin_upload().await.expect("begin");
        let err = refused.write(b"x").await.expect_err("the budget is spent");
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy, "{err}");
        assert!(err.to_string().contains("HERALD_S3_UPLOAD_MEMORY"), "{err}");
        refused.abort().await;
        let small = holders.pop().expect("holder");
        small.abort().await;
        assert_eq!(files.budget.available_permits(), 5, "an aborted upload gives its memory back");

        // A multipart upload: its part keeps its memory while in flight (this runtime runs one
        // task at a time, so a spawned part waits for the test to yield), and the upload waits
        // for its own parts rather than give up.
        let mut multipart = files.begin_upload().await.expect("begin");
        multipart.write(&mib(5)).await.expect("one part, sent");
        assert_eq!(files.budget.available_permits(), 0, "the part in flight holds its 5 MiB");
        let mut other = files.begin_upload().await.expect("begin");
        assert_eq!(other.write(b"x").await.map_err(|e| e.kind()), Err(io::ErrorKind::ResourceBusy));
        other.abort().await;
        multipart.write(b"x").await.expect("waits for its own part, then has room");
        multipart.write(&vec![2; 5 * MIB as usize - 1]).await.expect("a second part, sent");
        for _ in 0..1000 {
            tokio::task::yield_now().await;
        }
        assert_eq!(files.budget.available_permits(), 0, "the part on the store gave its memory to its upload");
        let mut filler = files.begin_upload().await.expect("begin");
        assert_eq!(filler.write(b"x").await.map_err(|e| e.kind()), Err(io::ErrorKind::ResourceBusy));
        filler.abort().await;
        multipart.write(b"x").await.expect("the memory of its part on the store");
        multipart.abort().await;
        assert_eq!(files.budget.available_permits(), 5, "an aborted multipart upload gives its memory back");
        for holder in holders {
            holder.abort().await;
        }
        assert_eq!(files.budget.available_permits(), 15, "every MiB is back");
        assert!(objects(&store).await.is_empty(), "refused uploads leave no object");

        // With the budget free again, an upload of many parts goes through within it.
        let mut large = files.begin_upload().await.expect("begin");
        for _ in 0..24 {
            large.write(&mib(1)).await.expect("write");
            assert!(files.budget.available_permits() <= 15);
        }
        let stored = large.finish().await.expect("finish");
        assert_eq!(stored.size, 24 * MIB);
        assert_eq!(files.budget.available_permits(), 15);
        assert_eq!(objects(&store).await, [format!("p/{}", stored.key)]);
    }

    #[tokio::test]
    async fn a_multipart_upload_is_never_refused_midway() {
        // Exactly one upload's needs: a part being filled and two on the wire.
        let budget = options(100 * MIB, 15 * MIB);
        let (files, store) = in_memory(budget);
        assert_eq!(files.budget.available_permits() as u64 * MIB, budget.memory_per_upload());
        let mut large = files.begin_upload().await.expect("begin");
        let mut small = Vec::new();
        for part in 0..5 {
            large.write(&mib(5)).await.expect("a started upload always has memory for its next part");
            // Its parts land (this runtime runs one task at a time); then other uploads take
            // whatever memory is free, one MiB each, until they are refused.
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
            loop {
                let mut other = files.begin_upload().await.expect("begin");
                match other.write(b"small").await {
                    Ok(_) => small.push(other),
                    Err(err) => {
                        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy, "{err}");
                        other.abort().await;
                        break;
                    }
                }
            }
            if part == 0 {
                assert!(!small.is_empty(), "a small upload took one MiB between two parts");
            }
        }
        large.write(b"tail").await.expect("and for its last bytes");
        let stored = large.finish().await.expect("the large upload completes");
        assert_eq!(stored.size, 25 * MIB + 4);
        assert_eq!(objects(&store).await, [format!("p/{}", stored.key)]);
        assert_eq!(files.budget.available_permits(), 15 - small.len(), "the large upload gave its memory back");
        for upload in small {
            upload.abort().await;
        }
        assert_eq!(files.budget.available_permits(), 15);
    }

    #[tokio::test]
    async fn a_small_upload_takes_little_memory() {
        let (files, _store) = in_memory(options(100 * MIB, 15 * MIB));
        let mut upload = files.begin_upload().await.expect("begin");
        upload.write(b"hello").await.expect("write");
        assert_eq!(files.budget.available_permits(), 14, "one MiB taken");
        drop(upload);
        assert_eq!(files.budget.available_permits(), 15);
        let mut upload = files.upload(Path::from("p/x"), "x".into(), "x".into());
        upload.write(b"hello").await.expect("write");
        assert!(upload.buffer.capacity() < 1024, "no part-sized buffer up front: {}", upload.buffer.capacity());
        upload.write(&vec![0; MIB as usize]).await.expect("write");
        assert_eq!(upload.held_bytes(), 5 * MIB as usize, "past one MiB, a whole part");
        assert_eq!(upload.buffer.capacity(), 5 * MIB as usize);
    }

    #[test]
    fn only_credentials_and_region_come_from_the_environment() {
        let env = [
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_REGION", "eu-central-1"),
            ("AWS_ENDPOINT", "http://elsewhere.example"),
            ("AWS_ENDPOINT_URL", "http://elsewhere.example"),
            ("AWS_SKIP_SIGNATURE", "true"),
            ("AWS_METADATA_ENDPOINT", "http://elsewhere.example"),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "true"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let location: S3Location = "s3://bucket/p".parse().expect("location");
        let aws = client_builder(&location, None, env.clone());
        let get = |b: &AmazonS3Builder, key: AmazonS3ConfigKey| b.get_config_value(&key);
        assert_eq!(get(&aws, AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("id"));
        assert_eq!(get(&aws, AmazonS3ConfigKey::Region).as_deref(), Some("eu-central-1"));
        assert_eq!(get(&aws, AmazonS3ConfigKey::Endpoint), None, "AWS_ENDPOINT(_URL) is ignored");
        assert_ne!(get(&aws, AmazonS3ConfigKey::SkipSignature).as_deref(), Some("true"));
        assert_ne!(get(&aws, AmazonS3ConfigKey::VirtualHostedStyleRequest).as_deref(), Some("true"));
        assert_ne!(get(&aws, AmazonS3ConfigKey::MetadataEndpoint).as_deref(), Some("http://elsewhere.example"));
        let endpoint: S3Endpoint = "http://127.0.0.1:9000".parse().expect("endpoint");
        let other = client_builder(&location, Some(&endpoint), env);
        assert_eq!(get(&other, AmazonS3ConfigKey::Endpoint).as_deref(), Some("http://127.0.0.1:9000"));
    }

    /// A store on loopback that answers every request with `status` and an S3 error body quoting
    /// the credentials, as AWS does for a bad signature.
    async fn refusing_store(status: &'static str) -> S3Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).await.is_ok_and(|n| n == 1) {
                        head.push(byte[0]);
                    }
                    let body = format!(
                        "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><AWSAccessKeyId>{SECRET}\
                         </AWSAccessKeyId><CanonicalRequest>x-amz-security-token:{SECRET}</CanonicalRequest></Error>"
                    );
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}").parse().expect("endpoint")
    }

    #[tokio::test]
    async fn errors_never_carry_the_stores_answer() {
        let location: S3Location = "s3://bucket/p".parse().expect("location");
        let env = [("AWS_ACCESS_KEY_ID", "id"), ("AWS_SECRET_ACCESS_KEY", "secret"), ("AWS_REGION", "us-east-1")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        for (status, expected) in
            [("403 Forbidden", "the object store answered 403"), ("400 Bad Request", "the object store answered 400")]
        {
            let endpoint = refusing_store(status).await;
            let err = S3Files::open(&location, Some(&endpoint), options(100 * MIB, 256 * MIB), env.clone())
                .await
                .expect_err("refused");
            let mut chain = vec![err.to_string(), format!("{err:?}")];
            let mut source = std::error::Error::source(&err);
            while let Some(current) = source {
                chain.push(current.to_string());
                source = current.source();
            }
            assert!(chain.iter().all(|text| !text.contains(SECRET)), "{chain:?}");
            assert!(err.to_string().contains(expected) && err.to_string().contains("s3://bucket/p"), "{err}");
            let denied = status.starts_with("403");
            assert_eq!(err.kind() == io::ErrorKind::PermissionDenied, denied, "{err}");
        }
    }

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
