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

use std::collections::{BTreeMap, BTreeSet};
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

/// Where the rows of a part that compaction merged away went: to part `part`, from row `offset`
/// on (full-text documents keep naming the part they were indexed under).
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
    /// Partitions whose full-text index misses documents of the parts above (a commit failed):
    /// rebuilt from their rows after a restart too.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub stale_indexes: BTreeSet<(Table, u64)>,
    /// Every metrics part listed has its rows in rollups parts too (stores written before rollups
    /// existed lack this until their rollups are built, see `LocalStore::build_rollups`).
    #[serde(default)]
    pub metric_rollups: bool,
}

impl Manifest {
    /// Replaces the parts `merged` by `into`.
    pub(crate) fn replace_merged(&mut self, merged: &[PartMeta], into: PartMeta) {
        self.parts.retain(|p| !merged.iter().any(|m| m.id == p.id));
        self.next_part_id = self.next_part_id.max(into.id + 1);
        self.parts.push(into);
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
                metric_rollups: true,
                ..Manifest::default()
            }),
            Err(e) => Err(StorageError::io(format!("reading {}", path.display()))(e)),
        }
    }

    pub(crate) fn store(&self, root: &Path) -> Result<(), StorageError> {
        let json = serde_json::to_vec(self).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        replace_file(root, FILE, json)
    }
}

/// Replaces `dir/name` with `json` and its checksum line: a temporary file, fsync, rename, fsync
/// of the directory.
fn replace_file(dir: &Path, name: &str, mut json: Vec<u8>) -> Result<(), StorageError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let crc = crc32fast::hash(&json);
    json.extend_from_slice(format!("\n{CRC_PREFIX}{crc:08x}\n").as_bytes());
    let mut file = File::create(&tmp).map_err(StorageError::io(format!("creating {}", tmp.display())))?;
    file.write_all(&json)
        .map_err(StorageError::io(format!("writing {}", tmp.display())))?;
    file.sync_all()
        .map_err(StorageError::io(format!("syncing {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(StorageError::io(format!("publishing {}", path.display())))?;
    sync_dir(dir)
}

/// The moves of one partition's parts, by the id of the part merged away (`<partition>/moved.json`,
/// for tables with a full-text index).
///
/// A compaction writes its moves before the manifest that unlists the merged parts, and moves are
/// followed only from parts the manifest no longer lists (see [`resolve`]). So a crash between
/// the two leaves moves that are never followed (their parts are still listed) and then
/// overwritten, and no manifest ever unlists a part whose move is not durable. A chain (a part
/// merged, then its merged part merged again) is followed step by step, the offsets adding up.
pub(crate) type Moves = BTreeMap<u64, Moved>;

const MOVES_FILE: &str = "moved.json";

/// The moves of the partition at `dir` (none if it has no file).
pub(crate) fn load_moves(dir: &Path) -> Result<Moves, StorageError> {
    let path = dir.join(MOVES_FILE);
    let corrupt = |what: String| StorageError::Corrupt(format!("{}: {what}", path.display()));
    match std::fs::read(&path) {
        Ok(bytes) => {
            let json = verified(&bytes).map_err(corrupt)?;
            let moves: Vec<(u64, Moved)> = serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
            Ok(moves.into_iter().collect())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Moves::new()),
        Err(e) => Err(StorageError::io(format!("reading {}", path.display()))(e)),
    }
}

/// Replaces the moves of the partition at `dir`, atomically and durably.
pub(crate) fn store_moves(dir: &Path, moves: &Moves) -> Result<(), StorageError> {
    let list: Vec<(&u64, &Moved)> = moves.iter().collect();
    let json = serde_json::to_vec(&list).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    replace_file(dir, MOVES_FILE, json)
}

/// Where row `row` of part `part` (as an index document names it) is now: moves are followed
/// while the part is not `listed`.
pub(crate) fn resolve(moves: Option<&Moves>, listed: impl Fn(u64) -> bool, part: u64, row: u64) -> (u64, u64) {
    let (mut part, mut row) = (part, row);
    let Some(moves) = moves else {
        return (part, row);
    };
    // A chain is as long as the tiers a row has climbed; the bound only guards against a loop.
    for _ in 0..64 {
        if listed(part) {
            break;
        }
        match moves.get(&part) {
            Some(moved) => (part, row) = (moved.part, row + moved.offset),
            None => break,
        }
    }
    (part, row)
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
    fn moves_are_followed_only_from_parts_no_longer_listed() {
        // Parts 1 and 2 merged into 5 (2's rows after 1's 10), then 5 and 4 into 9.
        let moves: Moves = [
            (1, Moved { part: 5, offset: 0 }),
            (2, Moved { part: 5, offset: 10 }),
            (5, Moved { part: 9, offset: 0 }),
            (4, Moved { part: 9, offset: 30 }),
        ]
        .into_iter()
        .collect();
        let listed = |ids: &'static [u64]| move |p: u64| ids.contains(&p);
        assert_eq!(
            resolve(Some(&moves), listed(&[9]), 2, 3),
            (9, 13),
            "a chain adds offsets"
        );
        assert_eq!(resolve(Some(&moves), listed(&[9]), 4, 3), (9, 33));
        // A crash after the moves of the second merge were written, before its manifest: 5 is
        // still listed, so its documents stay where they are.
        assert_eq!(resolve(Some(&moves), listed(&[5, 4]), 2, 3), (5, 13));
        assert_eq!(resolve(Some(&moves), listed(&[5, 4]), 4, 3), (4, 3));
        assert_eq!(resolve(None, listed(&[]), 7, 1), (7, 1));

        let dir = tempfile::tempdir().unwrap();
        assert!(load_moves(dir.path()).unwrap().is_empty());
        store_moves(dir.path(), &moves).unwrap();
        assert_eq!(load_moves(dir.path()).unwrap(), moves);
        let path = dir.path().join(MOVES_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("30", "31", 1)).unwrap();
        assert!(load_moves(dir.path()).unwrap_err().to_string().contains("checksum"));
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
