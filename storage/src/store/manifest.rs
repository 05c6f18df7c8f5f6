//! The manifest: the one file that says which parts exist and how far into the WAL they reach.
//! It is replaced atomically (temporary file, fsync, rename, fsync of the directory), so after a
//! crash the store is exactly the last manifest: parts it does not list are leftovers and are
//! deleted, and WAL records past `wal_position` are replayed.
//!
//! Each part is listed with the CRC-32 of its file, taken as it was written and checked when the
//! part is first opened. A part found damaged moves to `quarantined` (its file to
//! `<root>/quarantine/`): no query reads it again, and answers over its time range say they are
//! partial. Manifests written before checksums existed still load (their parts go unchecked).
//!
//! The manifest checksums itself too (a last line `#crc32:<hex>` after the JSON): a flipped digit in
//! `wal_position` would otherwise still parse. A manifest that fails its checksum stops the store
//! from opening, naming the file, and nothing is deleted (which parts are published is unknown).

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

/// Where the rows of a part that compaction merged away are now: in part `part`, from row
/// `offset` on (full-text documents keep naming the part they were indexed under).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Moved {
    pub part: u64,
    pub offset: u64,
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
    /// Parts merged away, by id: where their rows are now. Always one step: a merge of merged
    /// parts points the older entries straight at the new part.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub moved: BTreeMap<u64, Moved>,
}

impl Manifest {
    /// Where row `row` of part `part` (as an index document names it) is now.
    pub(crate) fn resolve(&self, part: u64, row: u64) -> (u64, u64) {
        match self.moved.get(&part) {
            Some(moved) => (moved.part, moved.offset + row),
            None => (part, row),
        }
    }

    /// Replaces the parts `merged` (in the order their rows were written) by `into`, and records
    /// where their rows went.
    pub(crate) fn replace_merged(&mut self, merged: &[PartMeta], into: PartMeta) {
        let mut offsets = BTreeMap::new();
        let mut offset = 0;
        for part in merged {
            offsets.insert(part.id, offset);
            offset += part.rows;
        }
        for moved in self.moved.values_mut() {
            if let Some(base) = offsets.get(&moved.part) {
                *moved = Moved {
                    part: into.id,
                    offset: base + moved.offset,
                };
            }
        }
        for (id, offset) in offsets {
            self.moved.insert(id, Moved { part: into.id, offset });
        }
        self.parts.retain(|p| !merged.iter().any(|m| m.id == p.id));
        self.next_part_id = self.next_part_id.max(into.id + 1);
        self.parts.push(into);
    }

    /// Forgets where the rows of deleted parts went (entries pointing at no listed part).
    pub(crate) fn prune_moved(&mut self) {
        let listed: std::collections::BTreeSet<u64> =
            self.parts.iter().chain(&self.quarantined).map(|p| p.id).collect();
        self.moved.retain(|_, moved| listed.contains(&moved.part));
    }

    pub(crate) fn load(root: &Path) -> Result<Manifest, StorageError> {
        let path = root.join(FILE);
        let corrupt = |what: String| StorageError::Corrupt(format!("{}: {what}", path.display()));
        match std::fs::read(&path) {
            Ok(bytes) => {
                let json = verified(&bytes).map_err(corrupt)?;
                serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))
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
        let mut bytes = serde_json::to_vec(self).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(format!("\n{CRC_PREFIX}{crc:08x}\n").as_bytes());
        let mut file = File::create(&tmp).map_err(StorageError::io("creating the manifest"))?;
        file.write_all(&bytes)
            .map_err(StorageError::io("writing the manifest"))?;
        file.sync_all().map_err(StorageError::io("syncing the manifest"))?;
        std::fs::rename(&tmp, &path).map_err(StorageError::io("publishing the manifest"))?;
        sync_dir(root)
    }
}

/// Starts the manifest's checksum line.
const CRC_PREFIX: &str = "#crc32:";

/// The JSON of a manifest file, checked against its checksum line (files without one, written
/// before checksums, are taken as they are).
fn verified(bytes: &[u8]) -> Result<&[u8], String> {
    let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let Some(newline) = text.iter().rposition(|&b| b == b'\n') else {
        return Ok(bytes);
    };
    let (json, last) = (&text[..newline], &text[newline + 1..]);
    let Some(hex) = last.strip_prefix(CRC_PREFIX.as_bytes()) else {
        return Ok(bytes);
    };
    let expected = std::str::from_utf8(hex)
        .ok()
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| "unreadable checksum line".to_owned())?;
    let found = crc32fast::hash(json);
    if found != expected {
        return Err(format!(
            "checksum {found:08x}, the file says {expected:08x}: the manifest is damaged"
        ));
    }
    Ok(json)
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
    fn a_damaged_manifest_is_refused_and_an_old_one_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Manifest {
            version: VERSION,
            wal_position: 123_456,
            next_part_id: 7,
            ..Manifest::default()
        };
        manifest.store(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), manifest);

        // A digit of wal_position changed: still valid JSON, but refused.
        let path = dir.path().join(FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("123456", "923456")).unwrap();
        let error = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("manifest.json") && error.contains("checksum"), "{error}");

        // Written before checksums: loads as it is.
        std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), manifest);
    }

    #[test]
    fn hour_names_are_utc_calendar_hours() {
        assert_eq!(hour_name(0), "1970-01-01T00");
        // 2026-11-25T20:00:00Z = 1795636800 s.
        assert_eq!(hour_name(1_795_636_800 / 3600), "2026-11-25T20");
        // 2024-02-29T23 (leap day).
        assert_eq!(hour_name(1_709_247_600 / 3600), "2024-02-29T23");
    }
}
