//! Sift's write-ahead log: the pipeline's bus and the spine of its durability.
//!
//! Receivers append each accepted (redacted) batch and acknowledge the client only once the append
//! has returned, i.e. once the bytes are fsynced (group commit: concurrent appends share one fsync).
//! Everything downstream reads the log through a [`WalConsumer`] that keeps its own checkpoint, so
//! the log is every exporter's persistent queue and a crash replays from the last checkpoint.
//! A segment is deleted once every registered consumer is past it. The total size is bounded:
//! when full, appends fail with the retryable [`AppendError::Full`] — except the appends of stages
//! that drain the log (a tail sampler's decisions), which may use a reserve of a quarter of the
//! limit: refusing them would keep the log full for good.
//!
//! Each record's payload is a [`WalEntry`]: which stage wrote it ([`EntryKind`]), its signal, its
//! pipeline and its OTLP body. The log itself never looks inside.
//!
//! Invariants: positions only grow; a position handed out is durable; recovery keeps every intact
//! record and cuts only a torn or damaged tail.

#![warn(missing_docs)]

mod checkpoint;
mod entry;
mod reader;
mod record;
mod segment;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

pub use entry::{EntryError, EntryKind, WalEntry};
pub use reader::WalRecord;
pub use segment::RecoveryReport;

use reader::Reader;
use segment::Segment;
use writer::{Append, Command, Writer};

/// Sizes and limits of a WAL.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Total bytes on disk before appends are refused.
    pub max_bytes: u64,
    /// Bytes per segment file before a new one is started.
    pub segment_bytes: u64,
    /// Append requests that may wait for the writer before appends are refused as busy.
    pub queue_depth: usize,
}

impl WalOptions {
    /// The options the `storage.wal` section of a configuration asks for (the one place where its
    /// settings, and so every default, become the log's).
    pub fn from_config(wal: &sift_config::WalConfig) -> WalOptions {
        WalOptions {
            max_bytes: wal.max_size_mib << 20,
            segment_bytes: wal.segment_size_mib << 20,
            queue_depth: 4096,
        }
    }
}

/// The configuration's defaults.
impl Default for WalOptions {
    fn default() -> Self {
        WalOptions::from_config(&sift_config::WalConfig::default())
    }
}

/// Why an append failed. [`AppendError::is_retryable`] tells a receiver which status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The log has reached its size limit: consumers are behind.
    #[error("write-ahead log is full (consumers are behind)")]
    Full,
    /// Too many appends are waiting for the disk.
    #[error("write-ahead log is busy")]
    Busy,
    /// The record is larger than a WAL record may be.
    #[error("batch is too large for the write-ahead log")]
    TooLarge,
    /// The log is shutting down.
    #[error("write-ahead log is closed")]
    Closed,
    /// The disk failed.
    #[error("write-ahead log I/O error: {0}")]
    Io(String),
}

impl AppendError {
    /// Whether the client should retry later (as opposed to a permanent failure).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            AppendError::Full | AppendError::Busy | AppendError::Closed | AppendError::Io(_)
        )
    }
}

/// Opening or reading the WAL failed.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// Filesystem error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What Sift was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn io_context(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> WalError {
    let context = context.into();
    move |source| WalError::Io { context, source }
}

/// See [`Shared::locate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locate {
    In(Segment),
    Before(u64),
    End,
}

/// State shared by the writer thread, readers and consumers.
pub(crate) struct Shared {
    dir: PathBuf,
    options: WalOptions,
    segments: Mutex<Vec<Segment>>,
    disk_bytes: AtomicU64,
    committed: watch::Sender<u64>,
    checkpoints: Mutex<BTreeMap<String, u64>>,
    closing: AtomicBool,
    /// The log's end when it was opened: records before it were written by an earlier process.
    recovered_end: u64,
    /// The last write failure, until a write succeeds again.
    failure: Mutex<Option<WriteFailure>>,
}

/// A write the log could not make (see [`WalStats::write_failure`]).
#[derive(Debug, Clone)]
pub struct WriteFailure {
    /// When it happened.
    pub at: Instant,
    /// Whether the disk was full (ENOSPC / EDQUOT), as opposed to another I/O error.
    pub disk_full: bool,
    /// The error.
    pub message: String,
}

impl Shared {
    fn lock_segments(&self) -> std::sync::MutexGuard<'_, Vec<Segment>> {
        self.segments.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn committed(&self) -> u64 {
        *self.committed.borrow()
    }

    fn publish(&self, position: u64) {
        self.committed.send_replace(position);
    }

    pub(crate) fn disk_bytes(&self) -> u64 {
        self.disk_bytes.load(Ordering::Relaxed)
    }

    fn grow_active(&self, active: Segment, written: u64) {
        let mut segments = self.lock_segments();
        if let Some(last) = segments.last_mut() {
            *last = active;
        }
        self.disk_bytes.fetch_add(written, Ordering::Relaxed);
    }

    fn add_segment(&self, segment: Segment) {
        self.lock_segments().push(segment);
        self.disk_bytes.fetch_add(segment::HEADER_LEN, Ordering::Relaxed);
    }

