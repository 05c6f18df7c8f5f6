//! prost messages → OTLP/JSON: lowerCamelCase names, hex ids, 64-bit integers as strings, enums as
//! integers, default values omitted, and non-finite doubles as `"NaN"`/`"Infinity"`/`"-Infinity"`
//! (never `null`, which the proto3 JSON mapping does not allow).

use std::fmt::Write as _;

use base64::Engine as _;

use crate::otlp::collector::logs::v1::ExportLogsServiceRequest;
use crate::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::otlp::collector::trace::v1::ExportTraceServiceRequest;
use crate::otlp::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use crate::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use crate::otlp::metrics::v1::{
    exemplar, exponential_histogram_data_point, metric, number_data_point, Exemplar, ExponentialHistogramDataPoint,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, SummaryDataPoint,
};
use crate::otlp::resource::v1::Resource;
use crate::otlp::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};

/// An object being written that leaves out proto3 default values.
struct Obj<'o> {
    out: &'o mut String,
    empty: bool,
}

impl<'o> Obj<'o> {
    fn open(out: &'o mut String) -> Self {
        out.push('{');
        Obj { out, empty: true }
    }
    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }
    fn raw(mut self, key: &str, write: impl FnOnce(&mut String)) -> Self {
        self.key(key);
        write(self.out);
        self
    }
    fn string(self, key: &str, value: &str) -> Self {
        if value.is_empty() {
            self
        } else {
            self.raw(key, |out| write_str(out, value))
        }
    }
    /// A string even when empty (a oneof member is present whatever its value).
    fn string_always(self, key: &str, value: &str) -> Self {
        self.raw(key, |out| write_str(out, value))
    }
    fn id(self, key: &str, value: &[u8]) -> Self {
        if value.is_empty() {
            self
        } else {
            self.raw(key, |out| {
                out.push('"');
                out.push_str(&hex::encode(value));
                out.push('"');
            })
        }
    }
    fn u64(self, key: &str, value: u64) -> Self {
        if value == 0 {
            self
        } else {
            self.raw(key, |out| {
                let _ = write!(out, "\"{value}\"");
            })
        }
    }
    fn u32(self, key: &str, value: u32) -> Self {
        if value == 0 {
            self
        } else {
            self.raw(key, |out| {
                let _ = write!(out, "{value}");
            })
        }
    }
    fn i32(self, key: &str, value: i32) -> Self {
        if value == 0 {
            self
        } else {
            self.raw(key, |out| {
                let _ = write!(out, "{value}");
            })
        }
    }
    fn bool(self, key: &str, value: bool) -> Self {
        if value {
            self.raw(key, |out| out.push_str("true"))
        } else {
            self
        }
    }
    fn f64(self, key: &str, value: f64) -> Self {
        if value == 0.0 && value.is_sign_positive() {
            self
        } else {
            self.raw(key, |out| write_double(out, value))
        }
    }
    fn opt_f64(self, key: &str, value: Option<f64>) -> Self {
        match value {
            Some(v) => self.raw(key, |out| write_double(out, v)),
            None => self,
        }
    }
    fn list<T>(self, key: &str, items: &[T], encode: impl Fn(&T, &mut String)) -> Self {
        if items.is_empty() {
            return self;
        }
        self.raw(key, |out| array(items, encode, out))
    }
    fn message<T>(self, key: &str, item: Option<&T>, encode: impl Fn(&T, &mut String)) -> Self {
        match item {
            Some(item) => self.raw(key, |out| encode(item, out)),
            None => self,
        }
    }
    fn done(self) {
        self.out.push('}');
    }
}

/// A JSON string literal.
fn write_str(out: &mut String, value: &str) {
    out.push('"');
    let clean = !value.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
    if clean {
        out.push_str(value);
    } else {
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

/// A double, with the non-finite values as the strings the proto3 JSON mapping requires.
fn write_double(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("\"NaN\"");
    } else if value == f64::INFINITY {
        out.push_str("\"Infinity\"");
    } else if value == f64::NEG_INFINITY {
        out.push_str("\"-Infinity\"");
    } else {
        out.push_str(ryu::Buffer::new().format_finite(value));
    }
}

fn write_u64_string(value: &u64, out: &mut String) {
    let _ = write!(out, "\"{value}\"");
}

fn write_double_item(value: &f64, out: &mut String) {
    write_double(out, *value);
}

/// A JSON array of `items`, each written by `encode`.
pub(crate) fn array<T>(items: &[T], encode: impl Fn(&T, &mut String), out: &mut String) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        encode(item, out);
    }
    out.push(']');
}

