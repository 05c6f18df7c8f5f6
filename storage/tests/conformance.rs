//! The storage conformance suite: what every [`Store`] implementation must do. Today there is one
//! (local disk); an object-storage backend implements [`Backend`] and runs the same tests.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message as _;
use sift_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sift_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sift_proto::otlp::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use sift_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sift_proto::otlp::metrics::v1::{
    metric, number_data_point, Exemplar, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum,
};
use sift_proto::otlp::resource::v1::Resource;
use sift_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use sift_proto::SignalKind;
use sift_storage::{LocalStore, LogSearch, StorageError, Store, StoreOptions, Table, TimeRange, TraceFilter};
use sift_wal::WalEntry;

/// The write side of a backend under test.
trait Backend: Store + Sized {
    fn open(dir: &Path, options: StoreOptions) -> Self;
    fn append(&self, end: u64, entries: &[WalEntry]);
    fn flush(&self);
    fn refresh(&self);
    fn compact(&self) -> usize;
}

impl Backend for LocalStore {
    fn open(dir: &Path, options: StoreOptions) -> Self {
        LocalStore::open(dir, options).unwrap()
    }
    fn append(&self, end: u64, entries: &[WalEntry]) {
        LocalStore::append(self, end, entries).unwrap();
    }
    fn flush(&self) {
        LocalStore::flush(self).unwrap();
    }
    fn refresh(&self) {
        LocalStore::refresh(self).unwrap();
    }
    fn compact(&self) -> usize {
        LocalStore::compact(self).unwrap()
    }
}

const HOUR: u64 = 3_600_000_000_000;

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", text(service))],
        ..Default::default()
    })
}

fn trace_id(hour: usize, n: usize) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[0] = 0xa0 + hour as u8;
    id[8..].copy_from_slice(&(n as u64 + 1).to_be_bytes());
    id
}

/// One hour of data: `traces` traces of 3 spans (2 services), one log per span, one histogram
/// point with an exemplar per trace.
struct Hour {
    traces: ExportTraceServiceRequest,
    logs: ExportLogsServiceRequest,
    metrics: ExportMetricsServiceRequest,
}

