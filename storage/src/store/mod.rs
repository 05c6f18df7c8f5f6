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
pub(crate) mod manifest;
mod part;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow_array::{FixedSizeBinaryArray, Int32Array, RecordBatch, StringArray, UInt64Array};
use arrow_select::concat::concat_batches;
use arrow_select::filter::filter_record_batch;
use prost::Message as _;
use sift_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sift_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sift_proto::SignalKind;

use self::fulltext::{Hit, TextIndexes, TraceText};
use self::head::{BatchStats, HeadPartition};
use self::manifest::{hour_of, partition_dir, sync_dir, Manifest, PartMeta, ServiceRows};
use self::part::{equal_mask, PartReader};
use crate::columnar::exemplars::{ExemplarBuilder, ExemplarRow};
use crate::columnar::logs::{LogBuilder, LogRow};
use crate::columnar::metrics::{MetricBuilder, MetricRow};
use crate::columnar::spans::{SpanBuilder, SpanRow};
use crate::columnar::{self, logs, metrics, spans, Table};
use crate::{LogSearch, ServiceInfo, StorageError, Store, TimeRange, TraceFilter, TraceHits};
use sift_wal::WalEntry;

/// How a [`LocalStore`] flushes and how long it keeps data.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Flush the head once its oldest row has waited this long.
    pub flush_interval: Duration,
    /// Flush the head once it holds this many bytes of Arrow data.
    pub flush_bytes: usize,
    /// Compact a partition once it has this many small parts.
    pub compact_parts: usize,
    /// Rows of a merged part at most; parts of a quarter of this or more are left alone, so a
    /// merge's memory is bounded and no row is rewritten more than a few times. (A merge decodes
    /// its rows to re-index them: one merge of eight parts, up to 1M spans, took ~23 s and ~2.5 GB
    /// of RSS, hence the default of 100k.)
    pub compact_max_rows: u64,
    /// How long each signal is kept (`None`: forever).
    pub retention: BTreeMap<SignalKind, Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            flush_interval: Duration::from_secs(30),
            flush_bytes: 256 << 20,
            compact_parts: 8,
            compact_max_rows: 100_000,
            retention: BTreeMap::new(),
        }
    }
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
}

/// How long a failed flush or index rebuild waits before it is tried again.
pub(crate) const RETRY: Duration = Duration::from_secs(2);

/// A consistent view for one read.
struct Snapshot {
    manifest: Arc<Manifest>,
    head: Vec<Arc<HeadPartition>>,
    damaged: BTreeSet<u64>,
}

