//! Sift's store: what the pipelines' storage exporters keep — columnar parts (Arrow in memory,
//! Parquet on disk), full-text indexes, retention — behind the [`Store`] read trait. The
//! write-ahead log in front of it is its own crate, `sift-wal` (`storage/wal/`).
#![warn(missing_docs)]

pub mod columnar;
pub mod rollup;
mod store;

pub use columnar::exemplars::ExemplarRow;
pub use columnar::logs::LogRow;
pub use columnar::metrics::{MetricRow, MetricType};
pub use columnar::spans::SpanRow;
pub use columnar::{Origin, Table};
pub use store::fulltext::{json_object, json_value, LogSearch, MergeStats};
pub use store::manifest::ServiceRows;
pub use store::{
    point_time, LocalStore, MemoryBudget, MemoryUse, RetentionReport, StoreLayout, StoreOptions, TickReport,
};

#[cfg(test)]
mod tests {
    use super::StorageError;

    #[test]
    fn only_bad_contents_count_as_damage() {
        let io = |kind: std::io::ErrorKind| StorageError::io("reading a part")(std::io::Error::from(kind));
        assert!(StorageError::Corrupt("checksum".into()).is_damage());
        assert!(io(std::io::ErrorKind::UnexpectedEof).is_damage());
        assert!(io(std::io::ErrorKind::NotFound).is_damage());
        // Out of file handles or memory, interrupted: the file may be fine.
        assert!(!StorageError::io("opening")(std::io::Error::from_raw_os_error(libc::EMFILE)).is_damage());
        assert!(!io(std::io::ErrorKind::OutOfMemory).is_damage());
        assert!(!io(std::io::ErrorKind::Interrupted).is_damage());
    }
}

/// A half-open time range `[start, end)` in Unix nanoseconds; `None` is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// Inclusive lower bound.
    pub start: Option<u64>,
    /// Exclusive upper bound.
    pub end: Option<u64>,
}

impl TimeRange {
    /// Every time.
    pub const ALL: TimeRange = TimeRange { start: None, end: None };

    /// Whether `time` is in the range.
    pub fn contains(&self, time: u64) -> bool {
        self.start.is_none_or(|s| time >= s) && self.end.is_none_or(|e| time < e)
    }

    /// Whether `[min, max]` (inclusive) intersects the range.
    pub fn overlaps(&self, min: u64, max: u64) -> bool {
        self.start.is_none_or(|s| max >= s) && self.end.is_none_or(|e| min < e)
    }
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// Parquet could not read or write a part.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Arrow could not build or convert a batch.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// The full-text index failed.
    #[error("full-text index: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// A query is invalid (the caller's mistake: HTTP 400).
    #[error("{0}")]
    BadQuery(String),
    /// Stored data is not what Sift wrote.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The store takes no more rows until a flush succeeds: its head holds its share of the
    /// memory limit. Retryable; the rows wait in the WAL.
    #[error("store behind: {0}")]
    Behind(String),
}

impl StorageError {
    /// Whether the error says a stored file's contents are bad (it does not parse, fails its
    /// checksum, is cut short or missing), as opposed to a passing failure such as running out of
    /// file handles. Only the former quarantines a part.
    pub(crate) fn is_damage(&self) -> bool {
        match self {
            StorageError::Parquet(_) | StorageError::Arrow(_) | StorageError::Corrupt(_) => true,
            StorageError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::NotFound
            ),
            StorageError::Index(_) | StorageError::BadQuery(_) | StorageError::Behind(_) => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
        let context = context.into();
        move |source| StorageError::Io { context, source }
    }
}

/// A trace search (SPEC §4): span-level filters (one span must match all of them), whole-trace
/// duration filters and a time range for the trace's start, answered from the span index's
/// per-trace summaries.
#[derive(Debug, Clone, Default)]
pub struct TraceFilter {
    /// Full-text query over spans (names, status messages, event names, span and event attribute
    /// values; `status:error`, `service:x`), evaluated per trace: its spans together must match.
    pub query: Option<String>,
    /// The span's `service.name`.
    pub service: Option<String>,
    /// The span's name.
    pub name: Option<String>,
    /// The span's status code (0 unset, 1 ok, 2 error).
    pub status: Option<i32>,
    /// `key = value` on the span's or its resource's attributes (values compared as text).
    pub attributes: Vec<(String, String)>,
    /// The trace lasts at least this long (ns): its latest span end minus its earliest start.
    pub min_duration: Option<u64>,
    /// The trace lasts at most this long (ns).
    pub max_duration: Option<u64>,
    /// The trace's start (its earliest span's).
    pub range: TimeRange,
    /// Traces wanted: the `limit` newest (by start) that pass every filter.
    pub limit: usize,
    /// Give up after this long (the answer is then partial); `None`: never.
    pub time_budget: Option<std::time::Duration>,
}

