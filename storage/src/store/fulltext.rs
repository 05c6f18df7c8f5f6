//! Full-text indexes of log records: one tantivy index per hour partition
//! (`<root>/logs/<hour>/index`), so retention drops it with the partition's parts.
//!
//! A document is a log record's searchable text plus where the record lives: the id of its part
//! and its row number there. Compaction never re-indexes: a merged part's rows are its sources'
//! rows one after another, and the partition's moves (`moved.json`) turn a document's (old part,
//! row) into (merged part, row) when a search reads its hits. Head records are indexed as they arrive under the id their part will
//! get, and become searchable at the next commit (every `StoreOptions::index_commit_interval`, 10 s by
//! default, and at every flush); hits on part ids the manifest does not (yet) list are ignored, and after a crash
//! the documents of parts that were never published are deleted before their ids are reused.
//!
//! An index is derived data: the parts (and the head) hold every row it describes. So a failed
//! write (ENOSPC kills a tantivy writer) or a damaged file (tantivy's per-file checksums, checked
//! when an index is opened; read errors) never fails the store: the partition's index is marked
//! stale, stops taking documents, and is rebuilt from its rows by [`super::LocalStore::refresh`].
//! Searches over a stale partition skip it and say their answer is partial.
//!
//! Merging is bounded store-wide ([`MergeBudget`]): tantivy's own merge policy is off, so no index
//! merges by itself; each refresh starts at most the budget's number of merges across every
//! partition of both tables, each of a few of one index's smallest segments and never producing a
//! segment over the budget's size. A row is therefore merged a bounded number of times, however
//! large its partition grows, and merge threads and memory do not multiply with partitions.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use serde_json::Value;
use sift_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use sift_proto::otlp::logs::v1::LogRecord;
use sift_proto::otlp::trace::v1::Span;
use tantivy::indexer::{IndexWriterOptions, NoMergePolicy};
use tantivy::query::{BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, JsonObjectOptions, NumericOptions, OwnedValue, Schema, TextFieldIndexing, TextOptions,
    FAST,
};
use tantivy::{
    DocAddress, FutureResult, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, SegmentMeta, TantivyDocument,
    Term,
};

use super::newest::newest;
use super::StorageError;
use crate::columnar::Table;

/// Segments one merge takes at most.
const MERGE_FAN_IN: usize = 8;
/// Small segments an index must have before they are merged.
const MERGE_MIN_SEGMENTS: usize = 4;

/// The store-wide budget for full-text index merges (see the module docs).
pub(crate) struct MergeBudget {
    /// Merges that may run at once, across every index of the store.
    max_running: usize,
    /// The most documents a merge may produce; larger segments are never merged again.
    max_segment_docs: u32,
    running: AtomicUsize,
    peak: AtomicUsize,
    started: AtomicUsize,
}

/// What the merge budget has seen (for tests and the soak benchmark).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Merges running now.
    pub running: usize,
    /// The most merges ever running at once.
    pub peak: usize,
    /// Merges started since the store was opened.
    pub started: usize,
}

impl MergeBudget {
    pub(crate) fn new(max_running: usize, max_segment_docs: u32) -> Arc<MergeBudget> {
        Arc::new(MergeBudget {
            max_running: max_running.max(1),
            max_segment_docs: max_segment_docs.max(2),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
        })
    }

    /// Takes a slot if one is free.
    fn take(self: &Arc<Self>) -> Option<MergeSlot> {
        let taken = self
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_running).then_some(n + 1)
            })
            .ok()?;
        self.peak.fetch_max(taken + 1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
        Some(MergeSlot(self.clone()))
    }

    pub(crate) fn stats(&self) -> MergeStats {
        MergeStats {
            running: self.running.load(Ordering::Acquire),
            peak: self.peak.load(Ordering::Acquire),
            started: self.started.load(Ordering::Acquire),
        }
    }

    /// The segments of `metas` one merge should take (see [`pick_merge`]).
    fn candidates(&self, metas: &[SegmentMeta]) -> Option<Vec<SegmentMeta>> {
        let docs: Vec<u32> = metas.iter().map(SegmentMeta::num_docs).collect();
        let picked = pick_merge(&docs, self.max_segment_docs)?;
        Some(picked.into_iter().map(|i| metas[i].clone()).collect())
    }
}

/// Which of the segments of `docs` documents one merge should take, as indexes into `docs`.
/// Segments are tiered by size — tier 0 holds those of `max_docs / 2 / FAN_IN` up to `max_docs /
/// 2` documents (larger ones are never merged again), each next tier those `FAN_IN` times smaller
/// — and a merge takes up to `FAN_IN` of the smallest segments of the smallest tier holding at
/// least `MERGE_MIN_SEGMENTS`, within `max_docs`. A segment is so merged only with segments of
/// about its size: a document is rewritten once per tier (a handful of times), never once per
/// commit as when a large segment was merged again with every few new small ones.
fn pick_merge(docs: &[u32], max_docs: u32) -> Option<Vec<usize>> {
    let top = u64::from(max_docs / 2);
    let fan_in = MERGE_FAN_IN as u64;
    let tier = |n: u32| {
        let (mut tier, mut bound) = (0u32, top);
        while bound > 1 && u64::from(n) < bound / fan_in {
            bound /= fan_in;
            tier += 1;
        }
        tier
    };
    let mut tiers: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, &n) in docs.iter().enumerate() {
        if u64::from(n) < top {
            tiers.entry(tier(n)).or_default().push(i);
        }
    }
    // The smallest segments first: their merges are the cheapest and remove the most segments.
    for (_, mut segments) in tiers.into_iter().rev() {
        if segments.len() < MERGE_MIN_SEGMENTS {
            continue;
        }
        segments.sort_by_key(|&i| docs[i]);
        let mut total = 0u32;
        let mut picked = Vec::new();
        for i in segments.into_iter().take(MERGE_FAN_IN) {
            if total.saturating_add(docs[i]) > max_docs && picked.len() >= 2 {
                break;
            }
            total = total.saturating_add(docs[i]);
            picked.push(i);
        }
        if picked.len() >= 2 {
            return Some(picked);
        }
    }
    None
}

/// A running merge's place in the budget, given back when dropped.
struct MergeSlot(Arc<MergeBudget>);

impl Drop for MergeSlot {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A merge started on a partition's writer.
struct Merge {
    result: Pin<Box<FutureResult<Option<SegmentMeta>>>>,
    _slot: MergeSlot,
}

/// The index schema's fields. Logs and spans share the shape: a text field with positions
/// (log `body`; span `name`: name, status message and event names), `attributes` (JSON), a
/// level (log `severity`; span `status`), a number (severity number; status code) and the
/// service, trace id, time and row reference.
#[derive(Clone)]
struct Fields {
    body: Field,
    attributes: Field,
    severity: Field,
    severity_number: Field,
    service: Field,
    trace_id: Field,
    time: Field,
    part: Field,
    row: Field,
    /// Spans only: what a document says of its trace beyond its words.
    trace: Option<TraceFields>,
}

/// The fields of a span document that make it a summary of its trace (see [`TraceText`]).
#[derive(Clone, Copy)]
struct TraceFields {
    /// The latest span end the document knows of (its own spans' and, within the window of
    /// [`RecentTraces`], the trace's earlier documents').
    end: Field,
    /// [`FLAG_FIRST_WITHOUT_ROOT`], [`FLAG_CONTINUED`], [`FLAG_ROOT`].
    flags: Field,
    /// Exact span-level terms, each with the service of its span: `<service>\x1fn\x1f<name>`,
    /// `<service>\x1fs\x1f<status code>`, `<service>\x1fa\x1f<key>\x1f<value>` (for
    /// [`has_terms`] keys); and resource attributes alone, `a\x1f<key>\x1f<value>`. A service
    /// with a name, a status or such an attribute is one term, held by one span.
    terms: Field,
    /// Stored: span and error counts, root, services ([`DocSummary`] as JSON).
    summary: Field,
}

fn schema(table: Table) -> (Schema, Fields) {
    let mut b = Schema::builder();
    // Results are ordered by time, never by score: no field needs norms. Attribute values keep
    // positions (`order.id:o-3` is a phrase of two tokens); levels do not need them; per-record
    // ids other than the trace id are left to the columnar parts (the term dictionary is most of
    // an index's size).
    let indexing = |positions: bool| {
        TextFieldIndexing::default()
            .set_tokenizer("default")
            .set_fieldnorms(false)
            .set_index_option(if positions {
                IndexRecordOption::WithFreqsAndPositions
            } else {
                IndexRecordOption::Basic
            })
    };
    let text = |positions: bool| TextOptions::default().set_indexing_options(indexing(positions));
    // Whole values (service, trace id), without the norm tantivy's `STRING` would keep per
    // document; numbers likewise (`INDEXED` keeps a norm too).
    let raw = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_fieldnorms(false)
            .set_index_option(IndexRecordOption::Basic),
    );
    let indexed_number = NumericOptions::default().set_indexed().set_fast();
    let json = JsonObjectOptions::default()
        .set_indexing_options(indexing(true))
        .set_expand_dots_enabled();
    let (body, level, number) = match table {
        Table::Spans => ("name", "status", "status_code"),
        _ => ("body", "severity", "severity_number"),
    };
    let fields = Fields {
        body: b.add_text_field(body, text(true)),
        attributes: b.add_json_field("attributes", json),
        severity: b.add_text_field(level, text(false)),
        severity_number: b.add_u64_field(number, indexed_number.clone()),
        service: b.add_text_field("service", raw.clone()),
        // Span hits are traces: their trace id is read back from the index.
        trace_id: b.add_text_field(
            "trace_id",
            if table == Table::Spans {
                raw.clone().set_fast("raw")
            } else {
                raw.clone()
            },
        ),
        // Time ranges and the newest-first order read the fast field: indexing the time too would
        // add a term per record (nanoseconds are all distinct), most of the term dictionary.
        time: b.add_u64_field("time", FAST),
        part: b.add_u64_field("part", indexed_number),
        row: b.add_u64_field("row", FAST),
        trace: (table == Table::Spans).then(|| TraceFields {
            end: b.add_u64_field("end", FAST),
            flags: b.add_u64_field("flags", FAST),
            terms: b.add_text_field("span_terms", raw.clone()),
            summary: b.add_text_field("summary", tantivy::schema::STORED),
        }),
    };
    (b.build(), fields)
}

