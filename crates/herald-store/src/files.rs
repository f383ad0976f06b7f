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
    /// Uses `root` (created, with `.partial/`, when missing: mode 0700 on Unix, like the files in
    /// it are 0600; an existing directory keeps its mode).
    pub async fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        let mut dirs = fs::DirBuilder::new();
        dirs.recursive(true);
        #[cfg(unix)]
        dirs.mode(0o700);
        dirs.create(root.join(PARTIAL)).await?;
        Ok(Self { root })
    }

    fn path(&self, name: &str, partial: bool) -> io::Result<PathBuf> {
        check_key(name)?;
        Ok(if partial { self.root.join(PARTIAL).join(name) } else { self.root.join(name) })
    }
}

/// Whether `name` is a plain key: one path component, nothing a client could use to leave the
/// directory or the prefix. Every adapter refuses other names.
pub(crate) fn is_plain_key(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

/// Whether `name` has the shape of a key Herald makes (a UUID's 32 lower-case hex digits):
/// scans report these alone, so the collector never removes a file someone else put there.
pub(crate) fn is_herald_key(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// [`is_plain_key`] as an error naming the key.
pub(crate) fn check_key(name: &str) -> io::Result<()> {
    if is_plain_key(name) {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidInput, format!("not a file key: {name:?}")))
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
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        // Readable by Herald's user only (the rename into place keeps the mode).
        #[cfg(unix)]
        options.mode(0o600);
        let file = options.open(&partial).await?;
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

/// Regular files directly in `dir` named like Herald's keys. `DirEntry::file_type` does not
/// follow links, so a link is never reported, let alone followed out of the directory.
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
        let Some(name) = entry.file_name().to_str().filter(|n| is_herald_key(n)).map(str::to_owned) else {
            continue;
        };
        let modified = entry.metadata().await?.modified()?;
        out.push(FileEntry { key: name, modified, partial });
    }
    Ok(out)
}

/// The Files suite (`herald_testkit::files_suite`) covers the port's contract on every adapter;
/// this covers what is the directory's alone.
#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn links_out_of_the_directory_are_neither_reported_nor_followed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = LocalFiles::open(dir.path().join("files")).await.expect("open");
        std::fs::write(dir.path().join("secret"), b"x").expect("write");
        assert!(files.open("../secret", None).await.is_err());
        let link = dir.path().join("files/0123456789abcdef0123456789abcdef");
        std::os::unix::fs::symlink(dir.path().join("secret"), link).expect("symlink");
        assert!(files.scan().await.expect("scan").is_empty(), "links are not reported");
        assert!(dir.path().join("secret").exists());
    }
}
