//! OTLP/JSON → prost messages. Every message decoder takes `(value, path)`, accepts `null` as the
//! default, ignores unknown fields (as OTLP requires) and fails with the path of a malformed field.

use serde_json::Value;

use super::path::Path;
use super::scalar::{
    boolean, bytes, canonical_name, enumeration, error, f64_value, i32_value, i64_value, id, object, repeated, string,
    u32_value, u64_value, Result,
};
use crate::otlp::collector::logs::v1::ExportLogsServiceRequest;
use crate::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::otlp::collector::trace::v1::ExportTraceServiceRequest;
use crate::otlp::common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList};
use crate::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use crate::otlp::metrics::v1::{
    exemplar, exponential_histogram_data_point, metric, number_data_point, summary_data_point, AggregationTemporality,
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use crate::otlp::resource::v1::Resource;
use crate::otlp::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};

const TRACE_ID_LEN: usize = 16;
const SPAN_ID_LEN: usize = 8;

/// Runs `on_field` for every field of an object (keys in lowerCamelCase), or nothing for `null`.
fn each_field(
    value: &Value,
    path: &Path<'_>,
    mut on_field: impl FnMut(&str, &Value, &Path<'_>) -> Result<()>,
) -> Result<()> {
    let Some(map) = object(value, path)? else {
        return Ok(());
    };
    for (key, field_value) in map {
        let field_path = path.field(key);
        on_field(&canonical_name(key), field_value, &field_path)?;
    }
    Ok(())
}

/// Sets a oneof, failing if the object already set another member of it.
fn set_oneof<T>(slot: &mut Option<T>, value: T, path: &Path<'_>, oneof: &str) -> Result<()> {
    if slot.is_some() {
        return Err(error(
            path,
            format!("more than one member of the `{oneof}` oneof is set"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

// ---- common ---------------------------------------------------------------------------------

pub(crate) fn any_value(value: &Value, path: &Path<'_>) -> Result<AnyValue> {
    let mut out: Option<any_value::Value> = None;
    each_field(value, path, |key, v, p| {
        let member = match key {
            "stringValue" => any_value::Value::StringValue(string(v, p)?),
            "boolValue" => any_value::Value::BoolValue(boolean(v, p)?),
            "intValue" => any_value::Value::IntValue(i64_value(v, p)?),
            "doubleValue" => any_value::Value::DoubleValue(f64_value(v, p)?),
            "bytesValue" => any_value::Value::BytesValue(bytes(v, p)?),
            "arrayValue" => any_value::Value::ArrayValue(array_value(v, p)?),
            "kvlistValue" => any_value::Value::KvlistValue(kvlist_value(v, p)?),
            _ => return Ok(()),
        };
        set_oneof(&mut out, member, p, "value")
    })?;
    Ok(AnyValue { value: out })
}

fn array_value(value: &Value, path: &Path<'_>) -> Result<ArrayValue> {
    let mut out = ArrayValue::default();
    each_field(value, path, |key, v, p| {
        if key == "values" {
            out.values = repeated(v, p, any_value)?;
        }
        Ok(())
    })?;
    Ok(out)
}

fn kvlist_value(value: &Value, path: &Path<'_>) -> Result<KeyValueList> {
    let mut out = KeyValueList::default();
    each_field(value, path, |key, v, p| {
        if key == "values" {
            out.values = repeated(v, p, key_value)?;
        }
        Ok(())
    })?;
    Ok(out)
}

pub(crate) fn key_value(value: &Value, path: &Path<'_>) -> Result<KeyValue> {
    let mut out = KeyValue::default();
    each_field(value, path, |key, v, p| {
        match key {
            "key" => out.key = string(v, p)?,
            "value" => out.value = Some(any_value(v, p)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn attributes(value: &Value, path: &Path<'_>) -> Result<Vec<KeyValue>> {
    repeated(value, path, key_value)
}

fn resource(value: &Value, path: &Path<'_>) -> Result<Resource> {
    let mut out = Resource::default();
    each_field(value, path, |key, v, p| {
        match key {
            "attributes" => out.attributes = attributes(v, p)?,
            "droppedAttributesCount" => out.dropped_attributes_count = u32_value(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn scope(value: &Value, path: &Path<'_>) -> Result<InstrumentationScope> {
    let mut out = InstrumentationScope::default();
    each_field(value, path, |key, v, p| {
        match key {
            "name" => out.name = string(v, p)?,
            "version" => out.version = string(v, p)?,
            "attributes" => out.attributes = attributes(v, p)?,
            "droppedAttributesCount" => out.dropped_attributes_count = u32_value(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

// ---- traces ---------------------------------------------------------------------------------

pub(crate) fn traces_request(value: &Value, path: &Path<'_>) -> Result<ExportTraceServiceRequest> {
    let mut out = ExportTraceServiceRequest::default();
    each_field(value, path, |key, v, p| {
        if key == "resourceSpans" {
            out.resource_spans = repeated(v, p, resource_spans)?;
        }
        Ok(())
    })?;
    Ok(out)
}

fn resource_spans(value: &Value, path: &Path<'_>) -> Result<ResourceSpans> {
    let mut out = ResourceSpans::default();
    each_field(value, path, |key, v, p| {
        match key {
            "resource" => out.resource = Some(resource(v, p)?),
            "scopeSpans" => out.scope_spans = repeated(v, p, scope_spans)?,
            "schemaUrl" => out.schema_url = string(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn scope_spans(value: &Value, path: &Path<'_>) -> Result<ScopeSpans> {
    let mut out = ScopeSpans::default();
    each_field(value, path, |key, v, p| {
        match key {
            "scope" => out.scope = Some(scope(v, p)?),
            "spans" => out.spans = repeated(v, p, span)?,
            "schemaUrl" => out.schema_url = string(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn span(value: &Value, path: &Path<'_>) -> Result<Span> {
    let mut out = Span::default();
    each_field(value, path, |key, v, p| {
        match key {
            "traceId" => out.trace_id = id(v, p, TRACE_ID_LEN)?,
            "spanId" => out.span_id = id(v, p, SPAN_ID_LEN)?,
            "traceState" => out.trace_state = string(v, p)?,
            "parentSpanId" => out.parent_span_id = id(v, p, SPAN_ID_LEN)?,
            "flags" => out.flags = u32_value(v, p)?,
            "name" => out.name = string(v, p)?,
            "kind" => out.kind = enumeration(v, p, |n| span::SpanKind::from_str_name(n).map(|k| k as i32))?,
            "startTimeUnixNano" => out.start_time_unix_nano = u64_value(v, p)?,
            "endTimeUnixNano" => out.end_time_unix_nano = u64_value(v, p)?,
            "attributes" => out.attributes = attributes(v, p)?,
            "droppedAttributesCount" => out.dropped_attributes_count = u32_value(v, p)?,
            "events" => out.events = repeated(v, p, span_event)?,
            "droppedEventsCount" => out.dropped_events_count = u32_value(v, p)?,
            "links" => out.links = repeated(v, p, span_link)?,
            "droppedLinksCount" => out.dropped_links_count = u32_value(v, p)?,
            "status" => out.status = Some(span_status(v, p)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

pub(crate) fn span_event(value: &Value, path: &Path<'_>) -> Result<span::Event> {
    let mut out = span::Event::default();
    each_field(value, path, |key, v, p| {
        match key {
            "timeUnixNano" => out.time_unix_nano = u64_value(v, p)?,
            "name" => out.name = string(v, p)?,
            "attributes" => out.attributes = attributes(v, p)?,
            "droppedAttributesCount" => out.dropped_attributes_count = u32_value(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

pub(crate) fn span_link(value: &Value, path: &Path<'_>) -> Result<span::Link> {
    let mut out = span::Link::default();
    each_field(value, path, |key, v, p| {
        match key {
            "traceId" => out.trace_id = id(v, p, TRACE_ID_LEN)?,
            "spanId" => out.span_id = id(v, p, SPAN_ID_LEN)?,
            "traceState" => out.trace_state = string(v, p)?,
            "attributes" => out.attributes = attributes(v, p)?,
            "droppedAttributesCount" => out.dropped_attributes_count = u32_value(v, p)?,
            "flags" => out.flags = u32_value(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn span_status(value: &Value, path: &Path<'_>) -> Result<Status> {
    let mut out = Status::default();
    each_field(value, path, |key, v, p| {
        match key {
            "message" => out.message = string(v, p)?,
            "code" => out.code = enumeration(v, p, |n| status::StatusCode::from_str_name(n).map(|c| c as i32))?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

// ---- logs -----------------------------------------------------------------------------------

pub(crate) fn logs_request(value: &Value, path: &Path<'_>) -> Result<ExportLogsServiceRequest> {
    let mut out = ExportLogsServiceRequest::default();
    each_field(value, path, |key, v, p| {
        if key == "resourceLogs" {
            out.resource_logs = repeated(v, p, resource_logs)?;
        }
        Ok(())
    })?;
    Ok(out)
}

fn resource_logs(value: &Value, path: &Path<'_>) -> Result<ResourceLogs> {
    let mut out = ResourceLogs::default();
    each_field(value, path, |key, v, p| {
        match key {
            "resource" => out.resource = Some(resource(v, p)?),
            "scopeLogs" => out.scope_logs = repeated(v, p, scope_logs)?,
            "schemaUrl" => out.schema_url = string(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn scope_logs(value: &Value, path: &Path<'_>) -> Result<ScopeLogs> {
    let mut out = ScopeLogs::default();
    each_field(value, path, |key, v, p| {
        match key {
            "scope" => out.scope = Some(scope(v, p)?),
            "logRecords" => out.log_records = repeated(v, p, log_record)?,
            "schemaUrl" => out.schema_url = string(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn log_record(value: &Value, path: &Path<'_>) -> Result<LogRecord> {
    let mut out = LogRecord::default();
    each_field(value, path, |key, v, p| {
        match key {
            "timeUnixNano" => out.time_unix_nano = u64_value(v, p)?,
            "observedTimeUnixNano" => out.observed_time_unix_nano = u64_value(v, p)?,
            "severityNumber" => {
                out.severity_number = enumeration(v, p, |n| SeverityNumber::from_str_name(n).map(|s| s as i32))?
            }
            "severityText" => out.severity_text = string(v, p)?,
            "body" => out.body = Some(any_value(v, p)?),
            "attributes" => out.attributes = attributes(v, p)?,
            "droppedAttributesCount" => out.dropped_attributes_count = u32_value(v, p)?,
            "flags" => out.flags = u32_value(v, p)?,
            "traceId" => out.trace_id = id(v, p, TRACE_ID_LEN)?,
            "spanId" => out.span_id = id(v, p, SPAN_ID_LEN)?,
            "eventName" => out.event_name = string(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

// ---- metrics --------------------------------------------------------------------------------

pub(crate) fn metrics_request(value: &Value, path: &Path<'_>) -> Result<ExportMetricsServiceRequest> {
    let mut out = ExportMetricsServiceRequest::default();
    each_field(value, path, |key, v, p| {
        if key == "resourceMetrics" {
            out.resource_metrics = repeated(v, p, resource_metrics)?;
        }
        Ok(())
    })?;
    Ok(out)
}

fn resource_metrics(value: &Value, path: &Path<'_>) -> Result<ResourceMetrics> {
    let mut out = ResourceMetrics::default();
    each_field(value, path, |key, v, p| {
        match key {
            "resource" => out.resource = Some(resource(v, p)?),
            "scopeMetrics" => out.scope_metrics = repeated(v, p, scope_metrics)?,
            "schemaUrl" => out.schema_url = string(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn scope_metrics(value: &Value, path: &Path<'_>) -> Result<ScopeMetrics> {
    let mut out = ScopeMetrics::default();
    each_field(value, path, |key, v, p| {
        match key {
            "scope" => out.scope = Some(scope(v, p)?),
            "metrics" => out.metrics = repeated(v, p, metric)?,
            "schemaUrl" => out.schema_url = string(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn metric(value: &Value, path: &Path<'_>) -> Result<Metric> {
    let mut out = Metric::default();
    each_field(value, path, |key, v, p| {
        match key {
            "name" => out.name = string(v, p)?,
            "description" => out.description = string(v, p)?,
            "unit" => out.unit = string(v, p)?,
            "metadata" => out.metadata = attributes(v, p)?,
            "gauge" => set_oneof(&mut out.data, metric::Data::Gauge(gauge(v, p)?), p, "data")?,
            "sum" => set_oneof(&mut out.data, metric::Data::Sum(sum(v, p)?), p, "data")?,
            "histogram" => set_oneof(&mut out.data, metric::Data::Histogram(histogram(v, p)?), p, "data")?,
            "exponentialHistogram" => set_oneof(
                &mut out.data,
                metric::Data::ExponentialHistogram(exponential_histogram(v, p)?),
                p,
                "data",
            )?,
            "summary" => set_oneof(&mut out.data, metric::Data::Summary(summary(v, p)?), p, "data")?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn temporality(value: &Value, path: &Path<'_>) -> Result<i32> {
    enumeration(value, path, |n| {
        AggregationTemporality::from_str_name(n).map(|t| t as i32)
    })
}

fn gauge(value: &Value, path: &Path<'_>) -> Result<Gauge> {
    let mut out = Gauge::default();
    each_field(value, path, |key, v, p| {
        if key == "dataPoints" {
            out.data_points = repeated(v, p, number_data_point)?;
        }
        Ok(())
    })?;
    Ok(out)
}

fn sum(value: &Value, path: &Path<'_>) -> Result<Sum> {
    let mut out = Sum::default();
    each_field(value, path, |key, v, p| {
        match key {
            "dataPoints" => out.data_points = repeated(v, p, number_data_point)?,
            "aggregationTemporality" => out.aggregation_temporality = temporality(v, p)?,
            "isMonotonic" => out.is_monotonic = boolean(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn histogram(value: &Value, path: &Path<'_>) -> Result<Histogram> {
    let mut out = Histogram::default();
    each_field(value, path, |key, v, p| {
        match key {
            "dataPoints" => out.data_points = repeated(v, p, histogram_data_point)?,
            "aggregationTemporality" => out.aggregation_temporality = temporality(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn exponential_histogram(value: &Value, path: &Path<'_>) -> Result<ExponentialHistogram> {
    let mut out = ExponentialHistogram::default();
    each_field(value, path, |key, v, p| {
        match key {
            "dataPoints" => out.data_points = repeated(v, p, exponential_histogram_data_point)?,
            "aggregationTemporality" => out.aggregation_temporality = temporality(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn summary(value: &Value, path: &Path<'_>) -> Result<Summary> {
    let mut out = Summary::default();
    each_field(value, path, |key, v, p| {
        if key == "dataPoints" {
            out.data_points = repeated(v, p, summary_data_point)?;
        }
        Ok(())
    })?;
    Ok(out)
}

fn number_data_point(value: &Value, path: &Path<'_>) -> Result<NumberDataPoint> {
    let mut out = NumberDataPoint::default();
    each_field(value, path, |key, v, p| {
        match key {
            "attributes" => out.attributes = attributes(v, p)?,
            "startTimeUnixNano" => out.start_time_unix_nano = u64_value(v, p)?,
            "timeUnixNano" => out.time_unix_nano = u64_value(v, p)?,
            "exemplars" => out.exemplars = repeated(v, p, exemplar)?,
            "flags" => out.flags = u32_value(v, p)?,
            "asDouble" => set_oneof(
                &mut out.value,
                number_data_point::Value::AsDouble(f64_value(v, p)?),
                p,
                "value",
            )?,
            "asInt" => set_oneof(
                &mut out.value,
                number_data_point::Value::AsInt(i64_value(v, p)?),
                p,
                "value",
            )?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn optional_f64(value: &Value, path: &Path<'_>) -> Result<Option<f64>> {
    if value.is_null() {
        return Ok(None);
    }
    f64_value(value, path).map(Some)
}

fn histogram_data_point(value: &Value, path: &Path<'_>) -> Result<HistogramDataPoint> {
    let mut out = HistogramDataPoint::default();
    each_field(value, path, |key, v, p| {
        match key {
            "attributes" => out.attributes = attributes(v, p)?,
            "startTimeUnixNano" => out.start_time_unix_nano = u64_value(v, p)?,
            "timeUnixNano" => out.time_unix_nano = u64_value(v, p)?,
            "count" => out.count = u64_value(v, p)?,
            "sum" => out.sum = optional_f64(v, p)?,
            "bucketCounts" => out.bucket_counts = repeated(v, p, u64_value)?,
            "explicitBounds" => out.explicit_bounds = repeated(v, p, f64_value)?,
            "exemplars" => out.exemplars = repeated(v, p, exemplar)?,
            "flags" => out.flags = u32_value(v, p)?,
            "min" => out.min = optional_f64(v, p)?,
            "max" => out.max = optional_f64(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn buckets(value: &Value, path: &Path<'_>) -> Result<exponential_histogram_data_point::Buckets> {
    let mut out = exponential_histogram_data_point::Buckets::default();
    each_field(value, path, |key, v, p| {
        match key {
            "offset" => out.offset = i32_value(v, p)?,
            "bucketCounts" => out.bucket_counts = repeated(v, p, u64_value)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn exponential_histogram_data_point(value: &Value, path: &Path<'_>) -> Result<ExponentialHistogramDataPoint> {
    let mut out = ExponentialHistogramDataPoint::default();
    each_field(value, path, |key, v, p| {
        match key {
            "attributes" => out.attributes = attributes(v, p)?,
            "startTimeUnixNano" => out.start_time_unix_nano = u64_value(v, p)?,
            "timeUnixNano" => out.time_unix_nano = u64_value(v, p)?,
            "count" => out.count = u64_value(v, p)?,
            "sum" => out.sum = optional_f64(v, p)?,
            "scale" => out.scale = i32_value(v, p)?,
            "zeroCount" => out.zero_count = u64_value(v, p)?,
            "positive" => out.positive = Some(buckets(v, p)?),
            "negative" => out.negative = Some(buckets(v, p)?),
            "flags" => out.flags = u32_value(v, p)?,
            "exemplars" => out.exemplars = repeated(v, p, exemplar)?,
            "min" => out.min = optional_f64(v, p)?,
            "max" => out.max = optional_f64(v, p)?,
            "zeroThreshold" => out.zero_threshold = f64_value(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn summary_data_point(value: &Value, path: &Path<'_>) -> Result<SummaryDataPoint> {
    let mut out = SummaryDataPoint::default();
    each_field(value, path, |key, v, p| {
        match key {
            "attributes" => out.attributes = attributes(v, p)?,
            "startTimeUnixNano" => out.start_time_unix_nano = u64_value(v, p)?,
            "timeUnixNano" => out.time_unix_nano = u64_value(v, p)?,
            "count" => out.count = u64_value(v, p)?,
            "sum" => out.sum = f64_value(v, p)?,
            "quantileValues" => out.quantile_values = repeated(v, p, value_at_quantile)?,
            "flags" => out.flags = u32_value(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn value_at_quantile(value: &Value, path: &Path<'_>) -> Result<summary_data_point::ValueAtQuantile> {
    let mut out = summary_data_point::ValueAtQuantile::default();
    each_field(value, path, |key, v, p| {
        match key {
            "quantile" => out.quantile = f64_value(v, p)?,
            "value" => out.value = f64_value(v, p)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

pub(crate) fn exemplar(value: &Value, path: &Path<'_>) -> Result<Exemplar> {
    let mut out = Exemplar::default();
    each_field(value, path, |key, v, p| {
        match key {
            "filteredAttributes" => out.filtered_attributes = attributes(v, p)?,
            "timeUnixNano" => out.time_unix_nano = u64_value(v, p)?,
            "spanId" => out.span_id = id(v, p, SPAN_ID_LEN)?,
            "traceId" => out.trace_id = id(v, p, TRACE_ID_LEN)?,
            "asDouble" => set_oneof(&mut out.value, exemplar::Value::AsDouble(f64_value(v, p)?), p, "value")?,
            "asInt" => set_oneof(&mut out.value, exemplar::Value::AsInt(i64_value(v, p)?), p, "value")?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}
