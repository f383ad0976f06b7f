//! Bytes beside a command's JSON: the stream an upload or an import reads, and the one a
//! download gives. Transports frame them (multipart, NDJSON, Socket.io binary attachments,
//! WebSocket binary frames, NATS payloads); commands see only a stream of chunks, so a body is
//! never held whole in memory unless a transport's frame limit says it is small.

use std::{
    collections::HashMap,
    fmt,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt as _};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::{
    io::AsyncRead,
    sync::{Notify, mpsc},
};
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, ErrorCode};

/// The chunks of a body; an error ends it (a transport's framing failed, or it was too large).
pub type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, ApiError>> + Send>>;

/// Bytes read from a file at a time when a body is streamed out.
pub const CHUNK: usize = 64 * 1024;

/// A byte stream beside a command's input or output.
pub struct Body {
    chunks: Chunks,
    /// The exact length, when known before reading (a download, a body in one frame).
    length: Option<u64>,
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body").field("length", &self.length).finish_non_exhaustive()
    }
}

impl Body {
    /// A body of unknown length.
    pub fn new(chunks: impl Stream<Item = Result<Bytes, ApiError>> + Send + 'static) -> Self {
        Self { chunks: Box::pin(chunks), length: None }
    }

    /// A body already in memory (it came in one frame).
    pub fn from_bytes(bytes: Bytes) -> Self {
        let length = Some(bytes.len() as u64);
        let chunks = futures::stream::iter((!bytes.is_empty()).then_some(Ok(bytes)));
        Self { chunks: Box::pin(chunks), length }
    }

    /// `length` bytes read from `reader`, a chunk at a time.
    pub fn from_reader(reader: impl AsyncRead + Send + Unpin + 'static, length: u64) -> Self {
        let chunks =
            tokio_util::io::ReaderStream::with_capacity(reader, CHUNK).map(|chunk| chunk.map_err(ApiError::internal));
        Self { chunks: Box::pin(chunks), length: Some(length) }
    }

    /// The exact length, when known before reading.
    pub fn length(&self) -> Option<u64> {
        self.length
    }

    /// The next chunk; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Bytes, ApiError>> {
        self.chunks.next().await
    }

    pub fn into_chunks(self) -> Chunks {
        self.chunks
    }

    /// Reads the whole body into memory, refusing more than `max` bytes with `413` without
    /// reading further; `what` names what the limit is for ("a NATS message", …).
    pub async fn collect(mut self, max: usize, what: &str) -> Result<Bytes, ApiError> {
        let too_large = || {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body is larger than the {max} bytes {what} may carry"),
            )
        };
        if self.length.is_some_and(|length| length > max as u64) {
            return Err(too_large());
        }
        let mut all = BytesMut::new();
        while let Some(chunk) = self.next().await {
            let chunk = chunk?;
            if all.len() + chunk.len() > max {
                return Err(too_large());
            }
            all.extend_from_slice(&chunk);
        }
        Ok(all.freeze())
    }
}

impl Stream for Body {
    type Item = Result<Bytes, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.chunks.as_mut().poll_next(cx)
    }
}

/// What a command does with bytes beside its JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyUse {
    /// Nothing: JSON in, JSON out.
    None,
    /// It reads a body (`attachments.upload`, `clients.import`); one is required.
    Takes,
    /// It answers with one (`attachments.download`).
    Gives,
}

/// A command's answer: its JSON output and, from a command that gives bytes, the body.
#[derive(Debug)]
pub struct Answer {
    pub output: Value,
    pub body: Option<Body>,
}

impl Answer {
    pub fn json(output: Value) -> Self {
        Self { output, body: None }
    }
}

/// How long a socket client may take between two chunks of a body before the call fails.
pub const CHUNK_WAIT: Duration = Duration::from_secs(30);

/// How long a chunk waits for the call that opens its body: a transport that runs a socket's
/// messages concurrently may start a call's first chunk before the call itself.
const OPEN_WAIT: Duration = Duration::from_secs(2);

/// Chunks queued for a command that has not read them yet; a client that waits for each chunk's
/// acknowledgement is held back here, so a body costs at most this many frames of memory.
const QUEUED_CHUNKS: usize = 2;

