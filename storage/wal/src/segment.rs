//! Segment files: `<wal>/<base:020>.wal`, each starting with an 8-byte versioned header. A segment
//! holds the log positions `[base, base + len)`, where `len` is its size minus the header.
//! Recovery scans the last segment and cuts a torn tail (the unfinished last write of a crash,
//! never acknowledged); bytes it cannot explain that way are copied to `<wal>/damaged/` before
//! they are cut, and reported loudly. It never panics.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::record::{self, Decoded};

/// File header: format name and version. Version 1 is the only one so far.
pub(crate) const HEADER: &[u8; 8] = b"SIFTWAL\x01";
pub(crate) const HEADER_LEN: u64 = HEADER.len() as u64;

/// One segment in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Position of the first byte.
    pub base: u64,
    /// Bytes of records (excluding the header).
    pub len: u64,
}

impl Segment {
    pub(crate) fn end(&self) -> u64 {
        self.base + self.len
    }
}

pub(crate) fn path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.wal"))
}

/// Creates a new, empty segment file with its header, synced.
pub(crate) fn create(dir: &Path, base: u64) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .read(true)
        .open(path(dir, base))?;
    file.write_all(HEADER)?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(file)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What recovery found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments found.
    pub segments: usize,
    /// Valid records in the last segment.
    pub tail_records: u64,
    /// Bytes skipped inside the last segment because they were not valid records.
    pub corrupt_bytes: u64,
    /// Bytes cut from the end of the last segment (a torn or corrupt tail).
    pub truncated_bytes: u64,
    /// Where cut bytes that were not a torn last write were kept (they may have held
    /// acknowledged records: an operator should look at them).
    pub kept_aside: Option<PathBuf>,
}

/// Lists the segments in `dir`, repairing the last one. Creates the first segment if none exist.
pub(crate) fn recover(dir: &Path) -> io::Result<(Vec<Segment>, RecoveryReport)> {
    fs::create_dir_all(dir)?;
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(base) = name.strip_suffix(".wal").and_then(|b| b.parse::<u64>().ok()) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    let mut report = RecoveryReport {
        segments: bases.len(),
        ..Default::default()
    };
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    for (i, base) in bases.iter().enumerate() {
        let last = i + 1 == bases.len();
        let file_len = fs::metadata(path(dir, *base))?.len();
        if let Some(previous) = segments.last() {
            if *base < previous.end() {
                // Starts inside the previous segment. A file that holds no record is what a
                // rotation that failed part-way left (builds before the writer stopped writing
                // to a full segment could go on growing it): it holds nothing, remove it.
                // Anything else is damage nobody can explain: keep it aside, never read it.
                if file_len <= HEADER_LEN {
                    tracing::warn!(segment = %path(dir, *base).display(), "removing an empty WAL segment left by a failed rotation");
                    fs::remove_file(path(dir, *base))?;
                } else {
                    let aside = dir.join("damaged").join(format!("{base:020}.wal"));
                    fs::create_dir_all(dir.join("damaged"))?;
                    fs::rename(path(dir, *base), &aside)?;
                    tracing::error!(segment = %aside.display(), "WAL segment overlaps the one before it; kept aside, not read");
                    report.kept_aside = Some(aside);
                }
                report.segments -= 1;
                continue;
            }
        }
        let len = if last {
            repair_tail(dir, *base, &mut report)?
        } else {
            file_len.saturating_sub(HEADER_LEN)
        };
        segments.push(Segment { base: *base, len });
    }
    // The last segment may have been removed above: the one before it is then the last.
    if let Some(last) = segments.last_mut() {
        if bases.last() != Some(&last.base) {
            last.len = repair_tail(dir, last.base, &mut report)?;
        }
    }
    if segments.is_empty() {
        create(dir, 0)?;
        segments.push(Segment { base: 0, len: 0 });
        report.segments = 1;
    }
    Ok((segments, report))
}

/// Writes `bytes` to `path` durably (for damaged WAL bytes that are cut from a segment).
fn keep_aside(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Scans the last segment: keeps every valid record, cuts everything after the last one.
fn repair_tail(dir: &Path, base: u64, report: &mut RecoveryReport) -> io::Result<u64> {
    let file_path = path(dir, base);
    let mut file = OpenOptions::new().read(true).write(true).open(&file_path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    if bytes.len() < HEADER.len() || &bytes[..HEADER.len()] != HEADER {
        if bytes.len() >= HEADER.len() && bytes[..7] == HEADER[..7] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} has WAL format version {}, this build reads version {}",
                    file_path.display(),
                    bytes[7],
                    HEADER[7]
                ),
            ));
        }
        // A segment whose header never reached the disk holds no acknowledged data.
        report.truncated_bytes += bytes.len() as u64;
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(HEADER)?;
        file.sync_all()?;
        return Ok(0);
    }
    let data = &bytes[HEADER.len()..];
    let mut at = 0usize;
    let mut valid_end = 0usize;
    while at < data.len() {
        match record::decode(&data[at..]) {
            Decoded::Record(_, framed) => {
                at += framed;
                valid_end = at;
                report.tail_records += 1;
            }
            Decoded::Incomplete | Decoded::Corrupt => match record::resync(data, at + 1) {
                Some(next) => {
                    report.corrupt_bytes += (next - at) as u64;
                    at = next;
                }
                None => break,
            },
        }
    }
    let cut = data.len() - valid_end;
    if cut > 0 {
        // A crash during a write leaves the start of one unfinished record: its header (or part
        // of it) says it goes on past the end of the file. Anything else was not a torn write.
        // (A filesystem may also show a never-written end as zeros after a crash.)
        let tail = &data[valid_end..];
        let torn = matches!(record::decode(tail), Decoded::Incomplete) || tail.iter().all(|&b| b == 0);
        if !torn {
            let aside = dir.join("damaged").join(format!("{base:020}-{valid_end:012}.bin"));
            keep_aside(&aside, &data[valid_end..])?;
            report.kept_aside = Some(aside);
        }
        report.truncated_bytes += cut as u64;
        file.set_len(HEADER_LEN + valid_end as u64)?;
        file.sync_all()?;
    }
    Ok(valid_end as u64)
}