// ---- common ---------------------------------------------------------------------------------

pub(crate) fn any_value(value: &AnyValue, out: &mut String) {
    let obj = Obj::open(out);
    match &value.value {
        None => obj,
        Some(any_value::Value::StringValue(s)) => obj.string_always("stringValue", s),
        Some(any_value::Value::BoolValue(b)) => {
            obj.raw("boolValue", |out| out.push_str(if *b { "true" } else { "false" }))
        }
        Some(any_value::Value::IntValue(i)) => obj.raw("intValue", |out| {
            let _ = write!(out, "\"{i}\"");
        }),
        Some(any_value::Value::DoubleValue(d)) => obj.raw("doubleValue", |out| write_double(out, *d)),
        Some(any_value::Value::BytesValue(b)) => obj.raw("bytesValue", |out| {
            write_str(out, &base64::engine::general_purpose::STANDARD.encode(b))
        }),
        Some(any_value::Value::ArrayValue(a)) => obj.raw("arrayValue", |out| {
            Obj::open(out).list("values", &a.values, any_value).done()
        }),
        Some(any_value::Value::KvlistValue(kv)) => obj.raw("kvlistValue", |out| {
            Obj::open(out).list("values", &kv.values, key_value).done()
        }),
        Some(any_value::Value::StringValueStrindex(i)) => obj.raw("stringValueStrindex", |out| {
            let _ = write!(out, "{i}");
        }),
    }
    .done()
}

pub(crate) fn key_value(kv: &KeyValue, out: &mut String) {
    Obj::open(out)
        .string("key", &kv.key)
        .message("value", kv.value.as_ref(), any_value)
        .done()
}

fn resource(r: &Resource, out: &mut String) {
    Obj::open(out)
        .list("attributes", &r.attributes, key_value)
        .u32("droppedAttributesCount", r.dropped_attributes_count)
        .done()
}

fn scope(s: &InstrumentationScope, out: &mut String) {
    Obj::open(out)
        .string("name", &s.name)
        .string("version", &s.version)
        .list("attributes", &s.attributes, key_value)
        .u32("droppedAttributesCount", s.dropped_attributes_count)
        .done()
}

// ---- traces ---------------------------------------------------------------------------------

pub(crate) fn traces_request(req: &ExportTraceServiceRequest, out: &mut String) {
    Obj::open(out)
        .list("resourceSpans", &req.resource_spans, resource_spans)
        .done()
}

fn resource_spans(rs: &ResourceSpans, out: &mut String) {
    Obj::open(out)
        .message("resource", rs.resource.as_ref(), resource)
        .list("scopeSpans", &rs.scope_spans, scope_spans)
        .string("schemaUrl", &rs.schema_url)
        .done()
}

fn scope_spans(ss: &ScopeSpans, out: &mut String) {
    Obj::open(out)
        .message("scope", ss.scope.as_ref(), scope)
        .list("spans", &ss.spans, span)
        .string("schemaUrl", &ss.schema_url)
        .done()
}

fn span(s: &Span, out: &mut String) {
    Obj::open(out)
        .id("traceId", &s.trace_id)
        .id("spanId", &s.span_id)
        .string("traceState", &s.trace_state)
        .id("parentSpanId", &s.parent_span_id)
        .u32("flags", s.flags)
        .string("name", &s.name)
        .i32("kind", s.kind)
        .u64("startTimeUnixNano", s.start_time_unix_nano)
        .u64("endTimeUnixNano", s.end_time_unix_nano)
        .list("attributes", &s.attributes, key_value)
        .u32("droppedAttributesCount", s.dropped_attributes_count)
        .list("events", &s.events, span_event)
        .u32("droppedEventsCount", s.dropped_events_count)
        .list("links", &s.links, span_link)
        .u32("droppedLinksCount", s.dropped_links_count)
        .message("status", s.status.as_ref(), span_status)
        .done()
}

