//! The store's write loop: what its one writer (the storage exporter's WAL consumer) calls, and
//! when each piece of work is due.
//!
//! - [`LocalStore::write`] takes the WAL records of a batch, skips those the published parts
//!   already hold (a replay after a crash), appends the rest to the head and flushes when the
//!   head is due (by size or age, or a failed flush to retry);
//! - [`LocalStore::tick`], about every second: repairs (stale indexes are rebuilt, damaged parts
//!   quarantined), index merges moved on, every [`StoreOptions::index_commit_interval`] an index
//!   commit (head rows become searchable) and a flush when due;
//! - [`LocalStore::maintain_if_due`], from a thread of its own, every
//!   [`StoreOptions::maintenance_interval`]: retention and compaction, which take the writer
//!   lock only to publish a manifest, so the write loop never waits for a merge;
//! - [`LocalStore::durable_position`] is where the writer's WAL checkpoint may move.
//!
//! Failures are logged here and retried by a later call; nothing the WAL holds is given up.

use super::ingest::TraceTexts;
use super::*;

/// Whether `every` has passed since `last` (or it never ran); if so, `last` becomes now.
fn due(last: &Mutex<Option<Instant>>, every: Duration) -> bool {
    let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
    let due = last.is_none_or(|at| at.elapsed() >= every);
    if due {
        *last = Some(Instant::now());
    }
    due
}

/// What [`LocalStore::tick`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// The head was flushed (successfully or not: a failure is retried).
    pub flushed: bool,
}

impl LocalStore {
    /// Appends the entries of WAL records, each with the end position of its record, in log
    /// order; `end` is the end of the whole batch read (records of other pipelines included).
    /// Records at or before the published position are already stored and skipped. Flushes when
    /// the head is due. Returns the rows added per table.
    ///
    /// While the head holds its share of the memory limit ([`MemoryBudget::head_bytes`]: flushes
    /// have failed and kept their heads) nothing is appended and [`StorageError::Behind`] says so:
    /// the caller tries the same records again later, and meanwhile they wait in the WAL.
    pub fn write(&self, end: u64, records: Vec<(u64, WalEntry)>) -> Result<BTreeMap<Table, u64>, StorageError> {
        let limit = self.options.memory().head_bytes;
        if self.head_bytes() >= limit {
            if self.flush_due() {
                self.flush_logged();
            }
            let held = self.head_bytes();
            if held >= limit {
                return Err(StorageError::Behind(format!(
                    "the head holds {} MiB of its {} MiB until a flush succeeds",
                    held >> 20,
                    limit >> 20
                )));
            }
        }
        let published = self.published_position();
        let fresh: Vec<WalEntry> = records
            .into_iter()
            .filter(|(record_end, _)| *record_end > published)
            .map(|(_, entry)| entry)
            .collect();
        let rows = self.append(end, &fresh)?;
        if self.flush_due() {
            self.flush_logged();
        }
        Ok(rows)
    }

    /// The store's timed work (see the module docs); call it about every second.
    pub fn tick(&self) -> TickReport {
        let mut report = TickReport::default();
        // Each commit adds a segment to every index written since the last one, and merging
        // segments is most of an index's cost: commit every `index_commit_interval`, not every
        // tick.
        let commit = due(&self.last_commit, self.options.index_commit_interval);
        if let Err(e) = self.refresh_with(commit) {
            tracing::warn!(error = %e, "cannot repair the store yet (full-text rebuild or quarantine); will retry");
        }
        if self.flush_due() {
            self.flush_logged();
            report.flushed = true;
        }
        self.maps.trim_if_over(super::mapped::MAPPED_RESIDENT_BOUND);
        report
    }

    /// Retention, then compaction, if [`StoreOptions::maintenance_interval`] has passed since
    /// they last ran: what retention deleted. For a thread beside the write loop (see the module
    /// docs); failures are logged and retried next time.
    pub fn maintain_if_due(&self) -> Option<RetentionReport> {
        due(&self.last_maintenance, self.options.maintenance_interval).then(|| self.maintain())
    }

    /// Flushes, logging a failure (the frozen head is retried by a later flush).
    fn flush_logged(&self) {
        let started = Instant::now();
        match self.flush() {
            Ok(_) => tracing::debug!(elapsed = ?started.elapsed(), "storage head flushed"),
            Err(e) => tracing::error!(error = %e, "storage flush failed; will retry"),
        }
    }

