//! Test data shared by the store's integration tests: WAL entries of spans, log records and
//! gauge points, all in one hour partition.
#![allow(dead_code)]

use prost::Message as _;
use sift_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sift_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sift_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use sift_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sift_proto::otlp::metrics::v1::{metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics};
use sift_proto::otlp::resource::v1::Resource;
use sift_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use sift_proto::SignalKind;
use sift_wal::WalEntry;

pub fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

pub fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: text("shop"),
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// A fixed hour (so every batch lands in one partition).
pub const BASE: u64 = 1_795_636_800_000_000_000;

pub fn trace_id(n: u64) -> [u8; 16] {
    let mut id = [0x5au8; 16];
    id[8..].copy_from_slice(&n.to_be_bytes());
    id
}

/// A WAL entry with one span for each trace in `traces`.
pub fn spans(traces: std::ops::Range<u64>) -> WalEntry {
    let spans = traces
        .map(|n| Span {
            trace_id: trace_id(n).to_vec(),
            span_id: (n + 1).to_be_bytes().to_vec(),
            name: format!("GET /item/{n}"),
            start_time_unix_nano: BASE + n * 1000,
            end_time_unix_nano: BASE + n * 1000 + 500,
            ..Default::default()
        })
        .collect();
    span_entry(spans)
}

/// A WAL entry with `spans`, of the test service.
pub fn span_entry(spans: Vec<Span>) -> WalEntry {
    span_entry_of("shop", spans)
}

/// A WAL entry with `spans`, of service `service`.
pub fn span_entry_of(service: &str, spans: Vec<Span>) -> WalEntry {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: text(service),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    entry(SignalKind::Traces, request.encode_to_vec())
}

/// A WAL entry with one log record for each number in `records`, saying `word-<n>`.
pub fn logs(records: std::ops::Range<u64>) -> WalEntry {
    let log_records = records
        .map(|n| LogRecord {
            time_unix_nano: BASE + n * 1000,
            severity_number: 9,
            body: text(&format!("order shipped word{n}")),
            trace_id: trace_id(n).to_vec(),
            ..Default::default()
        })
        .collect();
    log_entry(log_records)
}

/// A WAL entry with `log_records`, of the test service.
pub fn log_entry(log_records: Vec<LogRecord>) -> WalEntry {
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    entry(SignalKind::Logs, request.encode_to_vec())
}

/// A WAL entry with one gauge point for each number in `points`.
pub fn points(points: std::ops::Range<u64>) -> WalEntry {
    let data_points = points
        .map(|n| NumberDataPoint {
            time_unix_nano: BASE + n * 1000,
            value: Some(sift_proto::otlp::metrics::v1::number_data_point::Value::AsInt(n as i64)),
            ..Default::default()
        })
        .collect();
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    data: Some(metric::Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    entry(SignalKind::Metrics, request.encode_to_vec())
}

pub fn entry(signal: SignalKind, body: Vec<u8>) -> WalEntry {
    WalEntry::decode(&WalEntry::encode(sift_wal::EntryKind::Received, signal, "p", 0, &body)).unwrap()
}

/// How many log records a full-text search for `query` finds (at most `limit`).
pub fn logs_matching(store: &sift_storage::LocalStore, query: &str, limit: usize) -> usize {
    use sift_storage::Store as _;
    store
        .search_logs(&sift_storage::LogSearch {
            query: query.into(),
            limit,
            ..sift_storage::LogSearch::default()
        })
        .unwrap()
        .len()
}