pub(crate) fn span_event(e: &span::Event, out: &mut String) {
    Obj::open(out)
        .u64("timeUnixNano", e.time_unix_nano)
        .string("name", &e.name)
        .list("attributes", &e.attributes, key_value)
        .u32("droppedAttributesCount", e.dropped_attributes_count)
        .done()
}

pub(crate) fn span_link(l: &span::Link, out: &mut String) {
    Obj::open(out)
        .id("traceId", &l.trace_id)
        .id("spanId", &l.span_id)
        .string("traceState", &l.trace_state)
        .list("attributes", &l.attributes, key_value)
        .u32("droppedAttributesCount", l.dropped_attributes_count)
        .u32("flags", l.flags)
        .done()
}

fn span_status(s: &Status, out: &mut String) {
    Obj::open(out).string("message", &s.message).i32("code", s.code).done()
}

// ---- logs -----------------------------------------------------------------------------------

pub(crate) fn logs_request(req: &ExportLogsServiceRequest, out: &mut String) {
    Obj::open(out)
        .list("resourceLogs", &req.resource_logs, resource_logs)
        .done()
}

fn resource_logs(rl: &ResourceLogs, out: &mut String) {
    Obj::open(out)
        .message("resource", rl.resource.as_ref(), resource)
        .list("scopeLogs", &rl.scope_logs, scope_logs)
        .string("schemaUrl", &rl.schema_url)
        .done()
}

fn scope_logs(sl: &ScopeLogs, out: &mut String) {
    Obj::open(out)
        .message("scope", sl.scope.as_ref(), scope)
        .list("logRecords", &sl.log_records, log_record)
        .string("schemaUrl", &sl.schema_url)
        .done()
}

fn log_record(l: &LogRecord, out: &mut String) {
    Obj::open(out)
        .u64("timeUnixNano", l.time_unix_nano)
        .u64("observedTimeUnixNano", l.observed_time_unix_nano)
        .i32("severityNumber", l.severity_number)
        .string("severityText", &l.severity_text)
        .message("body", l.body.as_ref(), any_value)
        .list("attributes", &l.attributes, key_value)
        .u32("droppedAttributesCount", l.dropped_attributes_count)
        .u32("flags", l.flags)
        .id("traceId", &l.trace_id)
        .id("spanId", &l.span_id)
        .string("eventName", &l.event_name)
        .done()
}

// ---- metrics --------------------------------------------------------------------------------

pub(crate) fn metrics_request(req: &ExportMetricsServiceRequest, out: &mut String) {
    Obj::open(out)
        .list("resourceMetrics", &req.resource_metrics, resource_metrics)
        .done()
}

fn resource_metrics(rm: &ResourceMetrics, out: &mut String) {
    Obj::open(out)
        .message("resource", rm.resource.as_ref(), resource)
        .list("scopeMetrics", &rm.scope_metrics, scope_metrics)
        .string("schemaUrl", &rm.schema_url)
        .done()
}

fn scope_metrics(sm: &ScopeMetrics, out: &mut String) {
    Obj::open(out)
        .message("scope", sm.scope.as_ref(), scope)
        .list("metrics", &sm.metrics, metric)
        .string("schemaUrl", &sm.schema_url)
        .done()
}

fn metric(m: &Metric, out: &mut String) {
    let obj = Obj::open(out)
        .string("name", &m.name)
        .string("description", &m.description)
        .string("unit", &m.unit)
        .list("metadata", &m.metadata, key_value);
    match &m.data {
        None => obj,
        Some(metric::Data::Gauge(g)) => obj.raw("gauge", |out| {
            Obj::open(out)
                .list("dataPoints", &g.data_points, number_data_point)
                .done()
        }),
        Some(metric::Data::Sum(s)) => obj.raw("sum", |out| {
            Obj::open(out)
                .list("dataPoints", &s.data_points, number_data_point)
                .i32("aggregationTemporality", s.aggregation_temporality)
                .bool("isMonotonic", s.is_monotonic)
                .done()
        }),
        Some(metric::Data::Histogram(h)) => obj.raw("histogram", |out| {
            Obj::open(out)
                .list("dataPoints", &h.data_points, histogram_data_point)
                .i32("aggregationTemporality", h.aggregation_temporality)
                .done()
        }),
        Some(metric::Data::ExponentialHistogram(h)) => obj.raw("exponentialHistogram", |out| {
            Obj::open(out)
                .list("dataPoints", &h.data_points, exponential_histogram_data_point)
                .i32("aggregationTemporality", h.aggregation_temporality)
                .done()
        }),
        Some(metric::Data::Summary(s)) => obj.raw("summary", |out| {
            Obj::open(out)
                .list("dataPoints", &s.data_points, summary_data_point)
                .done()
        }),
    }
    .done()
}

