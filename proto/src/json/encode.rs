//! prost messages → OTLP/JSON: lowerCamelCase names, hex ids, 64-bit integers as strings, enums as
//! integers, default values omitted, and non-finite doubles as `"NaN"`/`"Infinity"`/`"-Infinity"`
//! (never `null`, which the proto3 JSON mapping does not allow).

use base64::Engine as _;
use serde_json::{Map, Value};

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

/// An object under construction that leaves out proto3 default values.
#[derive(Default)]
struct Obj(Map<String, Value>);

impl Obj {
    fn put(mut self, key: &str, value: Value) -> Self {
        self.0.insert(key.to_owned(), value);
        self
    }
    fn string(self, key: &str, value: &str) -> Self {
        if value.is_empty() {
            self
        } else {
            self.put(key, Value::String(value.to_owned()))
        }
    }
    fn id(self, key: &str, value: &[u8]) -> Self {
        if value.is_empty() {
            self
        } else {
            self.put(key, Value::String(hex::encode(value)))
        }
    }
    fn u64(self, key: &str, value: u64) -> Self {
        if value == 0 {
            self
        } else {
            self.put(key, Value::String(value.to_string()))
        }
    }
    fn u32(self, key: &str, value: u32) -> Self {
        if value == 0 {
            self
        } else {
            self.put(key, Value::from(value))
        }
    }
    fn i32(self, key: &str, value: i32) -> Self {
        if value == 0 {
            self
        } else {
            self.put(key, Value::from(value))
        }
    }
    fn bool(self, key: &str, value: bool) -> Self {
        if value {
            self.put(key, Value::Bool(true))
        } else {
            self
        }
    }
    fn f64(self, key: &str, value: f64) -> Self {
        if value == 0.0 && value.is_sign_positive() {
            self
        } else {
            self.put(key, double(value))
        }
    }
    fn opt_f64(self, key: &str, value: Option<f64>) -> Self {
        match value {
            Some(v) => self.put(key, double(v)),
            None => self,
        }
    }
    fn list<T>(self, key: &str, items: &[T], encode: impl Fn(&T) -> Value) -> Self {
        if items.is_empty() {
            self
        } else {
            self.put(key, Value::Array(items.iter().map(encode).collect()))
        }
    }
    fn message<T>(self, key: &str, item: Option<&T>, encode: impl Fn(&T) -> Value) -> Self {
        match item {
            Some(item) => self.put(key, encode(item)),
            None => self,
        }
    }
    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

fn double(value: f64) -> Value {
    if value.is_nan() {
        Value::String("NaN".into())
    } else if value == f64::INFINITY {
        Value::String("Infinity".into())
    } else if value == f64::NEG_INFINITY {
        Value::String("-Infinity".into())
    } else {
        serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
    }
}

// ---- common ---------------------------------------------------------------------------------

pub(crate) fn any_value(value: &AnyValue) -> Value {
    let obj = Obj::default();
    match &value.value {
        None => obj,
        Some(any_value::Value::StringValue(s)) => obj.put("stringValue", Value::String(s.clone())),
        Some(any_value::Value::BoolValue(b)) => obj.put("boolValue", Value::Bool(*b)),
        Some(any_value::Value::IntValue(i)) => obj.put("intValue", Value::String(i.to_string())),
        Some(any_value::Value::DoubleValue(d)) => obj.put("doubleValue", double(*d)),
        Some(any_value::Value::BytesValue(b)) => obj.put(
            "bytesValue",
            Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        ),
        Some(any_value::Value::ArrayValue(a)) => {
            obj.put("arrayValue", Obj::default().list("values", &a.values, any_value).done())
        }
        Some(any_value::Value::KvlistValue(kv)) => obj.put(
            "kvlistValue",
            Obj::default().list("values", &kv.values, key_value).done(),
        ),
        Some(any_value::Value::StringValueStrindex(i)) => obj.put("stringValueStrindex", Value::from(*i)),
    }
    .done()
}

fn key_value(kv: &KeyValue) -> Value {
    Obj::default()
        .string("key", &kv.key)
        .message("value", kv.value.as_ref(), any_value)
        .done()
}

fn resource(r: &Resource) -> Value {
    Obj::default()
        .list("attributes", &r.attributes, key_value)
        .u32("droppedAttributesCount", r.dropped_attributes_count)
        .done()
}

fn scope(s: &InstrumentationScope) -> Value {
    Obj::default()
        .string("name", &s.name)
        .string("version", &s.version)
        .list("attributes", &s.attributes, key_value)
        .u32("droppedAttributesCount", s.dropped_attributes_count)
        .done()
}

// ---- traces ---------------------------------------------------------------------------------

pub(crate) fn traces_request(req: &ExportTraceServiceRequest) -> Value {
    Obj::default()
        .list("resourceSpans", &req.resource_spans, resource_spans)
        .done()
}

fn resource_spans(rs: &ResourceSpans) -> Value {
    Obj::default()
        .message("resource", rs.resource.as_ref(), resource)
        .list("scopeSpans", &rs.scope_spans, scope_spans)
        .string("schemaUrl", &rs.schema_url)
        .done()
}

fn scope_spans(ss: &ScopeSpans) -> Value {
    Obj::default()
        .message("scope", ss.scope.as_ref(), scope)
        .list("spans", &ss.spans, span)
        .string("schemaUrl", &ss.schema_url)
        .done()
}

fn span(s: &Span) -> Value {
    Obj::default()
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

fn span_event(e: &span::Event) -> Value {
    Obj::default()
        .u64("timeUnixNano", e.time_unix_nano)
        .string("name", &e.name)
        .list("attributes", &e.attributes, key_value)
        .u32("droppedAttributesCount", e.dropped_attributes_count)
        .done()
}

fn span_link(l: &span::Link) -> Value {
    Obj::default()
        .id("traceId", &l.trace_id)
        .id("spanId", &l.span_id)
        .string("traceState", &l.trace_state)
        .list("attributes", &l.attributes, key_value)
        .u32("droppedAttributesCount", l.dropped_attributes_count)
        .u32("flags", l.flags)
        .done()
}

fn span_status(s: &Status) -> Value {
    Obj::default().string("message", &s.message).i32("code", s.code).done()
}

// ---- logs -----------------------------------------------------------------------------------

pub(crate) fn logs_request(req: &ExportLogsServiceRequest) -> Value {
    Obj::default()
        .list("resourceLogs", &req.resource_logs, resource_logs)
        .done()
}

fn resource_logs(rl: &ResourceLogs) -> Value {
    Obj::default()
        .message("resource", rl.resource.as_ref(), resource)
        .list("scopeLogs", &rl.scope_logs, scope_logs)
        .string("schemaUrl", &rl.schema_url)
        .done()
}

fn scope_logs(sl: &ScopeLogs) -> Value {
    Obj::default()
        .message("scope", sl.scope.as_ref(), scope)
        .list("logRecords", &sl.log_records, log_record)
        .string("schemaUrl", &sl.schema_url)
        .done()
}

fn log_record(l: &LogRecord) -> Value {
    Obj::default()
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

pub(crate) fn metrics_request(req: &ExportMetricsServiceRequest) -> Value {
    Obj::default()
        .list("resourceMetrics", &req.resource_metrics, resource_metrics)
        .done()
}

fn resource_metrics(rm: &ResourceMetrics) -> Value {
    Obj::default()
        .message("resource", rm.resource.as_ref(), resource)
        .list("scopeMetrics", &rm.scope_metrics, scope_metrics)
        .string("schemaUrl", &rm.schema_url)
        .done()
}

fn scope_metrics(sm: &ScopeMetrics) -> Value {
    Obj::default()
        .message("scope", sm.scope.as_ref(), scope)
        .list("metrics", &sm.metrics, metric)
        .string("schemaUrl", &sm.schema_url)
        .done()
}

fn metric(m: &Metric) -> Value {
    let obj = Obj::default()
        .string("name", &m.name)
        .string("description", &m.description)
        .string("unit", &m.unit)
        .list("metadata", &m.metadata, key_value);
    match &m.data {
        None => obj,
        Some(metric::Data::Gauge(g)) => obj.put(
            "gauge",
            Obj::default()
                .list("dataPoints", &g.data_points, number_data_point)
                .done(),
        ),
        Some(metric::Data::Sum(s)) => obj.put(
            "sum",
            Obj::default()
                .list("dataPoints", &s.data_points, number_data_point)
                .i32("aggregationTemporality", s.aggregation_temporality)
                .bool("isMonotonic", s.is_monotonic)
                .done(),
        ),
        Some(metric::Data::Histogram(h)) => obj.put(
            "histogram",
            Obj::default()
                .list("dataPoints", &h.data_points, histogram_data_point)
                .i32("aggregationTemporality", h.aggregation_temporality)
                .done(),
        ),
        Some(metric::Data::ExponentialHistogram(h)) => obj.put(
            "exponentialHistogram",
            Obj::default()
                .list("dataPoints", &h.data_points, exponential_histogram_data_point)
                .i32("aggregationTemporality", h.aggregation_temporality)
                .done(),
        ),
        Some(metric::Data::Summary(s)) => obj.put(
            "summary",
            Obj::default()
                .list("dataPoints", &s.data_points, summary_data_point)
                .done(),
        ),
    }
    .done()
}

fn number_data_point(p: &NumberDataPoint) -> Value {
    let obj = Obj::default()
        .list("attributes", &p.attributes, key_value)
        .u64("startTimeUnixNano", p.start_time_unix_nano)
        .u64("timeUnixNano", p.time_unix_nano)
        .list("exemplars", &p.exemplars, exemplar)
        .u32("flags", p.flags);
    match p.value {
        None => obj,
        Some(number_data_point::Value::AsDouble(d)) => obj.put("asDouble", double(d)),
        Some(number_data_point::Value::AsInt(i)) => obj.put("asInt", Value::String(i.to_string())),
    }
    .done()
}

fn histogram_data_point(p: &HistogramDataPoint) -> Value {
    Obj::default()
        .list("attributes", &p.attributes, key_value)
        .u64("startTimeUnixNano", p.start_time_unix_nano)
        .u64("timeUnixNano", p.time_unix_nano)
        .u64("count", p.count)
        .opt_f64("sum", p.sum)
        .list("bucketCounts", &p.bucket_counts, |c| Value::String(c.to_string()))
        .list("explicitBounds", &p.explicit_bounds, |b| double(*b))
        .list("exemplars", &p.exemplars, exemplar)
        .u32("flags", p.flags)
        .opt_f64("min", p.min)
        .opt_f64("max", p.max)
        .done()
}

fn buckets(b: &exponential_histogram_data_point::Buckets) -> Value {
    Obj::default()
        .i32("offset", b.offset)
        .list("bucketCounts", &b.bucket_counts, |c| Value::String(c.to_string()))
        .done()
}

fn exponential_histogram_data_point(p: &ExponentialHistogramDataPoint) -> Value {
    Obj::default()
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

fn summary_data_point(p: &SummaryDataPoint) -> Value {
    Obj::default()
        .list("attributes", &p.attributes, key_value)
        .u64("startTimeUnixNano", p.start_time_unix_nano)
        .u64("timeUnixNano", p.time_unix_nano)
        .u64("count", p.count)
        .f64("sum", p.sum)
        .list("quantileValues", &p.quantile_values, |q| {
            Obj::default().f64("quantile", q.quantile).f64("value", q.value).done()
        })
        .u32("flags", p.flags)
        .done()
}

fn exemplar(e: &Exemplar) -> Value {
    let obj = Obj::default()
        .list("filteredAttributes", &e.filtered_attributes, key_value)
        .u64("timeUnixNano", e.time_unix_nano)
        .id("spanId", &e.span_id)
        .id("traceId", &e.trace_id);
    match e.value {
        None => obj,
        Some(exemplar::Value::AsDouble(d)) => obj.put("asDouble", double(d)),
        Some(exemplar::Value::AsInt(i)) => obj.put("asInt", Value::String(i.to_string())),
    }
    .done()
}
