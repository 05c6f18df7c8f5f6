//! The manifest: the one file that says which parts exist and how far into the WAL they reach.
//! It is replaced atomically (temporary file, fsync, rename, fsync of the directory), so after a
//! crash the store is exactly the last manifest: parts it does not list are leftovers and are
//! deleted, and WAL records past `wal_position` are replayed.
//!
//! Each part is listed with the CRC-32 of its file, taken as it was written and checked when the
//! part is first opened. A part found damaged moves to `quarantined` (its file to
//! `<root>/quarantine/`): no query reads it again, and answers over its time range say they are
//! partial. Manifests written before checksums existed still load (their parts go unchecked).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StorageError;
use crate::columnar::{Table, HOUR_NANOS};

const FILE: &str = "manifest.json";
const VERSION: u32 = 1;

/// Rows and time span of one service in a part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRows {
    /// Rows of the service.
    pub rows: u64,
    /// Earliest row time (ns).
    pub first: u64,
    /// Latest row time (ns).
    pub last: u64,
}

impl ServiceRows {
    pub(crate) fn add(&mut self, time: u64) {
        self.first = if self.rows == 0 { time } else { self.first.min(time) };
        self.last = self.last.max(time);
        self.rows += 1;
    }

    pub(crate) fn merge(&mut self, other: &ServiceRows) {
        if other.rows == 0 {
            return;
        }
        self.first = if self.rows == 0 {
            other.first
        } else {
            self.first.min(other.first)
        };
        self.last = self.last.max(other.last);
        self.rows += other.rows;
    }
}

/// One published part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartMeta {
    pub id: u64,
    pub table: Table,
    /// Hours since the epoch: the partition.
    pub hour: u64,
    pub rows: u64,
    pub bytes: u64,
    /// Earliest and latest row time (ns).
    pub min_time: u64,
    pub max_time: u64,
    /// Rows per service.
    pub services: BTreeMap<String, ServiceRows>,
    /// CRC-32 of the whole file, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<u32>,
}

impl PartMeta {
    pub(crate) fn file_name(&self) -> String {
        format!("part-{:012}.parquet", self.id)
    }

    pub(crate) fn path(&self, root: &Path) -> PathBuf {
        partition_dir(root, self.table, self.hour).join(self.file_name())
    }

    /// Where the file goes when it is found damaged.
    pub(crate) fn quarantine_path(&self, root: &Path) -> PathBuf {
        root.join("quarantine")
            .join(self.table.as_str())
            .join(hour_name(self.hour))
            .join(self.file_name())
    }

    pub(crate) fn overlaps(&self, range: &crate::TimeRange) -> bool {
        range.overlaps(self.min_time, self.max_time)
    }
}

/// The store's published state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub version: u32,
    /// Every WAL record before this position is in the parts below.
    pub wal_position: u64,
    pub next_part_id: u64,
    pub parts: Vec<PartMeta>,
    /// Parts found damaged: no longer read, kept so answers over their range say they are partial.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<PartMeta>,
}

impl Manifest {
    pub(crate) fn load(root: &Path) -> Result<Manifest, StorageError> {
        let path = root.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt(format!("{}: {e}", path.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest {
                version: VERSION,
                ..Manifest::default()
            }),
            Err(e) => Err(StorageError::io(format!("reading {}", path.display()))(e)),
        }
    }

    pub(crate) fn store(&self, root: &Path) -> Result<(), StorageError> {
        let path = root.join(FILE);
        let tmp = root.join(format!("{FILE}.tmp"));
        let bytes = serde_json::to_vec(self).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let mut file = File::create(&tmp).map_err(StorageError::io("creating the manifest"))?;
        file.write_all(&bytes)
            .map_err(StorageError::io("writing the manifest"))?;
        file.sync_all().map_err(StorageError::io("syncing the manifest"))?;
        std::fs::rename(&tmp, &path).map_err(StorageError::io("publishing the manifest"))?;
        sync_dir(root)
    }
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io(format!("syncing {}", dir.display())))
}

/// `<root>/<table>/<yyyy-mm-ddThh>`.
pub(crate) fn partition_dir(root: &Path, table: Table, hour: u64) -> PathBuf {
    root.join(table.as_str()).join(hour_name(hour))
}

/// The UTC hour as `yyyy-mm-ddThh`.
pub(crate) fn hour_name(hour: u64) -> String {
    let (year, month, day) = sift_proto::civil::civil_from_days((hour / 24) as i64);
    format!("{year:04}-{month:02}-{day:02}T{:02}", hour % 24)
}

/// The partition (hour since the epoch) of a time in nanoseconds.
pub(crate) fn hour_of(time_nanos: u64) -> u64 {
    time_nanos / HOUR_NANOS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_names_are_utc_calendar_hours() {
        assert_eq!(hour_name(0), "1970-01-01T00");
        // 2026-11-25T20:00:00Z = 1795636800 s.
        assert_eq!(hour_name(1_795_636_800 / 3600), "2026-11-25T20");
        // 2024-02-29T23 (leap day).
        assert_eq!(hour_name(1_709_247_600 / 3600), "2024-02-29T23");
    }
}