/// The text of an attribute value or body, for indexing and highlighting.
pub(crate) fn any_text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(_) => json_value(value).to_string(),
        None => String::new(),
    }
}

/// An `AnyValue` as plain JSON (the shape the query API shows; bytes as base64).
pub fn json_value(value: &AnyValue) -> Value {
    use base64::Engine as _;
    match &value.value {
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or_else(|| Value::String(d.to_string()), Value::Number)
        }
        Some(any_value::Value::BytesValue(b)) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(json_value).collect()),
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(json_object(&kv.values)),
        Some(any_value::Value::StringValueStrindex(i)) => Value::from(*i),
        None => Value::Null,
    }
}

/// Attributes as a plain JSON object.
pub fn json_object(attributes: &[KeyValue]) -> serde_json::Map<String, Value> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json_value)))
        .collect()
}

fn owned(value: &Value) -> OwnedValue {
    match value {
        Value::Null => OwnedValue::Null,
        Value::Bool(b) => OwnedValue::Bool(*b),
        Value::Number(n) => n
            .as_u64()
            .map(OwnedValue::U64)
            .or_else(|| n.as_i64().map(OwnedValue::I64))
            .unwrap_or_else(|| OwnedValue::F64(n.as_f64().unwrap_or_default())),
        Value::String(s) => OwnedValue::Str(s.clone()),
        Value::Array(items) => OwnedValue::Array(items.iter().map(owned).collect()),
        Value::Object(map) => OwnedValue::Object(map.iter().map(|(k, v)| (k.clone(), owned(v))).collect()),
    }
}

/// One partition's index.
struct PartitionIndex {
    index: Index,
    reader: IndexReader,
    writer: Option<IndexWriter>,
    /// The heap a writer gets (its share of the store's memory).
    writer_bytes: usize,
    /// When documents were last added (the least recently written writer is closed first).
    written: Option<Instant>,
    dirty: bool,
    merge: Option<Merge>,
}

impl PartitionIndex {
    fn writer(&mut self) -> Result<&IndexWriter, StorageError> {
        if self.writer.is_none() {
            // One indexing thread and one merge thread, and no merges but those the store-wide
            // budget starts.
            let options = IndexWriterOptions::builder()
                .num_worker_threads(1)
                .num_merge_threads(1)
                .memory_budget_per_thread(self.writer_bytes)
                .build();
            let writer: IndexWriter = self.index.writer_with_options(options)?;
            writer.set_merge_policy(Box::new(NoMergePolicy));
            self.writer = Some(writer);
        }
        Ok(self
            .writer
            .as_ref()
            .unwrap_or_else(|| unreachable!("writer just opened")))
    }

    /// Indexes documents stored in part `part` from row `first_row` on.
    fn add(
        &mut self,
        fields: &Fields,
        part: u64,
        first_row: u64,
        docs: impl IntoIterator<Item = TantivyDocument>,
    ) -> Result<(), StorageError> {
        let writer = self.writer()?;
        for (i, mut doc) in docs.into_iter().enumerate() {
            doc.add_u64(fields.part, part);
            doc.add_u64(fields.row, first_row + i as u64);
            writer.add_document(doc)?;
        }
        self.dirty = true;
        self.written = Some(Instant::now());
        Ok(())
    }