impl Snapshot {
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
    /// Serializes the writers: append, flush, compaction and retention.
    writer: Mutex<()>,
    logs: TextIndexes,
    spans: TextIndexes,
    readers: Mutex<HashMap<u64, PartReader>>,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A row's time, or now for rows without one (they still need a partition).
fn or_now(time: u64, now: u64) -> u64 {
    if time == 0 {
        now
    } else {
        time
    }
}

/// Index documents of the log records of a batch, in row order, waiting for their part id.
type LogDocuments = Vec<tantivy::TantivyDocument>;
/// The searchable text of the traces of a batch, waiting to be indexed.
type TraceTexts = HashMap<[u8; 16], TraceText>;

/// Builders for one append, per (table, hour).
#[derive(Default)]
struct Pending {
    spans: BTreeMap<u64, (SpanBuilder, BatchStats, TraceTexts)>,
    logs: BTreeMap<u64, (LogBuilder, BatchStats, LogDocuments)>,
    metrics: BTreeMap<u64, (MetricBuilder, BatchStats)>,
    exemplars: BTreeMap<u64, (ExemplarBuilder, BatchStats)>,
}

impl Pending {
    fn add(&mut self, entry: &WalEntry, now: u64, log_index: &TextIndexes) -> Result<(), StorageError> {
        let corrupt = |e: prost::DecodeError| StorageError::Corrupt(format!("WAL entry of {}: {e}", entry.pipeline));
        match entry.signal {
            SignalKind::Traces => {
                let request = ExportTraceServiceRequest::decode(entry.body.clone()).map_err(corrupt)?;
                spans::for_each(&request, |origin, span| {
                    let time = or_now(span.start_time_unix_nano, now);
                    let (builder, stats, records) = self.spans.entry(hour_of(time)).or_default();
                    builder.append(origin, span);
                    stats.add(origin.service(), time);
                    let id: [u8; 16] = span.trace_id.as_slice().try_into().unwrap_or_default();
                    records.entry(id).or_default().add(origin.service(), span);
                });
            }
            SignalKind::Logs => {
                let request = ExportLogsServiceRequest::decode(entry.body.clone()).map_err(corrupt)?;
                logs::for_each(&request, |origin, log| {
                    let time = or_now(logs::effective_time(log), now);
                    let (builder, stats, docs) = self.logs.entry(hour_of(time)).or_default();
                    builder.append(origin, log);
                    stats.add(origin.service(), time);
                    docs.push(log_index.log_document(origin.service(), log));
                });
            }
            SignalKind::Metrics => {
                let request = ExportMetricsServiceRequest::decode(entry.body.clone()).map_err(corrupt)?;
                metrics::for_each(&request, |point| {
                    let time = or_now(point.time(), now);
                    let (builder, stats) = self.metrics.entry(hour_of(time)).or_default();
                    point.append_to(builder);
                    stats.add(point.service(), time);
                    for e in point.exemplars() {
                        let time = or_now(e.time_unix_nano, time);
                        let (builder, stats) = self.exemplars.entry(hour_of(time)).or_default();
                        if builder.append(e, point.name(), point.service(), point.attributes()) {
                            stats.add(point.service(), time);
                        }
                    }
                });
            }
        }
        Ok(())
    }
}

impl LocalStore {
    /// Opens (or creates) a store under `root`, deleting what a crash left unpublished.
    pub fn open(root: &Path, options: StoreOptions) -> Result<LocalStore, StorageError> {
        std::fs::create_dir_all(root).map_err(StorageError::io(format!("creating {}", root.display())))?;
        let manifest = Manifest::load(root)?;
        let live_ids: BTreeSet<u64> = manifest.parts.iter().map(|p| p.id).collect();
        remove_unpublished(root, &manifest)?;
        let logs = TextIndexes::new(root, Table::Logs);
        logs.recover(&live_ids)?;
        let spans = TextIndexes::new(root, Table::Spans);
        spans.recover(&live_ids)?;
        let next_part_id = manifest.next_part_id.max(live_ids.last().map_or(0, |id| id + 1));
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
            }),
            writer: Mutex::new(()),
            logs,
            spans,
            readers: Mutex::new(HashMap::new()),
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
        state.head_bytes >= self.options.flush_bytes
            || state
                .head_since
                .is_some_and(|since| since.elapsed() >= self.options.flush_interval)
            || (!state.frozen.is_empty() && state.flush_failed.is_none_or(|at| at.elapsed() >= RETRY))
    }

    /// Rows in the head, per table.
    pub fn head_rows(&self) -> BTreeMap<Table, u64> {
        let mut rows = BTreeMap::new();
        for head in self.state().live.values() {
            *rows.entry(head.table).or_default() += head.rows as u64;
        }
        rows
    }

    /// Appends WAL entries that end at `end` (entries at or before the published position are
    /// already stored and skipped). Returns the rows added per table.
    pub fn append(&self, end: u64, entries: &[WalEntry]) -> Result<BTreeMap<Table, u64>, StorageError> {
        let _writer = self.write_lock();
        let mut added = BTreeMap::new();
        if end <= self.published_position() {
            return Ok(added);
        }
        let now = now_nanos();
        let mut pending = Pending::default();
        for entry in entries {
            if let Err(e) = pending.add(entry, now, &self.logs) {
                // A record the receiver accepted always decodes; one that does not cannot be
                // stored and must not block the rest.
                tracing::error!(error = %e, "skipping undecodable WAL entry");
            }
        }
        let mut index_jobs = Vec::new();
        let mut span_jobs = Vec::new();
        {
            let mut state = self.state();
            state.position = state.position.max(end);
            let mut push = |state: &mut State, table: Table, hour: u64, batch: RecordBatch, stats: &BatchStats| {
                if batch.num_rows() == 0 {
                    return (0, 0);
                }
                *added.entry(table).or_default() += batch.num_rows() as u64;
                state.head_bytes += batch.get_array_memory_size();
                state.head_since.get_or_insert_with(Instant::now);
                let next = &mut state.next_part_id;
                let head = state.live.entry((table, hour)).or_insert_with(|| {
                    let id = *next;
                    *next += 1;
                    HeadPartition::new(table, hour, id)
                });
                let first_row = head.rows as u64;
                head.push(batch, stats);
                (head.id, first_row)
            };
            for (hour, (mut builder, stats, records)) in pending.spans {
                let (part, _) = push(&mut state, Table::Spans, hour, builder.finish(), &stats);
                span_jobs.push((hour, part, records));
            }
            for (hour, (mut builder, stats)) in pending.metrics {
                push(&mut state, Table::Metrics, hour, builder.finish(), &stats);
            }
            for (hour, (mut builder, stats)) in pending.exemplars {
                push(&mut state, Table::Exemplars, hour, builder.finish(), &stats);
            }
            for (hour, (mut builder, stats, records)) in pending.logs {
                let (part, first_row) = push(&mut state, Table::Logs, hour, builder.finish(), &stats);
                index_jobs.push((hour, part, first_row, records));
            }
        }
        for (hour, part, first_row, docs) in index_jobs {
            self.logs.add_documents(hour, part, first_row, docs);
        }
        for (hour, part, texts) in span_jobs {
            let docs = texts.iter().map(|(id, text)| self.spans.trace_document(id, text));
            self.spans.add_documents(hour, part, 0, docs);
        }
        Ok(added)
    }

    /// Makes head logs and spans searchable (full-text indexes are refreshed, not rebuilt), then
    /// repairs: rebuilds stale indexes and moves damaged parts to the quarantine. Fails only if
    /// the repairs could not be made (they are retried at the next refresh).
    pub fn refresh(&self) -> Result<(), StorageError> {
        let _writer = self.write_lock();
        self.logs.commit();
        self.spans.commit();
        let quarantined = self.quarantine_damaged();
        let rebuilt = self.rebuild_stale_indexes();
        quarantined.and(rebuilt)
    }

    /// Rebuilds the stale full-text indexes that are due, from their parts and head rows.
    fn rebuild_stale_indexes(&self) -> Result<(), StorageError> {
        let mut result = Ok(());
        for table in [Table::Logs, Table::Spans] {
            let Some(index) = self.index(table) else { continue };
            for hour in index.due_for_rebuild() {
                let rebuilt = self
                    .index_sources(table, hour)
                    .and_then(|sources| index.rebuild(hour, sources));
                if let Err(e) = rebuilt {
                    tracing::warn!(table = table.as_str(), partition = %manifest::hour_name(hour), error = %e, "cannot rebuild a full-text index yet; will retry");
                    result = Err(e);
                }
            }
        }
        result
    }

    /// The index documents of every published part and head partition of (table, hour).
    fn index_sources(
        &self,
        table: Table,
        hour: u64,
    ) -> Result<Vec<(u64, Vec<tantivy::TantivyDocument>)>, StorageError> {
        let snapshot = self.snapshot();
        let mut sources = Vec::new();
        for part in snapshot.parts(table, &TimeRange::ALL).filter(|p| p.hour == hour) {
            let Some(batches) = self.read_whole_part(part)? else {
                continue;
            };
            sources.push((part.id, self.documents(table, &batches)?));
        }
        for head in snapshot.head.iter().filter(|h| h.table == table && h.hour == hour) {
            sources.push((head.id, self.documents(table, &head.batches)?));
        }
        Ok(sources)
    }

    /// The full-text documents of the rows of one part (logs: one per row, in row order; spans:
    /// one per trace, all at row 0).
    fn documents(&self, table: Table, batches: &[RecordBatch]) -> Result<Vec<tantivy::TantivyDocument>, StorageError> {
        Ok(match table {
            Table::Logs => decode_all(batches, logs::rows)?
                .iter()
                .map(|r| self.logs.log_document(r.origin.service_name(), &r.log))
                .collect(),
            Table::Spans => {
                let mut texts = TraceTexts::new();
                for row in decode_all(batches, spans::rows)? {
                    let trace_id = row.span.trace_id.as_slice().try_into().unwrap_or_default();
                    texts
                        .entry(trace_id)
                        .or_default()
                        .add(row.origin.service_name(), &row.span);
                }
                texts
                    .iter()
                    .map(|(id, text)| self.spans.trace_document(id, text))
                    .collect()
            }
            Table::Metrics | Table::Exemplars => Vec::new(),
        })
    }

    fn index(&self, table: Table) -> Option<&TextIndexes> {
        match table {
            Table::Logs => Some(&self.logs),
            Table::Spans => Some(&self.spans),
            Table::Metrics | Table::Exemplars => None,
        }
    }

    /// Writes the head as parts and publishes them; returns the WAL position now durable.
    pub fn flush(&self) -> Result<u64, StorageError> {
        let _writer = self.write_lock();
        let (frozen, position, next_part_id, old) = {
            let mut state = self.state();
            let live = std::mem::take(&mut state.live);
            // Heads a failed flush froze are written again with the new ones: `position` covers
            // both, so publishing it without them would pass rows that were never stored.
            state.frozen.extend(live.into_values().map(Arc::new));
            state.head_bytes = 0;
            state.head_since = None;
            (
                state.frozen.clone(),
                state.position,
                state.next_part_id,
                state.manifest.clone(),
            )
        };
        if frozen.is_empty() {
            return Ok(position);
        }
        match self.publish(&old, &frozen, position, next_part_id) {
            Ok(manifest) => {
                let live: BTreeSet<(Table, u64)> = {
                    let mut state = self.state();
                    state.manifest = Arc::new(manifest);
                    state.frozen.clear();
                    state.flush_failed = None;
                    state.live.keys().copied().collect()
                };
                for table in [Table::Logs, Table::Spans] {
                    let hours = live.iter().filter(|(t, _)| *t == table).map(|(_, h)| *h).collect();
                    if let Some(index) = self.index(table) {
                        index.close_writers_except(&hours);
                    }
                }
                Ok(position)
            }
            Err(e) => {
                self.state().flush_failed = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Writes frozen heads as parts and publishes them with a manifest at `position`.
    fn publish(
        &self,
        old: &Manifest,
        frozen: &[Arc<HeadPartition>],
        position: u64,
        next_part_id: u64,
    ) -> Result<Manifest, StorageError> {
        let mut manifest = Manifest::clone(old);
        let mut dirs = BTreeSet::new();
        for head in frozen {
            let meta = self.write_part(head.table, head.hour, head.id, &head.batches, head)?;
            dirs.insert(partition_dir(&self.root, head.table, head.hour));
            manifest.parts.push(meta);
        }
        for dir in &dirs {
            sync_dir(dir)?;
        }
        // Index failures make the index stale (rebuilt later), never the flush.
        self.logs.commit();
        self.spans.commit();
        manifest.wal_position = position;
        manifest.next_part_id = next_part_id;
        manifest.store(&self.root)?;
        Ok(manifest)
    }

    fn write_part(
        &self,
        table: Table,
        hour: u64,
        id: u64,
        batches: &[RecordBatch],
        stats: &HeadPartition,
    ) -> Result<PartMeta, StorageError> {
        let dir = partition_dir(&self.root, table, hour);
        std::fs::create_dir_all(&dir).map_err(StorageError::io(format!("creating {}", dir.display())))?;
        let mut meta = PartMeta {
            id,
            table,
            hour,
            rows: 0,
            bytes: 0,
            min_time: stats.min_time,
            max_time: stats.max_time,
            services: stats.services.clone(),
            crc32: None,
        };
        let written = part::write(&meta.path(&self.root), table, batches)?;
        meta.bytes = written.bytes;
        meta.rows = written.rows;
        meta.crc32 = Some(written.crc32);
        Ok(meta)
    }

    /// Merges the parts of partitions that have too many; returns how many parts were merged.
    pub fn compact(&self) -> Result<usize, StorageError> {
        let _writer = self.write_lock();
        let snapshot = self.snapshot();
        let mut groups: BTreeMap<(Table, u64), Vec<&PartMeta>> = BTreeMap::new();
        for part in snapshot.parts_of_all_tables() {
            groups.entry((part.table, part.hour)).or_default().push(part);
        }
        let mut merged = 0;
        for ((table, hour), parts) in groups {
            let Some(parts) = merge_group(&parts, self.options.compact_parts, self.options.compact_max_rows) else {
                continue;
            };
            let mut batches = Vec::new();
            let mut stats = HeadPartition::new(table, hour, 0);
            let mut readable = true;
            for part in &parts {
                let Some(read) = self.read_whole_part(part)? else {
                    readable = false;
                    break;
                };
                batches.extend(read);
                stats.min_time = stats.min_time.min(part.min_time);
                stats.max_time = stats.max_time.max(part.max_time);
                for (service, rows) in &part.services {
                    stats.services.entry(service.clone()).or_default().merge(rows);
                }
            }
            if !readable {
                // A damaged part was found: it is quarantined; the group is merged next time.
                continue;
            }
            let id = {
                let mut state = self.state();
                state.next_part_id += 1;
                state.next_part_id - 1
            };
            let meta = self.write_part(table, hour, id, &batches, &stats)?;
            sync_dir(&partition_dir(&self.root, table, hour))?;
            // Index the merged part before publishing it; the old parts' entries go after.
            if let Some(index) = self.index(table) {
                index.add_documents(hour, id, 0, self.documents(table, &batches)?);
                index.commit();
            }
            let old: BTreeSet<u64> = parts.iter().map(|p| p.id).collect();
            let next = {
                let mut state = self.state();
                let mut next = Manifest::clone(&state.manifest);
                next.parts.retain(|p| !old.contains(&p.id));
                next.parts.push(meta);
                next.next_part_id = next.next_part_id.max(id + 1);
                next.store(&self.root)?;
                let next = Arc::new(next);
                state.manifest = next.clone();
                next
            };
            if let Some(index) = self.index(table) {
                let live = next.parts.iter().map(|p| p.id).chain(self.head_ids()).collect();
                index.recover(&live)?;
            }
            for part in &parts {
                self.readers().remove(&part.id);
                let _ = std::fs::remove_file(part.path(&self.root));
            }
            merged += parts.len();
        }
        Ok(merged)
    }

    /// Deletes whole partitions older than each signal's retention.
    pub fn enforce_retention(&self, now: SystemTime) -> Result<RetentionReport, StorageError> {
        let _writer = self.write_lock();
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let expired = |part: &PartMeta| {
            self.options.retention.get(&part.table.signal()).is_some_and(|keep| {
                let partition_end = (part.hour + 1) * columnar::HOUR_NANOS;
                partition_end.saturating_add(keep.as_nanos() as u64) <= now
            })
        };
        let mut report = RetentionReport::default();
        let (doomed, remaining) = {
            let mut state = self.state();
            let (doomed, kept): (Vec<PartMeta>, Vec<PartMeta>) =
                state.manifest.parts.iter().cloned().partition(|p| expired(p));
            if doomed.is_empty() {
                return Ok(report);
            }
            let mut next = Manifest::clone(&state.manifest);
            next.parts = kept;
            for part in next.quarantined.iter().filter(|p| expired(p)) {
                let _ = std::fs::remove_file(part.quarantine_path(&self.root));
            }
            next.quarantined.retain(|p| !expired(p));
            next.store(&self.root)?;
            state.manifest = Arc::new(next);
            let remaining: BTreeSet<(Table, u64)> = state
                .manifest
                .parts
                .iter()
                .map(|p| (p.table, p.hour))
                .chain(state.live.keys().copied())
                .collect();
            (doomed, remaining)
        };
        let mut partitions = BTreeSet::new();
        for part in &doomed {
            self.readers().remove(&part.id);
            *report.rows.entry(part.table).or_default() += part.rows;
            *report.bytes.entry(part.table).or_default() += part.bytes;
            let _ = std::fs::remove_file(part.path(&self.root));
            if !remaining.contains(&(part.table, part.hour)) {
                partitions.insert((part.table, part.hour));
            }
        }
        for table in [Table::Logs, Table::Spans] {
            let hours = partitions
                .iter()
                .filter(|(t, _)| *t == table)
                .map(|(_, h)| *h)
                .collect();
            if let Some(index) = self.index(table) {
                index.drop_partitions(&hours);
            }
        }
        for (table, hour) in partitions {
            let dir = partition_dir(&self.root, table, hour);
            let index_bytes = dir_size(&dir.join("index"));
            *report.bytes.entry(table).or_default() += index_bytes;
            *report.partitions.entry(table).or_default() += 1;
            std::fs::remove_dir_all(&dir).map_err(StorageError::io(format!("deleting {}", dir.display())))?;
        }
        Ok(report)
    }

    /// Bytes on disk per table (parts, and indexes for logs).
    pub fn disk_bytes(&self) -> BTreeMap<Table, u64> {
        let manifest = self.state().manifest.clone();
        let mut bytes: BTreeMap<Table, u64> = Table::ALL.iter().map(|t| (*t, 0)).collect();
        for part in &manifest.parts {
            *bytes.entry(part.table).or_default() += part.bytes;
        }
        for table in [Table::Logs, Table::Spans] {
            let parts: u64 = manifest
                .parts
                .iter()
                .filter(|p| p.table == table)
                .map(|p| p.bytes)
                .sum();
            *bytes.entry(table).or_default() += dir_size(&self.root.join(table.as_str())).saturating_sub(parts);
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
        }
    }

    /// The part ids the head's rows will get (their index documents are not orphans).
    fn head_ids(&self) -> Vec<u64> {
        let state = self.state();
        state
            .live
            .values()
            .map(|h| h.id)
            .chain(state.frozen.iter().map(|h| h.id))
            .collect()
    }

    /// Runs `read` on a part. If it fails because the part's contents are bad while it is still
    /// published, the part is damaged: it is reported, no read uses it again, and `Ok(None)` is
    /// returned so the caller answers from the rest (the answer is then partial, see
    /// [`Store::partial`]). Other failures (out of file handles, say) are returned as they are.
    fn read_part<T>(
        &self,
        part: &PartMeta,
        read: impl FnOnce(&PartReader) -> Result<T, StorageError>,
    ) -> Result<Option<T>, StorageError> {
        match self.reader(part).and_then(|reader| read(&reader)) {
            Ok(value) => Ok(Some(value)),
            Err(error) => self.part_failed(part, error).map(|()| None),
        }
    }

    /// A read of `part` failed: damage is reported and `Ok` returned (the caller skips the part and
    /// its answer is partial); any other failure is returned as it is.
    fn part_failed(&self, part: &PartMeta, error: StorageError) -> Result<(), StorageError> {
        if !error.is_damage() {
            return Err(error);
        }
        self.report_damage(part, &error);
        Ok(())
    }

    /// Every row of a part (`None`: it is damaged, see [`Self::read_part`]).
    fn read_whole_part(&self, part: &PartMeta) -> Result<Option<Vec<RecordBatch>>, StorageError> {
        self.read_part(part, |reader| {
            reader
                .scan_all()?
                .collect::<Result<Vec<_>, _>>()
                .map_err(StorageError::from)
        })
    }

    /// Records that reading a part failed: if it is still published, it is damaged (reported,
    /// skipped by every read from now on, quarantined by the next refresh).
    fn report_damage(&self, part: &PartMeta, error: &StorageError) {
        let mut state = self.state();
        let published = state.manifest.parts.iter().any(|p| p.id == part.id);
        if published && !state.damaged.contains_key(&part.id) {
            tracing::error!(
                file = %part.path(&self.root).display(),
                error = %error,
                "damaged part: quarantined, queries answer from the other parts"
            );
            state.damaged.insert(part.id, error.to_string());
        }
        drop(state);
        self.readers().remove(&part.id);
    }

    /// Moves the parts found damaged to `<root>/quarantine/` and lists them as quarantined in the
    /// manifest (retried at the next refresh if the disk refuses).
    fn quarantine_damaged(&self) -> Result<(), StorageError> {
        let (damaged, old) = {
            let state = self.state();
            if state.damaged.is_empty() {
                return Ok(());
            }
            (state.damaged.clone(), state.manifest.clone())
        };
        let mut next = Manifest::clone(&old);
        let (bad, good): (Vec<PartMeta>, Vec<PartMeta>) =
            next.parts.drain(..).partition(|p| damaged.contains_key(&p.id));
        next.parts = good;
        for part in &bad {
            let from = part.path(&self.root);
            let to = part.quarantine_path(&self.root);
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir).map_err(StorageError::io(format!("creating {}", dir.display())))?;
            }
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(format!("quarantining {}", from.display()))(e)),
            }
            tracing::warn!(file = %to.display(), "damaged part moved to the quarantine");
        }
        next.quarantined.extend(bad);
        next.store(&self.root)?;
        let mut state = self.state();
        state.manifest = Arc::new(next);
        state.damaged.retain(|id, _| !damaged.contains_key(id));
        Ok(())
    }

    /// Files known damaged: quarantined parts and full-text indexes waiting to be rebuilt.
    pub fn damaged_files(&self) -> u64 {
        let state = self.state();
        let parts = state.manifest.quarantined.len() + state.damaged.len();
        drop(state);
        (parts + self.logs.stale_count() + self.spans.stale_count()) as u64
    }

    fn readers(&self) -> MutexGuard<'_, HashMap<u64, PartReader>> {
        self.readers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reader(&self, part: &PartMeta) -> Result<PartReader, StorageError> {
        if let Some(reader) = self.readers().get(&part.id) {
            return Ok(reader.clone());
        }
        let reader = PartReader::open(&part.path(&self.root), part.crc32)?;
        self.readers().insert(part.id, reader.clone());
        Ok(reader)
    }

    /// The batches (parts and head) of `table` whose key column equals `key`.
    fn lookup(&self, table: Table, key: &[u8], range: &TimeRange) -> Result<Vec<RecordBatch>, StorageError> {
        let snapshot = self.snapshot();
        let column = part::key_column(table);
        let mut out = Vec::new();
        for part in snapshot.parts(table, range) {
            if let Some(batches) = self.read_part(part, |reader| reader.rows_equal(column, key))? {
                out.extend(batches);
            }
        }
        for head in snapshot.heads(table, range) {
            for batch in &head.batches {
                let index = batch.schema().index_of(column)?;
                let mask = equal_mask(batch.column(index), key)?;
                if mask.true_count() > 0 {
                    out.push(filter_record_batch(batch, &mask)?);
                }
            }
        }
        Ok(out)
    }
}

