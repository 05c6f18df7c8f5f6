//! The group-commit writer: one thread owns the active segment. It takes every append request that
//! is waiting, writes them with one `write`, makes them durable with one `fdatasync`, publishes the
//! new committed position and only then answers each request. Many concurrent requests therefore
//! share one fsync, and no request is answered before its bytes are on disk.
//!
//! A failed write (ENOSPC, EIO) refuses every request of its group and is undone: the segment is
//! cut back to its last committed byte before anything else is written, so positions handed out
//! always match the bytes on disk. Nothing is poisoned: the next group tries again, so the log
//! resumes by itself once space returns. A group that needs a new segment first commits what it
//! staged in the old one; if that fails, every request staged so far is refused with it. Once a
//! segment is full nothing more is written to it, not even a smaller record, until the next
//! segment exists: a file left by a failed rotation starts at the full segment's end, which must
//! therefore not move.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::record;
use super::segment::{self, Segment};
use super::{AppendError, Shared};

/// Most bytes gathered into one group before it is written.
const MAX_GROUP_BYTES: usize = 16 * 1024 * 1024;

/// Where the outcome of one append goes.
pub(crate) type Reply = oneshot::Sender<Result<u64, AppendError>>;

pub(crate) struct Append {
    pub payload: Bytes,
    pub reply: Reply,
    /// May use the reserve beyond the size limit (see [`super::WalAppender::append_reserved`]).
    pub reserved: bool,
}

/// What the writer is asked to do.
pub(crate) enum Command {
    Append(Append),
    /// Wakes an idle writer so that it notices the log is closing.
    Wake,
}

/// The requests of one group with their outcomes so far.
type Group = Vec<(Reply, Result<u64, AppendError>)>;

pub(crate) struct Writer {
    shared: Arc<Shared>,
    file: File,
    active: Segment,
    buffer: Vec<u8>,
    /// A write failed part-way: the file may hold bytes past `active.len` that must be cut before
    /// anything else is written.
    dirty_tail: bool,
    /// The active segment is full but the next one could not be started yet.
    rotate_pending: bool,
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, active: Segment) -> std::io::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(segment::path(&shared.dir, active.base))?;
        file.seek(SeekFrom::Start(segment::HEADER_LEN + active.len))?;
        Ok(Writer {
            shared,
            file,
            active,
            buffer: Vec::with_capacity(1024 * 1024),
            dirty_tail: false,
            rotate_pending: false,
        })
    }

    /// Runs until every sender is gone or a shutdown is requested.
    pub(crate) fn run(mut self, mut requests: mpsc::Receiver<Command>) {
        let mut group: Group = Vec::new();
        while let Some(first) = requests.blocking_recv() {
            let mut gathered = 0usize;
            let mut next = Some(first);
            while let Some(command) = next.take() {
                if let Command::Append(request) = command {
                    gathered += request.payload.len();
                    let outcome = self.stage(&request.payload, request.reserved, &mut group);
                    group.push((request.reply, outcome));
                }
                if gathered < MAX_GROUP_BYTES {
                    next = requests.try_recv().ok();
                }
            }
            // Failures are already recorded in the outcomes.
            let _ = self.commit_group(&mut group);
            for (reply, outcome) in group.drain(..) {
                // The requester may have gone away (client disconnected): the data is durable anyway.
                let _ = reply.send(outcome);
            }
            if self.shared.is_closing() {
                break;
            }
        }
        if let Err(e) = self.file.sync_data() {
            tracing::error!(error = %e, "final WAL sync failed");
        }
    }

    /// Frames one payload into the group buffer (committing the group so far and starting a new
    /// segment first if this one is full).
    fn stage(&mut self, payload: &[u8], reserved: bool, group: &mut Group) -> Result<u64, AppendError> {
        let framed = record::framed_len(payload.len()) as u64;
        if payload.len() > record::MAX_PAYLOAD {
            return Err(AppendError::TooLarge);
        }
        let limit = self.shared.options.max_bytes + if reserved { self.shared.options.max_bytes / 4 } else { 0 };
        if self.shared.disk_bytes() + self.buffer.len() as u64 + framed > limit {
            return Err(AppendError::Full);
        }
        let pending = self.buffer.len() as u64;
        let full =
            self.active.len + pending > 0 && self.active.len + pending + framed > self.shared.options.segment_bytes;
        if full || self.rotate_pending {
            self.commit_group(group)?;
            self.rotate_pending = true;
            self.rotate().map_err(|e| self.failed(&e))?;
            self.rotate_pending = false;
        }
        record::encode(payload, &mut self.buffer);
        Ok(self.active.end() + self.buffer.len() as u64)
    }

    /// Commits the staged bytes; on failure every request staged so far is refused.
    fn commit_group(&mut self, group: &mut Group) -> Result<(), AppendError> {
        let Err(e) = self.commit() else {
            return Ok(());
        };
        let error = self.failed(&e);
        for (_, outcome) in group.iter_mut() {
            if outcome.is_ok() {
                *outcome = Err(error.clone());
            }
        }
        Err(error)
    }

    /// Records a write failure (for readiness) and turns it into the append error clients see.
    fn failed(&self, e: &std::io::Error) -> AppendError {
        tracing::error!(error = %e, "WAL write failed; refusing the group");
        self.shared.record_failure(e);
        AppendError::Io(e.to_string())
    }

    /// Writes and syncs the group buffer, then publishes the new committed position. On failure
    /// the buffer is dropped and the segment cut back to its committed length.
    fn commit(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let result = self.write_buffer();
        let written = self.buffer.len() as u64;
        self.buffer.clear();
        if let Err(e) = result {
            self.dirty_tail = true;
            if let Err(cut) = self.cut_tail() {
                tracing::error!(error = %cut, "cannot cut a failed WAL write yet; will retry before the next one");
            }
            return Err(e);
        }
        self.active.len += written;
        self.shared.grow_active(self.active, written);
        self.shared.publish(self.active.end());
        self.shared.clear_failure();
        Ok(())
    }

    fn write_buffer(&mut self) -> std::io::Result<()> {
        if self.dirty_tail {
            self.cut_tail()?;
        }
        self.file.write_all(&self.buffer)?;
        self.file.sync_data()
    }

    /// Cuts whatever a failed write left after the last committed byte.
    fn cut_tail(&mut self) -> std::io::Result<()> {
        let end = segment::HEADER_LEN + self.active.len;
        self.file.set_len(end)?;
        self.file.seek(SeekFrom::Start(end))?;
        self.file.sync_data()?;
        self.dirty_tail = false;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.dirty_tail {
            self.cut_tail()?;
        }
        let base = self.active.end();
        let file = segment::create(&self.shared.dir, base)?;
        self.file = file;
        self.active = Segment { base, len: 0 };
        self.shared.add_segment(self.active);
        Ok(())
    }
}
