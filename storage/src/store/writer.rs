//! The store's write loop: what its one writer (the storage exporter's WAL consumer) calls, and
//! when each piece of work is due.
//!
//! - [`LocalStore::write`] takes the WAL records of a batch, skips those the published parts
//!   already hold (a replay after a crash), appends the rest to the head and flushes when the
//!   head is due (by size or age, or a failed flush to retry);
//! - [`LocalStore::tick`], about every second: repairs (stale indexes are rebuilt, damaged parts
//!   quarantined), every [`StoreOptions::index_commit_interval`] an index commit (head rows become
//!   searchable, index merges move on), a flush when due, and every
//!   [`StoreOptions::maintenance_interval`] retention and compaction;
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
    /// Retention and compaction ran: what retention deleted.
    pub maintained: Option<RetentionReport>,
}

impl LocalStore {
    /// Appends the entries of WAL records, each with the end position of its record, in log
    /// order; `end` is the end of the whole batch read (records of other pipelines included).
    /// Records at or before the published position are already stored and skipped. Flushes when
    /// the head is due. Returns the rows added per table.
    pub fn write(&self, end: u64, records: Vec<(u64, WalEntry)>) -> Result<BTreeMap<Table, u64>, StorageError> {
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
        if due(&self.last_maintenance, self.options.maintenance_interval) {
            report.maintained = Some(self.maintain());
        }
        report
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
            Ok(parts) => tracing::info!(parts, "compacted small parts"),
            Err(e) => tracing::error!(error = %e, "compaction failed; will retry"),
        }
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
        let quarantined = self.quarantine_damaged();
        let rebuilt = self.rebuild_stale_indexes();
        quarantined.and(rebuilt)
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
    pub(super) fn documents(
        &self,
        table: Table,
        batches: &[RecordBatch],
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
        next.store(&self.root)?;
        let mut state = self.state();
        state.manifest = Arc::new(next);
        state.damaged.retain(|id, _| !damaged.contains_key(id));
        Ok(())
    }
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
