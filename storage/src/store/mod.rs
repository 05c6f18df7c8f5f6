//! The local-disk store: an in-memory head per table and hour, flushed into immutable Parquet
//! parts listed by an atomically replaced manifest, with full-text indexes for logs.
//!
//! Writes come from one place (the storage exporter's WAL consumer), which calls [`LocalStore::append`]
//! with each WAL record's end position and [`LocalStore::flush`] by size or age; the WAL checkpoint
//! may then move to [`LocalStore::durable_position`]. Reads take a snapshot (the manifest plus the
//! head's batches) and never block writes for longer than that copy.
//!
//! Faults: a flush that fails (ENOSPC, EIO) keeps its frozen heads and is retried with the next
//! one, and until a flush succeeds the durable position stays at the last published manifest,
//! so no WAL checkpoint passes rows that are only in memory. Full-text index failures never fail
//! a write (the index is rebuilt from the rows). A part that fails its checksum or cannot be read
//! is quarantined: reads skip it and [`Store::partial`] tells the query layer.

pub(crate) mod fulltext;
mod head;
mod ingest;
pub(crate) mod manifest;
mod mapped;
mod newest;
mod part;
mod read;
mod trace_search;
mod writer;

pub use read::point_time;
pub use writer::TickReport;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow_array::{RecordBatch, UInt64Array};
use arrow_select::filter::filter_record_batch;
use prost::Message as _;
use sift_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sift_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sift_proto::SignalKind;

use self::fulltext::{Hit, MergeBudget, MergeStats, TextIndexes, TraceText};
use self::head::{BatchStats, HeadPartition};
use self::manifest::{hour_of, partition_dir, sync_dir, Manifest, Moves, PartMeta, ServiceRows};
use self::part::{equal_mask, PartReader};
use crate::columnar::exemplars::{ExemplarBuilder, ExemplarRow};
use crate::columnar::logs::{LogBuilder, LogRow};
use crate::columnar::metrics::{MetricBuilder, MetricRow};
use crate::columnar::spans::{SpanBuilder, SpanRow};
use crate::columnar::{self, logs, metrics, spans, Table};
use crate::rollup::{self, Labels, Rollup, Sample};
use crate::{LogSearch, ServiceInfo, StorageError, Store, TimeRange, TraceFilter, TraceHits};
use sift_wal::WalEntry;

/// How a [`LocalStore`] flushes and how long it keeps data.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Flush the head once its oldest row has waited this long.
    pub flush_interval: Duration,
    /// The store's memory, divided as [`StoreOptions::memory`] says.
    pub memory_limit: usize,
    /// Compaction's fan-in: parts of one size tier merged at once (and the ratio between tiers).
    pub compact_parts: usize,
    /// Rows of a merged part at most; parts of half of this or more are never merged again. A
    /// merge copies row groups without decoding them, so its memory does not depend on this; its
    /// time does (~20M rows: seconds to tens of seconds of I/O).
    pub compact_max_rows: u64,
    /// Parts of a merge that average fewer rows than this are decoded and written again (so that
    /// their small row groups merge too); larger ones are copied row group by row group.
    pub compact_rewrite_rows: u64,
    /// How long each signal is kept (`None`: forever).
    pub retention: BTreeMap<SignalKind, Duration>,
    /// Full-text index merges that may run at once, across the whole store.
    pub index_merges: usize,
    /// Documents a merged full-text index segment holds at most (larger ones are not merged).
    pub index_segment_docs: u32,
    /// How often [`LocalStore::maintain_if_due`] runs retention and compaction.
    pub maintenance_interval: Duration,
    /// How often [`LocalStore::tick`] commits the full-text indexes: how long a head row may wait
    /// before a full-text search finds it (Elasticsearch refreshes every second, Quickwit commits
    /// every 60 s; every commit adds segments that must be merged).
    pub index_commit_interval: Duration,
}