/// Writes `batch` as a part at `path`, rows in their order, and reads it back (for round-trip
/// tests).
#[cfg(test)]
pub(crate) fn part_roundtrip(path: &Path, table: Table, batch: &RecordBatch) -> RecordBatch {
    part::write_rows(path, table, std::slice::from_ref(batch), None).unwrap();
    let batches: Vec<RecordBatch> = PartReader::open(path, None)
        .unwrap()
        .scan_all()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    concat_batches(&table.schema(), &batches).unwrap()
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

/// Deletes part files (and temporary files) the manifest does not list.
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
                if is_part && !listed.contains(&path) {
                    tracing::info!(path = %path.display(), "removing unpublished part");
                    std::fs::remove_file(&path).map_err(StorageError::io(format!("removing {}", path.display())))?;
                }
            }
        }
    }
    Ok(())
}

fn sort_by<T>(rows: &mut [T], key: impl Fn(&T) -> u64) {
    rows.sort_by_key(|r| key(r));
}

impl Store for LocalStore {
    fn trace(&self, trace_id: &[u8; 16], range: &TimeRange) -> Result<Vec<SpanRow>, StorageError> {
        let mut rows = Vec::new();
        for batch in self.lookup(Table::Spans, trace_id, range)? {
            rows.extend(spans::rows(&batch)?);
        }
        sort_by(&mut rows, |r| r.span.start_time_unix_nano);
        Ok(rows)
    }