    /// Where `position` is: inside a segment, before the next segment (collected or a gap left by
    /// recovery), or at the end of the log.
    pub(crate) fn locate(&self, position: u64) -> Locate {
        for segment in self.lock_segments().iter() {
            if position < segment.base {
                return Locate::Before(segment.base);
            }
            if position < segment.end() {
                return Locate::In(*segment);
            }
        }
        Locate::End
    }

    pub(crate) fn oldest_position(&self) -> u64 {
        self.lock_segments().first().map_or(0, |s| s.base)
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn record_failure(&self, error: &std::io::Error) {
        let disk_full = matches!(
            error.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        );
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(WriteFailure {
            at: Instant::now(),
            disk_full,
            message: error.to_string(),
        });
    }

    fn clear_failure(&self) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure.is_some() {
            tracing::info!("WAL writes succeed again");
            *failure = None;
        }
    }

    fn failure(&self) -> Option<WriteFailure> {
        self.failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Deletes every segment that all registered consumers have fully read (never the active one).
    fn collect_garbage(&self) {
        let Some(min) = self
            .checkpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .copied()
            .min()
        else {
            return;
        };
        let mut segments = self.lock_segments();
        while segments.len() > 1 && segments[0].end() <= min {
            let gone = segments.remove(0);
            let file = segment::path(&self.dir, gone.base);
            match std::fs::remove_file(&file) {
                Ok(()) => {
                    self.disk_bytes
                        .fetch_sub(gone.len + segment::HEADER_LEN, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "cannot delete WAL segment");
                    segments.insert(0, gone);
                    break;
                }
            }
        }
    }
}

/// The write-ahead log. Open it once; hand out [`WalAppender`]s and register [`WalConsumer`]s.
pub struct Wal {
    shared: Arc<Shared>,
    sender: mpsc::Sender<Command>,
    writer: Option<JoinHandle<()>>,
    recovery: RecoveryReport,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, repairing a torn tail, and starts the writer thread.
    pub fn open(dir: &Path, options: WalOptions) -> Result<Wal, WalError> {
        let (segments, recovery) =
            segment::recover(dir).map_err(io_context(format!("recovering the WAL in {}", dir.display())))?;
        let disk_bytes = segments.iter().map(|s| s.len + segment::HEADER_LEN).sum();
        let active = *segments.last().expect("recover creates a segment");
        let (committed, _) = watch::channel(active.end());
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            options: options.clone(),
            segments: Mutex::new(segments),
            disk_bytes: AtomicU64::new(disk_bytes),
            committed,
            checkpoints: Mutex::new(BTreeMap::new()),
            closing: AtomicBool::new(false),
            recovered_end: active.end(),
            failure: Mutex::new(None),
        });
        let writer = Writer::new(shared.clone(), active).map_err(io_context("opening the active WAL segment"))?;
        let (sender, requests) = mpsc::channel(options.queue_depth.max(1));
        let handle = std::thread::Builder::new()
            .name("sift-wal".into())
            .spawn(move || writer.run(requests))
            .map_err(io_context("starting the WAL writer"))?;
        Ok(Wal {
            shared,
            sender,
            writer: Some(handle),
            recovery,
        })
    }

    /// What recovery found when the log was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// A handle for appending (cheap to clone).
    pub fn appender(&self) -> WalAppender {
        WalAppender {
            sender: self.sender.clone(),
        }
    }

    /// Registers a consumer by a stable name, resuming from its checkpoint (or the oldest record).
    pub fn consumer(&self, name: &str) -> WalConsumer {
        let oldest = self.shared.oldest_position();
        let start = checkpoint::load(&self.shared.dir, name).map_or(oldest, |p| p.max(oldest));
        self.shared
            .checkpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), start);
        WalConsumer {
            name: name.to_owned(),
            shared: self.shared.clone(),
            reader: Arc::new(Mutex::new(Reader::new(self.shared.clone(), start))),
            committed: self.shared.committed.subscribe(),
            stored: start,
            last_store: Instant::now(),
        }
    }

    /// Bytes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.shared.disk_bytes()
    }

    /// A handle that reads the log's size and position while the log is in use.
    pub fn stats(&self) -> WalStats {
        WalStats {
            shared: self.shared.clone(),
        }
    }

    /// Position after the last durable record.
    pub fn committed(&self) -> u64 {
        self.shared.committed()
    }

    /// Stops the writer after the appends already queued, and syncs. Consumers see the end.
    pub fn close(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        // Wake the writer if it is idle; it exits after this (empty) group.
        let _ = self.sender.try_send(Command::Wake);
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                tracing::error!("WAL writer thread panicked");
            }
        }
        self.shared.committed.send_modify(|_| {});
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

/// Read-only figures of an open log (for metrics and readiness).
#[derive(Clone)]
pub struct WalStats {
    shared: Arc<Shared>,
}