impl StoreOptions {
    /// The options the `storage` section of a configuration asks for: the one place where its
    /// settings (and so every default) become the store's.
    pub fn from_config(storage: &sift_config::StorageConfig) -> StoreOptions {
        let mut retention = BTreeMap::new();
        for (signal, keep) in [
            (SignalKind::Traces, storage.retention.traces.0),
            (SignalKind::Logs, storage.retention.logs.0),
            (SignalKind::Metrics, storage.retention.metrics.0),
        ] {
            if !keep.is_zero() {
                retention.insert(signal, keep);
            }
        }
        StoreOptions {
            flush_interval: storage.flush.interval.0,
            memory_limit: usize::try_from(storage.memory_limit_mib << 20).unwrap_or(usize::MAX),
            compact_parts: 8,
            compact_max_rows: 20_000_000,
            compact_rewrite_rows: 16 * 1024,
            retention,
            index_merges: 1,
            // Segments of half of this or more are never merged again: with a segment per
            // 10 s commit, each log record is merged about once (a soak spent ~20% of the store's
            // CPU in merges with 5 s commits and twice this size, and fell behind).
            index_segment_docs: 2_000_000,
            maintenance_interval: Duration::from_secs(10),
            index_commit_interval: Duration::from_secs(10),
        }
    }
}

/// How a store divides its memory limit: the one budget of its memory. The head and the index
/// writers are held to their shares (appends wait when the head is full; the least recently
/// written index writer is closed before another opens); the rest is for what runs one at a
/// time — an index merge, a compaction (row groups copied one column chunk at a time) — and
/// reads (scans stop at a row budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    /// The head is flushed once it holds this many bytes of Arrow data (a sixth of the limit).
    pub flush_bytes: usize,
    /// Live heads plus those a failed flush keeps for its retry (a third of the limit):
    /// [`LocalStore::write`] takes no more rows beyond this, so they wait in the WAL.
    pub head_bytes: usize,
    /// The memory of each full-text index writer (tantivy's indexing heap).
    pub index_writer_bytes: usize,
    /// Index writers open at once per indexed table (logs, spans): together a quarter of the
    /// limit.
    pub index_writers: usize,
}

/// The memory a store holds in the counted parts of its [`MemoryBudget`] (see
/// [`LocalStore::memory_use`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    /// Arrow data of the head, live and kept by failed flushes.
    pub head_bytes: usize,
    /// Index writers open in the indexed table that has the most.
    pub index_writers: usize,
    /// The heaps of every open index writer.
    pub index_writer_bytes: usize,
}

/// tantivy refuses an indexing heap smaller than 15 MB.
const MIN_WRITER_BYTES: usize = 16 << 20;
/// A larger heap makes fewer, larger segments per commit; more than this buys little.
const MAX_WRITER_BYTES: usize = 48 << 20;

impl StoreOptions {
    /// How [`StoreOptions::memory_limit`] is divided.
    pub fn memory(&self) -> MemoryBudget {
        let limit = self.memory_limit;
        let per_table = limit / 8;
        let index_writer_bytes = (limit / 16).clamp(MIN_WRITER_BYTES, MAX_WRITER_BYTES);
        MemoryBudget {
            flush_bytes: limit / 6,
            head_bytes: limit / 3,
            index_writer_bytes,
            index_writers: (per_table / index_writer_bytes).max(1),
        }
    }
}

/// The configuration's defaults, without retention (tests and tools keep everything).
impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retention: BTreeMap::new(),
            ..StoreOptions::from_config(&sift_config::StorageConfig::default())
        }
    }
}

/// How a store's data is laid out now (see [`LocalStore::layout`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreLayout {
    /// Published parts per (table, hour).
    pub parts: BTreeMap<(Table, u64), usize>,
    /// Segments of each full-text index open for writing, per (table, hour).
    pub index_segments: BTreeMap<(Table, u64), usize>,
}

/// What [`LocalStore::enforce_retention`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Partitions deleted per table.
    pub partitions: BTreeMap<Table, u64>,
    /// Rows deleted per table.
    pub rows: BTreeMap<Table, u64>,
    /// Bytes freed per table (parts and indexes).
    pub bytes: BTreeMap<Table, u64>,
}

struct State {
    manifest: Arc<Manifest>,
    live: BTreeMap<(Table, u64), HeadPartition>,
    /// Head partitions being written as parts: still read from memory until the manifest lists them.
    frozen: Vec<Arc<HeadPartition>>,
    /// End of the last WAL record handed to `append`.
    position: u64,
    next_part_id: u64,
    head_bytes: usize,
    head_since: Option<Instant>,
    /// When the last flush failed (its frozen heads wait for the next one).
    flush_failed: Option<Instant>,
    /// Parts found damaged since the manifest was last written, by id, with what was wrong: no
    /// longer read, moved to the quarantine by the next [`LocalStore::refresh`].
    damaged: BTreeMap<u64, String>,
    /// Where the rows of parts merged away went, per partition of the tables with a full-text
    /// index (see [`manifest::Moves`]).
    moved: BTreeMap<(Table, u64), Arc<Moves>>,
    /// Parts merged away (when, id, file): their files and cached readers are dropped by
    /// maintenance once no read can still be using them.
    retired: Vec<(Instant, u64, PathBuf)>,
}

