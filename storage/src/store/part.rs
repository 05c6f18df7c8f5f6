//! Immutable Parquet parts: how each table is sorted and laid out on disk, and the three ways a
//! part is read (rows whose key equals a value, rows by number, a projected scan).

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, BooleanArray, FixedSizeBinaryArray, RecordBatch, StringArray, UInt64Array};
use arrow_ord::sort::{lexsort_to_indices, SortColumn};
use arrow_schema::ArrowError;
use arrow_select::interleave::interleave_record_batch;
use parquet::arrow::arrow_reader::{
    ArrowPredicate, ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
    RowFilter, RowSelection, RowSelector,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{ColumnChunkMask, PageIndexPolicy};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::properties::{ReaderProperties, WriterProperties};
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use super::StorageError;
use crate::columnar::{exemplars, metrics, rollups, spans, Table};
use crate::TimeRange;

/// Rows per row group: small enough that a trace-id lookup decodes little beyond its match.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// The column a table is looked up by (bloom filter and, where sorted, statistics prune on it).
pub(crate) fn key_column(table: Table) -> &'static str {
    match table {
        Table::Spans | Table::Logs | Table::Exemplars => "trace_id",
        Table::Metrics => metrics::NAME,
        Table::Rollups => rollups::NAME,
    }
}

/// The column of times a read of `table` may be bounded by: metric points, whose parts' row
/// groups (one a flush, appended as they are by compaction) and pages cover short spans of time,
/// so a query of a few minutes skips the rest of a part that spans an hour.
fn time_column(table: Table) -> Option<&'static str> {
    match table {
        Table::Metrics => Some(metrics::TIME),
        _ => None,
    }
}

/// The order of `batches`' rows in a part of `table`, as (batch, row) pairs, by the table's sort
/// key (only the key columns are gathered to sort); `None` for logs, which keep arrival order.
fn part_order(table: Table, batches: &[RecordBatch]) -> Result<Option<Vec<(usize, usize)>>, ArrowError> {
    let keys: &[&str] = match table {
        Table::Spans => &[spans::TRACE_ID, spans::START],
        Table::Exemplars => &[exemplars::TRACE_ID, exemplars::TIME],
        Table::Metrics => &[metrics::NAME, metrics::SERIES_ID, metrics::TIME],
        Table::Rollups => &[rollups::NAME, rollups::LABELS, rollups::TIME],
        Table::Logs => return Ok(None),
    };
    let mut rows = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for (b, batch) in batches.iter().enumerate() {
        rows.extend((0..batch.num_rows()).map(|r| (b, r)));
    }
    let columns = keys
        .iter()
        .map(|name| {
            let parts = batches
                .iter()
                .map(|batch| {
                    batch
                        .column_by_name(name)
                        .map(|c| c.as_ref())
                        .ok_or_else(|| ArrowError::SchemaError(format!("sort column {name} missing")))
                })
                .collect::<Result<Vec<&dyn Array>, ArrowError>>()?;
            Ok(SortColumn {
                values: arrow_select::concat::concat(&parts)?,
                options: None,
            })
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    let indices = lexsort_to_indices(&columns, None)?;
    Ok(Some(indices.values().iter().map(|i| rows[*i as usize]).collect()))
}

/// Columns whose values are nearly all distinct: a dictionary would only be tried and dropped
/// (its page is written first, then the column falls back to plain), and for the numbers a
/// byte-stream split lets zstd see their slowly changing high bytes together. Measured on the
/// load generator's data: span id 9.9 → 8.0 B a row, end time 6.2 → 3.9, log time 5.9 → 3.5.
fn distinct_columns(table: Table) -> &'static [(&'static str, Encoding)] {
    use crate::columnar::logs;
    match table {
        Table::Spans => &[
            (spans::SPAN_ID, Encoding::PLAIN),
            (spans::END, Encoding::BYTE_STREAM_SPLIT),
            (spans::ATTRIBUTE_VALUES, Encoding::PLAIN),
        ],
        Table::Logs => &[
            (logs::SPAN_ID, Encoding::PLAIN),
            (logs::TIME, Encoding::BYTE_STREAM_SPLIT),
            (logs::BODY, Encoding::PLAIN),
        ],
        Table::Metrics | Table::Exemplars | Table::Rollups => &[],
    }
}

/// Columns written without compression: counts, flags, enums and the values a resource or scope
/// repeats — a few bytes a page after dictionary and run-length encoding, which zstd cannot
/// shrink (on the load generator's logs it made them larger: 0.03 against 0.02 B a record). A
/// column chunk read through a zstd codec costs more than its bytes: parquet 60 makes a zstd
/// compressor *and* decompressor context for each one it opens, which was ~16% of a trace
/// lookup's CPU with every column compressed (a lookup opens every column of the row groups it
/// reads). Parts written before keep their codecs; each column chunk names its own.
fn uncompressed_columns(table: Table) -> impl Iterator<Item = &'static str> {
    use crate::columnar::logs;
    use crate::columnar::origin_col::*;
    let own: &[&str] = match table {
        Table::Spans => &[
            spans::TRACE_STATE,
            spans::FLAGS,
            spans::KIND,
            spans::STATUS_CODE,
            spans::DROPPED_ATTRIBUTES,
            spans::DROPPED_EVENTS,
            spans::DROPPED_LINKS,
        ],
        Table::Logs => &[
            logs::SEVERITY_NUMBER,
            logs::SEVERITY_TEXT,
            logs::DROPPED_ATTRIBUTES,
            logs::FLAGS,
            logs::EVENT_NAME,
        ],
        Table::Metrics | Table::Exemplars | Table::Rollups => &[],
    };
    let origin = [
        SERVICE_NAME,
        RESOURCE_DROPPED,
        RESOURCE_SCHEMA_URL,
        SCOPE_NAME,
        SCOPE_VERSION,
        SCOPE_ATTRIBUTES,
        SCOPE_DROPPED,
        SCOPE_SCHEMA_URL,
    ];
    origin.into_iter().chain(own.iter().copied())
}

/// Rows per data page of a logs part (see [`writer_properties`]).
const LOG_PAGE_ROWS: usize = 1024;

/// Rows per data page of a spans part (see [`writer_properties`]).
const SPAN_PAGE_ROWS: usize = 2048;

