//! The store's write path in: WAL entries decoded into Arrow batches of the head, per table and
//! hour, and their full-text documents handed to the indexes.

use super::*;

/// Index documents of the log records of a batch, in row order, waiting for their part id.
type LogDocuments = Vec<tantivy::TantivyDocument>;

/// The searchable text of the traces of a batch, waiting to be indexed.
pub(super) type TraceTexts = HashMap<[u8; 16], TraceText>;

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
                    records
                        .entry(id)
                        .or_default()
                        .add(origin.service(), origin.resource_attributes(), span);
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

/// A row's time, or now for rows without one (they still need a partition).
fn or_now(time: u64, now: u64) -> u64 {
    if time == 0 {
        now
    } else {
        time
    }
}

impl LocalStore {
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
        let mut rollup_jobs = Vec::new();
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
                let batch = builder.finish();
                push(&mut state, Table::Metrics, hour, batch.clone(), &stats);
                if let Some(head) = state.live.get(&(Table::Metrics, hour)) {
                    rollup_jobs.push((head.rollups.clone(), batch));
                }
            }
            for (hour, (mut builder, stats)) in pending.exemplars {
                push(&mut state, Table::Exemplars, hour, builder.finish(), &stats);
            }
            for (hour, (mut builder, stats, records)) in pending.logs {
                let (part, first_row) = push(&mut state, Table::Logs, hour, builder.finish(), &stats);
                index_jobs.push((hour, part, first_row, records));
            }
        }
        // The metrics heads' rollups take the new points (a flush waits for the writer lock, held
        // here, so none is frozen before its rollups have its rows).
        for (rollups, batch) in rollup_jobs {
            let rows = metrics::rows(&batch)?;
            crate::rollup::add_points(&mut rollups.lock().unwrap_or_else(|e| e.into_inner()), rows);
        }
        for (hour, part, first_row, docs) in index_jobs {
            self.logs.add_documents(hour, part, first_row, docs);
        }
        let mut recent = self.spans.recent();
        for (hour, part, mut texts) in span_jobs {
            let docs = self.spans.trace_documents_of(&mut texts, &mut recent);
            self.spans.add_documents(hour, part, 0, docs);
        }
        Ok(added)
    }
}