/// How long a failed flush or index rebuild waits before it is tried again.
pub(crate) const RETRY: Duration = Duration::from_secs(2);

/// A consistent view for one read.
struct Snapshot {
    manifest: Arc<Manifest>,
    head: Vec<Arc<HeadPartition>>,
    damaged: BTreeSet<u64>,
    moved: BTreeMap<(Table, u64), Arc<Moves>>,
}

impl Snapshot {
    /// Where a full-text hit's record is now (see [`manifest::resolve`]); `live` says which parts
    /// (and heads) the read sees.
    fn resolve(&self, table: Table, hit: &Hit, live: impl Fn(u64) -> bool) -> (u64, u64) {
        let moves = self.moved.get(&(table, hit.hour)).map(|m| m.as_ref());
        manifest::resolve(moves, live, hit.part, hit.row)
    }

    fn parts_of_all_tables(&self) -> impl Iterator<Item = &PartMeta> + '_ {
        self.manifest.parts.iter().filter(|p| !self.damaged.contains(&p.id))
    }

    fn parts(&self, table: Table, range: &TimeRange) -> impl Iterator<Item = &PartMeta> + '_ {
        let range = *range;
        self.parts_of_all_tables()
            .filter(move |p| p.table == table && p.overlaps(&range))
    }

    fn heads(&self, table: Table, range: &TimeRange) -> impl Iterator<Item = &HeadPartition> + '_ {
        let range = *range;
        self.head
            .iter()
            .map(|h| h.as_ref())
            .filter(move |h| h.table == table && h.overlaps(&range))
    }
}