    /// Commits and closes the writer, giving its memory back; `wait`: after the merge it runs,
    /// if any (else a writer with a merge running stays open).
    fn close_writer(&mut self, wait: bool) -> Result<(), StorageError> {
        self.poll_merge()?;
        while wait && self.merge.is_some() {
            std::thread::sleep(std::time::Duration::from_millis(10));
            self.poll_merge()?;
        }
        if self.writer.is_some() && self.merge.is_none() {
            self.commit()?;
            self.writer = None;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StorageError> {
        if let (true, Some(writer)) = (self.dirty, self.writer.as_mut()) {
            writer.commit()?;
            self.reader.reload()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Finishes a merge that is done (without waiting for one that is not).
    fn poll_merge(&mut self) -> Result<(), StorageError> {
        let Some(merge) = self.merge.as_mut() else {
            return Ok(());
        };
        let Poll::Ready(result) = merge.result.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
            return Ok(());
        };
        self.merge = None;
        result?;
        self.reader.reload()?;
        Ok(())
    }

    /// Starts a merge of this index's smallest segments if the budget has a slot for it.
    fn start_merge(&mut self, budget: &Arc<MergeBudget>) -> Result<bool, StorageError> {
        if self.merge.is_some() || self.writer.is_none() {
            return Ok(false);
        }
        let Some(picked) = budget.candidates(&self.index.searchable_segment_metas()?) else {
            return Ok(false);
        };
        let Some(slot) = budget.take() else {
            return Ok(false);
        };
        let ids: Vec<_> = picked.iter().map(SegmentMeta::id).collect();
        let writer = self.writer.as_mut().unwrap_or_else(|| unreachable!("checked above"));
        self.merge = Some(Merge {
            result: Box::pin(writer.merge(&ids)),
            _slot: slot,
        });
        Ok(true)
    }
}

/// Distinct values kept per attribute key in a trace's document.
const VALUES_PER_KEY: usize = 32;

/// The searchable text of one trace's spans in one part: span names, status messages and event
/// names (each once), the distinct values of span and event attributes, statuses and services.
/// Indexing a document per trace rather than per span keeps the index ~15x smaller; a query's
/// words may then match different spans of the trace.
///
/// The document is also a summary of its trace, which trace search reads instead of spans: its
/// span and error counts, root, services, start and end, and exact span-level terms (a name, a
/// service with a name or a status, an attribute's whole value). [`RecentTraces`] makes the start
/// and end cover the trace's earlier documents too.
#[derive(Debug, Default)]
pub(crate) struct TraceText {
    text: String,
    lines: std::collections::HashSet<String>,
    attributes: BTreeMap<String, Vec<Value>>,
    /// 1 unset, 2 ok, 4 error.
    statuses: u8,
    /// Per service: the names of its spans, and their statuses (bits as `statuses`).
    services: BTreeMap<String, (BTreeSet<String>, u8)>,
    first: u64,
    end: u64,
    spans: u64,
    errors: u64,
    /// The earliest span without a parent (then `.3` is true), else the earliest span:
    /// (start, service, name, parentless).
    root: Option<(u64, String, String, bool)>,
    /// Exact terms of resource attributes.
    terms: BTreeSet<String>,
    /// The resource whose attributes were last added (address and length: the spans of one
    /// resource group share it).
    last_resource: (usize, usize),
    /// Scratch space for a term.
    scratch: String,
    /// Set by [`RecentTraces::place`]: the trace's start and end as known, and flags.
    known: Option<(u64, u64, u64)>,
}

/// A span document whose trace was not seen in the window of [`RecentTraces`] and that holds no
/// span without a parent: the trace may have earlier documents its start and end do not cover.
pub(crate) const FLAG_FIRST_WITHOUT_ROOT: u64 = 1;
/// A span document whose start and end cover the trace's documents indexed before it (within the
/// window).
pub(crate) const FLAG_CONTINUED: u64 = 2;
/// A span document holding a span without a parent.
pub(crate) const FLAG_ROOT: u64 = 4;

/// Longest attribute value (as text) indexed as an exact term.
const MAX_TERM_VALUE: usize = 128;

/// Whether a span attribute is indexed as an exact term with its service (resource attributes
/// all are, also alone): the semantic conventions' attributes of few values that trace searches
/// filter by (Jaeger's and Tempo's tag searches). Other span attributes are found through their
/// words and checked on the spans.
fn has_terms(key: &str) -> bool {
    matches!(
        key,
        "http.method"
            | "http.request.method"
            | "http.route"
            | "http.status_code"
            | "http.response.status_code"
            | "http.scheme"
            | "rpc.system"
            | "rpc.service"
            | "rpc.method"
            | "rpc.grpc.status_code"
            | "db.system"
            | "db.operation"
            | "db.operation.name"
            | "db.name"
            | "db.namespace"
            | "messaging.system"
            | "messaging.operation"
            | "messaging.destination.name"
            | "peer.service"
            | "server.address"
            | "error.type"
            | "span.kind"
    )
}

/// The exact term of a resource attribute whose text is `value`.
fn attribute_term(key: &str, value: &str) -> String {
    format!("a\x1f{key}\x1f{value}")
}

/// A status code's bit (as [`TraceText`]'s `statuses`).
fn status_bit(code: i32) -> u8 {
    match code {
        1 => 2,
        2 => 4,
        _ => 1,
    }
}

impl TraceText {
    fn line(&mut self, line: &str) {
        if !line.is_empty() && !self.lines.contains(line) {
            self.lines.insert(line.to_owned());
            self.text.push_str(line);
            self.text.push('\n');
        }
    }

    fn attributes(&mut self, attributes: &[KeyValue]) {
        for kv in attributes {
            let value = kv.value.as_ref().map_or(Value::Null, json_value);
            let values = self.attributes.entry(kv.key.clone()).or_default();
            if values.len() < VALUES_PER_KEY && !values.contains(&value) {
                values.push(value);
            }
        }
    }

    /// Adds the exact terms of a resource's attributes (whose values are short enough): resource
    /// attributes are few, of few values, and what a span filter on one matches exactly. Those of
    /// [`has_terms`] keys are also terms with their service.
    fn resource_terms(&mut self, service: &str, attributes: &[KeyValue]) {
        let id = (attributes.as_ptr() as usize, attributes.len());
        if id == self.last_resource {
            return;
        }
        self.last_resource = id;
        for kv in attributes {
            // `service.name` is the document's `service` field already.
            if kv.key != "service.name" {
                self.attribute_term(None, kv);
            }
            if has_terms(&kv.key) {
                self.attribute_term(Some(service), kv);
            }
        }
    }

    /// Adds the term of one attribute (with its service, if given) if its value is short enough.
    fn attribute_term(&mut self, service: Option<&str>, kv: &KeyValue) {
        use std::fmt::Write;
        let Some(value) = &kv.value else { return };
        let text = match &value.value {
            Some(any_value::Value::StringValue(s)) => std::borrow::Cow::Borrowed(s.as_str()),
            _ => std::borrow::Cow::Owned(any_text(value)),
        };
        if text.len() > MAX_TERM_VALUE {
            return;
        }
        self.scratch.clear();
        if let Some(service) = service {
            let _ = write!(self.scratch, "{service}\x1f");
        }
        let _ = write!(self.scratch, "a\x1f{}\x1f{text}", kv.key);
        if !self.terms.contains(self.scratch.as_str()) {
            self.terms.insert(self.scratch.clone());
        }
    }

    /// Adds a span (of service `service`, whose resource has `resource` attributes).
    pub(crate) fn add(&mut self, service: &str, resource: &[KeyValue], span: &Span) {
        self.line(&span.name);
        let status = span.status.as_ref().map_or(0, |s| s.code);
        if let Some(s) = &span.status {
            self.line(&s.message);
        }
        self.statuses |= status_bit(status);
        self.attributes(&span.attributes);
        for event in &span.events {
            self.line(&event.name);
            self.attributes(&event.attributes);
        }
        let (names, statuses) = match self.services.get_mut(service) {
            Some(entry) => entry,
            None => self.services.entry(service.to_owned()).or_default(),
        };
        if !names.contains(span.name.as_str()) {
            names.insert(span.name.clone());
        }
        *statuses |= status_bit(status);
        self.resource_terms(service, resource);
        for kv in &span.attributes {
            if has_terms(&kv.key) {
                self.attribute_term(Some(service), kv);
            }
        }
        let start = span.start_time_unix_nano;
        self.first = if self.spans == 0 { start } else { self.first.min(start) };
        self.end = self.end.max(span.end_time_unix_nano);
        self.spans += 1;
        self.errors += u64::from(status == 2);
        let parentless = span.parent_span_id.is_empty();
        if self
            .root
            .as_ref()
            .is_none_or(|r| is_better_root((start, parentless), (r.0, r.3)))
        {
            self.root = Some((start, service.to_owned(), span.name.clone(), parentless));
        }
    }

    fn has_root(&self) -> bool {
        self.root.as_ref().is_some_and(|r| r.3)
    }
}

/// Whether a candidate root `(start, parentless)` beats the current one: a span without a parent
/// beats one with, then the earlier start wins. (The trace response, which has every span, takes
/// the earliest span whose parent is missing when none lacks one; a document cannot know that.)
pub(crate) fn is_better_root(candidate: (u64, bool), current: (u64, bool)) -> bool {
    (candidate.1 && !current.1) || (candidate.1 == current.1 && candidate.0 < current.0)
}

/// The traces whose spans were indexed last, with the start and end their documents so far
/// cover: a trace's next document then covers them too, so its newest document holds its whole
/// start and duration (what duration filters read) as long as its spans arrive within the window
/// (the last [`RecentTraces::CAPACITY`] traces). A document of a trace seen before the window
/// does not cover the earlier ones; it is flagged ([`FLAG_FIRST_WITHOUT_ROOT`] unless it holds the
/// root) and searches read its trace whole.
pub(crate) struct RecentTraces {
    known: std::collections::HashMap<[u8; 16], (u64, u64)>,
    order: std::collections::VecDeque<[u8; 16]>,
}

impl RecentTraces {
    /// Traces remembered (about 7 MiB): at 5,000 traces a second, the last 25 seconds.
    pub(crate) const CAPACITY: usize = 1 << 17;

    pub(crate) fn new() -> RecentTraces {
        RecentTraces {
            known: std::collections::HashMap::new(),
            order: std::collections::VecDeque::new(),
        }
    }

    /// Sets the start, end and flags of a trace's next document.
    pub(crate) fn place(&mut self, trace_id: &[u8; 16], text: &mut TraceText) {
        let root = if text.has_root() { FLAG_ROOT } else { 0 };
        match self.known.get_mut(trace_id) {
            Some((start, end)) => {
                *start = (*start).min(text.first);
                *end = (*end).max(text.end);
                text.known = Some((*start, *end, FLAG_CONTINUED | root));
            }
            None => {
                if self.order.len() >= Self::CAPACITY {
                    if let Some(old) = self.order.pop_front() {
                        self.known.remove(&old);
                    }
                }
                self.known.insert(*trace_id, (text.first, text.end));
                self.order.push_back(*trace_id);
                let first = if root == 0 { FLAG_FIRST_WITHOUT_ROOT } else { 0 };
                text.known = Some((text.first, text.end, first | root));
            }
        }
    }
}

/// What one span document says of its trace (stored with it).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct DocSummary {
    #[serde(rename = "n")]
    pub spans: u64,
    #[serde(rename = "e")]
    pub errors: u64,
    /// (start, service, name, parentless) of its earliest parentless span, else earliest span.
    #[serde(rename = "r", default)]
    pub root: Option<(u64, String, String, bool)>,
    #[serde(rename = "s", default)]
    pub services: Vec<String>,
}

/// A log search: the user's full-text query plus structured filters.
#[derive(Debug, Clone, Default)]
pub struct LogSearch {
    /// Full-text query (tantivy syntax: words, "phrases", `field:value`, AND/OR/NOT); empty: all.
    pub query: String,
    /// Only this service.
    pub service: Option<String>,
    /// Only records at least this severe (OTLP severity number).
    pub severity_min: Option<i32>,
    /// Only records of this trace.
    pub trace_id: Option<[u8; 16]>,
    /// Only records in this time range.
    pub range: crate::TimeRange,
    /// At most this many records, newest first.
    pub limit: usize,
}

/// A hit: where the record is, and its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub time: u64,
    /// The hour partition whose index holds the document.
    pub hour: u64,
    pub part: u64,
    pub row: u64,
    /// The trace (span indexes only).
    pub trace_id: Option<[u8; 16]>,
}

/// The open partition indexes, and those that are stale (with the last failed rebuild).
#[derive(Default)]
struct Partitions {
    open: BTreeMap<u64, PartitionIndex>,
    stale: BTreeMap<u64, Option<Instant>>,
}

/// What searches read of [`Partitions`] (kept in step with it under its lock): the readers of
/// the open partitions that are not stale, and the stale ones. A writer holds the partitions' lock
/// while it adds documents, commits (which waits for the indexing thread to write a segment:
/// tens to hundreds of milliseconds) or closes; searches read this instead, so they never wait
/// for one (they did: a trace lookup waited for whatever commit was under way).
#[derive(Default)]
struct View {
    readers: BTreeMap<u64, IndexReader>,
    stale: BTreeSet<u64>,
}

/// The full-text indexes of one table (logs or spans), one per hour partition.
pub(crate) struct TextIndexes {
    table: Table,
    root: std::path::PathBuf,
    schema: Schema,
    fields: Fields,
    partitions: Mutex<Partitions>,
    /// Taken only with `partitions` held, or alone (never the other way round).
    view: Mutex<View>,
    merges: Arc<MergeBudget>,
    /// The maps its files are read through.
    maps: Arc<super::mapped::Maps>,
    /// The heap of each writer.
    writer_bytes: usize,
    /// Writers open at once.
    max_writers: usize,
    /// Spans: the traces the latest documents cover ([`RecentTraces`]).
    recent: Mutex<RecentTraces>,
}

impl TextIndexes {
    pub(crate) fn new(
        root: &Path,
        table: Table,
        merges: Arc<MergeBudget>,
        maps: Arc<super::mapped::Maps>,
        memory: &super::MemoryBudget,
    ) -> TextIndexes {
        let (schema, fields) = schema(table);
        TextIndexes {
            table,
            root: root.to_path_buf(),
            schema,
            fields,
            partitions: Mutex::new(Partitions::default()),
            view: Mutex::new(View::default()),
            merges,
            maps,
            writer_bytes: memory.index_writer_bytes,
            max_writers: memory.index_writers.max(1),
            recent: Mutex::new(RecentTraces::new()),
        }
    }

    /// Writers open now.
    pub(crate) fn writers(&self) -> usize {
        self.lock().open.values().filter(|p| p.writer.is_some()).count()
    }

