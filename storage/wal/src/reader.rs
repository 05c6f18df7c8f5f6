//! Reading committed records from a position onwards, across segments, skipping (and reporting)
//! damaged bytes rather than stopping at them.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;

use super::record::{self, Decoded};
use super::segment::{self, Segment};
use super::{Locate, Shared};

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    /// Position of the record.
    pub position: u64,
    /// Position just after it (what a consumer checkpoints once it has handled the record).
    pub end: u64,
    /// The bytes that were appended.
    pub payload: Bytes,
}

pub(crate) struct Reader {
    shared: Arc<Shared>,
    position: u64,
    open: Option<(Segment, File)>,
    /// The buffer of the last read, kept for the next one: records are copied out of it, and a
    /// fresh buffer per read costs page faults and zeroing at every read.
    scratch: Vec<u8>,
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, position: u64) -> Self {
        Reader {
            shared,
            position,
            open: None,
            scratch: Vec::new(),
        }
    }

    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    /// Moves the read position (to a record boundary this reader returned before).
    pub(crate) fn seek(&mut self, position: u64) {
        self.position = position;
    }

    /// Reads committed records from the current position, about `max_bytes` of them (at least one
    /// if any is committed). Returns an empty batch when the reader has caught up.
    pub(crate) fn read(&mut self, max_bytes: usize) -> io::Result<Vec<WalRecord>> {
        let committed = self.shared.committed();
        let mut out = Vec::new();
        let mut budget = max_bytes;
        while self.position < committed && budget > 0 {
            let segment = match self.shared.locate(self.position) {
                Locate::In(segment) => segment,
                Locate::Before(next) => {
                    if self.position < self.shared.oldest_position() {
                        tracing::warn!(
                            from = self.position,
                            to = next,
                            "WAL position no longer on disk, skipping ahead"
                        );
                    }
                    self.position = next;
                    continue;
                }
                Locate::End => break,
            };
            let readable_end = segment.end().min(committed);
            let want = ((readable_end - self.position) as usize).min(budget.max(record::HEADER_LEN));
            let bytes = self.read_bytes(segment, want)?;
            let consumed = self.decode_into(&bytes, readable_end, &mut out);
            self.scratch = bytes;
            let consumed = consumed?;
            budget = budget.saturating_sub(consumed.max(1));
        }
        Ok(out)
    }

    fn file_for(&mut self, segment: Segment) -> io::Result<&mut File> {
        let reopen = !matches!(&self.open, Some((open, _)) if open.base == segment.base);
        if reopen {
            let file = File::open(segment::path(&self.shared.dir, segment.base))?;
            self.open = Some((segment, file));
        }
        Ok(&mut self.open.as_mut().expect("opened above").1)
    }

    /// Reads `len` bytes at the current position, into the scratch buffer if it is free.
    fn read_bytes(&mut self, segment: Segment, len: usize) -> io::Result<Vec<u8>> {
        let offset = segment::HEADER_LEN + (self.position - segment.base);
        let mut bytes = std::mem::take(&mut self.scratch);
        bytes.clear();
        let file = self.file_for(segment)?;
        file.seek(SeekFrom::Start(offset))?;
        // `read_to_end` reads into the spare capacity as it is, without zeroing it first.
        file.take(len as u64).read_to_end(&mut bytes)?;
        if bytes.len() < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "WAL segment shorter than its committed bytes",
            ));
        }
        Ok(bytes)
    }

    /// Decodes records from `bytes` (read at the current position), advancing the position.
    /// Returns how many bytes were consumed.
    fn decode_into(&mut self, bytes: &[u8], readable_end: u64, out: &mut Vec<WalRecord>) -> io::Result<usize> {
        let mut at = 0usize;
        while at < bytes.len() {
            match record::decode(&bytes[at..]) {
                Decoded::Record(payload, framed) => {
                    let position = self.position + at as u64;
                    out.push(WalRecord {
                        position,
                        end: position + framed as u64,
                        payload: Bytes::copy_from_slice(payload),
                    });
                    at += framed;
                }
                Decoded::Incomplete if at > 0 => break,
                Decoded::Incomplete => {
                    let framed = self.read_header_len(readable_end)?;
                    if framed > bytes.len() {
                        // One record larger than the read budget: read exactly it.
                        let Locate::In(segment) = self.shared.locate(self.position) else {
                            return Err(io::Error::new(
                                io::ErrorKind::NotFound,
                                "WAL segment vanished while reading",
                            ));
                        };
                        let whole = self.read_bytes(segment, framed)?;
                        return self.decode_into(&whole, readable_end, out);
                    }
                    // Committed bytes that do not form a whole record: damaged.
                    let skip_to = record::resync(bytes, 1).unwrap_or(bytes.len());
                    tracing::warn!(
                        position = self.position,
                        skipped = skip_to,
                        "skipping damaged WAL bytes"
                    );
                    at = skip_to;
                }
                Decoded::Corrupt => {
                    let skip_to = record::resync(bytes, at + 1).unwrap_or(bytes.len());
                    tracing::warn!(
                        position = self.position + at as u64,
                        skipped = skip_to - at,
                        "skipping damaged WAL bytes"
                    );
                    at = skip_to;
                }
            }
        }
        self.position += at as u64;
        Ok(at)
    }

    /// The framed length of the record at the current position, if its header is readable.
    fn read_header_len(&mut self, readable_end: u64) -> io::Result<usize> {
        let available = (readable_end - self.position) as usize;
        if available < record::HEADER_LEN {
            return Ok(0);
        }
        let Locate::In(segment) = self.shared.locate(self.position) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "WAL segment vanished while reading",
            ));
        };
        let header = self.read_bytes(segment, record::HEADER_LEN)?;
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let framed = record::framed_len(len);
        Ok(if framed <= available { framed } else { 0 })
    }
}