    fn logs_by_trace(&self, trace_id: &[u8; 16], range: &TimeRange) -> Result<Vec<LogRow>, StorageError> {
        let mut rows = Vec::new();
        for batch in self.lookup(Table::Logs, trace_id, range)? {
            rows.extend(logs::rows(&batch)?);
        }
        sort_by(&mut rows, LogRow::time);
        Ok(rows)
    }

    fn exemplars_by_trace(&self, trace_id: &[u8; 16], range: &TimeRange) -> Result<Vec<ExemplarRow>, StorageError> {
        let mut rows = Vec::new();
        for batch in self.lookup(Table::Exemplars, trace_id, range)? {
            rows.extend(columnar::exemplars::rows(&batch)?);
        }
        sort_by(&mut rows, |r| r.time_unix_nano);
        Ok(rows)
    }

    fn search_traces(&self, filter: &TraceFilter) -> Result<TraceHits, StorageError> {
        if let Some(query) = filter.query.as_deref().filter(|q| !q.trim().is_empty()) {
            return self.search_traces_by_text(query, filter);
        }
        let snapshot = self.snapshot();
        let mut hours: BTreeMap<u64, Vec<Source<'_>>> = BTreeMap::new();
        for part in snapshot.parts(Table::Spans, &filter.range) {
            hours.entry(part.hour).or_default().push(Source::Part(part));
        }
        for head in snapshot.heads(Table::Spans, &filter.range) {
            hours.entry(head.hour).or_default().push(Source::Head(head));
        }
        let mut found: HashMap<[u8; 16], u64> = HashMap::new();
        let mut scanned = 0usize;
        let mut partial = false;
        let columns = [
            spans::TRACE_ID,
            spans::START,
            spans::NAME,
            spans::STATUS_CODE,
            spans::ATTRIBUTES,
            columnar::origin_col::SERVICE_NAME,
            columnar::origin_col::RESOURCE_ATTRIBUTES,
        ];
        'hours: for (_, sources) in hours.iter().rev() {
            for source in sources {
                if scanned >= filter.row_budget {
                    partial = true;
                    break 'hours;
                }
                let batches: Box<dyn Iterator<Item = Result<RecordBatch, StorageError>>> = match source {
                    Source::Part(part) => match self.read_part(part, |r| r.scan(&columns))? {
                        Some(scan) => Box::new(scan.map(|b| b.map_err(StorageError::from))),
                        None => {
                            partial = true;
                            continue;
                        }
                    },
                    Source::Head(head) => Box::new(head.batches.clone().into_iter().map(Ok)),
                };
                for batch in batches {
                    let batch = match (batch, source) {
                        (Ok(batch), _) => batch,
                        (Err(e), Source::Part(part)) => {
                            self.part_failed(part, e)?;
                            partial = true;
                            break;
                        }
                        (Err(e), Source::Head(_)) => return Err(e),
                    };
                    scanned += batch.num_rows();
                    match_spans(&batch, filter, &mut found)?;
                }
            }
            if found.len() >= filter.limit {
                break;
            }
        }
        let mut traces: Vec<([u8; 16], u64)> = found.into_iter().collect();
        traces.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(TraceHits { traces, partial })
    }

    fn search_logs(&self, search: &LogSearch) -> Result<Vec<LogRow>, StorageError> {
        self.logs.validate(search)?;
        let snapshot = self.snapshot();
        let mut hours: BTreeSet<u64> = snapshot.parts(Table::Logs, &search.range).map(|p| p.hour).collect();
        hours.extend(snapshot.heads(Table::Logs, &search.range).map(|h| h.hour));
        let hours: Vec<u64> = hours.into_iter().rev().collect();
        let parts: HashMap<u64, &PartMeta> = snapshot
            .parts_of_all_tables()
            .filter(|p| p.table == Table::Logs)
            .map(|p| (p.id, p))
            .collect();
        let heads: HashMap<u64, &HeadPartition> = snapshot
            .head
            .iter()
            .filter(|h| h.table == Table::Logs)
            .map(|h| (h.id, h.as_ref()))
            .collect();
        // A stale index is reported through `partial`.
        let (hits, _) = self.logs.search(search, &hours, |hit: &Hit| {
            parts.contains_key(&hit.part) || heads.get(&hit.part).is_some_and(|h| (hit.row as usize) < h.rows)
        })?;
        let mut by_part: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for hit in &hits {
            by_part.entry(hit.part).or_default().push(hit.row as usize);
        }
        let mut found: HashMap<(u64, usize), LogRow> = HashMap::new();
        for (id, mut rows) in by_part {
            rows.sort_unstable();
            rows.dedup();
            let batches = match (parts.get(&id), heads.get(&id)) {
                (Some(part), _) => match self.read_part(part, |reader| reader.rows_at(&rows))? {
                    Some(batches) => batches,
                    None => continue,
                },
                (None, Some(head)) => vec![take_rows(&head.batches, &rows)?],
                (None, None) => continue,
            };
            let decoded: Vec<LogRow> = batches
                .iter()
                .map(logs::rows)
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect();
            for (row, log) in rows.into_iter().zip(decoded) {
                found.insert((id, row), log);
            }
        }
        // Newest first; equal times in storage order, so the same query gives the same answer.
        let mut hits = hits;
        hits.sort_by_key(|h| (std::cmp::Reverse(h.time), h.part, h.row));
        let mut out: Vec<LogRow> = hits
            .iter()
            .filter_map(|hit| found.remove(&(hit.part, hit.row as usize)))
            .collect();
        out.truncate(search.limit);
        Ok(out)
    }

    fn metric_points(
        &self,
        name: &str,
        range: &TimeRange,
        budget: usize,
    ) -> Result<(Vec<MetricRow>, bool), StorageError> {
        let mut rows = Vec::new();
        let mut partial = false;
        for batch in self.lookup(Table::Metrics, name.as_bytes(), range)? {
            let times: &UInt64Array = columnar::column(&batch, metrics::TIME)?;
            let mask = (0..times.len())
                .map(|i| Some(range.contains(times.value(i))))
                .collect::<arrow_array::BooleanArray>();
            let batch = filter_record_batch(&batch, &mask)?;
            if rows.len() + batch.num_rows() > budget {
                partial = true;
                break;
            }
            rows.extend(metrics::rows(&batch)?);
        }
        rows.sort_by_key(point_time);
        Ok((rows, partial))
    }

    fn partial(&self, table: Table, range: &TimeRange, full_text: bool) -> bool {
        let snapshot = self.snapshot();
        let damaged = snapshot
            .manifest
            .parts
            .iter()
            .filter(|p| snapshot.damaged.contains(&p.id))
            .chain(&snapshot.manifest.quarantined)
            .any(|p| p.table == table && p.overlaps(range));
        if damaged || !full_text {
            return damaged;
        }
        let Some(index) = self.index(table) else {
            return false;
        };
        let hours: Vec<u64> = snapshot
            .parts(table, range)
            .map(|p| p.hour)
            .chain(snapshot.heads(table, range).map(|h| h.hour))
            .collect();
        hours.into_iter().any(|hour| index.is_stale(hour))
    }

    fn services(&self) -> Result<Vec<ServiceInfo>, StorageError> {
        let snapshot = self.snapshot();
        let mut services: BTreeMap<String, (ServiceRows, ServiceRows)> = BTreeMap::new();
        let mut add = |table: Table, stats: &BTreeMap<String, ServiceRows>| {
            for (name, rows) in stats {
                let entry = services.entry(name.clone()).or_default();
                match table {
                    Table::Spans => entry.0.merge(rows),
                    Table::Logs => entry.1.merge(rows),
                    _ => {}
                }
            }
        };
        for part in &snapshot.manifest.parts {
            add(part.table, &part.services);
        }
        for head in &snapshot.head {
            add(head.table, &head.services);
        }
        Ok(services
            .into_iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, (spans, logs))| {
                let mut all = spans;
                all.merge(&logs);
                ServiceInfo {
                    name,
                    span_count: spans.rows,
                    log_count: logs.rows,
                    first_seen: all.first,
                    last_seen: all.last,
                }
            })
            .collect())
    }
}