fn writer_properties(table: Table, rows: usize) -> WriterProperties {
    let key = ColumnPath::from(key_column(table));
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_column_bloom_filter_enabled(key.clone(), true)
        .set_column_bloom_filter_fpp(key.clone(), 0.01)
        .set_column_bloom_filter_max_ndv(key.clone(), rows.clamp(1, ROW_GROUP_ROWS) as u64);
    if !matches!(table, Table::Metrics | Table::Rollups) {
        props = props.set_column_dictionary_enabled(key, false);
    }
    if table == Table::Logs {
        // Bodies are a small share of a record's work: zstd 9 instead of 3 costs about 3% of a
        // core at 34k records/s (1.1M bodies/s on one core) and saves 1.2 B a record (8.1 → 6.9).
        props = props
            .set_column_compression(
                ColumnPath::from(crate::columnar::logs::BODY),
                Compression::ZSTD(ZstdLevel::try_new(9).unwrap_or_default()),
            )
            // A log search reads its hits one by one, each from its own pages: with pages of up
            // to 1 MiB (the default: ~7,000 records), reading 100 rare hits decompressed ~100 MB.
            .set_data_page_row_count_limit(LOG_PAGE_ROWS);
    }
    if table == Table::Spans {
        // A trace lookup reads the pages holding the trace in every column: with parquet's
        // default pages (up to 20,000 rows or 1 MiB) that was ~1.3 MB of attribute values to
        // decompress for a trace of a few spans. 2,048 rows: storebench's lookup p50 1.89 →
        // 0.70 ms at 3M spans, 65.4 → 67.7 B a span on disk.
        props = props.set_data_page_row_count_limit(SPAN_PAGE_ROWS);
    }
    for column in uncompressed_columns(table) {
        props = props.set_column_compression(ColumnPath::from(column), Compression::UNCOMPRESSED);
    }
    for &(column, encoding) in distinct_columns(table) {
        props = props
            .set_column_dictionary_enabled(ColumnPath::from(column), false)
            .set_column_encoding(ColumnPath::from(column), encoding);
    }
    props.build()
}

/// Writes the rows of `batches` as a part at `path`, in the table's order, one row group at a
/// time (the sorted part is never whole in memory): to a temporary name, synced, then renamed,
/// so a part is either whole or absent. Returns the file's size, its rows and its CRC-32.
pub(crate) fn write(path: &Path, table: Table, batches: &[RecordBatch]) -> Result<Written, StorageError> {
    write_rows(path, table, batches, part_order(table, batches)?.as_deref())
}

/// What [`write`] wrote.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    pub bytes: u64,
    pub rows: u64,
    pub crc32: u32,
}

/// A file writer that checksums what goes through it.
struct Checksummed {
    file: File,
    crc: crc32fast::Hasher,
}

impl std::io::Write for Checksummed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The CRC-32 of a whole file.
pub(crate) fn file_crc32(path: &Path) -> std::io::Result<u32> {
    use std::io::Read as _;
    let mut file = File::open(path)?;
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(crc.finalize());
        }
        crc.update(&buf[..n]);
    }
}

/// Writes the rows of `batches` as a part in the given (batch, row) order, or as they are.
pub(crate) fn write_rows(
    path: &Path,
    table: Table,
    batches: &[RecordBatch],
    order: Option<&[(usize, usize)]>,
) -> Result<Written, StorageError> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp).map_err(StorageError::io(format!("creating {}", tmp.display())))?;
    let result = write_file(
        Checksummed {
            file,
            crc: crc32fast::Hasher::new(),
        },
        table,
        batches,
        order,
        rows,
    );
    let (bytes, crc32) = match result {
        Ok(written) => written,
        Err(e) => {
            // Leave no half-written file behind to fill the disk (a restart would remove it too).
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, path).map_err(StorageError::io(format!("publishing {}", path.display())))?;
    Ok(Written {
        bytes,
        rows: rows as u64,
        crc32,
    })
}

fn write_file(
    out: Checksummed,
    table: Table,
    batches: &[RecordBatch],
    order: Option<&[(usize, usize)]>,
    rows: usize,
) -> Result<(u64, u32), StorageError> {
    let schema = table.schema();
    let mut writer = ArrowWriter::try_new(out, schema, Some(writer_properties(table, rows)))?;
    match order {
        Some(order) => {
            let sources: Vec<&RecordBatch> = batches.iter().collect();
            for chunk in order.chunks(ROW_GROUP_ROWS) {
                writer.write(&interleave_record_batch(&sources, chunk)?)?;
            }
        }
        None => {
            for batch in batches {
                writer.write(batch)?;
            }
        }
    }
    finish(writer)
}

