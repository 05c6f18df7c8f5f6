//! The store's reads: the [`Store`] trait over a snapshot of parts and head, part readers, and
//! damage found while reading.

use super::*;

/// Parts whose footer (and page locations) are kept open at once: a few hundred KiB each for
/// the largest parts, so at most some tens of MiB.
const OPEN_READERS: usize = 256;

impl LocalStore {
    /// Runs `read` on a part. If it fails because the part's contents are bad while it is still
    /// published, the part is damaged: it is reported, no read uses it again, and `Ok(None)` is
    /// returned so the caller answers from the rest (the answer is then partial, see
    /// [`Store::partial`]). Other failures (out of file handles, say) are returned as they are.
    pub(super) fn read_part<T>(
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
    pub(super) fn part_failed(&self, part: &PartMeta, error: StorageError) -> Result<(), StorageError> {
        if !error.is_damage() {
            return Err(error);
        }
        self.report_damage(part, &error);
        Ok(())
    }

    /// Every row of a part (`None`: it is damaged, see [`Self::read_part`]).
    pub(super) fn read_whole_part(&self, part: &PartMeta) -> Result<Option<Vec<RecordBatch>>, StorageError> {
        self.read_part(part, |reader| {
            reader
                .scan_all()?
                .collect::<Result<Vec<_>, _>>()
                .map_err(StorageError::from)
        })
    }

    /// Records that reading a part failed: if it is still published, it is damaged (reported,
    /// skipped by every read from now on, quarantined by the next refresh).
    pub(super) fn report_damage(&self, part: &PartMeta, error: &StorageError) {
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

    pub(super) fn readers(&self) -> MutexGuard<'_, HashMap<u64, PartReader>> {
        self.readers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn verified(&self) -> MutexGuard<'_, std::collections::HashSet<u64>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checksums the whole files of parts no read has opened since the store opened, newest
    /// first, until `budget` bytes were read: damage is found before a query needs the part (it
    /// is quarantined by the next refresh), and the query that opens it first reads its footer,
    /// not the whole file (after a restart, a search whose hits are spread over a soak's ~90 logs
    /// parts would checksum their 3 GB first).
    pub(super) fn verify_parts(&self, budget: u64) {
        let snapshot = self.snapshot();
        let mut unread: Vec<&PartMeta> = {
            let mut verified = self.verified();
            let live: std::collections::HashSet<u64> = snapshot.manifest.parts.iter().map(|p| p.id).collect();
            verified.retain(|id| live.contains(id));
            snapshot
                .manifest
                .parts
                .iter()
                .filter(|p| p.crc32.is_some() && !verified.contains(&p.id) && !snapshot.damaged.contains(&p.id))
                .collect()
        };
        unread.sort_by_key(|p| std::cmp::Reverse((p.max_time, p.id)));
        let mut read = 0u64;
        for part in unread {
            if read >= budget {
                break;
            }
            read += part.bytes;
            match PartReader::open(&part.path(&self.root), part.table, part.crc32) {
                Ok(_) => {
                    self.verified().insert(part.id);
                }
                Err(error) => {
                    if let Err(error) = self.part_failed(part, error) {
                        tracing::warn!(error = %error, part = part.id, "cannot checksum a part; will retry");
                    }
                }
            }
        }
    }

    pub(super) fn reader(&self, part: &PartMeta) -> Result<PartReader, StorageError> {
        if let Some(reader) = self.readers().get(&part.id) {
            return Ok(reader.clone());
        }
        let verified = self.verified().contains(&part.id);
        let reader = PartReader::open(&part.path(&self.root), part.table, part.crc32.filter(|_| !verified))?;
        if part.crc32.is_some() {
            self.verified().insert(part.id);
        }
        let mut readers = self.readers();
        if readers.len() >= OPEN_READERS {
            // Bounded: one opened again later costs its footer and page index reads (its file was
            // checksummed the first time).
            if let Some(id) = readers.keys().next().copied() {
                readers.remove(&id);
            }
        }
        readers.insert(part.id, reader.clone());
        Ok(reader)
    }

    /// The batches (parts and head) of `table` whose key column (the trace id) equals `key`.
    /// Tables with a full-text index read only the parts whose index documents name the trace
    /// (partitions whose index cannot answer are read whole); the others read every part of the
    /// range, skipping row groups by their bloom filters and pages by their statistics. A log
    /// record's document names its row, so a log lookup reads just those rows (and the pages
    /// that hold them).
    pub(super) fn lookup(&self, table: Table, key: &[u8], range: &TimeRange) -> Result<Vec<RecordBatch>, StorageError> {
        let snapshot = self.snapshot();
        let column = part::key_column(table);
        let holders = self.parts_holding(&snapshot, table, key, range);
        let mut out = Vec::new();
        for part in snapshot.parts(table, range) {
            let batches = match holders.get(&part.hour) {
                Some(Some(held)) => match held.get(&part.id) {
                    None => continue,
                    Some(rows) if table == Table::Logs => {
                        let rows: Vec<usize> = rows.iter().map(|&r| r as usize).collect();
                        self.read_part(part, |reader| reader.rows_at(&rows))?
                            .map(|batches| equal_rows(batches, column, key))
                            .transpose()?
                    }
                    Some(_) => self.read_part(part, |reader| reader.rows_equal(column, key))?,
                },
                _ => self.read_part(part, |reader| reader.rows_equal(column, key))?,
            };
            out.extend(batches.into_iter().flatten());
        }
        for head in snapshot.heads(table, range) {
            out.extend(equal_rows(head.batches.iter().cloned(), column, key)?);
        }
        Ok(out)
    }

    /// Per partition of `table` in `range`, the parts of `snapshot` holding trace `key` with the
    /// rows its documents name (meaningful for logs only: a span document is a trace's spans in
    /// one part), from the table's full-text index; `None` where the index cannot say, and no
    /// entry for tables without an index.
    fn parts_holding(
        &self,
        snapshot: &Snapshot,
        table: Table,
        key: &[u8],
        range: &TimeRange,
    ) -> BTreeMap<u64, Option<BTreeMap<u64, BTreeSet<u64>>>> {
        let (Some(index), Ok(trace_id)) = (self.index(table), <[u8; 16]>::try_from(key)) else {
            return BTreeMap::new();
        };
        let listed: BTreeSet<u64> = snapshot.parts(table, &TimeRange::ALL).map(|p| p.id).collect();
        let hours: Vec<u64> = snapshot
            .parts(table, range)
            .map(|p| p.hour)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        index
            .trace_documents(&trace_id, &hours)
            .into_iter()
            .map(|(hour, hits)| {
                let held = hits.map(|hits| {
                    let mut held: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
                    for hit in &hits {
                        let (part, row) = snapshot.resolve(table, hit, |p| listed.contains(&p));
                        held.entry(part).or_default().insert(row);
                    }
                    held
                });
                (hour, held)
            })
            .collect()
    }
}

/// The rows of `batches` whose `column` equals `key`.
fn equal_rows(
    batches: impl IntoIterator<Item = RecordBatch>,
    column: &str,
    key: &[u8],
) -> Result<Vec<RecordBatch>, StorageError> {
    let mut out = Vec::new();
    for batch in batches {
        let index = batch.schema().index_of(column)?;
        let mask = equal_mask(batch.column(index), key)?;
        if mask.true_count() == batch.num_rows() {
            out.push(batch);
        } else if mask.true_count() > 0 {
            out.push(filter_record_batch(&batch, &mask)?);
        }
    }
    Ok(out)
}

impl LocalStore {
    /// Hands each batch of a metric's points in a time range (its rows in the range only; from
    /// parts without the columns named in `without`) to `take`, parts first, then the head;
    /// stops before the batch that would pass `budget` points, and then returns true.
    fn metric_batches(
        &self,
        name: &str,
        range: &TimeRange,
        budget: usize,
        without: &[&str],
        take: &mut dyn FnMut(&RecordBatch) -> Result<(), StorageError>,
    ) -> Result<bool, StorageError> {
        let mut seen = 0usize;
        let mut within = |batch: RecordBatch| -> Result<bool, StorageError> {
            let times: &UInt64Array = columnar::column(&batch, metrics::TIME)?;
            let mask = (0..times.len())
                .map(|i| Some(range.contains(times.value(i))))
                .collect::<arrow_array::BooleanArray>();
            // A part's rows were filtered by time as they were read: copied again only if not.
            let batch = if mask.true_count() == batch.num_rows() {
                batch
            } else {
                filter_record_batch(&batch, &mask)?
            };
            if seen + batch.num_rows() > budget {
                return Ok(false);
            }
            seen += batch.num_rows();
            take(&batch)?;
            Ok(true)
        };
        let snapshot = self.snapshot();
        let key = name.as_bytes();
        let column = part::key_column(Table::Metrics);
        for part in snapshot.parts(Table::Metrics, range) {
            let batches = match self.read_part(part, |reader| reader.rows_equal_iter(column, key, range, without))? {
                Some(batches) => batches,
                None => continue,
            };
            for batch in batches {
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(e) => {
                        self.part_failed(part, e.into())?;
                        break;
                    }
                };
                if !within(batch)? {
                    return Ok(true);
                }
            }
        }
        for head in snapshot.heads(Table::Metrics, range) {
            for batch in &head.batches {
                let index = batch.schema().index_of(column)?;
                let mask = equal_mask(batch.column(index), key)?;
                if mask.true_count() == 0 {
                    continue;
                }
                if !within(filter_record_batch(batch, &mask)?)? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
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
        self.find_traces(filter)
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
        // Documents name the part a record was indexed under: where it is now comes from the
        // partition's moves. A stale index is reported through `partial`.
        let live = |part: u64| parts.contains_key(&part) || heads.contains_key(&part);
        let (hits, _) = self.logs.search(search, &hours, |hit: &Hit| {
            let (part, row) = snapshot.resolve(Table::Logs, hit, live);
            parts.contains_key(&part) || heads.get(&part).is_some_and(|h| (row as usize) < h.rows)
        })?;
        let hits: Vec<Hit> = hits
            .into_iter()
            .map(|hit| {
                let (part, row) = snapshot.resolve(Table::Logs, &hit, live);
                Hit { part, row, ..hit }
            })
            .collect();
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
                (None, Some(head)) => take_rows(&head.batches, &rows)?,
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

    fn for_each_metric_rollup(
        &self,
        name: &str,
        range: &TimeRange,
        budget: usize,
        visit: &mut dyn FnMut(Labels, u64, Rollup),
    ) -> Result<Option<bool>, StorageError> {
        let snapshot = self.snapshot();
        if !snapshot.manifest.metric_rollups {
            return Ok(None);
        }
        let mut seen = 0usize;
        let key = name.as_bytes();
        let column = part::key_column(Table::Rollups);
        for part in snapshot.parts(Table::Rollups, range) {
            let Some(batches) = self.read_part(part, |reader| reader.rows_equal_iter(column, key, range, &[]))? else {
                continue;
            };
            for batch in batches {
                let rows = batch
                    .map_err(StorageError::from)
                    .and_then(|b| columnar::rollups::rows(&b).map_err(|e| StorageError::Corrupt(e.to_string())));
                let rows = match rows {
                    Ok(rows) => rows,
                    Err(e) => {
                        self.part_failed(part, e)?;
                        break;
                    }
                };
                for ((_, labels, minute), rollup) in rows {
                    if !range.contains(minute) {
                        continue;
                    }
                    seen += 1;
                    if seen > budget {
                        return Ok(Some(true));
                    }
                    visit(labels, minute, rollup);
                }
            }
        }
        // Points not flushed yet: their head keeps their rollups.
        for head in snapshot.heads(Table::Metrics, range) {
            let found: Vec<_> = {
                let rollups = head.rollups.lock().unwrap_or_else(|e| e.into_inner());
                rollups
                    .range((name.to_owned(), Labels::new(), 0)..)
                    .take_while(|((n, _, _), _)| n == name)
                    .filter(|((_, _, minute), _)| range.contains(*minute))
                    .map(|((_, labels, minute), rollup)| (labels.clone(), *minute, crate::rollup::collapsed(rollup)))
                    .collect()
            };
            for (labels, minute, rollup) in found {
                seen += 1;
                if seen > budget {
                    return Ok(Some(true));
                }
                visit(labels, minute, rollup);
            }
        }
        Ok(Some(false))
    }

    fn for_each_metric_point(
        &self,
        name: &str,
        range: &TimeRange,
        budget: usize,
        visit: &mut dyn FnMut(MetricRow),
    ) -> Result<bool, StorageError> {
        self.metric_batches(name, range, budget, &[], &mut |batch| {
            for row in metrics::rows(batch)? {
                visit(row);
            }
            Ok(())
        })
    }

    fn for_each_metric_sample(
        &self,
        name: &str,
        range: &TimeRange,
        budget: usize,
        visit: &mut dyn FnMut(&Labels, Sample),
    ) -> Result<bool, StorageError> {
        // Only the columns samples and labels are made of are read from parts.
        let schema = metrics::schema();
        let without: Vec<&str> = schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|name| !rollup::SAMPLE_COLUMNS.contains(name))
            .collect();
        let mut labels = rollup::RawLabels::default();
        self.metric_batches(name, range, budget, &without, &mut |batch| {
            let columns = rollup::SampleColumns::new(batch)?;
            for row in 0..batch.num_rows() {
                let sample = columns.sample(row)?;
                visit(labels.of(&columns, row)?, sample);
            }
            Ok(())
        })
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

fn sort_by<T>(rows: &mut [T], key: impl Fn(&T) -> u64) {
    rows.sort_by_key(|r| key(r));
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

/// Whether a stored span passes the span-level filters (name, status, service, attributes).
pub(super) fn span_matches(row: &SpanRow, filter: &TraceFilter) -> bool {
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

/// Rows of the concatenation of `batches` at the given sorted row numbers, taken batch by batch
/// (never copying a whole head to read a few of its rows).
fn take_rows(batches: &[RecordBatch], rows: &[usize]) -> Result<Vec<RecordBatch>, StorageError> {
    let mut out = Vec::new();
    let mut first = 0;
    let mut wanted = rows.iter().peekable();
    for batch in batches {
        let end = first + batch.num_rows();
        let mut indices = Vec::new();
        while let Some(&&row) = wanted.peek() {
            if row >= end {
                break;
            }
            if row >= first {
                indices.push((row - first) as u64);
            }
            wanted.next();
        }
        if !indices.is_empty() {
            let indices = UInt64Array::from(indices);
            out.push(arrow_select::take::take_record_batch(batch, &indices)?);
        }
        first = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn rows_of_a_head_are_taken_batch_by_batch_in_order() {
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "n",
            arrow_schema::DataType::UInt64,
            false,
        )]));
        let batch = |from: u64, to: u64| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(UInt64Array::from_iter_values(from..to))]).unwrap()
        };
        let batches = [batch(0, 3), batch(3, 3), batch(3, 8), batch(8, 10)];
        let taken = take_rows(&batches, &[1, 2, 3, 7, 9]).unwrap();
        let values: Vec<u64> = taken
            .iter()
            .flat_map(|b| columnar::column::<UInt64Array>(b, "n").unwrap().values().to_vec())
            .collect();
        assert_eq!(values, [1, 2, 3, 7, 9]);
        assert_eq!(taken.len(), 3, "one batch per source batch with rows taken");
        assert!(take_rows(&batches, &[]).unwrap().is_empty());
    }
}
