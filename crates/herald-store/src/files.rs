//! [`LocalFiles`]: attachment bytes in a local directory.
//!
//! Finished files live at `<root>/<key>`; uploads in progress at `<root>/.partial/<key>`, renamed
//! into place (atomically, same file system) once complete and synced. Keys are fresh UUIDs, never
//! derived from a client's file name.

use std::{
    io,
    path::{Path, PathBuf},
};

use async_trait::async_trait;
use herald_core::files::{FileEntry, Files, Opened, StoredFile, Upload};
use sha2::{Digest as _, Sha256};
use tokio::{
    fs,
    io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _},
};
use uuid::Uuid;

const PARTIAL: &str = ".partial";

/// Attachment bytes in a directory of the local file system.
#[derive(Debug, Clone)]
pub struct LocalFiles {
    root: PathBuf,
}

impl LocalFiles {
    /// Uses `root` (created, with `.partial/`, when missing).
    pub async fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join(PARTIAL)).await?;
        Ok(Self { root })
    }

    fn path(&self, name: &str, partial: bool) -> io::Result<PathBuf> {
        // A name is one plain path component: nothing a client could use to leave the directory.
        let plain =
            !name.is_empty() && name.len() <= 255 && !name.starts_with('.') && !name.contains(['/', '\\', '\0']);
        if !plain {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("not a file key: {name:?}")));
        }
        Ok(if partial { self.root.join(PARTIAL).join(name) } else { self.root.join(name) })
    }
}

struct LocalUpload {
    file: Option<fs::File>,
    key: String,
    partial: PathBuf,
    target: PathBuf,
    hasher: Sha256,
    size: u64,
}

#[async_trait]
impl Upload for LocalUpload {
    async fn write(&mut self, chunk: &[u8]) -> io::Result<u64> {
        let file = self.file.as_mut().ok_or_else(|| io::Error::other("upload already finished"))?;
        file.write_all(chunk).await?;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        Ok(self.size)
    }

    async fn finish(mut self: Box<Self>) -> io::Result<StoredFile> {
        let mut file = self.file.take().ok_or_else(|| io::Error::other("upload already finished"))?;
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        fs::rename(&self.partial, &self.target).await?;
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        Ok(StoredFile { key: std::mem::take(&mut self.key), size: self.size, sha256 })
    }

    async fn abort(mut self: Box<Self>) {
        drop(self.file.take());
        if let Err(err) = fs::remove_file(&self.partial).await {
            tracing::warn!(path = %self.partial.display(), %err, "could not remove an aborted upload");
        }
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        // Dropped mid-way (client gone, task cancelled): remove the partial file now rather than
        // wait for the collector.
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

#[async_trait]
impl Files for LocalFiles {
    async fn begin_upload(&self) -> io::Result<Box<dyn Upload>> {
        let key = Uuid::now_v7().simple().to_string();
        let partial = self.path(&key, true)?;
        let target = self.path(&key, false)?;
        let file = fs::OpenOptions::new().write(true).create_new(true).open(&partial).await?;
        Ok(Box::new(LocalUpload { file: Some(file), key, partial, target, hasher: Sha256::new(), size: 0 }))
    }

    async fn open(&self, key: &str, range: Option<(u64, u64)>) -> io::Result<Option<Opened>> {
        let path = self.path(key, false)?;
        let mut file = match fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = file.metadata().await?.len();
        let reader: Box<dyn tokio::io::AsyncRead + Send + Unpin> = match range {
            Some((start, len)) => {
                file.seek(io::SeekFrom::Start(start)).await?;
                Box::new(file.take(len))
            }
            None => Box::new(file),
        };
        Ok(Some(Opened { size, reader }))
    }

    async fn remove(&self, key: &str, partial: bool) -> io::Result<bool> {
        match fs::remove_file(self.path(key, partial)?).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn scan(&self) -> io::Result<Vec<FileEntry>> {
        let mut out = scan_dir(&self.root, false).await?;
        out.extend(scan_dir(&self.root.join(PARTIAL), true).await?);
        Ok(out)
    }
}

/// Regular files directly in `dir`. `DirEntry::file_type` does not follow links, so a link is
/// never reported, let alone followed out of the directory.
async fn scan_dir(dir: &Path, partial: bool) -> io::Result<Vec<FileEntry>> {
    let mut out = Vec::new();
    let mut entries = match fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    while let Some(entry) = entries.next_entry().await? {
        if !entry.file_type().await?.is_file() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if name.starts_with('.') {
            continue;
        }
        let modified = entry.metadata().await?.modified()?;
        out.push(FileEntry { key: name, modified, partial });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uploads_hash_rename_and_read_back_by_range() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = LocalFiles::open(dir.path()).await.expect("open");
        let mut up = files.begin_upload().await.expect("begin");
        up.write(b"hello ").await.expect("write");
        assert_eq!(up.write(b"world").await.expect("write"), 11);
        let stored = up.finish().await.expect("finish");
        assert_eq!(stored.sha256, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        assert!(files.scan().await.expect("scan").iter().all(|e| !e.partial));

        let mut opened = files.open(&stored.key, Some((6, 5))).await.expect("open").expect("present");
        let mut text = String::new();
        opened.reader.read_to_string(&mut text).await.expect("read");
        assert_eq!((opened.size, text.as_str()), (11, "world"));
        assert!(files.remove(&stored.key, false).await.expect("remove"));
        assert!(files.open(&stored.key, None).await.expect("open").is_none());
    }

    #[tokio::test]
    async fn aborted_and_dropped_uploads_leave_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = LocalFiles::open(dir.path()).await.expect("open");
        let mut up = files.begin_upload().await.expect("begin");
        up.write(b"partial").await.expect("write");
        up.abort().await;
        let up = files.begin_upload().await.expect("begin");
        drop(up);
        assert!(files.scan().await.expect("scan").is_empty());
    }

    #[tokio::test]
    async fn names_never_leave_the_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = LocalFiles::open(dir.path().join("files")).await.expect("open");
        std::fs::write(dir.path().join("secret"), b"x").expect("write");
        for name in ["../secret", "/etc/passwd", "..", ".partial", "a/b"] {
            assert!(files.open(name, None).await.is_err(), "{name}");
            assert!(files.remove(name, false).await.is_err(), "{name}");
        }
        std::os::unix::fs::symlink(dir.path().join("secret"), dir.path().join("files/link")).expect("symlink");
        assert!(files.scan().await.expect("scan").is_empty(), "links are not reported");
        assert!(dir.path().join("secret").exists());
    }
}