fn hour_of_data(hour: usize, base: u64, traces: std::ops::Range<usize>) -> Hour {
    let first = traces.start == 0;
    let mut front = Vec::new();
    let mut db = Vec::new();
    let mut logs = Vec::new();
    let mut points = Vec::new();
    for n in traces {
        let tid = trace_id(hour, n).to_vec();
        let start = base + (n as u64) * 1_000_000;
        let root = (n as u64 * 4 + 1).to_be_bytes().to_vec();
        let error = n % 5 == 0;
        front.push(Span {
            trace_id: tid.clone(),
            span_id: root.clone(),
            name: "GET /checkout".into(),
            kind: 2,
            start_time_unix_nano: start,
            end_time_unix_nano: start + 5_000_000,
            attributes: vec![
                kv(
                    "http.status_code",
                    Some(AnyValue {
                        value: Some(any_value::Value::IntValue(if error { 500 } else { 200 })),
                    }),
                ),
                kv("user.id", text(&format!("u{n}"))),
            ],
            status: error.then(|| Status {
                code: 2,
                message: "payment declined".into(),
            }),
            ..Default::default()
        });
        for child in 0..2u64 {
            db.push(Span {
                trace_id: tid.clone(),
                span_id: (n as u64 * 4 + 2 + child).to_be_bytes().to_vec(),
                parent_span_id: root.clone(),
                name: "SELECT orders".into(),
                kind: 3,
                start_time_unix_nano: start + 1_000 + child,
                end_time_unix_nano: start + 2_000_000,
                ..Default::default()
            });
        }
        logs.push(LogRecord {
            time_unix_nano: start + 10,
            severity_number: if error { 17 } else { 9 },
            severity_text: if error { "ERROR" } else { "INFO" }.into(),
            body: text(&if error {
                format!("payment declined for order {n}")
            } else {
                format!("checkout completed for order {n}")
            }),
            attributes: vec![kv("order.id", text(&format!("o-{n}")))],
            trace_id: tid.clone(),
            span_id: root.clone(),
            ..Default::default()
        });
        points.push(HistogramDataPoint {
            attributes: vec![kv("route", text("/checkout"))],
            start_time_unix_nano: base,
            time_unix_nano: start + 20,
            count: 1,
            sum: Some(5.0),
            bucket_counts: vec![0, 1, 0],
            explicit_bounds: vec![1.0, 10.0],
            exemplars: vec![Exemplar {
                time_unix_nano: start + 20,
                trace_id: tid.clone(),
                span_id: root.clone(),
                value: Some(sift_proto::otlp::metrics::v1::exemplar::Value::AsDouble(5.0)),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    let scope = Some(InstrumentationScope {
        name: "test".into(),
        ..Default::default()
    });
    Hour {
        traces: ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: resource("frontend"),
                    scope_spans: vec![ScopeSpans {
                        scope: scope.clone(),
                        spans: front,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                },
                ResourceSpans {
                    resource: resource("db"),
                    scope_spans: vec![ScopeSpans {
                        scope: scope.clone(),
                        spans: db,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                },
            ],
        },
        logs: ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource("frontend"),
                scope_logs: vec![ScopeLogs {
                    scope: scope.clone(),
                    log_records: logs,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        },
        metrics: ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource("frontend"),
                scope_metrics: vec![ScopeMetrics {
                    scope,
                    metrics: vec![
                        Metric {
                            name: "http.server.duration".into(),
                            unit: "ms".into(),
                            data: Some(metric::Data::Histogram(Histogram {
                                data_points: points,
                                aggregation_temporality: 2,
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: if first { "requests" } else { "other" }.into(),
                            data: Some(metric::Data::Sum(Sum {
                                data_points: vec![NumberDataPoint {
                                    time_unix_nano: base + 1,
                                    value: Some(number_data_point::Value::AsInt(7)),
                                    ..Default::default()
                                }],
                                aggregation_temporality: 2,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        },
                    ],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        },
    }
}

fn entries(hour: &Hour) -> Vec<WalEntry> {
    vec![
        WalEntry {
            kind: sift_wal::EntryKind::Received,
            signal: SignalKind::Traces,
            pipeline: "traces".into(),
            items: 0,
            body: Bytes::from(hour.traces.encode_to_vec()),
        },
        WalEntry {
            kind: sift_wal::EntryKind::Received,
            signal: SignalKind::Logs,
            pipeline: "logs".into(),
            items: 0,
            body: Bytes::from(hour.logs.encode_to_vec()),
        },
        WalEntry {
            kind: sift_wal::EntryKind::Received,
            signal: SignalKind::Metrics,
            pipeline: "metrics".into(),
            items: 0,
            body: Bytes::from(hour.metrics.encode_to_vec()),
        },
    ]
}

const HOURS: usize = 4;
const TRACES: usize = 50;

fn base_time() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    (now / HOUR - HOURS as u64 - 1) * HOUR
}

fn options() -> StoreOptions {
    StoreOptions {
        compact_parts: 2,
        // Merges copy row groups, as they do for parts of production size.
        compact_rewrite_rows: 0,
        ..StoreOptions::default()
    }
}

/// Writes HOURS hours of data, each hour in two WAL records (the first halves of all hours are
/// flushed before the second halves arrive, so every partition has two parts and the head holds
/// the rest); returns the data.
fn write_hours<B: Backend>(store: &B, base: u64) -> Vec<Hour> {
    let at = |h: usize| base + h as u64 * HOUR + 60_000_000_000;
    for h in 0..HOURS {
        store.append(h as u64 + 1, &entries(&hour_of_data(h, at(h), 0..TRACES / 2)));
    }
    store.flush();
    for h in 0..HOURS {
        store.append(
            (HOURS + h) as u64 + 1,
            &entries(&hour_of_data(h, at(h), TRACES / 2..TRACES)),
        );
    }
    (0..HOURS).map(|h| hour_of_data(h, at(h), 0..TRACES)).collect()
}

/// Everything in `data` (for the hours in `hours`) reads back exactly; nothing else does.
fn check_exact<B: Backend>(store: &B, data: &[Hour], hours: std::ops::Range<usize>) {
    for (h, hour) in data.iter().enumerate() {
        let present = hours.contains(&h);
        for n in [0, 1, TRACES / 2, TRACES - 1] {
            let id = trace_id(h, n);
            let spans = store.trace(&id, &TimeRange::ALL).unwrap();
            if !present {
                assert!(spans.is_empty(), "hour {h} trace {n} should be gone");
                continue;
            }
            let mut expected: Vec<&Span> = hour
                .traces
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans[0].spans)
                .filter(|s| s.trace_id == id)
                .collect();
            expected.sort_by_key(|s| s.start_time_unix_nano);
            let got: Vec<&Span> = spans.iter().map(|r| &r.span).collect();
            assert_eq!(got, expected, "hour {h} trace {n}");
            assert_eq!(spans[0].origin.service_name(), "frontend");
            assert!(spans[1..].iter().all(|r| r.origin.service_name() == "db"));

            let logs = store.logs_by_trace(&id, &TimeRange::ALL).unwrap();
            let expected_log = &hour.logs.resource_logs[0].scope_logs[0].log_records[n];
            assert_eq!(logs.iter().map(|r| &r.log).collect::<Vec<_>>(), vec![expected_log]);

            let exemplars = store.exemplars_by_trace(&id, &TimeRange::ALL).unwrap();
            assert_eq!(exemplars.len(), 1);
            assert_eq!(exemplars[0].metric, "http.server.duration");
            assert_eq!(exemplars[0].value, 5.0);
            assert_eq!(exemplars[0].service_name, "frontend");
        }
    }
    let (points, partial) = store.metric_points("requests", &TimeRange::ALL, 1000).unwrap();
    assert!(!partial);
    assert_eq!(points.len(), hours.len(), "one `requests` point per stored hour");
    let (points, _) = store
        .metric_points("http.server.duration", &TimeRange::ALL, 100_000)
        .unwrap();
    assert_eq!(points.len(), hours.len() * TRACES);
    let expected_points: Vec<&HistogramDataPoint> = data[hours.clone()]
        .iter()
        .flat_map(
            |h| match &h.metrics.resource_metrics[0].scope_metrics[0].metrics[0].data {
                Some(metric::Data::Histogram(hist)) => hist.data_points.iter(),
                _ => unreachable!(),
            },
        )
        .collect();
    let got_points: Vec<&HistogramDataPoint> = points
        .iter()
        .map(|p| match &p.metric.data {
            Some(metric::Data::Histogram(hist)) => &hist.data_points[0],
            other => panic!("not a histogram: {other:?}"),
        })
        .collect();
    assert_eq!(got_points, expected_points);

    let services = store.services().unwrap();
    let counts: BTreeMap<&str, (u64, u64)> = services
        .iter()
        .map(|s| (s.name.as_str(), (s.span_count, s.log_count)))
        .collect();
    let n = hours.len() as u64 * TRACES as u64;
    assert_eq!(counts.get("frontend"), Some(&(n, n)));
    assert_eq!(counts.get("db"), Some(&(2 * n, 0)));

    store.refresh();
    let search = |query: &str| LogSearch {
        query: query.into(),
        limit: 1000,
        ..LogSearch::default()
    };
    let errors = store.search_logs(&search("payment declined")).unwrap();
    assert_eq!(errors.len(), hours.len() * TRACES / 5, "one error log in five");
    assert!(errors.windows(2).all(|w| w[0].time() >= w[1].time()), "newest first");
    let phrase = store.search_logs(&search("\"completed for order 7\"")).unwrap();
    assert_eq!(phrase.len(), hours.len());
    let field = store.search_logs(&search("order.id:o-3")).unwrap();
    assert_eq!(field.len(), hours.len(), "attribute field query");
    let field = store.search_logs(&search("attributes.order.id:o-3")).unwrap();
    assert_eq!(
        field.len(),
        hours.len(),
        "attribute field query with the attributes prefix"
    );
    let boolean = store
        .search_logs(&search("(declined OR completed) AND NOT severity:error"))
        .unwrap();
    assert_eq!(boolean.len(), hours.len() * (TRACES - TRACES / 5));
    let limited = store
        .search_logs(&LogSearch {
            limit: 7,
            ..search("order")
        })
        .unwrap();
    assert_eq!(limited.len(), 7.min(hours.len() * TRACES));
    let severe = store
        .search_logs(&LogSearch {
            severity_min: Some(17),
            ..search("")
        })
        .unwrap();
    assert_eq!(severe.len(), hours.len() * TRACES / 5);
    let one = store
        .search_logs(&LogSearch {
            trace_id: Some(trace_id(hours.start, 3)),
            ..search("")
        })
        .unwrap();
    assert_eq!(one.len(), 1);
    assert!(matches!(
        store.search_logs(&search("body:(unclosed")),
        Err(StorageError::BadQuery(_))
    ));

    let hits = store
        .search_traces(&TraceFilter {
            query: None,
            service: Some("frontend".into()),
            name: None,
            status: Some(2),
            attributes: vec![("http.status_code".into(), "500".into())],
            range: TimeRange::ALL,
            limit: 10_000,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(hits.traces.len(), hours.len() * TRACES / 5);
    assert!(hits.traces.windows(2).all(|w| w[0].start >= w[1].start), "newest first");
    // One attribute alone: an int and a string span attribute, a resource attribute.
    let by_attribute = |key: &str, value: &str| {
        store
            .search_traces(&TraceFilter {
                attributes: vec![(key.into(), value.into())],
                limit: 10_000,
                ..Default::default()
            })
            .unwrap()
            .traces
            .len()
    };
    assert_eq!(by_attribute("http.status_code", "500"), hours.len() * TRACES / 5);
    assert_eq!(by_attribute("http.status_code", "50"), 0);
    assert_eq!(by_attribute("user.id", "u7"), hours.len());
    assert_eq!(by_attribute("service.name", "frontend"), hours.len() * TRACES);
    assert_eq!(by_attribute("service.name", "front"), 0);

    // Full-text over spans: name, status message, attributes; combined with span filters.
    let text = |q: &str, status: Option<i32>| {
        store
            .search_traces(&TraceFilter {
                query: Some(q.into()),
                service: None,
                name: None,
                status,
                attributes: vec![],
                range: TimeRange::ALL,
                limit: 10_000,
                ..Default::default()
            })
            .unwrap()
            .traces
    };
    assert_eq!(
        text("\"payment declined\"", None).len(),
        hours.len() * TRACES / 5,
        "status messages"
    );
    assert_eq!(text("orders", None).len(), hours.len() * TRACES, "span names");
    assert_eq!(text("user.id:u7", None).len(), hours.len(), "attributes");
    assert_eq!(
        text("status:error AND service:frontend", None).len(),
        hours.len() * TRACES / 5
    );
    assert_eq!(
        text("checkout", Some(2)).len(),
        hours.len() * TRACES / 5,
        "plus a span filter"
    );
    assert!(matches!(
        store.search_traces(&TraceFilter {
            query: Some("name:(".into()),
            service: None,
            name: None,
            status: None,
            attributes: vec![],
            range: TimeRange::ALL,
            limit: 1,
            ..Default::default()
        }),
        Err(StorageError::BadQuery(_))
    ));
}

#[test]
fn mixed_signals_over_several_hours_read_back_exactly_before_and_after_flush_restart_compaction_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let base = base_time();
    let data = {
        let store = <LocalStore as Backend>::open(dir.path(), options());
        let data = write_hours(&store, base);
        check_exact(&store, &data, 0..HOURS); // half in parts, half in the head
        Backend::flush(&store);
        check_exact(&store, &data, 0..HOURS); // all in parts
        data
    };
    let store = <LocalStore as Backend>::open(dir.path(), options());
    check_exact(&store, &data, 0..HOURS); // after a restart

    // Every partition of every table has two parts; compaction merges each pair.
    assert_eq!(Backend::compact(&store), HOURS * Table::ALL.len() * 2);
    check_exact(&store, &data, 0..HOURS);
    drop(store);
    let store = <LocalStore as Backend>::open(dir.path(), options());
    check_exact(&store, &data, 0..HOURS);
    drop(store);

    // Retention: keep 2 hours of everything, as seen from just after the last hour.
    let mut options = options();
    for signal in [SignalKind::Traces, SignalKind::Logs, SignalKind::Metrics] {
        options.retention.insert(signal, Duration::from_secs(2 * 3600));
    }
    let store = <LocalStore as Backend>::open(dir.path(), options);
    let now = UNIX_EPOCH + Duration::from_nanos(base + HOURS as u64 * HOUR);
    let report = store.enforce_retention(now).unwrap();
    for table in Table::ALL {
        assert_eq!(report.partitions.get(&table), Some(&2), "{table:?}: {report:?}");
    }
    assert_eq!(report.rows.get(&Table::Spans), Some(&(2 * 3 * TRACES as u64)));
    assert!(report.bytes.values().all(|b| *b > 0), "{report:?}");
    check_exact(&store, &data, 2..HOURS);
    let left = std::fs::read_dir(dir.path().join("logs")).unwrap().count();
    assert_eq!(
        left, 2,
        "the expired partitions' directories (parts and index) are gone"
    );
}

#[test]
fn a_trace_whose_spans_arrive_apart_comes_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), options()).unwrap();
    let base = base_time();
    let hour = hour_of_data(0, base, 0..3);
    let mut first = hour.traces.clone();
    let mut second = hour.traces.clone();
    first.resource_spans.truncate(1); // frontend spans
    second.resource_spans.remove(0); // db spans, minutes later
    for rs in &mut second.resource_spans {
        for s in &mut rs.scope_spans[0].spans {
            s.start_time_unix_nano += 2 * HOUR;
            s.end_time_unix_nano += 2 * HOUR;
        }
    }
    let entry = |r: &ExportTraceServiceRequest| WalEntry {
        kind: sift_wal::EntryKind::Received,
        signal: SignalKind::Traces,
        pipeline: "traces".into(),
        items: 0,
        body: Bytes::from(r.encode_to_vec()),
    };
    store.append(1, &[entry(&first)]).unwrap();
    store.flush().unwrap();
    store.append(2, &[entry(&second)]).unwrap();
    // One part (another hour) and the head.
    assert_eq!(store.trace(&trace_id(0, 1), &TimeRange::ALL).unwrap().len(), 3);
    store.flush().unwrap();
    assert_eq!(store.trace(&trace_id(0, 1), &TimeRange::ALL).unwrap().len(), 3);
    // Time-bounded lookups see only the spans in range.
    let early = TimeRange {
        start: Some(base),
        end: Some(base + HOUR),
    };
    assert_eq!(store.trace(&trace_id(0, 1), &early).unwrap().len(), 1);
}

#[test]
fn replaying_the_wal_after_a_crash_stores_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let base = base_time();
    let hours: Vec<Hour> = (0..3).map(|h| hour_of_data(h, base + h as u64 * HOUR, 0..10)).collect();
    {
        let store = LocalStore::open(dir.path(), options()).unwrap();
        store.append(1, &entries(&hours[0])).unwrap();
        store.append(2, &entries(&hours[1])).unwrap();
        assert_eq!(store.flush().unwrap(), 2);
        store.append(3, &entries(&hours[2])).unwrap();
        store.refresh().unwrap(); // head logs indexed durably, part not published
                                  // Crash: no flush.
    }
    // A leftover temporary part must not be taken for data.
    let stray = dir.path().join("spans").join("1970-01-01T00");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("part-000000009999.parquet.tmp"), b"torn").unwrap();

    let store = LocalStore::open(dir.path(), options()).unwrap();
    assert_eq!(store.published_position(), 2);
    assert!(!stray.join("part-000000009999.parquet.tmp").exists());
    // The WAL replays everything after its checkpoint; what is published is skipped.
    for (i, hour) in hours.iter().enumerate() {
        store.append(i as u64 + 1, &entries(hour)).unwrap();
    }
    store.refresh().unwrap();
    for (h, _) in hours.iter().enumerate() {
        assert_eq!(
            store.trace(&trace_id(h, 4), &TimeRange::ALL).unwrap().len(),
            3,
            "hour {h}"
        );
        assert_eq!(
            store.logs_by_trace(&trace_id(h, 4), &TimeRange::ALL).unwrap().len(),
            1,
            "hour {h}"
        );
    }
    let all = store
        .search_logs(&LogSearch {
            query: "order".into(),
            limit: 1000,
            ..LogSearch::default()
        })
        .unwrap();
    assert_eq!(all.len(), 30, "each log once in the full-text index");
    store.flush().unwrap();
    let all = store
        .search_logs(&LogSearch {
            query: "order".into(),
            limit: 1000,
            ..LogSearch::default()
        })
        .unwrap();
    assert_eq!(all.len(), 30);
}

#[test]
fn every_trace_is_found_in_parts_with_many_row_groups() {
    // Ids whose bytes cross 0x7f/0x80 (signed and unsigned orders differ) in a part of several
    // row groups: statistics and bloom filters must never prune a row group holding the id.
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), options()).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut spans = Vec::new();
    for n in 0..20_000u64 {
        let trace_id = [[0xc0; 8], (n * 7919).to_be_bytes()].concat();
        for s in 0..5u64 {
            spans.push(Span {
                trace_id: trace_id.clone(),
                span_id: (n * 10 + s + 1).to_be_bytes().to_vec(),
                name: "s".into(),
                start_time_unix_nano: now,
                ..Default::default()
            });
        }
    }
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    store
        .append(
            1,
            &[WalEntry {
                kind: sift_wal::EntryKind::Received,
                signal: SignalKind::Traces,
                pipeline: "t".into(),
                items: 0,
                body: Bytes::from(request.encode_to_vec()),
            }],
        )
        .unwrap();
    store.flush().unwrap();
    let mut missing = 0;
    // Every 40th id (all 20,000 take minutes in a debug build).
    for n in (0..20_000u64).step_by(40) {
        let trace_id: [u8; 16] = [[0xc0; 8], (n * 7919).to_be_bytes()].concat().try_into().unwrap();
        if store.trace(&trace_id, &TimeRange::ALL).unwrap().len() != 5 {
            missing += 1;
        }
    }
    assert_eq!(missing, 0, "of 500 traces");
}

/// Full-text search over traces, every match.
fn traces_matching(store: &LocalStore, query: &str) -> usize {
    store
        .search_traces(&TraceFilter {
            query: Some(query.into()),
            service: None,
            name: None,
            status: None,
            attributes: vec![],
            range: TimeRange::ALL,
            limit: 1_000_000,
            ..Default::default()
        })
        .unwrap()
        .traces
        .len()
}

#[test]
fn index_merges_stay_within_a_tiny_budget_under_a_long_append_stream() {
    // Local-disk specific: the store-wide merge budget of its full-text indexes.
    const ROUNDS: usize = 240;
    const PER_ROUND: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        index_merges: 2,
        index_segment_docs: 300,
        flush_interval: Duration::from_secs(3600),
        ..options()
    };
    let store = LocalStore::open(dir.path(), options.clone()).unwrap();
    let base = base_time();
    let mut position = 0;
    for round in 0..ROUNDS {
        let traces = round * PER_ROUND..(round + 1) * PER_ROUND;
        for h in 0..2 {
            position += 1;
            let data = hour_of_data(h, base + h as u64 * HOUR, traces.clone());
            store.append(position, &entries(&data)[..2]).unwrap();
        }
        // A refresh commits a segment per written index and starts what merges the budget allows.
        store.refresh().unwrap();
        assert!(store.merge_stats().running <= 2, "{:?}", store.merge_stats());
        if round % 80 == 79 {
            store.flush().unwrap();
        }
    }
    let stats = store.merge_stats();
    assert!(stats.peak <= 2, "{stats:?}");
    assert!(stats.started >= 20, "merges do run: {stats:?}");
    // Without merges each index would hold a segment per refresh (240). With them: segments of
    // at least half the bound (at most 2 per 300 documents), plus fewer than the minimum of small
    // ones and one merge's worth in flight.
    let layout = store.layout();
    assert_eq!(layout.index_segments.len(), 4, "{layout:?}");
    for (partition, segments) in &layout.index_segments {
        let docs = ROUNDS * PER_ROUND; // one log per trace, one document per trace and part
        let bound = docs / 150 + 3 + 8 + 2;
        assert!(*segments <= bound, "{partition:?}: {segments} segments, bound {bound}");
    }
    // Nothing was lost or duplicated by merging, before and after a restart.
    let total = ROUNDS * PER_ROUND * 2;
    for store in [store, LocalStore::open(dir.path(), options).unwrap()] {
        store.refresh().unwrap();
        let all = |query: &str| common::logs_matching(&store, query, 100_000);
        assert_eq!(all("payment declined"), total / 5);
        assert_eq!(all("order"), total);
        assert_eq!(traces_matching(&store, "orders"), total);
        assert_eq!(traces_matching(&store, "\"payment declined\""), total / 5);
    }
}

#[test]
fn index_writers_and_the_head_stay_within_a_tiny_memory_limit_across_many_partitions() {
    // Local-disk specific: the store's memory budget. A 64 MiB limit allows one index writer per
    // table; rows arrive for four hours in turn, so every append to another hour must close the
    // writer of the last one (committing its documents) before it opens its own.
    const ROUNDS: usize = 40;
    const PER_ROUND: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        memory_limit: 64 << 20,
        flush_interval: Duration::from_secs(3600),
        ..options()
    };
    let budget = options.memory();
    assert_eq!(budget.index_writers, 1, "{budget:?}");
    let store = LocalStore::open(dir.path(), options.clone()).unwrap();
    let base = base_time();
    let mut position = 0;
    for round in 0..ROUNDS {
        let traces = round * PER_ROUND..(round + 1) * PER_ROUND;
        for h in 0..HOURS {
            position += 1;
            let data = hour_of_data(h, base + h as u64 * HOUR, traces.clone());
            let records = entries(&data)[..2].iter().map(|e| (position, e.clone())).collect();
            store.write(position, records).unwrap();
            let used = store.memory_use();
            assert!(
                used.index_writers <= budget.index_writers,
                "round {round}, hour {h}: {used:?}"
            );
            assert!(used.index_writer_bytes <= 2 * budget.index_writer_bytes, "{used:?}");
            assert!(used.head_bytes < budget.head_bytes, "{used:?}");
        }
        if round % 10 == 9 {
            store.refresh().unwrap();
        }
        if round % 20 == 19 {
            store.flush().unwrap();
        }
    }
    // Every document written went into its hour's index once, whatever writer closing it took,
    // and is found before and after a restart.
    let total = ROUNDS * PER_ROUND * HOURS;
    for store in [store, LocalStore::open(dir.path(), options).unwrap()] {
        store.refresh().unwrap();
        let all = |query: &str| common::logs_matching(&store, query, 100_000);
        assert_eq!(all("order"), total);
        assert_eq!(traces_matching(&store, "orders"), total);
        assert!(store.memory_use().index_writers <= budget.index_writers);
    }
}