    /// Before partition `hour` opens a writer: closes others (idle ones first, then the least
    /// recently written), so that no more than the budget's writers are open with it.
    fn make_room_for_writer(&self, hour: u64) {
        let victims: Vec<u64> = {
            let partitions = self.lock();
            if partitions.open.get(&hour).is_some_and(|p| p.writer.is_some()) {
                return;
            }
            // Writers without a merge running first (closing one that runs a merge waits for it),
            // then the least recently written.
            let mut open: Vec<(bool, Option<Instant>, u64)> = partitions
                .open
                .iter()
                .filter(|(_, p)| p.writer.is_some())
                .map(|(hour, p)| (p.merge.is_some(), p.written, *hour))
                .collect();
            open.sort();
            let excess = (open.len() + 1).saturating_sub(self.max_writers);
            open.into_iter().take(excess).map(|(_, _, hour)| hour).collect()
        };
        for victim in victims {
            self.with_partition(victim, |_, partition| partition.close_writer(true));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Partitions> {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings the [`View`] of `hour` in step with `partitions` (called with their lock held,
    /// after every change of what is open or stale).
    fn sync_view(&self, partitions: &Partitions, hour: u64) {
        let mut view = self.view();
        let stale = partitions.stale.contains_key(&hour);
        match partitions.open.get(&hour) {
            Some(partition) if !stale => view.readers.insert(hour, partition.reader.clone()),
            _ => view.readers.remove(&hour),
        };
        if stale {
            view.stale.insert(hour);
        } else {
            view.stale.remove(&hour);
        }
    }

    fn dir(&self, hour: u64) -> PathBuf {
        super::manifest::partition_dir(&self.root, self.table, hour).join("index")
    }

    /// The bytes of the index segments searches of `hour` use (segments merged away and not yet
    /// deleted are not counted), read from the index's `meta.json`.
    pub(crate) fn live_bytes(&self, hour: u64) -> u64 {
        let dir = self.dir(hour);
        let Ok(meta) = std::fs::read(dir.join("meta.json")) else {
            return 0;
        };
        let Ok(meta) = serde_json::from_slice::<serde_json::Value>(&meta) else {
            return 0;
        };
        let segments: Vec<String> = meta["segments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["segment_id"].as_str())
            .map(|id| id.replace('-', ""))
            .collect();
        let Ok(files) = std::fs::read_dir(&dir) else {
            return 0;
        };
        files
            .flatten()
            .filter(|file| {
                let name = file.file_name();
                let name = name.to_string_lossy();
                name == "meta.json" || segments.iter().any(|id| name.starts_with(id.as_str()))
            })
            .filter_map(|file| file.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    fn open<'m>(&self, partitions: &'m mut Partitions, hour: u64) -> Result<&'m mut PartitionIndex, StorageError> {
        if let std::collections::btree_map::Entry::Vacant(slot) = partitions.open.entry(hour) {
            let dir = self.dir(hour);
            std::fs::create_dir_all(&dir).map_err(StorageError::io(format!("creating {}", dir.display())))?;
            let directory = super::mapped::MappedDirectory::open(&dir, self.maps.clone())?;
            let index = if Index::exists(&directory).map_err(tantivy::TantivyError::from)? {
                // An index written by an earlier version whose fields differ only in what they
                // keep (norms, positions) answers the same queries: it is used as it is.
                let index = Index::open(directory)?;
                let shape = |schema: &Schema| -> Vec<(String, tantivy::schema::Type)> {
                    schema
                        .fields()
                        .map(|(_, entry)| (entry.name().to_owned(), entry.field_type().value_type()))
                        .collect()
                };
                if shape(&index.schema()) != shape(&self.schema) {
                    return Err(tantivy::TantivyError::SchemaError(format!(
                        "{}: its fields differ from this version's",
                        dir.display()
                    ))
                    .into());
                }
                index
            } else {
                Index::builder()
                    .schema(self.schema.clone())
                    .settings(tantivy::IndexSettings {
                        // The store holds no fields, only a 4-byte offset per document, which
                        // lz4 leaves as it is and zstd shrinks to almost nothing.
                        docstore_compression: tantivy::store::Compressor::Zstd(Default::default()),
                        ..Default::default()
                    })
                    .open_or_create(directory)?
            };
            let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
            slot.insert(PartitionIndex {
                index,
                reader,
                writer: None,
                writer_bytes: self.writer_bytes,
                written: None,
                dirty: false,
                merge: None,
            });
            self.sync_view(partitions, hour);
        }
        Ok(partitions
            .open
            .get_mut(&hour)
            .unwrap_or_else(|| unreachable!("inserted above")))
    }

    /// Marks a partition's index stale: it is closed, takes no documents and is rebuilt from its
    /// rows by the next [`Self::rebuild`].
    fn mark_stale(&self, partitions: &mut Partitions, hour: u64, error: &dyn std::fmt::Display) {
        partitions.open.remove(&hour);
        let newly = partitions.stale.insert(hour, None).is_none();
        self.sync_view(partitions, hour);
        if newly {
            tracing::error!(
                index = %self.dir(hour).display(),
                error = %error,
                "full-text index damaged or not writable; it will be rebuilt from its parts (searches of this hour are partial until then)"
            );
        }
    }

    /// Runs `work` on a partition's index; a failure marks the index stale instead of failing.
    fn with_partition(&self, hour: u64, work: impl FnOnce(&Fields, &mut PartitionIndex) -> Result<(), StorageError>) {
        let mut partitions = self.lock();
        if partitions.stale.contains_key(&hour) {
            return;
        }
        let result = self
            .open(&mut partitions, hour)
            .and_then(|partition| work(&self.fields, partition));
        if let Err(e) = result {
            self.mark_stale(&mut partitions, hour, &e);
        }
    }

    /// Partitions whose index is stale and due for a rebuild.
    pub(crate) fn due_for_rebuild(&self) -> Vec<u64> {
        self.lock()
            .stale
            .iter()
            .filter(|(_, failed)| failed.is_none_or(|at| at.elapsed() >= super::RETRY))
            .map(|(hour, _)| *hour)
            .collect()
    }

    /// Whether the index of `hour` is stale (searches of it are partial).
    pub(crate) fn is_stale(&self, hour: u64) -> bool {
        self.view().stale.contains(&hour)
    }

    /// Partition indexes that are stale.
    pub(crate) fn stale_count(&self) -> usize {
        self.view().stale.len()
    }

    /// Rebuilds a stale partition's index from scratch with the documents of every part (and head)
    /// of the hour: `(part id, documents in row order)`. A failure leaves it stale, retried later.
    pub(crate) fn rebuild(&self, hour: u64, sources: Vec<(u64, Vec<TantivyDocument>)>) -> Result<(), StorageError> {
        self.make_room_for_writer(hour);
        let mut partitions = self.lock();
        partitions.open.remove(&hour);
        self.sync_view(&partitions, hour);
        let dir = self.dir(hour);
        let result = (|| {
            remove_index_dir(&dir)?;
            let partition = self.open(&mut partitions, hour)?;
            for (part, docs) in sources {
                partition.add(&self.fields, part, 0, docs)?;
            }
            partition.close_writer(true)
        })();
        let result = match result {
            Ok(()) => {
                partitions.stale.remove(&hour);
                tracing::info!(index = %dir.display(), "full-text index rebuilt from its parts");
                Ok(())
            }
            Err(e) => {
                partitions.open.remove(&hour);
                partitions.stale.insert(hour, Some(Instant::now()));
                Err(e)
            }
        };
        self.sync_view(&partitions, hour);
        result
    }

    /// Opens the indexes that exist on disk (checking every file's checksum; a damaged index is
    /// marked stale) and deletes the documents of parts not in `live`. Partitions the manifest
    /// says are stale (`stale`), and those with parts (`hours`) but no index, are marked stale:
    /// rebuilt from their rows by the next refresh.
    pub(crate) fn recover(
        &self,
        live: &BTreeSet<u64>,
        hours: &BTreeSet<u64>,
        stale: &BTreeSet<u64>,
    ) -> Result<(), StorageError> {
        let mut partitions = self.lock();
        for &hour in hours.iter().chain(stale) {
            let missing = !self.dir(hour).join("meta.json").exists();
            if stale.contains(&hour) || missing {
                let why = if missing {
                    "it is missing"
                } else {
                    "a commit failed before the restart"
                };
                self.mark_stale(&mut partitions, hour, &why);
            }
        }
        let Ok(entries) = std::fs::read_dir(self.root.join(self.table.as_str())) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let index_dir = entry.path().join("index");
            let Some(hour) = parse_hour(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            if !index_dir.join("meta.json").exists() || partitions.stale.contains_key(&hour) {
                continue;
            }
            if let Err(e) = self.remove_orphans(&mut partitions, hour, live) {
                self.mark_stale(&mut partitions, hour, &e);
            }
        }
        Ok(())
    }

    /// Partitions whose index is stale.
    pub(crate) fn stale_hours(&self) -> BTreeSet<u64> {
        self.lock().stale.keys().copied().collect()
    }

    /// Opens one partition's index, verifies it and deletes the documents of parts not in `live`.
    fn remove_orphans(&self, partitions: &mut Partitions, hour: u64, live: &BTreeSet<u64>) -> Result<(), StorageError> {
        let fresh = !partitions.open.contains_key(&hour);
        let partition = self.open(partitions, hour)?;
        if fresh {
            let damaged = partition.index.validate_checksum()?;
            if !damaged.is_empty() {
                let files: Vec<String> = damaged.iter().map(|p| p.display().to_string()).collect();
                return Err(StorageError::Corrupt(format!(
                    "checksum mismatch in {}",
                    files.join(", ")
                )));
            }
        }
        {
            let searcher = partition.reader.searcher();
            let mut orphans = BTreeSet::new();
            for segment in searcher.segment_readers() {
                let column = segment.fast_fields().u64("part")?;
                for doc in 0..segment.max_doc() {
                    if let Some(part) = column.first(doc) {
                        if !live.contains(&part) {
                            orphans.insert(part);
                        }
                    }
                }
            }
            if orphans.is_empty() {
                return Ok(());
            }
            tracing::info!(partition = %super::manifest::hour_name(hour), parts = orphans.len(), "removing index entries of unpublished parts");
            let writer = partition.writer()?;
            for part in orphans {
                writer.delete_term(Term::from_field_u64(self.fields.part, part));
            }
        }
        partition.dirty = true;
        partition.close_writer(true)
    }

    /// The document of a log record (its part and row are set by [`Self::add_documents`]).
    pub(crate) fn log_document(&self, service: &str, log: &LogRecord) -> TantivyDocument {
        let f = &self.fields;
        let mut doc = TantivyDocument::new();
        if let Some(body) = &log.body {
            doc.add_text(f.body, any_text(body));
        }
        if !log.attributes.is_empty() {
            let object = json_object(&log.attributes);
            doc.add_object(
                f.attributes,
                object.iter().map(|(k, v)| (k.clone(), owned(v))).collect(),
            );
        }
        if !log.severity_text.is_empty() {
            doc.add_text(f.severity, &log.severity_text);
        }
        doc.add_u64(f.severity_number, u64::try_from(log.severity_number).unwrap_or(0));
        doc.add_text(f.service, service);
        if log.trace_id.len() == 16 {
            doc.add_text(f.trace_id, hex::encode(&log.trace_id));
        }
        doc.add_u64(f.time, crate::columnar::logs::effective_time(log));
        doc
    }

    /// The document of a trace's spans in one part (span searches answer with traces).
    pub(crate) fn trace_document(&self, trace_id: &[u8; 16], text: &TraceText) -> TantivyDocument {
        let f = &self.fields;
        let mut doc = TantivyDocument::new();
        doc.add_text(f.body, &text.text);
        if !text.attributes.is_empty() {
            let object = text
                .attributes
                .iter()
                .map(|(k, values)| {
                    let value = match values.as_slice() {
                        [one] => owned(one),
                        many => OwnedValue::Array(many.iter().map(owned).collect()),
                    };
                    (k.clone(), value)
                })
                .collect();
            doc.add_object(f.attributes, object);
        }
        for (bit, name) in [(1, "unset"), (2, "ok"), (4, "error")] {
            if text.statuses & bit != 0 {
                doc.add_text(f.severity, name);
            }
        }
        // (`status_code`, the statuses as a number, is left empty: searches use the words
        // above and the per-service status terms.)
        for service in text.services.keys() {
            doc.add_text(f.service, service);
        }
        doc.add_text(f.trace_id, hex::encode(trace_id));
        let root = if text.has_root() {
            FLAG_ROOT
        } else {
            FLAG_FIRST_WITHOUT_ROOT
        };
        let (start, end, flags) = text.known.unwrap_or((text.first, text.end, root));
        doc.add_u64(f.time, start);
        if let Some(t) = &f.trace {
            doc.add_u64(t.end, end);
            doc.add_u64(t.flags, flags);
            for term in &text.terms {
                doc.add_text(t.terms, term);
            }
            for (service, (names, statuses)) in &text.services {
                for name in names {
                    doc.add_text(t.terms, format!("{service}\x1fn\x1f{name}"));
                }
                for code in 0..3 {
                    if statuses & status_bit(code) != 0 {
                        doc.add_text(t.terms, format!("{service}\x1fs\x1f{code}"));
                    }
                }
            }
            let summary = DocSummary {
                spans: text.spans,
                errors: text.errors,
                root: text.root.clone(),
                services: text.services.keys().cloned().collect(),
            };
            doc.add_text(t.summary, serde_json::to_string(&summary).unwrap_or_default());
        }
        doc
    }

    /// The documents of the traces of one append (or one part, for a rebuild), their start, end
    /// and flags set from `recent` (see [`RecentTraces`]).
    pub(crate) fn trace_documents_of(
        &self,
        texts: &mut std::collections::HashMap<[u8; 16], TraceText>,
        recent: &mut RecentTraces,
    ) -> Vec<TantivyDocument> {
        texts
            .iter_mut()
            .map(|(id, text)| {
                recent.place(id, text);
                self.trace_document(id, text)
            })
            .collect()
    }

    /// The window of traces the live documents cover (spans index).
    pub(crate) fn recent(&self) -> std::sync::MutexGuard<'_, RecentTraces> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Indexes documents of one partition, stored in part `part` from row `first_row` on. A
    /// stale partition takes none (its rebuild reads every row); a failure makes it stale.
    pub(crate) fn add_documents(
        &self,
        hour: u64,
        part: u64,
        first_row: u64,
        docs: impl IntoIterator<Item = TantivyDocument>,
    ) {
        self.make_room_for_writer(hour);
        self.with_partition(hour, |f, partition| partition.add(f, part, first_row, docs));
    }

    /// Makes everything indexed so far searchable and durable; a partition that fails is stale.
    /// (Merges are moved on by [`merge`], for every table at once.)
    pub(crate) fn commit(&self) {
        let hours: Vec<u64> = self.lock().open.keys().copied().collect();
        for &hour in &hours {
            self.with_partition(hour, |_, partition| partition.commit());
        }
    }

    /// Finishes the merges of this table's indexes that are done (their budget slots are free
    /// again).
    fn poll_merges(&self) {
        let hours: Vec<u64> = self.lock().open.keys().copied().collect();
        for &hour in &hours {
            self.with_partition(hour, |_, partition| partition.poll_merge());
        }
    }

    /// Partitions that could start a merge, with their segment counts.
    fn merge_wanted(&self) -> Vec<(usize, u64)> {
        self.lock()
            .open
            .iter()
            .filter(|(_, p)| p.merge.is_none() && p.writer.is_some())
            .map(|(hour, p)| (p.reader.searcher().segment_readers().len(), *hour))
            .collect()
    }

    /// Starts a merge in partition `hour` if it has one to do and the budget a free slot.
    fn start_merge(&self, hour: u64) -> bool {
        let mut started = false;
        self.with_partition(hour, |_, partition| {
            started = partition.start_merge(&self.merges)?;
            Ok(())
        });
        started
    }

    /// Closes the writers of partitions other than `keep` (their heads were flushed); a writer
    /// with a merge running is closed by a later call, once the merge is done.
    pub(crate) fn close_writers_except(&self, keep: &BTreeSet<u64>) {
        let hours: Vec<u64> = self.lock().open.keys().copied().filter(|h| !keep.contains(h)).collect();
        for hour in hours {
            self.with_partition(hour, |_, partition| partition.close_writer(false));
        }
    }

    /// Segments per open partition index (for tests and the soak benchmark).
    pub(crate) fn segments(&self) -> BTreeMap<u64, usize> {
        self.lock()
            .open
            .iter()
            .map(|(hour, p)| (*hour, p.reader.searcher().segment_readers().len()))
            .collect()
    }

    /// Forgets the partitions in `hours` (retention is about to delete them).
    pub(crate) fn drop_partitions(&self, hours: &BTreeSet<u64>) {
        let mut partitions = self.lock();
        partitions.open.retain(|hour, _| !hours.contains(hour));
        partitions.stale.retain(|hour, _| !hours.contains(hour));
        for &hour in hours {
            self.sync_view(&partitions, hour);
        }
    }

    /// Parses a user's full-text query (errors are the user's: a 400).
    fn parse(&self, query: &str) -> Result<Box<dyn Query>, StorageError> {
        let f = &self.fields;
        let mut parser = QueryParser::new(
            self.schema.clone(),
            vec![f.body, f.attributes],
            tantivy::tokenizer::TokenizerManager::default(),
        );
        parser.set_conjunction_by_default();
        parser
            .parse_query(&rewrite_not(query))
            .map_err(|e| StorageError::BadQuery(format!("q: {e}")))
    }

    /// Parses the user's query (errors are the user's: a 400).
    fn query(&self, search: &LogSearch) -> Result<Box<dyn Query>, StorageError> {
        let f = &self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if !search.query.trim().is_empty() {
            clauses.push((Occur::Must, self.parse(&search.query)?));
        }
        let term = |field, text: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, text),
                IndexRecordOption::Basic,
            ))
        };
        if let Some(service) = &search.service {
            clauses.push((Occur::Must, term(f.service, service)));
        }
        if let Some(trace_id) = &search.trace_id {
            clauses.push((Occur::Must, term(f.trace_id, &hex::encode(trace_id))));
        }
        if let Some(min) = search.severity_min {
            let low = Term::from_field_u64(f.severity_number, u64::try_from(min).unwrap_or(0));
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(Bound::Included(low), Bound::Unbounded)),
            ));
        }
        let (start, end) = (search.range.start, search.range.end);
        if start.is_some() || end.is_some() {
            let bound = |t: Option<u64>, inclusive: bool| match t {
                Some(t) if inclusive => Bound::Included(Term::from_field_u64(f.time, t)),
                Some(t) => Bound::Excluded(Term::from_field_u64(f.time, t)),
                None => Bound::Unbounded,
            };
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(bound(start, true), bound(end, false))),
            ));
        }
        if clauses.is_empty() {
            return Ok(Box::new(tantivy::query::AllQuery));
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
    }

    /// Checks a query's syntax without running it.
    pub(crate) fn validate(&self, search: &LogSearch) -> Result<(), StorageError> {
        self.query(search).map(|_| ())
    }

    /// Up to `limit` hits per partition, newest first, from the partitions in `hours` (newest
    /// first), counting only hits `accept` takes; stops once `limit` are taken. A partition whose
    /// index is stale, or fails, is skipped (and marked stale): `partial` says so.
    pub(crate) fn search(
        &self,
        search: &LogSearch,
        hours: &[u64],
        mut accept: impl FnMut(&Hit) -> bool,
    ) -> Result<(Vec<Hit>, bool), StorageError> {
        let query = self.query(search)?;
        let mut partial = false;
        let mut readers: Vec<(u64, IndexReader)> = Vec::new();
        for &hour in hours {
            match self.reader(hour) {
                Readable::Yes(reader) => readers.push((hour, reader)),
                Readable::Absent => {}
                Readable::No => partial = true,
            }
        }
        let mut hits = Vec::new();
        for (hour, reader) in readers {
            match self.search_partition(hour, &reader, &*query, search.limit, &mut accept, &mut hits) {
                Ok(true) => return Ok((hits, partial)),
                Ok(false) => {}
                Err(e) => {
                    self.mark_stale(&mut self.lock(), hour, &e);
                    partial = true;
                }
            }
        }
        Ok((hits, partial))
    }

    /// A partition's index for reading, opened if need be.
    fn reader(&self, hour: u64) -> Readable {
        {
            let view = self.view();
            if view.stale.contains(&hour) {
                return Readable::No;
            }
            if let Some(reader) = view.readers.get(&hour) {
                return Readable::Yes(reader.clone());
            }
        }
        // Not open yet (an hour no writer has touched since the start): opened under the lock.
        let mut partitions = self.lock();
        if partitions.stale.contains_key(&hour) {
            return Readable::No;
        }
        let exists = partitions.open.contains_key(&hour) || self.dir(hour).join("meta.json").exists();
        if !exists {
            return Readable::Absent;
        }
        match self.open(&mut partitions, hour) {
            Ok(partition) => Readable::Yes(partition.reader.clone()),
            Err(e) => {
                self.mark_stale(&mut partitions, hour, &e);
                Readable::No
            }
        }
    }

    /// Every document of trace `trace_id` in each partition of `hours` (its part and row as
    /// indexed: resolve them through the moves), for lookups by trace id, which then read only
    /// the parts holding the trace. `None` for a partition whose index cannot say (stale, absent
    /// or failing): all of its parts must be read.
    pub(crate) fn trace_documents(&self, trace_id: &[u8; 16], hours: &[u64]) -> BTreeMap<u64, Option<Vec<Hit>>> {
        let term = Term::from_field_text(self.fields.trace_id, &hex::encode(trace_id));
        let query = TermQuery::new(term, IndexRecordOption::Basic);
        let mut out = BTreeMap::new();
        for &hour in hours {
            let hits = match self.reader(hour) {
                Readable::Yes(reader) => match all_hits(hour, &reader, &query) {
                    Ok(hits) => Some(hits),
                    Err(e) => {
                        self.mark_stale(&mut self.lock(), hour, &e);
                        None
                    }
                },
                Readable::Absent | Readable::No => None,
            };
            out.insert(hour, hits);
        }
        out
    }

    /// The query of a trace search's full text and span-level filters over span documents, and
    /// whether a document matching it has one span meeting every span-level filter (else the
    /// trace's spans must be checked): true of a single filter, and of a service with a name, a
    /// status or an attribute that has terms. A name or such an attribute without a service is
    /// any of `services`' terms for it; an attribute whose value is too long to be a term has no
    /// clause.
    pub(crate) fn trace_query(
        &self,
        filter: &crate::TraceFilter,
        services: &BTreeSet<String>,
    ) -> Result<(Box<dyn Query>, bool), StorageError> {
        let f = &self.fields;
        let Some(t) = f.trace else {
            return Err(StorageError::BadQuery("not a span index".into()));
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if let Some(query) = filter.query.as_deref().filter(|q| !q.trim().is_empty()) {
            clauses.push((Occur::Must, self.parse(query)?));
        }
        let term = |field, text: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, text),
                IndexRecordOption::Basic,
            ))
        };
        // A span-level term of the filter's service, or of any service.
        let of_service = |what: &str| -> Box<dyn Query> {
            match &filter.service {
                Some(service) => term(t.terms, &format!("{service}\x1f{what}")),
                None => Box::new(BooleanQuery::new(
                    services
                        .iter()
                        .map(|service| (Occur::Should, term(t.terms, &format!("{service}\x1f{what}"))))
                        .collect(),
                )),
            }
        };
        let conditions = usize::from(filter.service.is_some())
            + usize::from(filter.name.is_some())
            + usize::from(filter.status.is_some())
            + filter.attributes.len();
        let mut exact = conditions <= 1 || (conditions == 2 && filter.service.is_some());
        if let Some(service) = &filter.service {
            clauses.push((Occur::Must, term(f.service, service)));
        }
        if let Some(name) = &filter.name {
            clauses.push((Occur::Must, of_service(&format!("n\x1f{name}"))));
        }
        match (filter.status, &filter.service) {
            (Some(status), Some(_)) => clauses.push((Occur::Must, of_service(&format!("s\x1f{status}")))),
            (Some(status), None) => {
                let word = match status {
                    1 => "ok",
                    2 => "error",
                    _ => "unset",
                };
                clauses.push((Occur::Must, term(f.severity, word)));
            }
            (None, _) => {}
        }
        // An attribute with terms is one. Any other is a resource's (an exact term) or a
        // span's (its words, in the order they come, among the document's span and event
        // attributes: the spans decide).
        for (key, value) in &filter.attributes {
            if key == "service.name" {
                // The `service` field; with other filters, the spans decide.
                clauses.push((Occur::Must, term(f.service, value)));
                exact &= conditions == 1;
                continue;
            }
            if value.len() <= MAX_TERM_VALUE && has_terms(key) {
                clauses.push((Occur::Must, of_service(&format!("a\x1f{key}\x1f{value}"))));
                continue;
            }
            exact = false;
            let resource = (value.len() <= MAX_TERM_VALUE).then(|| term(t.terms, &attribute_term(key, value)));
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
            let words = self.parse(&format!("{key}:\"{escaped}\"")).ok();
            let numeric = value
                .parse::<f64>()
                .is_ok()
                .then(|| self.parse(&format!("{key}:{value}")).ok())
                .flatten();
            let either: Vec<(Occur, Box<dyn Query>)> = [resource, words, numeric]
                .into_iter()
                .flatten()
                .map(|q| (Occur::Should, q))
                .collect();
            if either.len() == 3 || (either.len() == 2 && value.parse::<f64>().is_err()) {
                clauses.push((Occur::Must, Box::new(BooleanQuery::new(either))));
            }
        }
        if clauses.is_empty() {
            return Ok((Box::new(tantivy::query::AllQuery), exact));
        }
        Ok((Box::new(BooleanQuery::new(clauses)), exact))
    }

    /// `query`, or a span document that may not cover its trace's earlier documents (flagged
    /// [`FLAG_FIRST_WITHOUT_ROOT`] or [`FLAG_CONTINUED`]).
    pub(crate) fn or_not_covering(&self, query: &dyn Query) -> Result<Box<dyn Query>, StorageError> {
        let Some(t) = self.fields.trace else {
            return Err(StorageError::BadQuery("not a span index".into()));
        };
        // Flags are 1 (first, without a root), 4 (root), 2 or 6 (continued): all but 4 are in
        // [1, 3] or [5, ∞).
        let flags = |low: u64, high: u64| -> Box<dyn Query> {
            Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_u64(t.flags, low)),
                Bound::Included(Term::from_field_u64(t.flags, high)),
            ))
        };
        Ok(Box::new(BooleanQuery::new(vec![
            (Occur::Should, query.box_clone()),
            (Occur::Should, flags(1, 3)),
            (Occur::Should, flags(5, u64::MAX)),
        ])))
    }

    /// Up to `want` span documents matching `query` and admitted by `bounds` in each partition of
    /// `hours` whose hit `accept` takes, newest (by start) first across all of them; with whether
    /// a partition could not be read (stale or failing: the answer is partial), and the time at
    /// or before which documents may be missing (a partition had more than `want`: its oldest
    /// one returned; `None`: these are all there are).
    pub(crate) fn newest_trace_docs(
        &self,
        query: &dyn Query,
        hours: &[u64],
        want: usize,
        bounds: &DocBounds,
        accept: impl Fn(&Hit) -> bool,
    ) -> Result<(Vec<TraceDoc>, bool, Option<u64>), StorageError> {
        let mut partial = false;
        let mut cut: Option<u64> = None;
        let mut docs = Vec::new();
        for &hour in hours {
            let reader = match self.reader(hour) {
                Readable::Yes(reader) => reader,
                Readable::Absent => continue,
                Readable::No => {
                    partial = true;
                    continue;
                }
            };
            let found = (|| -> Result<Vec<TraceDoc>, StorageError> {
                let searcher = reader.searcher();
                let keep = |segment: &tantivy::SegmentReader| bounds.filter(segment);
                let top = newest(&searcher, query, want, Some(&keep))?;
                let mut columns: BTreeMap<u32, DocColumns> = BTreeMap::new();
                let mut out = Vec::with_capacity(top.len());
                for (time, address) in top {
                    let columns = match columns.entry(address.segment_ord) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => {
                            e.insert(DocColumns::open(searcher.segment_reader(address.segment_ord))?)
                        }
                    };
                    if let Some(doc) = columns.doc(hour, time, address.doc_id) {
                        out.push(doc);
                    }
                }
                Ok(out)
            })();
            match found {
                Ok(found) => {
                    if found.len() >= want {
                        let oldest = found.iter().map(|d| d.hit.time).min().unwrap_or(0);
                        cut = cut.max(Some(oldest));
                    }
                    docs.extend(found.into_iter().filter(|d| accept(&d.hit)));
                }
                Err(e) => {
                    self.mark_stale(&mut self.lock(), hour, &e);
                    partial = true;
                }
            }
        }
        docs.sort_by(|a, b| b.hit.time.cmp(&a.hit.time).then(a.hit.trace_id.cmp(&b.hit.trace_id)));
        Ok((docs, partial, cut))
    }

    /// A reader of span documents by trace for one search (see [`SpanDocs`]).
    pub(crate) fn span_docs(&self) -> SpanDocs<'_> {
        SpanDocs {
            index: self,
            searchers: BTreeMap::new(),
            columns: std::collections::HashMap::new(),
            partial: false,
        }
    }

    /// Adds the hits of one partition to `hits`; true once `limit` are taken.
    fn search_partition(
        &self,
        hour: u64,
        reader: &IndexReader,
        query: &dyn Query,
        limit: usize,
        accept: &mut impl FnMut(&Hit) -> bool,
        hits: &mut Vec<Hit>,
    ) -> Result<bool, StorageError> {
        {
            let searcher = reader.searcher();
            // Ask for more than needed: hits on unpublished parts are skipped.
            let want = limit.saturating_mul(2).max(16);
            let top = newest(&searcher, query, want, None)?;
            let mut columns = BTreeMap::new();
            for (time, address) in top {
                if let std::collections::btree_map::Entry::Vacant(e) = columns.entry(address.segment_ord) {
                    let fast = searcher.segment_reader(address.segment_ord).fast_fields();
                    let traces = if self.table == Table::Spans {
                        fast.str("trace_id")?
                    } else {
                        None
                    };
                    e.insert((fast.u64("part")?, fast.u64("row")?, traces));
                }
                let Some((parts, rows, traces)) = columns.get(&address.segment_ord) else {
                    continue;
                };
                let (Some(part), Some(row)) = (parts.first(address.doc_id), rows.first(address.doc_id)) else {
                    continue;
                };
                let trace_id = traces.as_ref().and_then(|traces| {
                    let ord = traces.ords().first(address.doc_id)?;
                    let mut text = String::new();
                    traces.ord_to_str(ord, &mut text).ok()?;
                    hex::decode(text).ok()?.try_into().ok()
                });
                let hit = Hit {
                    time,
                    hour,
                    part,
                    row,
                    trace_id,
                };
                if accept(&hit) {
                    hits.push(hit);
                    if hits.len() >= limit {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }
}

/// The span documents of traces, for one search: each partition's searcher and each segment's
/// fast columns are opened once, whatever the number of traces looked up.
pub(crate) struct SpanDocs<'a> {
    index: &'a TextIndexes,
    /// `None`: the partition cannot be read (stale or failing).
    searchers: BTreeMap<u64, Option<Searcher>>,
    columns: std::collections::HashMap<(u64, u32), DocColumns>,
    /// A partition could not be read: answers may miss documents.
    pub partial: bool,
}

impl SpanDocs<'_> {
    fn searcher(&mut self, hour: u64) -> Option<Searcher> {
        if let Some(searcher) = self.searchers.get(&hour) {
            return searcher.clone();
        }
        let searcher = match self.index.reader(hour) {
            Readable::Yes(reader) => Some(reader.searcher()),
            Readable::Absent => None,
            Readable::No => {
                self.partial = true;
                None
            }
        };
        self.searchers.insert(hour, searcher.clone());
        searcher
    }

    fn failed(&mut self, hour: u64, error: &StorageError) {
        self.index.mark_stale(&mut self.index.lock(), hour, error);
        self.searchers.insert(hour, None);
        self.partial = true;
    }

    /// Every document of a trace in the partitions of `hours` (fast fields only), with where
    /// its stored summary is.
    pub(crate) fn of_trace(&mut self, trace_id: &[u8; 16], hours: &[u64]) -> Vec<(TraceDoc, DocAddress)> {
        self.of_trace_matching(trace_id, hours, None)
    }

    /// Whether a document of the trace in the partitions of `hours` matches `query` (and
    /// `accept` takes its hit).
    pub(crate) fn any_matches(
        &mut self,
        query: &dyn Query,
        trace_id: &[u8; 16],
        hours: &[u64],
        accept: &dyn Fn(&Hit) -> bool,
    ) -> bool {
        self.of_trace_matching(trace_id, hours, Some(query))
            .iter()
            .any(|(doc, _)| accept(&doc.hit))
    }

    /// The documents of a trace in the partitions of `hours` that also match `query`, if given.
    fn of_trace_matching(
        &mut self,
        trace_id: &[u8; 16],
        hours: &[u64],
        query: Option<&dyn Query>,
    ) -> Vec<(TraceDoc, DocAddress)> {
        let term = Term::from_field_text(self.index.fields.trace_id, &hex::encode(trace_id));
        let of_trace: Box<dyn Query> = Box::new(TermQuery::new(term, IndexRecordOption::Basic));
        let query: Box<dyn Query> = match query {
            Some(query) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, query.box_clone()),
                (Occur::Must, of_trace),
            ])),
            None => of_trace,
        };
        let mut out = Vec::new();
        for &hour in hours {
            let Some(searcher) = self.searcher(hour) else { continue };
            let found = (|| -> Result<Vec<(TraceDoc, DocAddress)>, StorageError> {
                let addresses = searcher.search(&*query, &tantivy::collector::DocSetCollector)?;
                let mut found = Vec::with_capacity(addresses.len());
                for address in addresses {
                    let columns = match self.columns.entry((hour, address.segment_ord)) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(DocColumns::open(searcher.segment_reader(address.segment_ord))?)
                        }
                    };
                    let time = columns.time.first(address.doc_id).unwrap_or(0);
                    if let Some(doc) = columns.doc(hour, time, address.doc_id) {
                        found.push((doc, address));
                    }
                }
                Ok(found)
            })();
            match found {
                Ok(found) => out.extend(found),
                Err(e) => self.failed(hour, &e),
            }
        }
        out
    }

    /// What a document says of its trace (its stored summary).
    pub(crate) fn summary(&mut self, doc: &TraceDoc, address: DocAddress) -> Option<DocSummary> {
        let field = self.index.fields.trace?.summary;
        let searcher = self.searcher(doc.hit.hour)?;
        let read = searcher
            .doc::<TantivyDocument>(address)
            .map_err(StorageError::from)
            .and_then(|stored| {
                stored
                    .get_first(field)
                    .and_then(|v| tantivy::schema::Value::as_str(&v))
                    .and_then(|text| serde_json::from_str::<DocSummary>(text).ok())
                    .ok_or_else(|| StorageError::Corrupt("a span document without its summary".into()))
            });
        match read {
            Ok(summary) => Some(summary),
            Err(e) => {
                self.failed(doc.hit.hour, &e);
                None
            }
        }
    }
}