/// Writes the rows of the parts at `sources`, one after another in the given order, as one part
/// at `path` (temporary name, synced, renamed, as [`write`] does). Each source is checked against
/// its CRC-32 first, so damage is never copied into a part that would then checksum clean.
///
/// Row groups are copied as they are, compressed column chunks and bloom filters included:
/// nothing is decoded, so a merge costs little more than reading and writing its bytes and holds
/// one column chunk in memory at a time, however large the parts. A row's number in the merged
/// part is its number in its source plus the rows of the sources before it.
///
/// Parts of small row groups (`reencode`) are decoded and written again instead, one row group at
/// a time, so that merging them also merges their row groups.
pub(crate) fn merge(
    path: &Path,
    table: Table,
    sources: &[(PathBuf, Option<u32>)],
    reencode: bool,
) -> Result<Written, MergeError> {
    let general = |error: StorageError| MergeError { source: None, error };
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp).map_err(|e| general(StorageError::io(format!("creating {}", tmp.display()))(e)))?;
    let out = Checksummed {
        file,
        crc: crc32fast::Hasher::new(),
    };
    // Row groups of an older layout cannot be copied next to today's: such a merge decodes.
    let mut reencode = reencode;
    for (i, (source, _)) in sources.iter().enumerate() {
        if !reencode {
            let reader =
                PartReader::open(source, table, None).map_err(|error| MergeError { source: Some(i), error })?;
            reencode = !reader.is_current();
        }
    }
    let merged = if reencode {
        reencode_into(out, table, sources)
    } else {
        merge_into(out, sources)
    };
    match merged {
        Ok((bytes, rows, crc32)) => {
            std::fs::rename(&tmp, path)
                .map_err(|e| general(StorageError::io(format!("publishing {}", path.display()))(e)))?;
            Ok(Written { bytes, rows, crc32 })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// What went wrong merging parts: which source (its index in the list) is at fault, if one is.
#[derive(Debug)]
pub(crate) struct MergeError {
    pub source: Option<usize>,
    pub error: StorageError,
}

fn reencode_into(
    out: Checksummed,
    table: Table,
    sources: &[(PathBuf, Option<u32>)],
) -> Result<(u64, u64, u32), MergeError> {
    let general = |error: StorageError| MergeError { source: None, error };
    let properties = writer_properties(table, ROW_GROUP_ROWS);
    let mut writer = ArrowWriter::try_new(out, table.schema(), Some(properties)).map_err(|e| general(e.into()))?;
    let mut rows = 0u64;
    for (i, (source, crc32)) in sources.iter().enumerate() {
        let at_source = |error: StorageError| MergeError { source: Some(i), error };
        let reader = PartReader::open(source, table, *crc32).map_err(at_source)?;
        for batch in reader.scan_all().map_err(at_source)? {
            let batch = batch.map_err(|e| at_source(e.into()))?;
            rows += batch.num_rows() as u64;
            writer.write(&batch).map_err(|e| general(e.into()))?;
        }
    }
    let (size, crc32) = finish(writer).map_err(general)?;
    Ok((size, rows, crc32))
}

/// Closes a part's writer and syncs its file: its size and CRC-32.
fn finish(writer: ArrowWriter<Checksummed>) -> Result<(u64, u32), StorageError> {
    synced(writer.into_inner()?)
}

/// Flushes and syncs a part's file: its size and CRC-32.
fn synced(mut out: Checksummed) -> Result<(u64, u32), StorageError> {
    out.flush().map_err(StorageError::io("flushing a part"))?;
    out.file.sync_all().map_err(StorageError::io("syncing a part"))?;
    let size = out.file.metadata().map_err(StorageError::io("sizing a part"))?.len();
    Ok((size, out.crc.finalize()))
}

fn merge_into(out: Checksummed, sources: &[(PathBuf, Option<u32>)]) -> Result<(u64, u64, u32), MergeError> {
    let general = |error: StorageError| MergeError { source: None, error };
    let mut writer: Option<SerializedFileWriter<Checksummed>> = None;
    let mut out = Some(out);
    let mut rows = 0u64;
    for (i, (source, crc32)) in sources.iter().enumerate() {
        let at_source = |error: StorageError| MergeError { source: Some(i), error };
        if let Some(expected) = crc32 {
            let found = file_crc32(source)
                .map_err(|e| at_source(StorageError::io(format!("checksumming {}", source.display()))(e)))?;
            if found != *expected {
                return Err(at_source(StorageError::Corrupt(format!(
                    "{}: checksum {found:08x}, the manifest says {expected:08x}",
                    source.display()
                ))));
            }
        }
        let open =
            || File::open(source).map_err(|e| at_source(StorageError::io(format!("opening {}", source.display()))(e)));
        let (file, data) = (open()?, open()?);
        let options = ReadOptionsBuilder::new()
            .with_reader_properties(ReaderProperties::builder().set_read_bloom_filter(true).build())
            .build();
        let reader = SerializedFileReader::new_with_options(file, options).map_err(|e| at_source(e.into()))?;
        let metadata = reader.metadata();
        // The page indexes go along with the pages they describe (their offsets are moved by
        // `append_column`), so lookups in a merged part skip pages as in a flushed one. A part
        // written before they were kept has none: its chunks are copied without.
        let indexed = ArrowReaderMetadata::load(
            &data,
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
        )
        .map_err(|e| at_source(e.into()))?;
        let page_index = indexed.metadata().page_index();
        let schema = metadata.file_metadata().schema_descr();
        let writer = match &mut writer {
            Some(writer) => {
                if schema.root_schema() != writer.schema_descr().root_schema() {
                    return Err(general(StorageError::Corrupt(format!(
                        "{}: its columns differ from the other parts' (written by another version)",
                        source.display()
                    ))));
                }
                writer
            }
            None => {
                // The Arrow schema the parts were written with goes along (it names the Arrow
                // types the Parquet ones stand for).
                let properties = WriterProperties::builder()
                    .set_key_value_metadata(metadata.file_metadata().key_value_metadata().cloned())
                    .build();
                let out = out.take().unwrap_or_else(|| unreachable!("taken once"));
                let created = SerializedFileWriter::new(out, schema.root_schema_ptr(), Arc::new(properties))
                    .map_err(|e| general(e.into()))?;
                writer.insert(created)
            }
        };
        for (g, group) in metadata.row_groups().iter().enumerate() {
            let group_reader = reader.get_row_group(g).map_err(|e| at_source(e.into()))?;
            let mut group_writer = writer.next_row_group().map_err(|e| general(e.into()))?;
            for (c, column) in group.columns().iter().enumerate() {
                let close = ColumnCloseResult {
                    bytes_written: column.compressed_size() as u64,
                    rows_written: group.num_rows() as u64,
                    metadata: column.clone(),
                    bloom_filter: group_reader.get_column_bloom_filter(c).cloned(),
                    column_index: page_index.and_then(|index| index.column_index(g, c)).cloned(),
                    offset_index: page_index.and_then(|index| index.offset_index(g, c)).cloned(),
                };
                group_writer
                    .append_column(&data, close)
                    .map_err(|e| at_source(e.into()))?;
            }
            group_writer.close().map_err(|e| general(e.into()))?;
            rows += group.num_rows() as u64;
        }
    }
    let writer = writer.ok_or_else(|| general(StorageError::Corrupt("a merge of no parts".into())))?;
    let out = writer.into_inner().map_err(|e| general(e.into()))?;
    let (size, crc32) = synced(out).map_err(general)?;
    Ok((size, rows, crc32))
}

/// An open part: its footer, parsed once.
#[derive(Clone)]
pub(crate) struct PartReader {
    path: Arc<Path>,
    metadata: ArrowReaderMetadata,
    /// Written in an older layout: its batches go through [`upgrade`] on the way out.
    legacy: Option<Table>,
    /// The leaf of the table's [`time_column`], if it has one.
    time_leaf: Option<usize>,
}

/// A batch of a part in `legacy` layout, in today's.
fn upgrade(legacy: Option<Table>, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    match legacy {
        Some(Table::Spans) => spans::upgrade(batch),
        Some(Table::Logs) => crate::columnar::logs::upgrade(batch),
        _ => Ok(batch),
    }
}

/// Batches of a part, in today's layout.
fn upgraded(
    legacy: Option<Table>,
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>>,
) -> impl Iterator<Item = Result<RecordBatch, ArrowError>> {
    batches.map(move |batch| upgrade(legacy, batch?))
}

impl PartReader {
    /// Whether the part is in today's layout (merging copies row groups as they are, so a part
    /// in an older one is decoded and written again instead).
    pub(crate) fn is_current(&self) -> bool {
        self.legacy.is_none()
    }

    /// Opens a part of `table`, first checking the whole file against `crc32` when one is known.
    pub(crate) fn open(path: &Path, table: Table, crc32: Option<u32>) -> Result<PartReader, StorageError> {
        if let Some(expected) = crc32 {
            let found = file_crc32(path).map_err(StorageError::io(format!("checksumming {}", path.display())))?;
            if found != expected {
                return Err(StorageError::Corrupt(format!(
                    "{}: checksum {found:08x}, the manifest says {expected:08x}",
                    path.display()
                )));
            }
        }
        let file = File::open(path).map_err(StorageError::io(format!("opening {}", path.display())))?;
        // Page locations of every column (a read of a few rows fetches only their pages) and
        // page statistics of the key and time columns (a lookup skips the pages that cannot hold
        // its key or times): the footer is read once to find those columns, then with both.
        let footer = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())?;
        let schema = footer.metadata().file_metadata().schema_descr();
        let leaf = |name: &str| (0..schema.num_columns()).find(|&i| schema.column(i).path().string() == name);
        let key_leaf = leaf(key_column(table));
        let time_leaf = time_column(table).and_then(leaf);
        let metadata = ArrowReaderMetadata::load(
            &file,
            ArrowReaderOptions::new()
                .with_page_index_policy(PageIndexPolicy::Optional)
                .with_column_index_mask(ColumnChunkMask::columns(key_leaf.into_iter().chain(time_leaf))),
        )?;
        let shape = |fields: &arrow_schema::Fields| -> Vec<(String, arrow_schema::DataType)> {
            fields
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect()
        };
        let legacy = shape(metadata.schema().fields()) != shape(table.schema().fields());
        Ok(PartReader {
            path: path.into(),
            metadata,
            legacy: legacy.then_some(table),
            time_leaf,
        })
    }

    fn builder(&self) -> Result<ParquetRecordBatchReaderBuilder<File>, StorageError> {
        let file = File::open(&self.path).map_err(StorageError::io(format!("opening {}", self.path.display())))?;
        Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(
            file,
            self.metadata.clone(),
        ))
    }

    fn leaf_index(&self, name: &str) -> Result<usize, StorageError> {
        let schema = self.metadata.metadata().file_metadata().schema_descr();
        (0..schema.num_columns())
            .find(|&i| schema.column(i).path().string() == name)
            .ok_or_else(|| StorageError::Corrupt(format!("{}: no column {name}", self.path.display())))
    }

    /// The rows whose `column` equals `value` (a fixed-size id or a string), pruned by row-group
    /// statistics and bloom filters before anything is decoded.
    pub(crate) fn rows_equal(&self, column: &str, value: &[u8]) -> Result<Vec<RecordBatch>, StorageError> {
        Ok(self
            .rows_equal_iter(column, value, &TimeRange::ALL, &[])?
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// [`Self::rows_equal`], a row group at a time, without the (top-level) columns named in
    /// `without`; for a table with a [`time_column`], only the rows whose time is in `times` (row
    /// groups and pages pruned by its statistics too).
    pub(crate) fn rows_equal_iter(
        &self,
        column: &str,
        value: &[u8],
        times: &TimeRange,
        without: &[&str],
    ) -> Result<Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>, StorageError> {
        let leaf = self.leaf_index(column)?;
        let time_leaf = self.time_leaf.filter(|_| *times != TimeRange::ALL);
        let builder = self.builder()?;
        let (groups, selection) = self.plan(&builder, leaf, value, time_leaf.map(|t| (t, times)))?;
        if groups.is_empty() || selection.as_ref().is_some_and(|s| !s.selects_any()) {
            return Ok(Box::new(std::iter::empty()));
        }
        let wanted = value.to_vec();
        let mask = ProjectionMask::leaves(builder.parquet_schema(), [leaf]);
        let mut predicates: Vec<Box<dyn ArrowPredicate>> =
            vec![Box::new(ArrowPredicateFn::new(mask, move |batch: RecordBatch| {
                equal_mask(batch.column(0), &wanted)
            }))];
        if let Some(t) = time_leaf {
            let mask = ProjectionMask::leaves(builder.parquet_schema(), [t]);
            let times = *times;
            predicates.push(Box::new(ArrowPredicateFn::new(mask, move |batch: RecordBatch| {
                let column = batch.column(0);
                let found = column
                    .as_any()
                    .downcast_ref::<UInt64Array>()
                    .ok_or_else(|| ArrowError::SchemaError(format!("time column is {}", column.data_type())))?;
                Ok(found
                    .iter()
                    .map(|t| Some(t.is_some_and(|t| times.contains(t))))
                    .collect())
            })));
        }
        let mut builder = builder
            .with_row_groups(groups)
            .with_row_filter(RowFilter::new(predicates));
        if !without.is_empty() {
            let fields = builder.schema().fields();
            let roots = (0..fields.len()).filter(|&i| !without.contains(&fields[i].name().as_str()));
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            builder = builder.with_projection(mask);
        }
        if let Some(selection) = selection {
            builder = builder.with_row_selection(selection);
        }
        Ok(Box::new(upgraded(self.legacy, builder.build()?)))
    }

    /// What a lookup of `value` in column `leaf` (with `times`: whose time, in that leaf, is in
    /// the range) reads: the row groups whose statistics and bloom filter admit it, and of
    /// those (where pages are indexed) the rows of the pages whose statistics admit it.
    fn plan(
        &self,
        builder: &ParquetRecordBatchReaderBuilder<File>,
        leaf: usize,
        value: &[u8],
        times: Option<(usize, &TimeRange)>,
    ) -> Result<(Vec<usize>, Option<RowSelection>), StorageError> {
        // Unsigned times are stored as INT64 bits.
        let time_bounds = |stats: Option<&parquet::file::statistics::Statistics>| {
            let bound = |bytes: Option<&[u8]>| Some(u64::from_le_bytes(bytes?.try_into().ok()?));
            let stats = stats?;
            Some((bound(stats.min_bytes_opt())?, bound(stats.max_bytes_opt())?))
        };
        let mut groups = Vec::new();
        for (i, group) in self.metadata.metadata().row_groups().iter().enumerate() {
            if let Some(stats) = group.column(leaf).statistics() {
                if let (Some(min), Some(max)) = (stats.min_bytes_opt(), stats.max_bytes_opt()) {
                    if value < min || value > max {
                        continue;
                    }
                }
            }
            if let Some((t, times)) = times {
                if time_bounds(group.column(t).statistics()).is_some_and(|(min, max)| !times.overlaps(min, max)) {
                    continue;
                }
            }
            if let Some(bloom) = builder.get_row_group_column_bloom_filter(i, leaf)? {
                if !bloom.check(value) {
                    continue;
                }
            }
            groups.push(i);
        }
        let keys = self.pages_admitting(leaf, &groups, |pages, p| match pages {
            ColumnIndexMetaData::FIXED_LEN_BYTE_ARRAY(pages) | ColumnIndexMetaData::BYTE_ARRAY(pages) => {
                // A page of nulls only (no min and max) holds no key.
                Some(matches!(
                    (pages.min_value(p), pages.max_value(p)),
                    (Some(min), Some(max)) if min <= value && value <= max
                ))
            }
            _ => None,
        });
        let in_time = times.and_then(|(t, times)| {
            self.pages_admitting(t, &groups, |pages, p| match pages {
                ColumnIndexMetaData::INT64(pages) => Some(matches!(
                    (pages.min_value(p), pages.max_value(p)),
                    (Some(&min), Some(&max)) if times.overlaps(min as u64, max as u64)
                )),
                _ => None,
            })
        });
        let selection = match (keys, in_time) {
            (Some(keys), Some(in_time)) => Some(keys.intersection(&in_time)),
            (keys, in_time) => keys.or(in_time),
        };
        Ok((groups, selection))
    }

    /// The rows of `groups` (in order) on the pages of column `leaf` that `admits` (given the
    /// column's page statistics and a page number; `None` if it cannot tell); `None` if a
    /// group's pages are not indexed (older merged parts) or `admits` cannot tell. Parts sorted
    /// by their key (spans, exemplars, metrics) so read a page or two of each column per lookup
    /// instead of the whole row group.
    fn pages_admitting(
        &self,
        leaf: usize,
        groups: &[usize],
        admits: impl Fn(&ColumnIndexMetaData, usize) -> Option<bool>,
    ) -> Option<RowSelection> {
        let metadata = self.metadata.metadata();
        let index = metadata.page_index()?;
        let mut selectors = Vec::new();
        for &g in groups {
            let rows = usize::try_from(metadata.row_group(g).num_rows()).ok()?;
            let pages = index.column_index(g, leaf)?;
            let locations = index.offset_index(g, leaf)?.page_locations();
            if pages.num_pages() != locations.len() as u64 {
                return None;
            }
            for (p, location) in locations.iter().enumerate() {
                let start = usize::try_from(location.first_row_index).ok()?;
                let end = match locations.get(p + 1) {
                    Some(next) => usize::try_from(next.first_row_index).ok()?,
                    None => rows,
                };
                selectors.push(if admits(pages, p)? {
                    RowSelector::select(end - start)
                } else {
                    RowSelector::skip(end - start)
                });
            }
        }
        Some(RowSelection::from(selectors))
    }

    /// The rows at the given (sorted, distinct) row numbers: only the row groups holding them
    /// are read, and of those only the pages holding them (where the part has page locations).
    pub(crate) fn rows_at(&self, rows: &[usize]) -> Result<Vec<RecordBatch>, StorageError> {
        let (mut groups, mut ranges) = (Vec::new(), Vec::new());
        // The part's first row of group `g`, and the rows of the groups read so far.
        let (mut first, mut read) = (0usize, 0usize);
        let mut rest = rows;
        for (g, group) in self.metadata.metadata().row_groups().iter().enumerate() {
            let len = usize::try_from(group.num_rows()).unwrap_or(0);
            let inside = rest.partition_point(|&r| r < first + len);
            if inside > 0 {
                groups.push(g);
                ranges.extend(rest[..inside].iter().map(|&r| {
                    let at = read + r - first;
                    at..at + 1
                }));
                rest = &rest[inside..];
                read += len;
            }
            first += len;
        }
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let selection = RowSelection::from_consecutive_ranges(ranges.into_iter(), read);
        let reader = self
            .builder()?
            .with_row_groups(groups)
            .with_row_selection(selection)
            .build()?;
        Ok(upgraded(self.legacy, reader).collect::<Result<Vec<_>, _>>()?)
    }

    /// Every row with every column.
    pub(crate) fn scan_all(&self) -> Result<impl Iterator<Item = Result<RecordBatch, ArrowError>>, StorageError> {
        Ok(upgraded(self.legacy, self.builder()?.build()?))
    }

    /// Every row, with only the named columns.
    #[cfg(test)]
    pub(crate) fn scan(
        &self,
        columns: &[&str],
    ) -> Result<impl Iterator<Item = Result<RecordBatch, ArrowError>>, StorageError> {
        let builder = self.builder()?;
        let arrow_schema = builder.schema().clone();
        // A part of an older layout may hold a column of today's under another name.
        let legacy_name = |name: &&str| match (self.legacy, *name) {
            (Some(Table::Spans), spans::ATTRIBUTE_KEYS | spans::ATTRIBUTE_VALUES) => Some(spans::ATTRIBUTES),
            _ => None,
        };
        let roots = columns
            .iter()
            .flat_map(|name| [Some(*name), legacy_name(name)])
            .flatten()
            .filter_map(|name| arrow_schema.index_of(name).ok())
            .collect::<Vec<_>>();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        Ok(upgraded(self.legacy, builder.with_projection(mask).build()?))
    }
}

/// `column == value`, for the id (fixed-size binary) and string key columns.
pub(crate) fn equal_mask(column: &dyn Array, value: &[u8]) -> Result<BooleanArray, ArrowError> {
    if let Some(ids) = column.as_any().downcast_ref::<FixedSizeBinaryArray>() {
        return Ok((0..ids.len())
            .map(|i| Some(ids.is_valid(i) && ids.value(i) == value))
            .collect());
    }
    if let Some(strings) = column.as_any().downcast_ref::<StringArray>() {
        return Ok((0..strings.len())
            .map(|i| Some(strings.is_valid(i) && strings.value(i).as_bytes() == value))
            .collect());
    }
    Err(ArrowError::SchemaError(
        "key column is neither an id nor a string".into(),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use arrow_array::{ArrayRef, BinaryArray, UInt64Array};
    use arrow_schema::{DataType, Field, Schema};
    use sift_proto::json::fragment;
    use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
    use sift_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
    use sift_proto::otlp::resource::v1::Resource;
    use sift_proto::otlp::trace::v1::span::{Event, Link};
    use sift_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn attribute(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn span_batch() -> RecordBatch {
        let spans = (0..40u8)
            .map(|i| Span {
                trace_id: vec![i % 7; 16],
                span_id: vec![i + 1; 8],
                name: format!("op {i}"),
                start_time_unix_nano: 1_000 + u64::from(i),
                end_time_unix_nano: 5_000 + u64::from(i) * 3,
                attributes: vec![
                    attribute("order.id", any_value::Value::IntValue(i64::from(i) * 1_000)),
                    attribute("http.route", any_value::Value::StringValue(format!("/r/{i}"))),
                ],
                events: (i % 3 == 0)
                    .then(|| Event {
                        name: "exception".into(),
                        time_unix_nano: 2_000,
                        attributes: vec![attribute("exception.type", any_value::Value::StringValue("E".into()))],
                        ..Default::default()
                    })
                    .into_iter()
                    .collect(),
                links: (i % 5 == 0)
                    .then(|| Link {
                        trace_id: vec![9; 16],
                        span_id: vec![9; 8],
                        ..Default::default()
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            })
            .collect();
        let resource = Resource {
            attributes: vec![attribute("service.name", any_value::Value::StringValue("cart".into()))],
            ..Default::default()
        };
        batch_of(spans, Some(resource))
    }

    /// The head batch of `spans` under `resource`.
    fn batch_of(spans: Vec<Span>, resource: Option<Resource>) -> RecordBatch {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource,
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut builder = spans::SpanBuilder::default();
        spans::for_each(&request, |origin, span| builder.append(origin, span));
        builder.finish()
    }

    /// `batch` in a span layout of earlier versions: attributes in one column, as protobuf or (the
    /// first layout) as OTLP/JSON text with events and links and a `duration_ns` column after
    /// the end time.
    fn legacy(batch: &RecordBatch, first: bool) -> RecordBatch {
        let rows = spans::rows(batch).unwrap();
        let json = |write: &dyn Fn(&Span, &mut String)| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(rows.iter().map(|row| {
                let mut text = String::new();
                write(&row.span, &mut text);
                text
            })))
        };
        let (mut fields, mut columns) = (Vec::new(), Vec::new());
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            let name = field.name().as_str();
            let replaced = match name {
                spans::ATTRIBUTE_VALUES => continue,
                spans::ATTRIBUTE_KEYS if first => Some((
                    spans::ATTRIBUTES,
                    json(&|s, out| fragment::write_attributes(&s.attributes, out)),
                )),
                spans::ATTRIBUTE_KEYS => {
                    let protobuf = rows.iter().map(|row| {
                        let mut bytes = Vec::new();
                        crate::columnar::encode_list(&row.span.attributes, &mut bytes);
                        bytes
                    });
                    Some((
                        spans::ATTRIBUTES,
                        Arc::new(BinaryArray::from_iter_values(protobuf)) as ArrayRef,
                    ))
                }
                spans::EVENTS if first => Some((name, json(&|s, out| fragment::write_events(&s.events, out)))),
                spans::LINKS if first => Some((name, json(&|s, out| fragment::write_links(&s.links, out)))),
                _ => None,
            };
            match replaced {
                Some((name, column)) => {
                    fields.push(Field::new(name, column.data_type().clone(), false));
                    columns.push(column);
                }
                None => {
                    fields.push(field.as_ref().clone());
                    columns.push(column.clone());
                }
            }
            if name == spans::END && first {
                let durations = rows
                    .iter()
                    .map(|r| r.span.end_time_unix_nano - r.span.start_time_unix_nano);
                fields.push(Field::new("duration_ns", DataType::UInt64, false));
                columns.push(Arc::new(UInt64Array::from_iter_values(durations)));
            }
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    fn read_all(reader: &PartReader) -> Vec<spans::SpanRow> {
        let mut rows = Vec::new();
        for batch in reader.scan_all().unwrap() {
            rows.extend(spans::rows(&batch.unwrap()).unwrap());
        }
        rows.sort_by(|a, b| a.span.span_id.cmp(&b.span.span_id));
        rows
    }

    /// `traces` traces of `per_trace` spans each, trace ids from `first` on.
    fn many_spans(first: u32, traces: u32, per_trace: u32) -> RecordBatch {
        let spans = (first..first + traces)
            .flat_map(|t| {
                (0..per_trace).map(move |i| {
                    let mut trace_id = vec![0; 16];
                    trace_id[12..].copy_from_slice(&t.to_be_bytes());
                    Span {
                        trace_id,
                        span_id: [t.to_be_bytes(), i.to_be_bytes()].concat(),
                        name: format!("op {i}"),
                        start_time_unix_nano: 1_000 + u64::from(i),
                        end_time_unix_nano: 5_000 + u64::from(i),
                        ..Default::default()
                    }
                })
            })
            .collect();
        batch_of(spans, None)
    }

    fn trace_key(t: u32) -> Vec<u8> {
        let mut key = vec![0; 16];
        key[12..].copy_from_slice(&t.to_be_bytes());
        key
    }

    #[test]
    fn lookups_read_only_the_pages_that_can_hold_the_key_in_flushed_and_merged_parts() {
        // Parts of 4,000 traces of 40 spans: 160k rows, three row groups of pages of ~2k rows.
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        write(&a, Table::Spans, &[many_spans(0, 4_000, 40)]).unwrap();
        write(&b, Table::Spans, &[many_spans(4_000, 4_000, 40)]).unwrap();
        let merged = dir.path().join("merged.parquet");
        merge(&merged, Table::Spans, &[(a.clone(), None), (b.clone(), None)], false).unwrap();
        for path in [&a, &merged] {
            let reader = PartReader::open(path, Table::Spans, None).unwrap();
            let leaf = reader.leaf_index(spans::TRACE_ID).unwrap();
            let groups: Vec<usize> = (0..reader.metadata.metadata().num_row_groups()).collect();
            let total: usize = groups
                .iter()
                .map(|&g| reader.metadata.metadata().row_group(g).num_rows() as usize)
                .sum();
            for t in [0, 1_777, 3_999] {
                let builder = reader.builder().unwrap();
                let (_, selection) = reader.plan(&builder, leaf, &trace_key(t), None).unwrap();
                let selection = selection.unwrap_or_else(|| panic!("{}: no page index", path.display()));
                let selected = selection.row_count();
                // The page holding the trace, or the two it straddles (a page ends at the first
                // write batch of 1,024 rows that reaches the limit).
                assert!(
                    (40..=2 * (SPAN_PAGE_ROWS + 1_024)).contains(&selected) && selected * 3 < total,
                    "{}: {selected} of {total}",
                    path.display()
                );
                let found: usize = reader
                    .rows_equal(spans::TRACE_ID, &trace_key(t))
                    .unwrap()
                    .iter()
                    .map(|b| spans::rows(b).unwrap().len())
                    .sum();
                assert_eq!(found, 40, "{}: trace {t}", path.display());
            }
            // A key between two pages' ranges, or outside all of them, selects nothing.
            let builder = reader.builder().unwrap();
            let (groups, absent) = reader.plan(&builder, leaf, &[0xff; 16], None).unwrap();
            assert!(groups.is_empty() || !absent.unwrap().selects_any());
            assert!(reader.rows_equal(spans::TRACE_ID, &[0xff; 16]).unwrap().is_empty());
        }
        // The merged part still has every trace of both sources.
        let reader = PartReader::open(&merged, Table::Spans, None).unwrap();
        for t in [0, 4_000, 7_999] {
            let rows: usize = reader
                .rows_equal(spans::TRACE_ID, &trace_key(t))
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum();
            assert_eq!(rows, 40, "trace {t}");
        }
    }

    #[test]
    fn small_columns_are_written_uncompressed_and_parts_of_either_kind_merge_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.parquet");
        write(&new, Table::Spans, &[many_spans(0, 50, 4)]).unwrap();
        let plain: BTreeSet<&str> = uncompressed_columns(Table::Spans).collect();
        let reader = PartReader::open(&new, Table::Spans, None).unwrap();
        let group = reader.metadata.metadata().row_group(0);
        let mut seen = BTreeSet::new();
        for column in group.columns() {
            let name = column.column_path().string();
            // (A file does not record zstd's level.)
            let compressed = matches!(column.compression(), Compression::ZSTD(_));
            assert_eq!(
                !compressed,
                plain.contains(name.as_str()),
                "{name}: {:?}",
                column.compression()
            );
            seen.insert(name);
        }
        // Every name listed is a column of the table (a misspelt one would be ignored).
        for table in [Table::Spans, Table::Logs] {
            let columns: BTreeSet<String> = table.schema().fields().iter().map(|f| f.name().clone()).collect();
            for name in uncompressed_columns(table) {
                assert!(columns.contains(name), "{table:?}: no column {name}");
            }
        }
        assert!(plain.iter().all(|name| seen.contains(*name)));
        // A part written before, every column compressed, merges with one written now.
        let old = dir.path().join("old.parquet");
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
            .build();
        let mut writer = ArrowWriter::try_new(File::create(&old).unwrap(), Table::Spans.schema(), Some(props)).unwrap();
        writer.write(&many_spans(50, 50, 4)).unwrap();
        writer.close().unwrap();
        for reencode in [false, true] {
            let merged = dir.path().join(format!("merged-{reencode}.parquet"));
            merge(
                &merged,
                Table::Spans,
                &[(old.clone(), None), (new.clone(), None)],
                reencode,
            )
            .unwrap();
            let rows = read_all(&PartReader::open(&merged, Table::Spans, None).unwrap());
            let expected = {
                let mut rows = spans::rows(&many_spans(0, 100, 4)).unwrap();
                rows.sort_by(|a, b| a.span.span_id.cmp(&b.span.span_id));
                rows
            };
            assert_eq!(rows, expected, "reencode: {reencode}");
        }
    }

    /// Gauge points of `names`, `series` series each, one a second for `seconds` from `from`.
    fn metric_points(names: &[&str], series: i64, from: u64, seconds: u64) -> RecordBatch {
        use sift_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
        use sift_proto::otlp::metrics::v1::{metric, number_data_point, Gauge, Metric, NumberDataPoint};
        use sift_proto::otlp::metrics::v1::{ResourceMetrics, ScopeMetrics};
        let metric = |name: &str| Metric {
            name: name.into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: (0..series)
                    .flat_map(|s| {
                        (0..seconds).map(move |t| NumberDataPoint {
                            attributes: vec![attribute("s", any_value::Value::IntValue(s))],
                            time_unix_nano: (from + t) * 1_000_000_000,
                            value: Some(number_data_point::Value::AsDouble(t as f64)),
                            ..Default::default()
                        })
                    })
                    .collect(),
            })),
            ..Default::default()
        };
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: names.iter().map(|name| metric(name)).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut builder = metrics::MetricBuilder::default();
        metrics::for_each(&request, |point| point.append_to(&mut builder));
        builder.finish()
    }

    #[test]
    fn metric_lookups_in_a_time_range_read_only_the_row_groups_of_that_time() {
        // Six flushes of ten minutes (two names, 20 series, a point a second: 24k rows each),
        // merged as compaction does: row groups copied (six, one a flush), or rewritten into
        // larger ones (three of 64k rows, as metrics parts are: each still covers a stretch of
        // time, the flushes' rows following one another).
        let dir = tempfile::tempdir().unwrap();
        let mut sources = Vec::new();
        for f in 0..6u64 {
            let path = dir.path().join(format!("{f}.parquet"));
            write(&path, Table::Metrics, &[metric_points(&["a", "b"], 20, f * 600, 600)]).unwrap();
            sources.push((path, None));
        }
        for reencode in [false, true] {
            let merged = dir.path().join(format!("merged-{reencode}.parquet"));
            merge(&merged, Table::Metrics, &sources, reencode).unwrap();
            let reader = PartReader::open(&merged, Table::Metrics, None).unwrap();
            let total = reader.metadata.metadata().num_row_groups();
            assert_eq!(total, if reencode { 3 } else { 6 });
            let leaf = reader.leaf_index(metrics::NAME).unwrap();
            let time_leaf = reader.time_leaf.unwrap();
            let builder = reader.builder().unwrap();
            let second = |s: u64| s * 1_000_000_000;
            for (start, end) in [
                (1_500, 1_560),
                (0, 1),
                (3_599, 3_600),
                (590, 610),
                (0, 3_600),
                (3_600, 4_000),
            ] {
                let times = TimeRange {
                    start: Some(second(start)),
                    end: Some(second(end)),
                };
                let mut found = Vec::new();
                for batch in reader.rows_equal_iter(metrics::NAME, b"a", &times, &[]).unwrap() {
                    let batch = batch.unwrap();
                    let names = crate::columnar::column::<StringArray>(&batch, metrics::NAME).unwrap();
                    let at = crate::columnar::column::<UInt64Array>(&batch, metrics::TIME).unwrap();
                    found.extend((0..batch.num_rows()).map(|i| (names.value(i).to_owned(), at.value(i))));
                }
                let expected = 20 * (end.min(3_600) - start) as usize;
                assert_eq!(found.len(), expected, "{start}..{end}");
                assert!(found.iter().all(|(name, at)| name == "a" && times.contains(*at)));
                // Only the row groups holding those times are read.
                let (groups, _) = reader.plan(&builder, leaf, b"a", Some((time_leaf, &times))).unwrap();
                let flushes = || (start / 600..end.min(3_600).div_ceil(600)).map(|f| f as usize);
                if !reencode {
                    assert_eq!(groups, flushes().collect::<Vec<_>>(), "{start}..{end}");
                } else if end - start <= 60 {
                    assert!(groups.len() < total, "{start}..{end}: {groups:?}");
                }
            }
            // Without a range, every point of the name.
            let all: usize = reader
                .rows_equal_iter(metrics::NAME, b"b", &TimeRange::ALL, &[metrics::EXEMPLARS])
                .unwrap()
                .map(|batch| {
                    let batch = batch.unwrap();
                    assert!(batch.schema().column_with_name(metrics::EXEMPLARS).is_none());
                    batch.num_rows()
                })
                .sum();
            assert_eq!(all, 20 * 3_600);
        }
    }

    #[test]
    fn rows_at_reads_the_rows_named_across_row_groups_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        write(&path, Table::Spans, &[many_spans(0, 4_000, 40)]).unwrap();
        let reader = PartReader::open(&path, Table::Spans, None).unwrap();
        let all: Vec<spans::SpanRow> = reader
            .scan_all()
            .unwrap()
            .flat_map(|b| spans::rows(&b.unwrap()).unwrap())
            .collect();
        let wanted = [0usize, 1, 65_535, 65_536, 70_000, 131_072, 159_999];
        let got: Vec<spans::SpanRow> = reader
            .rows_at(&wanted)
            .unwrap()
            .iter()
            .flat_map(|b| spans::rows(b).unwrap())
            .collect();
        let expected: Vec<spans::SpanRow> = wanted.iter().map(|&r| all[r].clone()).collect();
        assert_eq!(got, expected);
        // Rows past the end are not there to read.
        assert_eq!(reader.rows_at(&[160_000]).unwrap().len(), 0);
        assert!(reader.rows_at(&[]).unwrap().is_empty());
    }

    #[test]
    fn span_parts_of_the_json_layout_read_look_up_and_merge_as_todays() {
        span_parts_of_an_earlier_layout_read_look_up_and_merge_as_todays(true);
    }

    #[test]
    fn span_parts_with_attributes_in_one_protobuf_column_read_look_up_and_merge_as_todays() {
        span_parts_of_an_earlier_layout_read_look_up_and_merge_as_todays(false);
    }

    fn span_parts_of_an_earlier_layout_read_look_up_and_merge_as_todays(first: bool) {
        let dir = tempfile::tempdir().unwrap();
        let batch = span_batch();
        let mut expected = spans::rows(&batch).unwrap();
        expected.sort_by(|a, b| a.span.span_id.cmp(&b.span.span_id));

        let old = dir.path().join("old.parquet");
        let old_batch = legacy(&batch, first);
        let mut writer = ArrowWriter::try_new(File::create(&old).unwrap(), old_batch.schema(), None).unwrap();
        writer.write(&old_batch).unwrap();
        writer.close().unwrap();
        let new = dir.path().join("new.parquet");
        write(&new, Table::Spans, std::slice::from_ref(&batch)).unwrap();

        let reader = PartReader::open(&old, Table::Spans, None).unwrap();
        assert!(!reader.is_current());
        assert!(PartReader::open(&new, Table::Spans, None).unwrap().is_current());
        assert_eq!(read_all(&reader), expected);
        let found: usize = reader
            .rows_equal(spans::TRACE_ID, &[3; 16])
            .unwrap()
            .iter()
            .map(|b| spans::rows(b).unwrap().len())
            .sum();
        assert_eq!(found, expected.iter().filter(|r| r.span.trace_id == [3; 16]).count());

        // A projection names today's columns; the old part answers with them.
        let projected: Vec<RecordBatch> = PartReader::open(&old, Table::Spans, None)
            .unwrap()
            .scan(&[spans::TRACE_ID, spans::ATTRIBUTE_KEYS, spans::ATTRIBUTE_VALUES])
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let attributes: Vec<_> = projected
            .iter()
            .flat_map(|b| {
                let keys: &BinaryArray = crate::columnar::column(b, spans::ATTRIBUTE_KEYS).unwrap();
                let values: &BinaryArray = crate::columnar::column(b, spans::ATTRIBUTE_VALUES).unwrap();
                (0..b.num_rows())
                    .map(|r| crate::columnar::decode_attributes(keys.value(r), values.value(r)).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        let stored: Vec<_> = spans::rows(&batch)
            .unwrap()
            .into_iter()
            .map(|r| r.span.attributes)
            .collect();
        assert_eq!(attributes, stored);

        // Old and new parts merge (the old one is decoded, not copied) into one of today's layout.
        let merged = dir.path().join("merged.parquet");
        let written = merge(&merged, Table::Spans, &[(old, None), (new, None)], false).unwrap();
        assert_eq!(written.rows, 2 * expected.len() as u64);
        let reader = PartReader::open(&merged, Table::Spans, Some(written.crc32)).unwrap();
        assert!(reader.is_current());
        let twice: Vec<_> = expected.iter().flat_map(|r| [r.clone(), r.clone()]).collect();
        assert_eq!(read_all(&reader), twice);
    }

    #[test]
    fn log_parts_with_the_absolute_observed_time_read_and_merge_as_todays() {
        use crate::columnar::logs;
        use sift_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
        use sift_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<LogRecord> = (0..30u64)
            .map(|i| LogRecord {
                // Unset times, observed times before and after the time, and equal ones.
                time_unix_nano: if i % 4 == 0 { 0 } else { 1_000_000 + i },
                observed_time_unix_nano: match i % 3 {
                    0 => 1_000_000 + i,
                    1 => 999_000,
                    _ => u64::MAX - i,
                },
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(format!("record {i}"))),
                }),
                ..Default::default()
            })
            .collect();
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut builder = logs::LogBuilder::default();
        logs::for_each(&request, |origin, log| builder.append(origin, log));
        let batch = builder.finish();
        let expected = logs::rows(&batch).unwrap();

        // The earlier layout: the observed time itself, in the delta's place.
        let (mut fields, mut columns) = (Vec::new(), Vec::new());
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            if field.name() == logs::OBSERVED_DELTA {
                fields.push(Field::new("observed_time_unix_nano", DataType::UInt64, false));
                let observed = expected.iter().map(|r| r.log.observed_time_unix_nano);
                columns.push(Arc::new(UInt64Array::from_iter_values(observed)) as ArrayRef);
            } else {
                fields.push(field.as_ref().clone());
                columns.push(column.clone());
            }
        }
        let old_batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let old = dir.path().join("old.parquet");
        let mut writer = ArrowWriter::try_new(File::create(&old).unwrap(), old_batch.schema(), None).unwrap();
        writer.write(&old_batch).unwrap();
        writer.close().unwrap();
        let new = dir.path().join("new.parquet");
        write(&new, Table::Logs, std::slice::from_ref(&batch)).unwrap();

        let read = |path: &Path| -> Vec<logs::LogRow> {
            let reader = PartReader::open(path, Table::Logs, None).unwrap();
            reader
                .scan_all()
                .unwrap()
                .flat_map(|b| logs::rows(&b.unwrap()).unwrap())
                .collect()
        };
        assert!(!PartReader::open(&old, Table::Logs, None).unwrap().is_current());
        assert_eq!(read(&old), expected);
        assert_eq!(read(&new), expected);
        let merged = dir.path().join("merged.parquet");
        merge(&merged, Table::Logs, &[(old, None), (new, None)], false).unwrap();
        assert!(PartReader::open(&merged, Table::Logs, None).unwrap().is_current());
        let twice: Vec<_> = expected.iter().chain(&expected).cloned().collect();
        assert_eq!(read(&merged), twice);
    }
}