fn number_data_point(p: &NumberDataPoint, out: &mut String) {
    let obj = Obj::open(out)
        .list("attributes", &p.attributes, key_value)
        .u64("startTimeUnixNano", p.start_time_unix_nano)
        .u64("timeUnixNano", p.time_unix_nano)
        .list("exemplars", &p.exemplars, exemplar)
        .u32("flags", p.flags);
    match p.value {
        None => obj,
        Some(number_data_point::Value::AsDouble(d)) => obj.raw("asDouble", |out| write_double(out, d)),
        Some(number_data_point::Value::AsInt(i)) => obj.raw("asInt", |out| {
            let _ = write!(out, "\"{i}\"");
        }),
    }
    .done()
}

fn histogram_data_point(p: &HistogramDataPoint, out: &mut String) {
    Obj::open(out)
        .list("attributes", &p.attributes, key_value)
        .u64("startTimeUnixNano", p.start_time_unix_nano)
        .u64("timeUnixNano", p.time_unix_nano)
        .u64("count", p.count)
        .opt_f64("sum", p.sum)
        .list("bucketCounts", &p.bucket_counts, write_u64_string)
        .list("explicitBounds", &p.explicit_bounds, write_double_item)
        .list("exemplars", &p.exemplars, exemplar)
        .u32("flags", p.flags)
        .opt_f64("min", p.min)
        .opt_f64("max", p.max)
        .done()
}

fn buckets(b: &exponential_histogram_data_point::Buckets, out: &mut String) {
    Obj::open(out)
        .i32("offset", b.offset)
        .list("bucketCounts", &b.bucket_counts, write_u64_string)
        .done()
}

fn exponential_histogram_data_point(p: &ExponentialHistogramDataPoint, out: &mut String) {
    Obj::open(out)
        .list("attributes", &p.attributes, key_value)
        .u64("startTimeUnixNano", p.start_time_unix_nano)
        .u64("timeUnixNano", p.time_unix_nano)
        .u64("count", p.count)
        .opt_f64("sum", p.sum)
        .i32("scale", p.scale)
        .u64("zeroCount", p.zero_count)
        .message("positive", p.positive.as_ref(), buckets)
        .message("negative", p.negative.as_ref(), buckets)
        .u32("flags", p.flags)
        .list("exemplars", &p.exemplars, exemplar)
        .opt_f64("min", p.min)
        .opt_f64("max", p.max)
        .f64("zeroThreshold", p.zero_threshold)
        .done()
}

fn summary_data_point(p: &SummaryDataPoint, out: &mut String) {
    Obj::open(out)
        .list("attributes", &p.attributes, key_value)
        .u64("startTimeUnixNano", p.start_time_unix_nano)
        .u64("timeUnixNano", p.time_unix_nano)
        .u64("count", p.count)
        .f64("sum", p.sum)
        .list("quantileValues", &p.quantile_values, |q, out| {
            Obj::open(out).f64("quantile", q.quantile).f64("value", q.value).done()
        })
        .u32("flags", p.flags)
        .done()
}

pub(crate) fn exemplar(e: &Exemplar, out: &mut String) {
    let obj = Obj::open(out)
        .list("filteredAttributes", &e.filtered_attributes, key_value)
        .u64("timeUnixNano", e.time_unix_nano)
        .id("spanId", &e.span_id)
        .id("traceId", &e.trace_id);
    match e.value {
        None => obj,
        Some(exemplar::Value::AsDouble(d)) => obj.raw("asDouble", |out| write_double(out, d)),
        Some(exemplar::Value::AsInt(i)) => obj.raw("asInt", |out| {
            let _ = write!(out, "\"{i}\"");
        }),
    }
    .done()
}
