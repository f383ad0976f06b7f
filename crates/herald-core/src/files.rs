//! The Files port: where attachment bytes live. The adapter for a local directory is
//! `herald_store::LocalFiles`; an object store can implement the same trait.
//!
//! Contract: bytes are streamed, never held whole in memory. An upload is invisible under its key
//! until [`Upload::finish`] returns; an aborted or dropped upload leaves at most a partial file that
//! [`Files::scan`] reports, so the orphan collector removes it. The store's attachment rows are the
//! truth: a file no row references is an orphan.

use std::{fmt, io, time::SystemTime};

use async_trait::async_trait;
use tokio::io::AsyncRead;

/// A finished upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub key: String,
    pub size: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
}

/// An upload in progress.
#[async_trait]
pub trait Upload: Send {
    /// Appends a chunk. Returns the total size so far.
    async fn write(&mut self, chunk: &[u8]) -> io::Result<u64>;
    /// Makes the file visible under its key.
    async fn finish(self: Box<Self>) -> io::Result<StoredFile>;
    /// Removes what was written.
    async fn abort(self: Box<Self>);
}

/// A file opened for reading, positioned at the start of the requested range.
pub struct Opened {
    /// The whole file's size.
    pub size: u64,
    /// Reads the requested range (the whole file when no range was asked for).
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened").field("size", &self.size).finish_non_exhaustive()
    }
}

/// One entry found by [`Files::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The key it would have, or the partial upload's name.
    pub key: String,
    /// Last write.
    pub modified: SystemTime,
    /// An upload that never finished.
    pub partial: bool,
}

/// Attachment bytes.
#[async_trait]
pub trait Files: Send + Sync + fmt::Debug + 'static {
    /// Starts an upload under a fresh key.
    async fn begin_upload(&self) -> io::Result<Box<dyn Upload>>;

    /// Opens `key`, positioned at `range.0` and limited to `range.1` bytes when given.
    /// `None` when there is no such file.
    async fn open(&self, key: &str, range: Option<(u64, u64)>) -> io::Result<Option<Opened>>;

    /// Removes `key` (a finished file or a partial upload); false when it was not there.
    async fn remove(&self, key: &str, partial: bool) -> io::Result<bool>;

    /// Every regular file in the store, finished or partial. Links and directories are not
    /// followed or reported.
    async fn scan(&self) -> io::Result<Vec<FileEntry>>;
}
