//! The Files port's conformance suite, written once and run on every adapter: a local directory
//! ([`herald_store::LocalFiles`]) and a prefix of the test bucket ([`herald_store::S3Files`]).
//! Each check goes through the port, and then looks behind it ([`FilesTarget::stored`],
//! [`FilesTarget::unfinished`]) for anything an adapter should not have left.

use std::{sync::Arc, time::Duration};

use herald_core::files::Files;
use herald_store::LocalFiles;
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;
use tokio::io::AsyncReadExt as _;

use crate::s3::TestBucket;

/// One adapter under test, over storage of its own.
#[derive(Debug)]
pub struct FilesTarget {
    pub files: Arc<dyn Files>,
    backing: Backing,
}

#[derive(Debug)]
enum Backing {
    Dir(TempDir),
    Bucket(TestBucket),
}

impl FilesTarget {
    /// [`LocalFiles`] in a temporary directory.
    pub async fn local() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = LocalFiles::open(dir.path().join("files")).await.expect("open");
        Self { files: Arc::new(files), backing: Backing::Dir(dir) }
    }

    /// [`herald_store::S3Files`] over a fresh prefix of the test bucket, when
    /// `HERALD_TEST_S3_ENDPOINT` is set.
    pub async fn s3(test: &str) -> Option<Self> {
        let bucket = TestBucket::new(test)?;
        Some(Self { files: Arc::new(bucket.files().await), backing: Backing::Bucket(bucket) })
    }

    /// Stores `bytes` under `name` (which may hold a slash) behind the port's back.
    pub async fn plant(&self, name: &str, bytes: &[u8]) {
        match &self.backing {
            Backing::Dir(dir) => {
                let path = dir.path().join("files").join(name);
                std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                std::fs::write(path, bytes).expect("plant a file");
            }
            Backing::Bucket(bucket) => bucket.put(name, bytes).await,
        }
    }

    /// Every finished file or object actually stored, by its name below the root.
    pub async fn stored(&self) -> Vec<String> {
        match &self.backing {
            Backing::Dir(dir) => {
                let root = dir.path().join("files");
                let mut names: Vec<String> = std::fs::read_dir(&root)
                    .expect("read dir")
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                names
            }
            Backing::Bucket(bucket) => bucket.objects().await.into_iter().map(|(name, _)| name).collect(),
        }
    }

    /// Uploads the backend still holds unfinished (partial files, open multipart uploads), after
    /// waiting up to `wait` for background aborts.
    pub async fn unfinished(&self, wait: Duration) -> Vec<String> {
        match &self.backing {
            Backing::Dir(dir) => {
                let deadline = tokio::time::Instant::now() + wait;
                loop {
                    let partial: Vec<String> = std::fs::read_dir(dir.path().join("files/.partial"))
                        .expect("read .partial")
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    if partial.is_empty() || tokio::time::Instant::now() >= deadline {
                        return partial;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Backing::Bucket(bucket) => bucket.wait_no_open_uploads(wait).await,
        }
    }

    /// Removes the storage.
    pub async fn finish(self) {
        if let Backing::Bucket(bucket) = self.backing {
            bucket.finish().await;
        }
    }
}

/// The part size of an object store at the default `max_upload_size`.
const PART: usize = herald_store::S3_MIN_PART_SIZE as usize;

/// `len` bytes that differ from offset to offset (so a misplaced range shows), as chunks.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 11)) as u8).collect()
}

async fn read(files: &dyn Files, key: &str, range: Option<(u64, u64)>) -> (u64, Vec<u8>) {
    let mut opened = files.open(key, range).await.expect("open").unwrap_or_else(|| panic!("{key} is there"));
    let mut bytes = Vec::new();
    opened.reader.read_to_end(&mut bytes).await.expect("read");
    (opened.size, bytes)
}

async fn store(files: &dyn Files, chunks: &[&[u8]]) -> herald_core::files::StoredFile {
    let mut upload = files.begin_upload().await.expect("begin");
    for chunk in chunks {
        upload.write(chunk).await.expect("write");
    }
    upload.finish().await.expect("finish")
}

/// An upload is hashed and sized on the way in, listed once finished, and read back whole and by
/// range: from the start, in the middle, running past the end, and wholly beyond it.
pub async fn uploads_hash_and_read_back_by_range(t: &FilesTarget) {
    let files = t.files.as_ref();
    let mut upload = files.begin_upload().await.expect("begin");
    assert_eq!(upload.write(b"hello ").await.expect("write"), 6);
    assert_eq!(upload.write(b"world").await.expect("write"), 11);
    assert!(t.stored().await.is_empty(), "nothing is visible before finish");
    let stored = upload.finish().await.expect("finish");
    assert_eq!(
        (stored.size, stored.sha256.as_str()),
        (11, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9")
    );
    assert_eq!(t.stored().await, std::slice::from_ref(&stored.key));

    let scanned = files.scan().await.expect("scan");
    assert_eq!(scanned.len(), 1, "{scanned:?}");
    assert_eq!((scanned[0].key.as_str(), scanned[0].partial), (stored.key.as_str(), false));
    let age = std::time::SystemTime::now().duration_since(scanned[0].modified).unwrap_or_default();
    assert!(age < Duration::from_secs(60), "modified is the last write: {age:?} ago");

    assert_eq!(read(files, &stored.key, None).await, (11, b"hello world".to_vec()));
    for (range, expected) in [
        ((0, 5), &b"hello"[..]),
        ((4, 3), b"o w"),
        ((6, 5), b"world"),
        ((6, 100), b"world"),
        ((10, 1), b"d"),
        ((11, 5), b""),
        ((40, 2), b""),
        ((3, 0), b""),
    ] {
        assert_eq!(read(files, &stored.key, Some(range)).await, (11, expected.to_vec()), "range {range:?}");
    }

    let empty = store(files, &[]).await;
    assert_eq!(
        (empty.size, empty.sha256.as_str()),
        (0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(read(files, &empty.key, None).await, (0, Vec::new()));
    assert_ne!(empty.key, stored.key, "every upload gets a fresh key");
    assert!(files.open("0000000000000000000000000000dead", None).await.expect("open").is_none());
}

/// A removal says whether the file was there, and the file is gone from reads and scans.
pub async fn removes_say_whether_the_file_was_there(t: &FilesTarget) {
    let files = t.files.as_ref();
    let kept = store(files, &[b"kept"]).await;
    let gone = store(files, &[b"gone"]).await;
    assert!(files.remove(&gone.key, false).await.expect("remove"));
    assert!(files.open(&gone.key, None).await.expect("open").is_none());
    assert!(files.open(&gone.key, Some((0, 2))).await.expect("open").is_none());
    assert!(!files.remove(&gone.key, false).await.expect("remove again"), "not there any more");
    let keys: Vec<String> = files.scan().await.expect("scan").into_iter().map(|e| e.key).collect();
    assert_eq!(keys, std::slice::from_ref(&kept.key));
    assert_eq!(t.stored().await, [kept.key]);
}

/// An aborted or dropped upload, small or already past one part, leaves nothing: no file or
/// object, nothing in a scan, no unfinished upload held by the backend.
pub async fn aborted_and_dropped_uploads_leave_nothing(t: &FilesTarget) {
    let files = t.files.as_ref();
    let big = pattern(PART + 1024 * 1024);

    let mut small = files.begin_upload().await.expect("begin");
    small.write(b"partial").await.expect("write");
    small.abort().await;
    let mut large = files.begin_upload().await.expect("begin");
    large.write(&big).await.expect("write past one part");
    large.abort().await;
    assert!(t.unfinished(Duration::ZERO).await.is_empty(), "abort waits for the store");

    drop(files.begin_upload().await.expect("begin"));
    let mut dropped = files.begin_upload().await.expect("begin");
    dropped.write(&big).await.expect("write past one part");
    dropped.write(&big).await.expect("write past two parts");
    drop(dropped);

    assert_eq!(t.unfinished(Duration::from_secs(10)).await, Vec::<String>::new(), "dropped uploads are aborted");
    assert!(t.stored().await.is_empty());
    assert!(files.scan().await.expect("scan").is_empty());
}

/// An abort whose caller gives up on it at its first wait (a cancelled request task) still
/// removes what was written: nothing stays partial or open at the store.
pub async fn a_cancelled_abort_still_leaves_nothing(t: &FilesTarget) {
    use futures::FutureExt as _;
    let files = t.files.as_ref();
    let big = pattern(2 * PART + 1024);
    let mut upload = files.begin_upload().await.expect("begin");
    upload.write(&big).await.expect("write past two parts");
    // Polled once, then dropped: on an object store the abort is still waiting for the store.
    let _ = upload.abort().now_or_never();
    let mut small = files.begin_upload().await.expect("begin");
    small.write(b"partial").await.expect("write");
    let _ = small.abort().now_or_never();

    assert_eq!(t.unfinished(Duration::from_secs(10)).await, Vec::<String>::new(), "the abort ran to its end");
    assert!(t.stored().await.is_empty());
    assert!(files.scan().await.expect("scan").is_empty());
}

/// 20 MiB streamed in 64 KiB chunks (several parts on an object store) arrive whole: size, hash,
/// every byte, and ranges across part boundaries.
pub async fn a_large_upload_streams_through_in_chunks(t: &FilesTarget) {
    let files = t.files.as_ref();
    let content = pattern(20 * 1024 * 1024 + 123);
    let mut upload = files.begin_upload().await.expect("begin");
    for chunk in content.chunks(64 * 1024) {
        upload.write(chunk).await.expect("write");
    }
    let stored = upload.finish().await.expect("finish");
    assert_eq!((stored.size, stored.sha256.clone()), (content.len() as u64, hex::encode(Sha256::digest(&content))));
    let (size, whole) = read(files, &stored.key, None).await;
    assert_eq!(size, content.len() as u64);
    assert!(whole == content, "the file reads back byte for byte");
    let part = herald_store::S3_MIN_PART_SIZE;
    for (start, len) in [(part - 10, 20), (3 * part - 1, 2), (content.len() as u64 - 5, 50)] {
        let end = usize::try_from(start + len).expect("fits").min(content.len());
        let expected = content[usize::try_from(start).expect("fits")..end].to_vec();
        assert_eq!(read(files, &stored.key, Some((start, len))).await, (size, expected), "range at {start}");
    }
    assert!(t.unfinished(Duration::ZERO).await.is_empty());
}

/// Keys that are not plain names are refused, so none reaches outside the directory or prefix;
/// scans report names of the shape Herald makes (32 lower-case hex digits) directly under the
/// root and nothing else, so the collector leaves other files alone.
pub async fn keys_that_try_to_escape_are_refused(t: &FilesTarget) {
    let files = t.files.as_ref();
    let planted = "0123456789abcdef0123456789abcdef";
    t.plant("nested/deep", b"x").await;
    t.plant(".hidden", b"x").await;
    t.plant(planted, b"x").await;
    for foreign in ["report.pdf", "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef0123456789abcde", "planted"] {
        t.plant(foreign, b"not Herald's").await;
    }
    for name in ["../secret", "/etc/passwd", "..", ".", ".partial", "a/b", "", "nested/deep", ".hidden", "a\\b", "a\0b"]
    {
        let opened = files.open(name, None).await;
        assert_eq!(opened.map(|_| ()).map_err(|e| e.kind()), Err(std::io::ErrorKind::InvalidInput), "open {name:?}");
        assert!(files.remove(name, false).await.is_err(), "remove {name:?}");
        assert!(files.remove(name, true).await.is_err(), "remove partial {name:?}");
    }
    let keys: Vec<String> = files.scan().await.expect("scan").into_iter().map(|e| e.key).collect();
    assert_eq!(keys, [planted], "only Herald's keys directly under the root");
    assert!(files.remove(planted, false).await.expect("remove"));
}