impl WalStats {
    /// Bytes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.shared.disk_bytes()
    }

    /// The configured size limit.
    pub fn max_bytes(&self) -> u64 {
        self.shared.options.max_bytes
    }

    /// Position after the last durable record.
    pub fn committed(&self) -> u64 {
        self.shared.committed()
    }

    /// The last write failure, if no write has succeeded since (appends are being refused).
    pub fn write_failure(&self) -> Option<WriteFailure> {
        self.shared.failure()
    }

    /// Bytes free for the log on its filesystem (`None` if the filesystem cannot tell).
    pub fn free_disk_bytes(&self) -> Option<u64> {
        free_bytes(&self.shared.dir)
    }
}

/// Bytes available to an unprivileged writer on the filesystem holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` is writable memory of the
    // right type; statvfs initialises it when it returns 0.
    let stat = unsafe {
        if libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Appends records. Cloning is cheap; all clones feed the one writer.
#[derive(Clone)]
pub struct WalAppender {
    sender: mpsc::Sender<Command>,
}

impl WalAppender {
    /// Appends `payload` and waits until it is durable. Returns the position after it.
    pub async fn append(&self, payload: Bytes) -> Result<u64, AppendError> {
        self.send(payload, false).await
    }

    /// Like [`append`](Self::append), for a stage whose output lets consumers advance (a tail
    /// sampler holds the log back until it has written its decisions): it may use a reserve of a
    /// quarter of the size limit beyond it, so that a log filled by receivers can still drain.
    pub async fn append_reserved(&self, payload: Bytes) -> Result<u64, AppendError> {
        self.send(payload, true).await
    }

    async fn send(&self, payload: Bytes, reserved: bool) -> Result<u64, AppendError> {
        let (reply, response) = oneshot::channel();
        self.sender
            .try_send(Command::Append(Append {
                payload,
                reply,
                reserved,
            }))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => AppendError::Busy,
                mpsc::error::TrySendError::Closed(_) => AppendError::Closed,
            })?;
        response.await.unwrap_or(Err(AppendError::Closed))
    }
}

/// One reader of the log with its own durable checkpoint.
pub struct WalConsumer {
    name: String,
    shared: Arc<Shared>,
    reader: Arc<Mutex<Reader>>,
    committed: watch::Receiver<u64>,
    stored: u64,
    last_store: Instant,
}

/// Checkpoints are written at most this often, except when forced.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

impl WalConsumer {
    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log's end when it was opened: a record ending at or before it is a replay (written
    /// by an earlier process, and perhaps handled before its crash).
    pub fn replay_end(&self) -> u64 {
        self.shared.recovered_end
    }

    /// Waits for committed records past this consumer's read position and returns about
    /// `max_bytes` of them. Returns `None` once the log is closed and everything was read.
    ///
    /// Cancel-safe: if the returned future is dropped before it completes, no record is lost; the
    /// next call returns the same records again.
    pub async fn next_batch(&mut self, max_bytes: usize) -> Result<Option<Vec<WalRecord>>, WalError> {
        loop {
            let reader = self.reader.clone();
            // The blocking read rewinds the reader; the position moves on only here, once the
            // records are in hand.
            let (start, end, result) = tokio::task::spawn_blocking(move || {
                let mut reader = reader.lock().unwrap_or_else(|e| e.into_inner());
                let start = reader.position();
                let result = reader.read(max_bytes);
                let end = reader.position();
                reader.seek(start);
                (start, end, result)
            })
            .await
            .map_err(|e| WalError::Io {
                context: "WAL read task".into(),
                source: std::io::Error::other(e),
            })?;
            let records = result.map_err(io_context(format!("reading the WAL for {}", self.name)))?;
            {
                let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
                if reader.position() == start {
                    reader.seek(end);
                }
            }
            let position = end;
            if !records.is_empty() {
                return Ok(Some(records));
            }
            if self.shared.is_closing() && position >= self.shared.committed() {
                return Ok(None);
            }
            self.committed.mark_unchanged();
            if *self.committed.borrow() > position {
                continue;
            }
            if self.committed.changed().await.is_err() {
                return Ok(None);
            }
        }
    }

    /// Records that everything before `position` has been handled. Persisted at most every
    /// 200 ms (always when `force`); segments every consumer is past are then deleted.
    pub fn commit(&mut self, position: u64, force: bool) -> Result<(), WalError> {
        self.shared
            .checkpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.name.clone(), position);
        if position != self.stored && (force || self.last_store.elapsed() >= CHECKPOINT_INTERVAL) {
            checkpoint::store(&self.shared.dir, &self.name, position)
                .map_err(io_context(format!("storing the WAL checkpoint of {}", self.name)))?;
            self.stored = position;
            self.last_store = Instant::now();
        }
        self.shared.collect_garbage();
        Ok(())
    }

    /// How many bytes of committed log this consumer has not yet handled.
    pub fn lag_bytes(&self) -> u64 {
        let read = self.reader.lock().unwrap_or_else(|e| e.into_inner()).position();
        self.shared.committed().saturating_sub(read)
    }
}

#[cfg(test)]
mod tests;
