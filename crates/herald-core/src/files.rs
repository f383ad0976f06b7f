//! The Files port: where attachment bytes live. Adapters: `herald_store::LocalFiles` (a local
//! directory) and `herald_store::S3Files` (an S3-compatible object store).
//!
//! Contract: bytes are streamed, never held whole in memory (an adapter buffers a bounded amount
//! per upload). An upload is invisible under its key until [`Upload::finish`] returns. An aborted
//! or dropped upload leaves nothing visible: at most a partial entry that [`Files::scan`] reports
//! so the orphan collector removes it. On an object store an unfinished multipart upload is not an
//! object at all: it is aborted at the store, and partial entries are never reported (uploads cut
//! off by a crash are the bucket lifecycle rule's). The store's attachment rows are the truth: a
//! file no row references is an orphan. Keys are plain names (no `/`, no leading `.`); any other
//! key is refused with `InvalidInput`, so no key reaches outside the adapter's directory or prefix.

use std::{fmt, io, time::SystemTime};

use async_trait::async_trait;
use tokio::io::AsyncRead;

use crate::{
    slots::{KeyedSlots, Slot},
    task::Attachment,
    user::UserId,
};

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
    /// Last write; the collector's grace period counts from it.
    pub modified: SystemTime,
    /// An upload that never finished (never on an object store).
    pub partial: bool,
}

/// Attachment bytes.
#[async_trait]
pub trait Files: Send + Sync + fmt::Debug + 'static {
    /// Starts an upload under a fresh key.
    async fn begin_upload(&self) -> io::Result<Box<dyn Upload>>;

    /// Opens `key`, positioned at `range.0` and limited to `range.1` bytes when given (a range
    /// past the end reads nothing). `None` when there is no such file.
    async fn open(&self, key: &str, range: Option<(u64, u64)>) -> io::Result<Option<Opened>>;

    /// Removes `key` (a finished file or a partial upload); false when it was not there.
    async fn remove(&self, key: &str, partial: bool) -> io::Result<bool>;

    /// Every file in the store, finished or partial (an object store reports finished objects
    /// only). Links, directories and keys below nested prefixes are not followed or reported.
    async fn scan(&self) -> io::Result<Vec<FileEntry>>;
}

/// How many uploads each user has in progress, at most `limit` (`HERALD_UPLOADS_PER_USER`), on
/// every file store: one account's slow uploads cannot take all of a process's upload memory or
/// connections. A user has an entry only while an upload of theirs runs, so the map never holds
/// more entries than uploads in progress.
#[derive(Debug)]
pub struct UploadsPerUser(KeyedSlots<UserId>);

/// One upload in progress of one user; dropping it frees the slot.
pub type UploadSlot = Slot<UserId>;

impl UploadsPerUser {
    pub fn new(limit: usize) -> Self {
        Self(KeyedSlots::new(limit))
    }

    /// The most uploads one user may have in progress.
    pub fn limit(&self) -> usize {
        self.0.limit()
    }

    /// One of `user`'s upload slots, held until the slot is dropped; `None` when they have
    /// `limit` uploads in progress.
    pub fn try_begin(&self, user: UserId) -> Option<UploadSlot> {
        self.0.try_take(user)
    }

    /// Users with an upload in progress.
    pub fn users(&self) -> usize {
        self.0.keys()
    }
}

/// Removes the files of deleted attachments. Failures are logged: the orphan collector removes
/// whatever is left, since no row references those files any more.
pub async fn remove_attachment_files(files: &dyn Files, attachments: &[Attachment]) {
    for a in attachments {
        if let Err(err) = files.remove(&a.storage_key, false).await {
            tracing::warn!(attachment_id = %a.id, key = %a.storage_key, %err, "could not remove a deleted attachment's file; the collector will");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_per_user_are_bounded_and_forgotten_when_done() {
        let uploads = UploadsPerUser::new(2);
        let (ada, eve) = (UserId::new(), UserId::new());
        let first = uploads.try_begin(ada).expect("a first upload");
        let second = uploads.try_begin(ada).expect("a second upload");
        assert!(uploads.try_begin(ada).is_none(), "a third is refused");
        let other = uploads.try_begin(eve).expect("another user is not affected");
        assert_eq!(uploads.users(), 2);
        drop(first);
        let third = uploads.try_begin(ada).expect("an ended upload frees its slot");
        drop((second, third, other));
        assert_eq!(uploads.users(), 0, "no entry is left once every upload has ended");
        let none = UploadsPerUser::new(0);
        assert!(none.try_begin(ada).is_none());
        assert_eq!(none.users(), 0);
    }
}