    /// Retention, then compaction; failures are logged and retried at the next maintenance.
    fn maintain(&self) -> RetentionReport {
        let retired = {
            let mut state = self.state();
            let (old, young): (Vec<_>, Vec<_>) = std::mem::take(&mut state.retired)
                .into_iter()
                .partition(|(at, _, _)| at.elapsed() >= RETIRED_FOR);
            state.retired = young;
            old
        };
        for (_, id, path) in retired {
            // A read of an older snapshot may have cached a reader again meanwhile.
            self.readers().remove(&id);
            let _ = std::fs::remove_file(path);
        }
        let report = match self.enforce_retention(SystemTime::now()) {
            Ok(report) => {
                if !report.partitions.is_empty() {
                    tracing::info!(?report, "retention deleted expired partitions");
                }
                report
            }
            Err(e) => {
                tracing::error!(error = %e, "retention failed; will retry");
                RetentionReport::default()
            }
        };
        match self.compact() {
            Ok(0) => {}
            Ok(parts) => tracing::debug!(parts, "compacted parts"),
            Err(e) => tracing::error!(error = %e, "compaction failed; will retry"),
        }
        self.verify_parts(VERIFIED_PER_MAINTENANCE);
        report
    }

    /// Makes head logs and spans searchable (full-text indexes are refreshed, not rebuilt), then
    /// repairs: rebuilds stale indexes and moves damaged parts to the quarantine. Fails only if
    /// the repairs could not be made (they are retried at the next refresh).
    pub fn refresh(&self) -> Result<(), StorageError> {
        self.refresh_with(true)
    }

    /// [`Self::refresh`], committing the full-text indexes only if `commit` (the repairs always
    /// run).
    fn refresh_with(&self, commit: bool) -> Result<(), StorageError> {
        let _writer = self.write_lock();
        if commit {
            self.logs.commit();
            self.spans.commit();
        }
        fulltext::merge(&[&self.logs, &self.spans]);
        let quarantined = self.quarantine_damaged();
        let rebuilt = self.rebuild_stale_indexes();
        let rolled_up = self.build_rollups();
        quarantined.and(rebuilt).and(rolled_up)?;
        // A manifest that still names rebuilt indexes stale would have a restart rebuild them again.
        let manifest = self.state().manifest.clone();
        if manifest
            .stale_indexes
            .iter()
            .any(|(table, hour)| self.index(*table).is_some_and(|index| !index.is_stale(*hour)))
        {
            let mut next = Manifest::clone(&manifest);
            self.store_manifest(&mut next)?;
            self.state().manifest = Arc::new(next);
        }
        Ok(())
    }