/// A span document found by a trace search: where it is, its trace and time (the trace's start
/// as the document knows it), and the end it holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TraceDoc {
    pub hit: Hit,
    pub end: u64,
}

/// The fast columns of a span index segment that make a [`TraceDoc`].
struct DocColumns {
    time: tantivy::columnar::Column<u64>,
    end: tantivy::columnar::Column<u64>,
    part: tantivy::columnar::Column<u64>,
    row: tantivy::columnar::Column<u64>,
    traces: Option<tantivy::columnar::StrColumn>,
}

impl DocColumns {
    fn open(segment: &tantivy::SegmentReader) -> Result<DocColumns, StorageError> {
        let fast = segment.fast_fields();
        Ok(DocColumns {
            time: fast.u64("time")?,
            end: fast.u64("end")?,
            part: fast.u64("part")?,
            row: fast.u64("row")?,
            traces: fast.str("trace_id")?,
        })
    }

    fn doc(&self, hour: u64, time: u64, doc: tantivy::DocId) -> Option<TraceDoc> {
        let ord = self.traces.as_ref()?.ords().first(doc)?;
        let mut text = String::new();
        self.traces.as_ref()?.ord_to_str(ord, &mut text).ok()?;
        let trace_id: [u8; 16] = hex::decode(text).ok()?.try_into().ok()?;
        Some(TraceDoc {
            hit: Hit {
                time,
                hour,
                part: self.part.first(doc)?,
                row: self.row.first(doc)?,
                trace_id: Some(trace_id),
            },
            end: self.end.first(doc).unwrap_or(time),
        })
    }
}

