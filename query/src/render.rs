//! Stored rows → the JSON shapes of SPEC §4: ids as lowercase hex, 64-bit nanosecond times as
//! strings, attributes as objects whose values keep their OTLP type, enums by name.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};
use sift_proto::otlp::common::v1::{any_value, AnyValue};
use sift_storage::{json_object, json_value, ExemplarRow, LogRow, SpanRow, TraceSummary};

fn id(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn nanos(t: u64) -> Value {
    Value::String(t.to_string())
}

/// OTLP span kind by name.
pub fn span_kind(kind: i32) -> &'static str {
    match kind {
        1 => "INTERNAL",
        2 => "SERVER",
        3 => "CLIENT",
        4 => "PRODUCER",
        5 => "CONSUMER",
        _ => "UNSPECIFIED",
    }
}

/// OTLP status code by name.
pub fn status_code(code: i32) -> &'static str {
    match code {
        1 => "OK",
        2 => "ERROR",
        _ => "UNSET",
    }
}

/// A log body: a string body is a JSON string, a structured one the corresponding JSON value.
fn body(value: Option<&AnyValue>) -> Value {
    match value {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        }) => Value::String(s.clone()),
        Some(v) => json_value(v),
        None => Value::Null,
    }
}

/// One span.
pub fn span(row: &SpanRow) -> Value {
    let s = &row.span;
    let status = s.status.clone().unwrap_or_default();
    json!({
        "trace_id": id(&s.trace_id),
        "span_id": id(&s.span_id),
        "parent_span_id": id(&s.parent_span_id),
        "name": s.name,
        "kind": span_kind(s.kind),
        "service_name": row.origin.service_name(),
        "start_time_unix_nano": nanos(s.start_time_unix_nano),
        "end_time_unix_nano": nanos(s.end_time_unix_nano),
        "duration_ns": s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano),
        "status": { "code": status_code(status.code), "message": status.message },
        "trace_state": s.trace_state,
        "attributes": json_object(&s.attributes),
        "resource": json_object(&row.origin.resource.attributes),
        "scope": { "name": row.origin.scope.name, "version": row.origin.scope.version },
        "events": s.events.iter().map(|e| json!({
            "name": e.name,
            "time_unix_nano": nanos(e.time_unix_nano),
            "attributes": json_object(&e.attributes),
        })).collect::<Vec<_>>(),
        "links": s.links.iter().map(|l| json!({
            "trace_id": id(&l.trace_id),
            "span_id": id(&l.span_id),
            "trace_state": l.trace_state,
            "attributes": json_object(&l.attributes),
        })).collect::<Vec<_>>(),
    })
}

/// One log record.
pub fn log(row: &LogRow) -> Value {
    let l = &row.log;
    json!({
        "time_unix_nano": nanos(row.time()),
        "observed_time_unix_nano": nanos(l.observed_time_unix_nano),
        "severity_number": l.severity_number,
        "severity_text": l.severity_text,
        "body": body(l.body.as_ref()),
        "service_name": row.origin.service_name(),
        "trace_id": id(&l.trace_id),
        "span_id": id(&l.span_id),
        "event_name": l.event_name,
        "attributes": json_object(&l.attributes),
        "resource": json_object(&row.origin.resource.attributes),
    })
}
/// One exemplar.
pub fn exemplar(row: &ExemplarRow) -> Value {
    json!({
        "metric": row.metric,
        "value": row.value,
        "time_unix_nano": nanos(row.time_unix_nano),
        "trace_id": id(&row.trace_id),
        "span_id": id(&row.span_id),
        "service_name": row.service_name,
        "labels": json_object(&row.labels),
        "attributes": json_object(&row.attributes),
    })
}

/// A trace's summary computed from its spans (the trace response's; searches read the same
/// summary from the index).
pub fn summary_of(trace_id: &[u8; 16], spans: &[SpanRow]) -> TraceSummary {
    let ids: BTreeSet<&[u8]> = spans.iter().map(|r| r.span.span_id.as_slice()).collect();
    // The root: a span without a parent, else one whose parent is missing; the earliest if several.
    let root = spans
        .iter()
        .filter(|r| r.span.parent_span_id.is_empty())
        .min_by_key(|r| r.span.start_time_unix_nano)
        .or_else(|| {
            spans
                .iter()
                .filter(|r| !ids.contains(r.span.parent_span_id.as_slice()))
                .min_by_key(|r| r.span.start_time_unix_nano)
        });
    let start = spans.iter().map(|r| r.span.start_time_unix_nano).min().unwrap_or(0);
    let end = spans.iter().map(|r| r.span.end_time_unix_nano).max().unwrap_or(0);
    let services: BTreeSet<&str> = spans.iter().map(|r| r.origin.service_name()).collect();
    TraceSummary {
        trace_id: *trace_id,
        root_service: root.map_or("", |r| r.origin.service_name()).to_owned(),
        root_name: root.map_or(String::new(), |r| r.span.name.clone()),
        start,
        duration: end.saturating_sub(start),
        span_count: spans.len() as u64,
        error_count: spans
            .iter()
            .filter(|r| r.span.status.as_ref().is_some_and(|s| s.code == 2))
            .count() as u64,
        services: services.into_iter().map(str::to_owned).collect(),
    }
}

/// A trace summary as SPEC §4 shows it (with its `trace_id`).
pub fn summary(trace: &TraceSummary) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("trace_id".into(), Value::String(id(&trace.trace_id)));
    out.insert("root_service".into(), Value::String(trace.root_service.clone()));
    out.insert("root_name".into(), Value::String(trace.root_name.clone()));
    out.insert("start_time_unix_nano".into(), nanos(trace.start));
    out.insert("duration_ns".into(), Value::from(trace.duration));
    out.insert("span_count".into(), Value::from(trace.span_count));
    out.insert("error_count".into(), Value::from(trace.error_count));
    out.insert(
        "services".into(),
        Value::Array(trace.services.iter().map(|s| Value::String(s.clone())).collect()),
    );
    out
}

/// The body text with the query's plain words wrapped in `<em>` (case-insensitive), if any matched.
pub fn highlight(row: &LogRow, query: &str) -> Option<String> {
    let text = match row.log.body.as_ref() {
        Some(v) => match &v.value {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            _ => json_value(v).to_string(),
        },
        None => return None,
    };
    let words: BTreeSet<String> = query
        .split(|c: char| c.is_whitespace() || "()\"+-".contains(c))
        .filter(|w| !w.is_empty() && !w.contains(':') && !matches!(*w, "AND" | "OR" | "NOT"))
        .map(str::to_lowercase)
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut matched = false;
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let word_len = rest
            .char_indices()
            .find(|(_, c)| !c.is_alphanumeric())
            .map_or(rest.len(), |(i, _)| i);
        if word_len == 0 {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let word = &rest[..word_len];
        if words.contains(&word.to_lowercase()) {
            matched = true;
            out.push_str("<em>");
            out.push_str(word);
            out.push_str("</em>");
        } else {
            out.push_str(word);
        }
        rest = &rest[word_len..];
    }
    matched.then_some(out)
}