/// Bodies that arrive over a socket in chunks, under an id the client picks, while their command
/// runs and reads them. Each is opened by a call (so there are never more than the session's
/// calls in flight), fed in order, and closed by its last chunk, by an error, or when its call
/// ends.
#[derive(Debug, Default)]
pub struct Incoming {
    open: Mutex<HashMap<String, Feed>>,
    /// Told whenever a body opens, for chunks that came first.
    opened: Notify,
}

#[derive(Debug)]
struct Feed {
    queue: mpsc::Sender<Result<Bytes, ApiError>>,
    /// The sequence number the next chunk must carry.
    next: u64,
}

impl Incoming {
    /// Opens the body `id`: the command reads what [`Incoming::push`] feeds under that id. When
    /// `gone` is cancelled (the connection closed) before the last chunk, the body ends with an
    /// error, so its command stops at once rather than wait out [`CHUNK_WAIT`].
    pub fn open(&self, id: &str, gone: CancellationToken) -> Result<Body, ApiError> {
        if id.is_empty() || id.len() > 64 {
            return Err(ApiError::invalid_field("upload", "must be 1 to 64 characters long"));
        }
        let mut open = self.open.lock();
        if open.contains_key(id) {
            return Err(ApiError::new(ErrorCode::Conflict, format!("the upload {id:?} is already open")));
        }
        let (queue, chunks) = mpsc::channel(QUEUED_CHUNKS);
        open.insert(id.to_owned(), Feed { queue, next: 0 });
        drop(open);
        self.opened.notify_waiters();
        let stream = futures::stream::unfold((chunks, gone), |(mut chunks, gone)| async move {
            let next = tokio::select! {
                next = tokio::time::timeout(CHUNK_WAIT, chunks.recv()) => next,
                () = gone.cancelled() => {
                    Ok(Some(Err(ApiError::new(ErrorCode::Unavailable, "the connection closed before the body ended"))))
                }
            };
            let chunk = match next {
                Ok(chunk) => chunk?,
                Err(_) => Err(ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!("no chunk of the body came within {} s", CHUNK_WAIT.as_secs()),
                )),
            };
            // An error ends the body: nothing after it is read.
            if chunk.is_err() {
                chunks.close();
            }
            Some((chunk, (chunks, gone)))
        });
        Ok(Body::new(stream))
    }

    /// Hands chunk `seq` (0, 1, … or `None` on a transport that keeps frames in order) of body
    /// `id` to its command, waiting while the command has not read the previous ones; `end` closes
    /// the body after it. A chunk out of order is refused and ends the body with that error; one
    /// for a body that is not open is refused, after a moment's wait for chunk 0 (its call may be
    /// on its way).
    pub async fn push(&self, id: &str, seq: Option<u64>, data: Bytes, end: bool) -> Result<(), ApiError> {
        let not_open = || ApiError::new(ErrorCode::NotFound, format!("no upload {id:?} is open"));
        let deadline = tokio::time::Instant::now() + OPEN_WAIT;
        let queue = loop {
            let opened = self.opened.notified();
            tokio::pin!(opened);
            opened.as_mut().enable();
            if let Some(queue) = self.open.lock().get(id).map(|feed| feed.queue.clone()) {
                break queue;
            }
            // Only a first chunk waits: a later one for a body that is not open comes after
            // its call ended.
            if seq != Some(0) || tokio::time::timeout_at(deadline, opened).await.is_err() {
                return Err(not_open());
            }
        };
        // Room first, so a push given up while it waits changes nothing.
        let Ok(permit) = queue.reserve().await else {
            // The command stopped reading (it refused the body, or finished).
            self.open.lock().remove(id);
            return Err(ApiError::new(ErrorCode::Conflict, format!("the upload {id:?} has already ended")));
        };
        let mut open = self.open.lock();
        let feed = open.get_mut(id).ok_or_else(not_open)?;
        if let Some(seq) = seq
            && seq != feed.next
        {
            let err = ApiError::new(
                ErrorCode::Conflict,
                format!("chunk {seq} of {id:?} came out of order: expected chunk {}", feed.next),
            );
            open.remove(id);
            permit.send(Err(err.clone()));
            return Err(err);
        }
        feed.next += 1;
        if !data.is_empty() {
            permit.send(Ok(data));
        }
        if end {
            open.remove(id);
        }
        Ok(())
    }

    /// Forgets body `id` (its call ended); a later chunk for it is refused.
    pub fn close(&self, id: &str) {
        self.open.lock().remove(id);
    }

    /// How many bodies are open.
    pub fn len(&self) -> usize {
        self.open.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_arrive_in_order_and_end_with_the_last() {
        let incoming = Incoming::default();
        let mut body = incoming.open("u1", CancellationToken::new()).expect("open");
        assert!(incoming.open("u1", CancellationToken::new()).is_err(), "one body per id");
        incoming.push("u1", Some(0), Bytes::from_static(b"ab"), false).await.expect("chunk 0");
        assert_eq!(body.next().await.expect("a chunk").expect("ok"), "ab");
        incoming.push("u1", Some(1), Bytes::from_static(b"cd"), true).await.expect("chunk 1");
        assert_eq!(body.next().await.expect("a chunk").expect("ok"), "cd");
        assert!(body.next().await.is_none(), "the last chunk ends it");
        assert!(incoming.is_empty());
        assert_eq!(
            incoming.push("u1", Some(2), Bytes::new(), true).await.map_err(|e| e.code()),
            Err(ErrorCode::NotFound)
        );
    }

    #[tokio::test]
    async fn a_chunk_that_comes_before_its_call_waits_for_it() {
        let incoming = std::sync::Arc::new(Incoming::default());
        let early = tokio::spawn({
            let incoming = incoming.clone();
            async move { incoming.push("u", Some(0), Bytes::from_static(b"first"), true).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut body = incoming.open("u", CancellationToken::new()).expect("open");
        early.await.expect("join").expect("the early chunk found its call");
        assert_eq!(body.next().await.expect("a chunk").expect("ok"), "first");
        assert!(body.next().await.is_none());
    }

    #[tokio::test]
    async fn a_chunk_out_of_order_ends_the_body_with_an_error() {
        let incoming = Incoming::default();
        let mut body = incoming.open("u", CancellationToken::new()).expect("open");
        let refused = incoming.push("u", Some(1), Bytes::from_static(b"x"), false).await;
        assert_eq!(refused.map_err(|e| e.code()), Err(ErrorCode::Conflict));
        assert_eq!(body.next().await.expect("an item").map_err(|e| e.code()), Err(ErrorCode::Conflict));
        assert!(incoming.is_empty());
    }

    #[tokio::test]
    async fn a_body_nobody_reads_holds_back_its_sender_and_a_dropped_one_refuses_chunks() {
        let incoming = std::sync::Arc::new(Incoming::default());
        let body = incoming.open("u", CancellationToken::new()).expect("open");
        for seq in 0..QUEUED_CHUNKS as u64 {
            incoming.push("u", Some(seq), Bytes::from_static(b"x"), false).await.expect("queued");
        }
        let blocked = incoming.push("u", Some(QUEUED_CHUNKS as u64), Bytes::from_static(b"x"), false);
        let waited = tokio::time::timeout(Duration::from_millis(50), blocked).await;
        assert!(waited.is_err(), "a full queue makes the sender wait");
        drop(body);
        // The push given up changed nothing: the same chunk is the next one, and finds no reader.
        let refused = incoming.push("u", Some(QUEUED_CHUNKS as u64), Bytes::from_static(b"x"), false).await;
        assert_eq!(refused.map_err(|e| e.code()), Err(ErrorCode::Conflict), "the command stopped reading");
        assert!(incoming.is_empty());
    }

    #[tokio::test]
    async fn a_closed_connection_ends_its_open_body_with_an_error() {
        let incoming = Incoming::default();
        let gone = CancellationToken::new();
        let mut body = incoming.open("u", gone.clone()).expect("open");
        gone.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(1), body.next()).await.expect("at once");
        assert_eq!(ended.expect("an item").map_err(|e| e.code()), Err(ErrorCode::Unavailable));
    }

    #[tokio::test]
    async fn collect_refuses_more_than_its_limit() {
        let body = Body::from_bytes(Bytes::from_static(b"0123456789"));
        assert_eq!(body.collect(10, "a test").await.expect("fits"), "0123456789");
        let body =
            Body::new(futures::stream::iter([Ok(Bytes::from_static(b"01234")), Ok(Bytes::from_static(b"56789"))]));
        assert_eq!(body.collect(9, "a test").await.map_err(|e| e.code()), Err(ErrorCode::PayloadTooLarge));
    }
}