/// What a span document must hold for its trace to possibly pass a search's time range and
/// duration filters (a document's start is never before its trace's, its duration never longer).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DocBounds {
    /// The trace starts at or after this.
    pub start: Option<u64>,
    /// The trace starts before this.
    pub end: Option<u64>,
    /// The trace lasts at least this long (only when no span-level filter is given: then the
    /// document that covers the trace's duration is the one that must match).
    pub min_duration: Option<u64>,
    /// The trace lasts at most this long.
    pub max_duration: Option<u64>,
}

impl DocBounds {
    fn filter(
        &self,
        segment: &tantivy::SegmentReader,
    ) -> Result<Box<dyn Fn(tantivy::DocId, u64) -> bool>, StorageError> {
        let fast = segment.fast_fields();
        let (end, flags) = (fast.u64("end")?, fast.u64("flags")?);
        let bounds = *self;
        Ok(Box::new(move |doc, time| {
            let flag = flags.first(doc).unwrap_or(FLAG_FIRST_WITHOUT_ROOT);
            // A document that may not cover its trace's first spans may start after the range
            // while its trace does not.
            let may_start_earlier = flag & (FLAG_FIRST_WITHOUT_ROOT | FLAG_CONTINUED) != 0;
            if bounds.start.is_some_and(|s| time < s) || bounds.end.is_some_and(|e| time >= e && !may_start_earlier) {
                return false;
            }
            let duration = end.first(doc).unwrap_or(time).saturating_sub(time);
            if bounds.max_duration.is_some_and(|m| duration > m) {
                return false;
            }
            !bounds
                .min_duration
                .is_some_and(|m| duration < m && flag & FLAG_FIRST_WITHOUT_ROOT == 0)
        }))
    }
}