/// The local-disk [`Store`].
pub struct LocalStore {
    root: PathBuf,
    options: StoreOptions,
    state: Mutex<State>,
    /// Serializes the writers: append, flush, retention, the quarantine and the publishing of
    /// a compaction's part.
    writer: Mutex<()>,
    /// One compaction at a time (it writes without the writer lock).
    compaction: Mutex<()>,
    merges: Arc<MergeBudget>,
    /// The maps the full-text indexes' files are read through (trimmed by [`LocalStore::tick`]).
    maps: Arc<mapped::Maps>,
    /// When [`LocalStore::tick`] last ran retention and compaction.
    last_maintenance: Mutex<Option<Instant>>,
    /// When [`LocalStore::tick`] last committed the full-text indexes.
    last_commit: Mutex<Option<Instant>>,
    logs: TextIndexes,
    spans: TextIndexes,
    readers: Mutex<HashMap<u64, PartReader>>,
    /// Parts whose whole file was checksummed since the store opened: opened again (their reader
    /// left `readers`), they are not read whole again.
    verified: Mutex<std::collections::HashSet<u64>>,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl LocalStore {
    /// Opens (or creates) a store under `root`, deleting what a crash left unpublished.
    pub fn open(root: &Path, options: StoreOptions) -> Result<LocalStore, StorageError> {
        std::fs::create_dir_all(root).map_err(StorageError::io(format!("creating {}", root.display())))?;
        let mut manifest = Manifest::load(root)?;
        // Without metrics parts there is nothing to roll up: the next manifest says so.
        manifest.metric_rollups |= !manifest.parts.iter().any(|p| p.table == Table::Metrics);
        let live_ids: BTreeSet<u64> = manifest.parts.iter().map(|p| p.id).collect();
        remove_unpublished(root, &manifest)?;
        let moved = load_all_moves(root)?;
        // Index documents name the part they were indexed under, merged away or not; no id a
        // move names is given out again.
        let indexed: BTreeSet<u64> = live_ids
            .iter()
            .copied()
            .chain(moved.values().flat_map(|m| m.keys().copied()))
            .collect();
        let highest = moved
            .values()
            .flat_map(|m| m.iter().map(|(from, to)| (*from).max(to.part)))
            .chain(live_ids.last().copied())
            .max();
        let merges = MergeBudget::new(options.index_merges, options.index_segment_docs);
        let maps = Arc::new(mapped::Maps::default());
        let recovered = |table: Table| -> Result<TextIndexes, StorageError> {
            let index = TextIndexes::new(root, table, merges.clone(), maps.clone(), &options.memory());
            let of_table = |(t, hour): (Table, u64)| (t == table).then_some(hour);
            let hours = manifest
                .parts
                .iter()
                .filter_map(|p| of_table((p.table, p.hour)))
                .collect();
            let stale = manifest.stale_indexes.iter().copied().filter_map(of_table).collect();
            index.recover(&indexed, &hours, &stale)?;
            Ok(index)
        };
        let logs = recovered(Table::Logs)?;
        let spans = recovered(Table::Spans)?;
        let next_part_id = manifest.next_part_id.max(highest.map_or(0, |id| id + 1));
        Ok(LocalStore {
            root: root.to_path_buf(),
            options,
            state: Mutex::new(State {
                position: manifest.wal_position,
                manifest: Arc::new(manifest),
                live: BTreeMap::new(),
                frozen: Vec::new(),
                next_part_id,
                head_bytes: 0,
                head_since: None,
                flush_failed: None,
                damaged: BTreeMap::new(),
                moved,
                retired: Vec::new(),
            }),
            writer: Mutex::new(()),
            compaction: Mutex::new(()),
            merges,
            maps,
            last_maintenance: Mutex::new(None),
            last_commit: Mutex::new(None),
            logs,
            spans,
            readers: Mutex::new(HashMap::new()),
            verified: Mutex::new(std::collections::HashSet::new()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything before this WAL position is published in parts: a replay may start here.
    pub fn published_position(&self) -> u64 {
        self.state().manifest.wal_position
    }

    /// Where the WAL checkpoint may move: the end of the last record appended if nothing is
    /// waiting in the head, else the published position.
    pub fn durable_position(&self) -> u64 {
        let state = self.state();
        if state.live.is_empty() && state.frozen.is_empty() {
            state.position
        } else {
            state.manifest.wal_position
        }
    }

    /// Whether the head is due for a flush (by size or age, or a failed flush to retry).
    pub fn flush_due(&self) -> bool {
        let state = self.state();
        state.head_bytes >= self.options.memory().flush_bytes
            || state
                .head_since
                .is_some_and(|since| since.elapsed() >= self.options.flush_interval)
            || (!state.frozen.is_empty() && state.flush_failed.is_none_or(|at| at.elapsed() >= RETRY))
    }

    /// Writes `manifest` as the published state, with the partitions whose index is stale now
    /// (so a restart rebuilds them rather than trusting an index that misses documents).
    fn store_manifest(&self, manifest: &mut Manifest) -> Result<(), StorageError> {
        manifest.stale_indexes = [(Table::Logs, &self.logs), (Table::Spans, &self.spans)]
            .into_iter()
            .flat_map(|(table, index)| index.stale_hours().into_iter().map(move |hour| (table, hour)))
            .collect();
        manifest.store(&self.root)
    }

    /// Bytes of Arrow data in the head: rows not flushed yet, and those of flushes that failed.
    fn head_bytes(&self) -> usize {
        let state = self.state();
        state.head_bytes + state.frozen.iter().map(|h| h.bytes).sum::<usize>()
    }

    /// The memory the store holds now in the parts of its budget it keeps count of.
    pub fn memory_use(&self) -> MemoryUse {
        let (logs, spans) = (self.logs.writers(), self.spans.writers());
        MemoryUse {
            head_bytes: self.head_bytes(),
            index_writers: logs.max(spans),
            index_writer_bytes: (logs + spans) * self.options.memory().index_writer_bytes,
        }
    }

    /// What the full-text merge budget has seen.
    pub fn merge_stats(&self) -> MergeStats {
        self.merges.stats()
    }

    /// Index segments of the partitions being written, and parts of every partition.
    pub fn layout(&self) -> StoreLayout {
        let mut layout = StoreLayout::default();
        for part in &self.state().manifest.parts {
            *layout.parts.entry((part.table, part.hour)).or_default() += 1;
        }
        for table in [Table::Logs, Table::Spans] {
            if let Some(index) = self.index(table) {
                for (hour, segments) in index.segments() {
                    layout.index_segments.insert((table, hour), segments);
                }
            }
        }
        layout
    }

    /// Rows in the head, per table.
    pub fn head_rows(&self) -> BTreeMap<Table, u64> {
        let mut rows = BTreeMap::new();
        for head in self.state().live.values() {
            *rows.entry(head.table).or_default() += head.rows as u64;
        }
        rows
    }

    fn index(&self, table: Table) -> Option<&TextIndexes> {
        match table {
            Table::Logs => Some(&self.logs),
            Table::Spans => Some(&self.spans),
            Table::Metrics | Table::Exemplars | Table::Rollups => None,
        }
    }

    /// Bytes stored per table: its published parts and, for logs and spans, the index segments
    /// searches use. Files waiting to be deleted (parts merged away while a query may still read
    /// them, merged-away index segments) are not counted: they are gone within minutes.
    pub fn disk_bytes(&self) -> BTreeMap<Table, u64> {
        let manifest = self.state().manifest.clone();
        let mut bytes: BTreeMap<Table, u64> = Table::ALL.iter().map(|t| (*t, 0)).collect();
        let mut hours = BTreeSet::new();
        for part in &manifest.parts {
            *bytes.entry(part.table).or_default() += part.bytes;
            hours.insert((part.table, part.hour));
        }
        for (table, hour) in hours {
            if let Some(index) = self.index(table) {
                *bytes.entry(table).or_default() += index.live_bytes(hour);
            }
        }
        bytes
    }

    fn snapshot(&self) -> Snapshot {
        let state = self.state();
        Snapshot {
            manifest: state.manifest.clone(),
            head: state
                .live
                .values()
                .map(|h| Arc::new(h.clone()))
                .chain(state.frozen.iter().cloned())
                .collect(),
            damaged: state.damaged.keys().copied().collect(),
            moved: state.moved.clone(),
        }
    }

    /// Files known damaged: quarantined parts and full-text indexes waiting to be rebuilt.
    pub fn damaged_files(&self) -> u64 {
        let state = self.state();
        let parts = state.manifest.quarantined.len() + state.damaged.len();
        drop(state);
        (parts + self.logs.stale_count() + self.spans.stale_count()) as u64
    }
}

/// Writes `batch` as a part at `path`, rows in their order, and reads it back (for round-trip
/// tests).
#[cfg(test)]
pub(crate) fn part_roundtrip(path: &Path, table: Table, batch: &RecordBatch) -> RecordBatch {
    part::write_rows(path, table, std::slice::from_ref(batch), None).unwrap();
    let batches: Vec<RecordBatch> = PartReader::open(path, table, None)
        .unwrap()
        .scan_all()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    arrow_select::concat::concat_batches(&table.schema(), &batches).unwrap()
}

/// Every row of `batches`, decoded.
fn decode_all<T>(
    batches: &[RecordBatch],
    rows: impl Fn(&RecordBatch) -> Result<Vec<T>, arrow_schema::ArrowError>,
) -> Result<Vec<T>, StorageError> {
    let mut out = Vec::new();
    for batch in batches {
        out.extend(rows(batch)?);
    }
    Ok(out)
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return std::fs::metadata(path).map_or(0, |m| m.len());
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// The moves of every partition of the tables with a full-text index.
fn load_all_moves(root: &Path) -> Result<BTreeMap<(Table, u64), Arc<Moves>>, StorageError> {
    let mut all = BTreeMap::new();
    for table in [Table::Logs, Table::Spans] {
        let Ok(partitions) = std::fs::read_dir(root.join(table.as_str())) else {
            continue;
        };
        for partition in partitions.flatten() {
            let Some(hour) = fulltext::parse_hour(&partition.file_name().to_string_lossy()) else {
                continue;
            };
            let moves = manifest::load_moves(&partition.path())?;
            if !moves.is_empty() {
                all.insert((table, hour), Arc::new(moves));
            }
        }
    }
    Ok(all)
}

/// Deletes part files (and temporary part and moves files) the manifest does not list.
fn remove_unpublished(root: &Path, manifest: &Manifest) -> Result<(), StorageError> {
    let listed: BTreeSet<PathBuf> = manifest.parts.iter().map(|p| p.path(root)).collect();
    for table in Table::ALL {
        let Ok(partitions) = std::fs::read_dir(root.join(table.as_str())) else {
            continue;
        };
        for partition in partitions.flatten() {
            let Ok(files) = std::fs::read_dir(partition.path()) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                let name = file.file_name().to_string_lossy().into_owned();
                let is_part = name.starts_with("part-") && (name.ends_with(".parquet") || name.ends_with(".tmp"));
                // A moves file a crash cut short (the one it was replacing is whole).
                let is_partial_moves = name == "moved.json.tmp";
                if (is_part || is_partial_moves) && !listed.contains(&path) {
                    tracing::info!(path = %path.display(), "removing unpublished part");
                    std::fs::remove_file(&path).map_err(StorageError::io(format!("removing {}", path.display())))?;
                }
            }
        }
    }
    Ok(())
}
