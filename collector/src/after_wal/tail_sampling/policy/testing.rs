//! Helpers for the policies' table-driven tests.

use std::sync::Arc;
use std::time::Instant;

use sift_config::TailSamplingConfig;
use sift_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use sift_proto::otlp::trace::v1::{status, Span, Status};

use super::{build, NamedPolicy, Verdict};
use crate::after_wal::tail_sampling::trace::{Origin, Trace, TraceSpan};
use sift_proto::otlp::resource::v1::Resource;

/// The policy described by `json` (one Collector policy entry).
pub(crate) fn policy(json: serde_json::Value) -> NamedPolicy {
    let configs = TailSamplingConfig::parse_policies(serde_json::Value::Array(vec![json]), "policies")
        .unwrap_or_else(|e| panic!("{e:?}"));
    build(&configs[0])
}

pub(crate) fn attr(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A span builder for tests.
#[derive(Clone, Default)]
pub(crate) struct SpanSpec {
    pub trace: u8,
    pub start_ms: u64,
    pub duration_ms: u64,
    pub status: i32,
    pub attributes: Vec<KeyValue>,
    pub resource: Vec<KeyValue>,
    pub trace_state: String,
}

pub(crate) fn trace(specs: &[SpanSpec]) -> Trace {
    let spans = specs
        .iter()
        .enumerate()
        .map(|(i, s)| TraceSpan {
            span: Span {
                trace_id: vec![s.trace.max(1); 16],
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                start_time_unix_nano: 1_000_000_000_000 + s.start_ms * 1_000_000,
                end_time_unix_nano: 1_000_000_000_000 + (s.start_ms + s.duration_ms) * 1_000_000,
                status: Some(Status {
                    code: s.status,
                    message: String::new(),
                }),
                attributes: s.attributes.clone(),
                trace_state: s.trace_state.clone(),
                ..Default::default()
            },
            origin: Arc::new(Origin {
                resource: Resource {
                    attributes: s.resource.clone(),
                    ..Default::default()
                },
                ..Default::default()
            }),
        })
        .collect();
    Trace { spans }
}

pub(crate) fn one(spec: SpanSpec) -> Trace {
    trace(&[spec])
}

pub(crate) const ERROR: i32 = status::StatusCode::Error as i32;
pub(crate) const OK: i32 = status::StatusCode::Ok as i32;

/// Asserts `policy`'s verdict on each (description, trace, expected verdict) row.
pub(crate) fn check(policy: &NamedPolicy, rows: &[(&str, Trace, Verdict)]) {
    let now = Instant::now();
    for (what, trace, expected) in rows {
        assert_eq!(policy.evaluate(trace, now), *expected, "{}: {what}", policy.name);
    }
}