    /// Rebuilds the stale full-text indexes that are due, from their parts and head rows.
    pub(super) fn rebuild_stale_indexes(&self) -> Result<(), StorageError> {
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
    pub(super) fn index_sources(
        &self,
        table: Table,
        hour: u64,
    ) -> Result<Vec<(u64, Vec<tantivy::TantivyDocument>)>, StorageError> {
        let snapshot = self.snapshot();
        let mut sources = Vec::new();
        // Span documents of a trace split across parts cover its earlier ones, as when indexed
        // as they arrived.
        let mut recent = fulltext::RecentTraces::new();
        for part in snapshot.parts(table, &TimeRange::ALL).filter(|p| p.hour == hour) {
            let Some(batches) = self.read_whole_part(part)? else {
                continue;
            };
            sources.push((part.id, self.documents(table, &batches, &mut recent)?));
        }
        for head in snapshot.head.iter().filter(|h| h.table == table && h.hour == hour) {
            sources.push((head.id, self.documents(table, &head.batches, &mut recent)?));
        }
        Ok(sources)
    }

    /// The full-text documents of the rows of one part (logs: one per row, in row order; spans:
    /// one per trace, all at row 0).
    pub(super) fn documents(
        &self,
        table: Table,
        batches: &[RecordBatch],
        recent: &mut fulltext::RecentTraces,
    ) -> Result<Vec<tantivy::TantivyDocument>, StorageError> {
        Ok(match table {
            Table::Logs => decode_all(batches, logs::rows)?
                .iter()
                .map(|r| self.logs.log_document(r.origin.service_name(), &r.log))
                .collect(),
            Table::Spans => {
                let mut texts = TraceTexts::new();
                for row in decode_all(batches, spans::rows)? {
                    let trace_id = row.span.trace_id.as_slice().try_into().unwrap_or_default();
                    texts.entry(trace_id).or_default().add(
                        row.origin.service_name(),
                        &row.origin.resource.attributes,
                        &row.span,
                    );
                }
                self.spans.trace_documents_of(&mut texts, recent)
            }
            Table::Metrics | Table::Exemplars | Table::Rollups => Vec::new(),
        })
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
                // Partitions written since the last flush keep their index writers (opening one
                // allocates its whole memory budget again); the others have gone quiet.
                let live: BTreeSet<(Table, u64)> = {
                    let mut state = self.state();
                    state.manifest = Arc::new(manifest);
                    state.frozen.clear();
                    state.flush_failed = None;
                    state
                        .live
                        .keys()
                        .copied()
                        .chain(frozen.iter().map(|h| (h.table, h.hour)))
                        .collect()
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
    pub(super) fn publish(
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
            if head.table == Table::Metrics && manifest.metric_rollups {
                let rollups = head.rollups.lock().unwrap_or_else(|e| e.into_inner());
                let rollups = rollups
                    .iter()
                    .map(|(k, r)| (k.clone(), crate::rollup::collapsed(r)))
                    .collect();
                if let Some(meta) = self.write_rollups(head.hour, &rollups)? {
                    dirs.insert(partition_dir(&self.root, Table::Rollups, head.hour));
                    manifest.next_part_id = manifest.next_part_id.max(meta.id + 1);
                    manifest.parts.push(meta);
                }
            }
        }
        for dir in &dirs {
            sync_dir(dir)?;
        }
        // Index failures make the index stale (rebuilt later), never the flush.
        self.logs.commit();
        self.spans.commit();
        fulltext::merge(&[&self.logs, &self.spans]);
        manifest.wal_position = position;
        manifest.next_part_id = manifest.next_part_id.max(next_part_id);
        self.store_manifest(&mut manifest)?;
        Ok(manifest)
    }

    /// Writes `rollups` (of metric points of partition `hour`, collapsed) as a part of the
    /// rollups table, under a new part id; `None` if there are none.
    fn write_rollups(
        &self,
        hour: u64,
        rollups: &BTreeMap<columnar::rollups::Key, Rollup>,
    ) -> Result<Option<PartMeta>, StorageError> {
        let (Some(first), Some(last)) = (rollups.keys().map(|k| k.2).min(), rollups.keys().map(|k| k.2).max()) else {
            return Ok(None);
        };
        let batch = columnar::rollups::batch(rollups)?;
        let id = {
            let mut state = self.state();
            state.next_part_id += 1;
            state.next_part_id - 1
        };
        let mut stats = HeadPartition::new(Table::Rollups, hour, id);
        (stats.min_time, stats.max_time) = (first, last);
        self.write_part(Table::Rollups, hour, id, &[batch], &stats).map(Some)
    }

    /// Writes the rollups of `group` as one part at `path`, those of one series and minute as
    /// one (their runs joined where their times give the order; see [`Rollup::merge_stored`]):
    /// a partition's rollups shrink to about one per series and minute as its parts merge.
    fn merge_rollups(&self, path: &Path, group: &[PartMeta]) -> Result<part::Written, part::MergeError> {
        let mut merged: BTreeMap<columnar::rollups::Key, Rollup> = BTreeMap::new();
        for (i, source) in group.iter().enumerate() {
            let damaged = |error: StorageError| part::MergeError { source: Some(i), error };
            let reader = PartReader::open(&source.path(&self.root), source.table, source.crc32).map_err(damaged)?;
            for batch in reader.scan_all().map_err(damaged)? {
                let rows = batch
                    .map_err(StorageError::from)
                    .and_then(|b| columnar::rollups::rows(&b).map_err(|e| StorageError::Corrupt(e.to_string())))
                    .map_err(damaged)?;
                for (key, rollup) in rows {
                    match merged.get_mut(&key) {
                        Some(kept) => kept.merge_stored(rollup),
                        None => {
                            merged.insert(key, rollup);
                        }
                    }
                }
            }
        }
        let unsourced = |error: StorageError| part::MergeError { source: None, error };
        let batch = columnar::rollups::batch(&merged).map_err(|e| unsourced(e.into()))?;
        part::write(path, Table::Rollups, &[batch]).map_err(unsourced)
    }

    /// Builds the rollups of every metrics part of a store written before rollups existed, and
    /// publishes them (until then metric queries read points). Under the writer lock: no flush
    /// runs meanwhile, and the flushes after it write rollups of their own.
    pub(super) fn build_rollups(&self) -> Result<(), StorageError> {
        let snapshot = self.snapshot();
        if snapshot.manifest.metric_rollups {
            return Ok(());
        }
        let mut written = Vec::new();
        for part in snapshot.parts(Table::Metrics, &TimeRange::ALL) {
            let Some(batches) = self.read_whole_part(part)? else {
                continue;
            };
            let mut rollups = BTreeMap::new();
            crate::rollup::add_points(&mut rollups, decode_all(&batches, metrics::rows)?);
            let rollups = rollups
                .iter()
                .map(|(k, r)| (k.clone(), crate::rollup::collapsed(r)))
                .collect();
            written.extend(self.write_rollups(part.hour, &rollups)?);
        }
        for hour in written.iter().map(|p| p.hour).collect::<BTreeSet<_>>() {
            sync_dir(&partition_dir(&self.root, Table::Rollups, hour))?;
        }
        let mut next = Manifest::clone(&self.state().manifest);
        for meta in written {
            next.next_part_id = next.next_part_id.max(meta.id + 1);
            next.parts.push(meta);
        }
        next.metric_rollups = true;
        self.store_manifest(&mut next)?;
        tracing::info!("metric rollups built for the metrics parts written before them");
        self.state().manifest = Arc::new(next);
        Ok(())
    }

    pub(super) fn write_part(
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

    /// Merges the parts of partitions that have too many, until no partition has (see
    /// [`merge_group`]); returns how many parts were merged away.
    ///
    /// Runs beside the write loop: parts are immutable, so the merged part is written without
    /// the writer lock, which is taken only to publish it: first where the sources' rows went
    /// (the partition's moves, for tables with a full-text index), then a manifest that lists the
    /// merged part instead of its sources. The full-text indexes are not touched: their documents
    /// keep the old part ids, resolved through the moves ([`manifest::Moves`]). A crash before
    /// the manifest leaves an unlisted file (deleted at the next open), after it unlisted sources
    /// (deleted likewise): nothing is lost or stored twice.
    pub fn compact(&self) -> Result<usize, StorageError> {
        let _compaction = self.compaction.lock().unwrap_or_else(|e| e.into_inner());
        let mut merged = 0;
        // Each round merges at most one group per partition; a merge shrinks its partition by
        // at least one part, so this ends. The bound only caps one call's work.
        for _ in 0..64 {
            let snapshot = self.snapshot();
            let mut groups: BTreeMap<(Table, u64), Vec<&PartMeta>> = BTreeMap::new();
            for part in snapshot.parts_of_all_tables() {
                groups.entry((part.table, part.hour)).or_default().push(part);
            }
            let mut round = 0;
            for ((table, hour), parts) in groups {
                let Some(group) = merge_group(&parts, self.options.compact_parts, self.options.compact_max_rows) else {
                    continue;
                };
                let group: Vec<PartMeta> = group.into_iter().cloned().collect();
                if self.merge_parts(table, hour, &group)? {
                    round += group.len();
                }
            }
            if round == 0 {
                break;
            }
            merged += round;
        }
        Ok(merged)
    }

    /// Merges `group` (parts of one partition, oldest first) into one part and publishes it;
    /// false if the group was left as it is (a source found damaged, or gone meanwhile).
    fn merge_parts(&self, table: Table, hour: u64, group: &[PartMeta]) -> Result<bool, StorageError> {
        let id = {
            let mut state = self.state();
            state.next_part_id += 1;
            state.next_part_id - 1
        };
        let mut meta = PartMeta {
            id,
            table,
            hour,
            rows: 0,
            bytes: 0,
            min_time: group.iter().map(|p| p.min_time).min().unwrap_or(0),
            max_time: group.iter().map(|p| p.max_time).max().unwrap_or(0),
            services: BTreeMap::new(),
            crc32: None,
        };
        for part in group {
            for (service, rows) in &part.services {
                meta.services.entry(service.clone()).or_default().merge(rows);
            }
        }
        let sources: Vec<(PathBuf, Option<u32>)> = group.iter().map(|p| (p.path(&self.root), p.crc32)).collect();
        // Parts of small row groups (metrics, quiet services) are rewritten so that their row
        // groups grow; the others are copied as they are.
        let rows: u64 = group.iter().map(|p| p.rows).sum();
        let reencode = rows / (group.len() as u64) < self.options.compact_rewrite_rows;
        let merged = if table == Table::Rollups {
            self.merge_rollups(&meta.path(&self.root), group)
        } else {
            part::merge(&meta.path(&self.root), table, &sources, reencode)
        };
        let written = match merged {
            Ok(written) => written,
            Err(part::MergeError { source: Some(i), error }) if error.is_damage() => {
                // The damaged part is quarantined by the next refresh; the rest merge later.
                self.report_damage(&group[i], &error);
                return Ok(false);
            }
            Err(e) => return Err(e.error),
        };
        (meta.rows, meta.bytes, meta.crc32) = (written.rows, written.bytes, Some(written.crc32));
        sync_dir(&partition_dir(&self.root, table, hour))?;
        let published = {
            let _writer = self.write_lock();
            let (listed, manifest, moved) = {
                let state = self.state();
                let listed = group
                    .iter()
                    .all(|p| state.manifest.parts.iter().any(|l| l.id == p.id) && !state.damaged.contains_key(&p.id));
                (listed, state.manifest.clone(), state.moved.get(&(table, hour)).cloned())
            };
            if listed {
                // Where the rows went is durable before any manifest unlists their parts.
                let moves = self.index(table).is_some().then(|| {
                    let mut moves = moved.map(|m| Moves::clone(&m)).unwrap_or_default();
                    let mut offset = 0;
                    for part in group {
                        moves.insert(part.id, manifest::Moved { part: id, offset });
                        offset += part.rows;
                    }
                    moves
                });
                if let Some(moves) = &moves {
                    manifest::store_moves(&partition_dir(&self.root, table, hour), moves)?;
                }
                let mut next = Manifest::clone(&manifest);
                next.replace_merged(group, meta.clone());
                self.store_manifest(&mut next)?;
                let mut state = self.state();
                state.manifest = Arc::new(next);
                if let Some(moves) = moves {
                    state.moved.insert((table, hour), Arc::new(moves));
                }
            }
            listed
        };
        if !published {
            // Retention or the quarantine took a source meanwhile.
            let _ = std::fs::remove_file(meta.path(&self.root));
            return Ok(false);
        }
        // A read that took its snapshot before the publish may still open the sources: they go
        // once no query can be that old (a crash meanwhile leaves them unlisted, deleted at open).
        let mut state = self.state();
        for part in group {
            state.retired.push((Instant::now(), part.id, part.path(&self.root)));
        }
        drop(state);
        for part in group {
            self.readers().remove(&part.id);
        }
        // A part's first read checksums the whole file (a compacted one can be a gigabyte): done
        // here, on the compaction's thread, rather than by the first query that needs the part.
        if let Err(e) = self.read_part(&meta, |_| Ok(())) {
            tracing::warn!(error = %e, part = meta.id, "cannot open a merged part");
        }
        Ok(true)
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
            self.store_manifest(&mut next)?;
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
            self.state().moved.remove(&(table, hour));
            let dir = partition_dir(&self.root, table, hour);
            let index_bytes = dir_size(&dir.join("index"));
            *report.bytes.entry(table).or_default() += index_bytes;
            *report.partitions.entry(table).or_default() += 1;
            std::fs::remove_dir_all(&dir).map_err(StorageError::io(format!("deleting {}", dir.display())))?;
        }
        Ok(report)
    }

    /// Moves the parts found damaged to `<root>/quarantine/` and lists them as quarantined in the
    /// manifest (retried at the next refresh if the disk refuses).
    pub(super) fn quarantine_damaged(&self) -> Result<(), StorageError> {
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
        self.store_manifest(&mut next)?;
        let mut state = self.state();
        state.manifest = Arc::new(next);
        state.damaged.retain(|id, _| !damaged.contains_key(id));
        Ok(())
    }
}

/// How long the sources of a merge stay on disk after the manifest stopped listing them: longer
/// than any query runs (30 s), so a read from an older snapshot still finds its files.
const RETIRED_FOR: Duration = Duration::from_secs(60);

/// Bytes of parts not yet opened that each maintenance run checksums (see
/// [`LocalStore::verify_parts`]): a 20 GB store is checked within minutes of opening.
const VERIFIED_PER_MAINTENANCE: u64 = 1 << 30;

/// Rows of the smallest tier of parts (see [`merge_group`]).
const TIER_ROWS: u64 = 16 * 1024;

/// The parts of one partition to merge next, if any. Parts are tiered by size, each tier `fan_in`
/// times the rows of the one below (the lowest holds parts under `fan_in` × 16k rows); once a
/// tier has `fan_in` parts, its oldest are merged, as many as stay within `max_rows` (at least
/// two). Parts over half of `max_rows` are never merged again. So a partition holds at most
/// about `fan_in` parts per tier, a logarithmic number of tiers, and each row is rewritten once
/// per tier it climbs: the parts of a partition stay bounded however long it is written.
fn merge_group<'a>(parts: &[&'a PartMeta], fan_in: usize, max_rows: u64) -> Option<Vec<&'a PartMeta>> {
    let fan_in = fan_in.max(2);
    let tier = |rows: u64| {
        let mut tier = 0;
        let mut limit = TIER_ROWS.saturating_mul(fan_in as u64);
        while rows >= limit {
            tier += 1;
            limit = limit.saturating_mul(fan_in as u64);
        }
        tier
    };
    let mut tiers: BTreeMap<u32, Vec<&PartMeta>> = BTreeMap::new();
    for part in parts.iter().copied().filter(|p| p.rows.saturating_mul(2) <= max_rows) {
        tiers.entry(tier(part.rows)).or_default().push(part);
    }
    for (_, mut candidates) in tiers {
        if candidates.len() < fan_in {
            continue;
        }
        candidates.sort_by_key(|p| p.id);
        let mut total = 0u64;
        let group: Vec<&PartMeta> = candidates
            .into_iter()
            .take(fan_in)
            .take_while(|p| {
                total += p.rows;
                total <= max_rows
            })
            .collect();
        if group.len() >= 2 {
            return Some(group);
        }
    }
    None
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
    fn parts_merge_within_their_tier_and_a_merge_is_bounded() {
        // Tiers for fan-in 2: under 32k rows, under 64k, under 128k...
        let parts = [
            part(5, 10),
            part(1, 10),
            part(2, 40_000),
            part(3, 10),
            part(7, 50_000),
            part(4, 10),
        ];
        let refs: Vec<&PartMeta> = parts.iter().collect();
        // The two oldest of the smallest tier first.
        assert_eq!(ids(merge_group(&refs, 2, 1_000_000)), Some(vec![1, 3]));
        // At fan-in 4 the lowest tier (under 64k rows) holds all six: its four oldest.
        assert_eq!(ids(merge_group(&refs, 4, 1_000_000)), Some(vec![1, 2, 3, 4]));
        assert_eq!(ids(merge_group(&refs, 7, 1_000_000)), None, "no tier has seven parts");
        // Parts over half of max_rows are never merged; a merge stays within max_rows.
        assert_eq!(ids(merge_group(&refs[2..3], 2, 100)), None);
        let big = [part(1, 40), part(2, 40), part(3, 40)];
        let refs: Vec<&PartMeta> = big.iter().collect();
        assert_eq!(ids(merge_group(&refs, 3, 100)), Some(vec![1, 2]), "sum within 100");
    }

    #[test]
    fn a_partition_written_for_hours_keeps_few_parts_and_rows_are_rewritten_few_times() {
        // An hour partition of 4-second flushes of 45k rows (the soak's spans), merged as the
        // store does.
        let (fan_in, max_rows) = (8, 20_000_000);
        let mut parts: Vec<PartMeta> = Vec::new();
        let mut next_id = 0;
        let mut rewritten = 0u64;
        let mut most = 0;
        for _ in 0..900 {
            parts.push(part(next_id, 45_000));
            next_id += 1;
            loop {
                let refs: Vec<&PartMeta> = parts.iter().collect();
                let Some(group) = merge_group(&refs, fan_in, max_rows) else {
                    break;
                };
                let merged: Vec<u64> = group.iter().map(|p| p.id).collect();
                let rows: u64 = group.iter().map(|p| p.rows).sum();
                rewritten += rows;
                parts.retain(|p| !merged.contains(&p.id));
                parts.push(part(next_id, rows));
                next_id += 1;
            }
            most = most.max(parts.len());
        }
        let written = 900 * 45_000u64;
        assert!(most <= 30, "at most {most} parts");
        assert!(
            rewritten <= written * 3,
            "rows rewritten {:.1} times",
            rewritten as f64 / written as f64
        );
    }
}