/// A trace as a search finds it (SPEC §4's summary).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceSummary {
    /// The trace id.
    pub trace_id: [u8; 16],
    /// Service of the root span (the earliest span without a parent; else the earliest span).
    pub root_service: String,
    /// Name of the root span.
    pub root_name: String,
    /// Earliest span start (ns).
    pub start: u64,
    /// Latest span end minus earliest start (ns).
    pub duration: u64,
    /// Stored spans.
    pub span_count: u64,
    /// Stored spans with status error.
    pub error_count: u64,
    /// Services of its spans, sorted.
    pub services: Vec<String>,
}

/// Traces found by a search, newest first (by start).
#[derive(Debug, Clone, Default)]
pub struct TraceHits {
    /// The traces.
    pub traces: Vec<TraceSummary>,
    /// Not every stored trace could be considered (an index is being rebuilt, or the time budget
    /// ran out).
    pub partial: bool,
}

/// A service seen in stored spans or logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// `service.name`.
    pub name: String,
    /// Stored spans.
    pub span_count: u64,
    /// Stored log records.
    pub log_count: u64,
    /// Earliest span or log time (ns).
    pub first_seen: u64,
    /// Latest span or log time (ns).
    pub last_seen: u64,
}

/// The read side of a store: what the query API needs. Every implementation must pass the
/// conformance suite in `storage/tests/conformance.rs`.
pub trait Store: Send + Sync {
    /// Every stored span of a trace, by start time.
    fn trace(&self, trace_id: &[u8; 16], range: &TimeRange) -> Result<Vec<SpanRow>, StorageError>;
    /// Every stored log record of a trace, by time.
    fn logs_by_trace(&self, trace_id: &[u8; 16], range: &TimeRange) -> Result<Vec<LogRow>, StorageError>;
    /// Every stored exemplar pointing at a trace, by time.
    fn exemplars_by_trace(&self, trace_id: &[u8; 16], range: &TimeRange) -> Result<Vec<ExemplarRow>, StorageError>;
    /// The newest traces passing `filter` (SPEC §4 semantics).
    fn search_traces(&self, filter: &TraceFilter) -> Result<TraceHits, StorageError>;
    /// Log records matching a full-text search and filters, newest first.
    fn search_logs(&self, search: &LogSearch) -> Result<Vec<LogRow>, StorageError>;
    /// Hands each point of a metric in a time range to `visit`, in no particular order, reading
    /// a row group at a time (so a query holds what it keeps of the points, not the points);
    /// stops after `budget` points and then returns true.
    fn for_each_metric_point(
        &self,
        name: &str,
        range: &TimeRange,
        budget: usize,
        visit: &mut dyn FnMut(MetricRow),
    ) -> Result<bool, StorageError>;
    /// As [`Self::for_each_metric_point`], but hands each point as what aggregations need of it:
    /// its series' labels (point attributes and `service.name`) and its [`rollup::Sample`] (what
    /// else a point holds is not read).
    fn for_each_metric_sample(
        &self,
        name: &str,
        range: &TimeRange,
        budget: usize,
        visit: &mut dyn FnMut(&rollup::Labels, rollup::Sample),
    ) -> Result<bool, StorageError>;
    /// Hands each rollup of a metric ([`rollup::Rollup`], one per series and minute) whose minute
    /// starts in `range` to `visit` with its series' labels and minute, in no particular order:
    /// the stored ones, and those of the points still in memory, which are rolled up as they are
    /// read (only their points in `range`). Stops after `budget` rollups and then returns
    /// `Some(true)`; `None` if the store has no rollups yet (it was written before them and
    /// they are being built): ask [`Self::for_each_metric_point`].
    fn for_each_metric_rollup(
        &self,
        name: &str,
        range: &TimeRange,
        budget: usize,
        visit: &mut dyn FnMut(rollup::Labels, u64, rollup::Rollup),
    ) -> Result<Option<bool>, StorageError>;
    /// The points of a metric in a time range, by time; at most `budget` (the flag says if cut).
    fn metric_points(
        &self,
        name: &str,
        range: &TimeRange,
        budget: usize,
    ) -> Result<(Vec<MetricRow>, bool), StorageError> {
        let mut rows = Vec::new();
        let partial = self.for_each_metric_point(name, range, budget, &mut |row| rows.push(row))?;
        rows.sort_by_key(point_time);
        Ok((rows, partial))
    }
    /// Services seen in spans and logs.
    fn services(&self) -> Result<Vec<ServiceInfo>, StorageError>;
    /// Whether an answer about `table` over `range` misses stored data because files were found
    /// damaged (and, for `full_text` searches, because an index is being rebuilt): the query API
    /// then says the answer is partial.
    fn partial(&self, table: Table, range: &TimeRange, full_text: bool) -> bool;
}