/// Finishes the merges that are done and starts those the store-wide budget allows, across the
/// indexes of every table: the partitions with the most segments first, whatever their table.
/// Called every tick, not only at commits, so the merge thread never waits for a commit to go
/// on. (Each table starting its own merges in turn let one whose merges were always due — spans,
/// whose large segment was merged again with every few new ones — take every freed slot while
/// the log indexes grew by a segment a commit.)
pub(crate) fn merge(indexes: &[&TextIndexes]) {
    for index in indexes {
        index.poll_merges();
    }
    let mut wanted: Vec<(usize, usize, u64)> = indexes
        .iter()
        .enumerate()
        .flat_map(|(i, index)| {
            index
                .merge_wanted()
                .into_iter()
                .map(move |(segments, hour)| (segments, i, hour))
        })
        .collect();
    wanted.sort_unstable_by(|a, b| b.cmp(a));
    for (_, i, hour) in wanted {
        let started = indexes[i].start_merge(hour);
        if !started && indexes[i].merges.stats().running >= indexes[i].merges.max_running {
            break;
        }
    }
}

/// Removes an index directory. A writer of the index closed a moment ago may still be deleting
/// its merged-away files (its merge threads outlive it briefly), which makes a removal fail with
/// "directory not empty": it is tried again a few times.
fn remove_index_dir(dir: &Path) -> Result<(), StorageError> {
    let mut tries = 0;
    while dir.exists() {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => break,
            Err(e) if tries < 20 && e.kind() != std::io::ErrorKind::PermissionDenied => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(e) => return Err(StorageError::io(format!("removing {}", dir.display()))(e)),
        }
    }
    Ok(())
}

