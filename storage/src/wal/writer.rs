//! The group-commit writer: one thread owns the active segment. It takes every append request that
//! is waiting, writes them with one `write`, makes them durable with one `fdatasync`, publishes the
//! new committed position and only then answers each request. Many concurrent requests therefore
//! share one fsync, and no request is answered before its bytes are on disk.

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

pub(crate) struct Writer {
    shared: Arc<Shared>,
    file: File,
    active: Segment,
    buffer: Vec<u8>,
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
        })
    }

    /// Runs until every sender is gone or a shutdown is requested.
    pub(crate) fn run(mut self, mut requests: mpsc::Receiver<Command>) {
        let mut group: Vec<(Reply, Result<u64, AppendError>)> = Vec::new();
        while let Some(first) = requests.blocking_recv() {
            let mut gathered = 0usize;
            let mut next = Some(first);
            while let Some(command) = next.take() {
                if let Command::Append(request) = command {
                    gathered += request.payload.len();
                    let outcome = self.stage(&request.payload, request.reserved);
                    group.push((request.reply, outcome));
                }
                if gathered < MAX_GROUP_BYTES {
                    next = requests.try_recv().ok();
                }
            }
            if let Err(e) = self.commit() {
                tracing::error!(error = %e, "WAL write failed; refusing the group");
                for (_, outcome) in group.iter_mut() {
                    if outcome.is_ok() {
                        *outcome = Err(AppendError::Io(e.to_string()));
                    }
                }
                self.shared.poison(e.to_string());
            }
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

    /// Frames one payload into the group buffer (rotating first if the segment is full).
    fn stage(&mut self, payload: &[u8], reserved: bool) -> Result<u64, AppendError> {
        if let Some(reason) = self.shared.poisoned() {
            return Err(AppendError::Io(reason));
        }
        let framed = record::framed_len(payload.len()) as u64;
        if payload.len() > record::MAX_PAYLOAD {
            return Err(AppendError::TooLarge);
        }
        let limit = self.shared.options.max_bytes + if reserved { self.shared.options.max_bytes / 4 } else { 0 };
        if self.shared.disk_bytes() + self.buffer.len() as u64 + framed > limit {
            return Err(AppendError::Full);
        }
        let pending = self.buffer.len() as u64;
        if self.active.len + pending > 0 && self.active.len + pending + framed > self.shared.options.segment_bytes {
            self.rotate().map_err(|e| AppendError::Io(e.to_string()))?;
        }
        record::encode(payload, &mut self.buffer);
        Ok(self.active.end() + self.buffer.len() as u64)
    }

    /// Writes and syncs the group buffer, then publishes the new committed position.
    fn commit(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let written = self.buffer.len() as u64;
        let result = self.file.write_all(&self.buffer).and_then(|()| self.file.sync_data());
        self.buffer.clear();
        result?;
        self.active.len += written;
        self.shared.grow_active(self.active, written);
        self.shared.publish(self.active.end());
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.commit()?;
        let base = self.active.end();
        let file = segment::create(&self.shared.dir, base)?;
        self.file = file;
        self.active = Segment { base, len: 0 };
        self.shared.add_segment(self.active);
        Ok(())
    }
}