impl LocalStore {
    /// Trace search with a full-text query over spans: the span index names candidate traces
    /// (newest first), whose spans are then checked against the other filters.
    fn search_traces_by_text(&self, query: &str, filter: &TraceFilter) -> Result<TraceHits, StorageError> {
        let search = LogSearch {
            query: query.to_owned(),
            service: filter.service.clone(),
            range: filter.range,
            // Hits are (trace, part) documents: a trace may have several.
            limit: filter.limit.saturating_mul(4).clamp(1, 100_000),
            ..LogSearch::default()
        };
        self.spans.validate(&search)?;
        let snapshot = self.snapshot();
        let mut hours: BTreeSet<u64> = snapshot.parts(Table::Spans, &filter.range).map(|p| p.hour).collect();
        hours.extend(snapshot.heads(Table::Spans, &filter.range).map(|h| h.hour));
        let hours: Vec<u64> = hours.into_iter().rev().collect();
        let live: BTreeSet<u64> = snapshot
            .parts_of_all_tables()
            .filter(|p| p.table == Table::Spans)
            .map(|p| p.id)
            .chain(snapshot.head.iter().filter(|h| h.table == Table::Spans).map(|h| h.id))
            .collect();
        let (hits, index_partial) = self
            .spans
            .search(&search, &hours, |hit: &Hit| live.contains(&hit.part))?;
        let mut newest: HashMap<[u8; 16], u64> = HashMap::new();
        for hit in &hits {
            if let Some(id) = hit.trace_id {
                let t = newest.entry(id).or_insert(hit.time);
                *t = (*t).max(hit.time);
            }
        }
        let mut traces: Vec<([u8; 16], u64)> = newest.into_iter().collect();
        traces.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let other_filters = filter.name.is_some() || filter.status.is_some() || !filter.attributes.is_empty();
        if other_filters {
            let mut kept = Vec::new();
            for (id, time) in traces {
                let spans = self.trace(&id, &TimeRange::ALL)?;
                if spans.iter().any(|row| span_matches(row, filter)) {
                    kept.push((id, time));
                }
            }
            traces = kept;
        }
        traces.truncate(filter.limit);
        Ok(TraceHits {
            traces,
            partial: hits.len() >= search.limit || index_partial,
        })
    }
}