/// Whether a partition's index can be read.
enum Readable {
    Yes(IndexReader),
    /// The partition has no index (nothing was indexed there).
    Absent,
    /// Stale or failing: it is being rebuilt.
    No,
}

/// Every document `query` matches in one partition's index, in no particular order.
fn all_hits(hour: u64, reader: &IndexReader, query: &dyn Query) -> Result<Vec<Hit>, StorageError> {
    let searcher = reader.searcher();
    let mut addresses: Vec<_> = searcher
        .search(query, &tantivy::collector::DocSetCollector)?
        .into_iter()
        .collect();
    addresses.sort();
    let mut hits = Vec::with_capacity(addresses.len());
    let mut columns = None;
    for address in addresses {
        if columns.as_ref().is_none_or(|(ord, _, _)| *ord != address.segment_ord) {
            let fast = searcher.segment_reader(address.segment_ord).fast_fields();
            columns = Some((address.segment_ord, fast.u64("part")?, fast.u64("row")?));
        }
        let Some((_, parts, rows)) = columns.as_ref() else {
            continue;
        };
        if let (Some(part), Some(row)) = (parts.first(address.doc_id), rows.first(address.doc_id)) {
            hits.push(Hit {
                time: 0,
                hour,
                part,
                row,
                trace_id: None,
            });
        }
    }
    Ok(hits)
}

/// tantivy's parser knows `-term` but not the `NOT term` that Lucene, Quickwit and Elasticsearch
/// users write: rewrite a bare `NOT` (outside quotes) into `-` on what follows.
fn rewrite_not(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut in_quotes = false;
    let mut rest = query;
    while let Some(c) = rest.chars().next() {
        let at_word_start = out.is_empty() || out.ends_with(|p: char| p.is_whitespace() || p == '(');
        if !in_quotes && at_word_start && rest.starts_with("NOT") {
            let after = &rest[3..];
            if after.starts_with(|n: char| n.is_whitespace()) {
                out.push('-');
                rest = after.trim_start();
                continue;
            }
        }
        if c == '"' {
            in_quotes = !in_quotes;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Parses a partition directory name back into its hour.
pub(crate) fn parse_hour(name: &str) -> Option<u64> {
    // yyyy-mm-ddThh
    let (date, hour) = name.split_once('T')?;
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    let hour: u64 = hour.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 {
        return None;
    }
    let days = sift_proto::civil::days_from_civil(year, month as u32, day as u32);
    u64::try_from(days).ok().map(|d| d * 24 + hour)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_do_not_wait_for_a_writer_holding_the_partitions() {
        use sift_proto::otlp::common::v1::{any_value, AnyValue};
        let dir = tempfile::tempdir().unwrap();
        let memory = crate::store::StoreOptions::default().memory();
        let maps = Arc::new(super::super::mapped::Maps::default());
        let indexes = TextIndexes::new(dir.path(), Table::Logs, MergeBudget::new(1, 1_000_000), maps, &memory);
        let hour = 490_000;
        let log = |body: &str| LogRecord {
            time_unix_nano: hour * 3_600_000_000_000 + 1,
            trace_id: vec![7; 16],
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(body.into())),
            }),
            ..Default::default()
        };
        let docs = ["hello there", "goodbye"].map(|b| indexes.log_document("svc", &log(b)));
        indexes.add_documents(hour, 1, 0, docs);
        indexes.commit();
        let search = LogSearch {
            query: "hello".into(),
            range: crate::TimeRange::ALL,
            limit: 10,
            ..Default::default()
        };
        // A writer adding documents, committing or closing holds the partitions' lock meanwhile.
        let held = indexes.lock();
        let (answer, answered) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let hits = indexes.search(&search, &[hour], |_| true).unwrap().0;
                let documents = indexes.trace_documents(&[7; 16], &[hour]);
                let _ = answer.send((
                    hits.len(),
                    documents[&hour].as_ref().map(Vec::len),
                    indexes.is_stale(hour),
                ));
            });
            let got = answered.recv_timeout(std::time::Duration::from_secs(10));
            drop(held);
            assert_eq!(
                got,
                Ok((1, Some(2), false)),
                "the searches answered while the lock was held"
            );
        });
        // A stale partition is seen as stale without the lock too, and searched no more.
        indexes.mark_stale(&mut indexes.lock(), hour, &"test");
        let held = indexes.lock();
        let (answer, answered) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let (hits, partial) = indexes.search(&search, &[hour], |_| true).unwrap();
                let _ = answer.send((indexes.is_stale(hour), hits.len(), partial));
            });
            let got = answered.recv_timeout(std::time::Duration::from_secs(10));
            drop(held);
            assert_eq!(got, Ok((true, 0, true)));
        });
    }

    #[test]
    fn merges_take_segments_of_about_one_size_smallest_first() {
        const MAX: u32 = 2_000_000;
        // Tiers (documents): 0 = [125k, 1M), 1 = [15.6k, 125k), 2 = [1.9k, 15.6k), …
        // A large segment with a few small ones: the small ones merge, without it.
        let docs = [523_000, 900, 1_000, 1_100, 800];
        assert_eq!(pick_merge(&docs, MAX), Some(vec![4, 1, 2, 3]));
        // Fewer than four of a size: nothing to do, however many sizes.
        assert_eq!(
            pick_merge(&[523_000, 600_000, 60_000, 70_000, 900, 1_000, 1_100], MAX),
            None
        );
        // The smallest tier that has enough goes first, at most eight of its smallest.
        let docs = [
            200_000, 300_000, 250_000, 400_000, 20_000, 30_000, 40_000, 50_000, 60_000,
        ];
        assert_eq!(pick_merge(&docs, MAX), Some(vec![4, 5, 6, 7, 8]));
        let many: Vec<u32> = (0..20).map(|i| 100 + i).collect();
        assert_eq!(pick_merge(&many, MAX), Some((0..8).collect()));
        // Segments of half the bound or more are never merged again; a merge stays within it.
        assert_eq!(pick_merge(&[1_000_000, 1_200_000, 1_500_000, 1_900_000], MAX), None);
        let docs = [900_000, 800_000, 700_000, 600_000];
        assert_eq!(pick_merge(&docs, MAX), Some(vec![3, 2]));
    }

    /// Documents rewritten by merging while segments arrive one per commit: each is rewritten
    /// about once per tier, not once per commit.
    #[test]
    fn documents_are_rewritten_a_few_times_under_a_long_stream_of_commits() {
        const MAX: u32 = 2_000_000;
        let (mut segments, mut written, mut arrived) = (Vec::<u32>::new(), 0u64, 0u64);
        for commit in 0..3_000u32 {
            let docs = 650 + commit % 100;
            segments.push(docs);
            arrived += u64::from(docs);
            while let Some(picked) = pick_merge(&segments, MAX) {
                let merged: u32 = picked.iter().map(|&i| segments[i]).sum();
                written += u64::from(merged);
                let mut keep = Vec::new();
                for (i, n) in segments.iter().enumerate() {
                    if !picked.contains(&i) {
                        keep.push(*n);
                    }
                }
                keep.push(merged);
                segments = keep;
            }
        }
        let amplification = written as f64 / arrived as f64;
        assert!(amplification < 6.0, "each document rewritten {amplification:.1} times");
        assert!(segments.len() < 40, "{} segments: {segments:?}", segments.len());
    }

    #[test]
    fn not_becomes_a_prohibited_clause() {
        assert_eq!(rewrite_not("a AND NOT b"), "a AND -b");
        assert_eq!(rewrite_not("NOT  level:error"), "-level:error");
        assert_eq!(rewrite_not("(x OR y) AND (NOT z)"), "(x OR y) AND (-z)");
        assert_eq!(rewrite_not("\"do NOT panic\" NOTE"), "\"do NOT panic\" NOTE");
    }

    #[test]
    fn partition_names_parse_back() {
        for hour in [0, 1, 24, 471_010, 493_232, 500_000] {
            assert_eq!(parse_hour(&super::super::manifest::hour_name(hour)), Some(hour));
        }
        assert_eq!(parse_hour("index"), None);
        assert_eq!(parse_hour("2026-13-01T00"), None);
    }
}
