//! Consumer checkpoints: `<wal>/checkpoints/<consumer>`, the position of the next record the
//! consumer has not yet handled. Written to a temporary file and renamed, so a crash leaves either
//! the old or the new value. A lost update only means records are handled again (at-least-once).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

fn file_name(consumer: &str) -> String {
    consumer
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(crate) fn path(dir: &Path, consumer: &str) -> PathBuf {
    dir.join("checkpoints").join(file_name(consumer))
}

/// The stored checkpoint, or `None` when the consumer has none (or it is unreadable).
pub(crate) fn load(dir: &Path, consumer: &str) -> Option<u64> {
    let text = fs::read_to_string(path(dir, consumer)).ok()?;
    match text.trim().parse() {
        Ok(position) => Some(position),
        Err(_) => {
            tracing::warn!(consumer, "unreadable WAL checkpoint, replaying from the oldest segment");
            None
        }
    }
}

pub(crate) fn store(dir: &Path, consumer: &str, position: u64) -> io::Result<()> {
    let target = path(dir, consumer);
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    let temp = target.with_extension("tmp");
    let mut file = fs::File::create(&temp)?;
    writeln!(file, "{position}")?;
    file.sync_data()?;
    fs::rename(&temp, &target)
}