/// Whether a stored span passes the span-level filters (name, status, service, attributes).
fn span_matches(row: &SpanRow, filter: &TraceFilter) -> bool {
    let status = row.span.status.as_ref().map_or(0, |s| s.code);
    filter.name.as_deref().is_none_or(|n| n == row.span.name)
        && filter.status.is_none_or(|s| s == status)
        && filter.service.as_deref().is_none_or(|s| s == row.origin.service_name())
        && filter.attributes.iter().all(|(key, value)| {
            row.span
                .attributes
                .iter()
                .chain(&row.origin.resource.attributes)
                .any(|kv| &kv.key == key && kv.value.as_ref().is_some_and(|v| &fulltext::any_text(v) == value))
        })
}

/// The time of a stored point (its metric holds exactly one).
pub fn point_time(row: &MetricRow) -> u64 {
    use sift_proto::otlp::metrics::v1::metric::Data;
    match &row.metric.data {
        Some(Data::Gauge(g)) => g.data_points.first().map_or(0, |p| p.time_unix_nano),
        Some(Data::Sum(s)) => s.data_points.first().map_or(0, |p| p.time_unix_nano),
        Some(Data::Histogram(h)) => h.data_points.first().map_or(0, |p| p.time_unix_nano),
        Some(Data::ExponentialHistogram(h)) => h.data_points.first().map_or(0, |p| p.time_unix_nano),
        Some(Data::Summary(s)) => s.data_points.first().map_or(0, |p| p.time_unix_nano),
        None => 0,
    }
}

