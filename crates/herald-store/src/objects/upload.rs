//! An upload to the store ([`S3Upload`]): buffered up to one part, then multipart with parts in
//! flight, within the memory budget all uploads of the process share.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use async_trait::async_trait;
use bytes::Bytes;
use herald_core::files::{StoredFile, Upload};
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt as _, PutPayload, path::Path};
use sha2::{Digest as _, Sha256};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError},
    task::{JoinError, JoinSet},
};

use super::{PARTS_IN_FLIGHT, S3Files, SMALL, errors::bounded};

impl S3Files {
    /// A fresh upload of `key` at `path`, nothing written yet.
    pub(super) fn upload(&self, path: Path, name: String, key: String) -> S3Upload {
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

pub(super) struct S3Upload {
    store: Arc<dyn ObjectStore>,
    path: Path,
    key: String,
    name: String,
    part_size: usize,
    /// Bytes not yet sent: less than one part.
    pub(super) buffer: Vec<u8>,
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
    pub(super) fn held_bytes(&self) -> usize {
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