enum Source<'a> {
    Part(&'a PartMeta),
    Head(&'a HeadPartition),
}

/// Rows of the concatenation of `batches` at the given sorted row numbers.
fn take_rows(batches: &[RecordBatch], rows: &[usize]) -> Result<RecordBatch, StorageError> {
    let schema = Table::Logs.schema();
    let all = concat_batches(&schema, batches)?;
    let indices = UInt64Array::from(rows.iter().map(|&r| r as u64).collect::<Vec<_>>());
    Ok(arrow_select::take::take_record_batch(&all, &indices)?)
}

/// Adds the traces of the spans in `batch` that match `filter` (newest start per trace).
fn match_spans(
    batch: &RecordBatch,
    filter: &TraceFilter,
    found: &mut HashMap<[u8; 16], u64>,
) -> Result<(), StorageError> {
    let trace_id: &FixedSizeBinaryArray = columnar::column(batch, spans::TRACE_ID)?;
    let start: &UInt64Array = columnar::column(batch, spans::START)?;
    let name: &StringArray = columnar::column(batch, spans::NAME)?;
    let status: &Int32Array = columnar::column(batch, spans::STATUS_CODE)?;
    let attributes: &StringArray = columnar::column(batch, spans::ATTRIBUTES)?;
    let service: &StringArray = columnar::column(batch, columnar::origin_col::SERVICE_NAME)?;
    let resource: &StringArray = columnar::column(batch, columnar::origin_col::RESOURCE_ATTRIBUTES)?;
    for row in 0..batch.num_rows() {
        let time = start.value(row);
        if !filter.range.contains(time) {
            continue;
        }
        if filter.service.as_deref().is_some_and(|s| s != service.value(row))
            || filter.name.as_deref().is_some_and(|n| n != name.value(row))
            || filter.status.is_some_and(|s| s != status.value(row))
        {
            continue;
        }
        let mut attrs_ok = true;
        for (key, value) in &filter.attributes {
            if !has_attribute(attributes.value(row), key, value)? && !has_attribute(resource.value(row), key, value)? {
                attrs_ok = false;
                break;
            }
        }
        if !attrs_ok {
            continue;
        }
        let id: [u8; 16] = trace_id.value(row).try_into().unwrap_or_default();
        let newest = found.entry(id).or_insert(time);
        *newest = (*newest).max(time);
    }
    Ok(())
}

/// Whether typed-JSON attributes hold `key` with a value whose text is `value`.
fn has_attribute(json: &str, key: &str, value: &str) -> Result<bool, StorageError> {
    // Cheap test first: most rows do not mention the key at all.
    if !json.contains(key) {
        return Ok(false);
    }
    Ok(columnar::read_attributes(json)?
        .iter()
        .any(|kv| kv.key == key && kv.value.as_ref().is_some_and(|v| fulltext::any_text(v) == value)))
}

/// The parts of one partition to merge, if any: its oldest small parts (fewer than a quarter of
/// `max_rows` rows each) while their sum stays within `max_rows`, when there are at least
/// `min_parts` of them.
fn merge_group<'a>(parts: &[&'a PartMeta], min_parts: usize, max_rows: u64) -> Option<Vec<&'a PartMeta>> {
    let mut small: Vec<&PartMeta> = parts
        .iter()
        .copied()
        .filter(|p| p.rows.saturating_mul(4) < max_rows)
        .collect();
    small.sort_by_key(|p| p.id);
    let mut total = 0u64;
    let group: Vec<&PartMeta> = small
        .into_iter()
        .take_while(|p| {
            total += p.rows;
            total <= max_rows
        })
        .collect();
    (group.len() >= min_parts.max(2)).then_some(group)
}

#[cfg(test)]
mod compaction_tests {
    use super::*;

    fn part(id: u64, rows: u64) -> PartMeta {
        PartMeta {
            id,
            table: Table::Spans,
            hour: 0,
            rows,
            bytes: 0,
            min_time: 0,
            max_time: 0,
            services: BTreeMap::new(),
            crc32: None,
        }
    }

    fn ids(group: Option<Vec<&PartMeta>>) -> Option<Vec<u64>> {
        group.map(|g| g.iter().map(|p| p.id).collect())
    }

    #[test]
    fn only_small_parts_are_merged_and_a_merge_is_bounded() {
        let parts = [
            part(5, 10),
            part(1, 10),
            part(2, 30),
            part(3, 10),
            part(4, 10),
            part(6, 10),
        ];
        let refs: Vec<&PartMeta> = parts.iter().collect();
        // Part 2 (30 rows) is not small for 100 rows; the five small ones (50 rows) are merged.
        assert_eq!(ids(merge_group(&refs, 2, 100)), Some(vec![1, 3, 4, 5, 6]));
        assert_eq!(ids(merge_group(&refs, 2, 30)), None, "no part is small");
        assert_eq!(ids(merge_group(&refs, 2, 45)), Some(vec![1, 3, 4, 5]), "sum within 45");
        assert_eq!(ids(merge_group(&refs, 6, 100)), None, "too few small parts");
    }
}
