//! The three OTLP signals behind one trait, so that receivers, the WAL, fan-out and exporters are
//! written once. Each signal knows its request/response types, how to count and validate its items,
//! and its OTLP/JSON mapping.

use std::fmt;

use prost::Message;
use serde_json::{json, Value};

use crate::json::{self, JsonError};
use crate::otlp::collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse};
use crate::otlp::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use crate::otlp::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use crate::otlp::common::v1::{AnyValue, KeyValue};
use crate::otlp::metrics::v1::{metric, Metric};

/// Which signal a batch carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignalKind {
    /// Spans.
    Traces,
    /// Log records.
    Logs,
    /// Metric data points.
    Metrics,
}

impl SignalKind {
    /// All signals, in a fixed order.
    pub const ALL: [SignalKind; 3] = [SignalKind::Traces, SignalKind::Logs, SignalKind::Metrics];

    /// `traces`, `logs` or `metrics`: the name used in config, URLs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Traces => "traces",
            SignalKind::Logs => "logs",
            SignalKind::Metrics => "metrics",
        }
    }

    /// The inverse of [`SignalKind::as_str`].
    pub fn parse(name: &str) -> Option<SignalKind> {
        SignalKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// What one item of this signal is called, for messages (`spans`, `log records`, `data points`).
    pub fn item_name(self) -> &'static str {
        match self {
            SignalKind::Traces => "spans",
            SignalKind::Logs => "log records",
            SignalKind::Metrics => "data points",
        }
    }
}

impl fmt::Display for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Items of a request that were refused individually (OTLP `partial_success`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejected {
    /// How many items were removed.
    pub count: u64,
    /// Why (empty when `count` is 0).
    pub message: String,
}

/// One OTLP signal: its wire types and the operations every stage needs.
pub trait Signal: Send + Sync + 'static {
    /// The `Export*ServiceRequest` type: the unit of batching everywhere in Sift.
    type Request: Message + Default + Clone + PartialEq + Send + Sync + 'static;
    /// The `Export*ServiceResponse` type.
    type Response: Message + Default + Send + 'static;
    /// Which signal this is.
    const KIND: SignalKind;

    /// The OTLP/JSON name of the partial-success count (`rejectedSpans`, ...).
    const REJECTED_FIELD: &'static str;
    /// The fully qualified gRPC service name.
    const GRPC_SERVICE: &'static str;
    /// The path of the gRPC `Export` method.
    const GRPC_EXPORT_PATH: &'static str;

    /// Number of items (spans, log records, data points) in a request.
    fn item_count(request: &Self::Request) -> u64;
    /// Removes the items OTLP says a receiver must refuse (e.g. all-zero trace ids) and says why.
    fn reject_invalid(request: &mut Self::Request) -> Rejected;
    /// The response for a request of which `rejected` items were refused.
    fn response(rejected: &Rejected) -> Self::Response;
    /// The response as OTLP/JSON.
    fn response_json(rejected: &Rejected) -> Value {
        if rejected.count == 0 {
            return json!({});
        }
        json!({ "partialSuccess": { Self::REJECTED_FIELD: rejected.count.to_string(), "errorMessage": rejected.message } })
    }
    /// What a response says was rejected (partial success).
    fn rejected_in(response: &Self::Response) -> Rejected;
    /// Decodes an OTLP/JSON request body.
    fn decode_json(body: &[u8]) -> Result<Self::Request, JsonError>;
    /// Encodes a request as an OTLP/JSON value (for tests and inspection).
    fn encode_json(request: &Self::Request) -> Value;
    /// Writes a request as OTLP/JSON text (the fast path for exporters).
    fn write_json(request: &Self::Request, out: &mut String);
    /// Calls `f` on every attribute list in the request (resource, scope, item, event, link,
    /// exemplar), saying where it sits.
    fn visit_attributes(request: &mut Self::Request, f: &mut dyn FnMut(AttributeSite, &mut Vec<KeyValue>));
    /// Calls `f` on every log body together with its record's attributes (logs only).
    fn visit_log_bodies(_request: &mut Self::Request, _f: &mut dyn FnMut(&mut AnyValue, &mut Vec<KeyValue>)) {}
}

/// Where an attribute list sits in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttributeSite {
    /// `Resource.attributes`.
    Resource,
    /// `InstrumentationScope.attributes`.
    Scope,
    /// `Span.attributes`.
    Span,
    /// `Span.Event.attributes`.
    SpanEvent,
    /// `Span.Link.attributes`.
    SpanLink,
    /// `LogRecord.attributes`.
    LogRecord,
    /// Attributes of a metric data point.
    DataPoint,
    /// `Exemplar.filtered_attributes`.
    Exemplar,
}

fn visit_common(
    resource: Option<&mut crate::otlp::resource::v1::Resource>,
    f: &mut dyn FnMut(AttributeSite, &mut Vec<KeyValue>),
) {
    if let Some(resource) = resource {
        f(AttributeSite::Resource, &mut resource.attributes);
    }
}

fn visit_scope(
    scope: Option<&mut crate::otlp::common::v1::InstrumentationScope>,
    f: &mut dyn FnMut(AttributeSite, &mut Vec<KeyValue>),
) {
    if let Some(scope) = scope {
        f(AttributeSite::Scope, &mut scope.attributes);
    }
}

/// Visits the attributes of data points and their exemplars, whatever the metric type.
fn visit_points(metric: &mut Metric, f: &mut dyn FnMut(AttributeSite, &mut Vec<KeyValue>)) {
    macro_rules! points {
        ($points:expr) => {
            for point in $points {
                f(AttributeSite::DataPoint, &mut point.attributes);
                for exemplar in &mut point.exemplars {
                    f(AttributeSite::Exemplar, &mut exemplar.filtered_attributes);
                }
            }
        };
    }
    match &mut metric.data {
        None => {}
        Some(metric::Data::Gauge(g)) => points!(&mut g.data_points),
        Some(metric::Data::Sum(s)) => points!(&mut s.data_points),
        Some(metric::Data::Histogram(h)) => points!(&mut h.data_points),
        Some(metric::Data::ExponentialHistogram(h)) => points!(&mut h.data_points),
        Some(metric::Data::Summary(s)) => {
            for point in &mut s.data_points {
                f(AttributeSite::DataPoint, &mut point.attributes);
            }
        }
    }
}

fn valid_id(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|b| *b != 0)
}

/// Removes items for which `invalid` returns a reason, counting them and keeping the first reason.
fn retain_valid<T>(items: &mut Vec<T>, rejected: &mut Rejected, invalid: impl Fn(&T) -> Option<&'static str>) {
    items.retain(|item| match invalid(item) {
        None => true,
        Some(reason) => {
            if rejected.message.is_empty() {
                rejected.message = reason.to_owned();
            }
            rejected.count += 1;
            false
        }
    });
}

fn finish(mut rejected: Rejected, kind: SignalKind) -> Rejected {
    if rejected.count > 0 {
        rejected.message = format!("{} {} rejected: {}", rejected.count, kind.item_name(), rejected.message);
    }
    rejected
}

/// Spans.
#[derive(Debug, Clone, Copy)]
pub struct Traces;
/// Log records.
#[derive(Debug, Clone, Copy)]
pub struct Logs;
/// Metric data points.
#[derive(Debug, Clone, Copy)]
pub struct Metrics;

impl Signal for Traces {
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;
    const KIND: SignalKind = SignalKind::Traces;
    const REJECTED_FIELD: &'static str = "rejectedSpans";
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const GRPC_EXPORT_PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

    fn item_count(request: &Self::Request) -> u64 {
        let mut count = 0;
        for rs in &request.resource_spans {
            for ss in &rs.scope_spans {
                count += ss.spans.len() as u64;
            }
        }
        count
    }

    fn reject_invalid(request: &mut Self::Request) -> Rejected {
        let mut rejected = Rejected::default();
        for rs in &mut request.resource_spans {
            for ss in &mut rs.scope_spans {
                retain_valid(&mut ss.spans, &mut rejected, |span| {
                    if !valid_id(&span.trace_id, 16) {
                        Some("trace id must be 16 bytes and not all zero")
                    } else if !valid_id(&span.span_id, 8) {
                        Some("span id must be 8 bytes and not all zero")
                    } else if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
                        Some("parent span id must be empty or 8 bytes")
                    } else {
                        None
                    }
                });
            }
        }
        finish(rejected, Self::KIND)
    }

    fn response(rejected: &Rejected) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (rejected.count > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: i64::try_from(rejected.count).unwrap_or(i64::MAX),
                error_message: rejected.message.clone(),
            }),
        }
    }

    fn rejected_in(response: &Self::Response) -> Rejected {
        response
            .partial_success
            .as_ref()
            .map_or_else(Rejected::default, |p| Rejected {
                count: u64::try_from(p.rejected_spans).unwrap_or(0),
                message: p.error_message.clone(),
            })
    }

    fn decode_json(body: &[u8]) -> Result<Self::Request, JsonError> {
        json::decode_traces(body)
    }

    fn encode_json(request: &Self::Request) -> Value {
        json::encode_traces(request)
    }

    fn write_json(request: &Self::Request, out: &mut String) {
        json::write_traces(request, out)
    }

    fn visit_attributes(request: &mut Self::Request, f: &mut dyn FnMut(AttributeSite, &mut Vec<KeyValue>)) {
        for rs in &mut request.resource_spans {
            visit_common(rs.resource.as_mut(), f);
            for ss in &mut rs.scope_spans {
                visit_scope(ss.scope.as_mut(), f);
                for span in &mut ss.spans {
                    f(AttributeSite::Span, &mut span.attributes);
                    for event in &mut span.events {
                        f(AttributeSite::SpanEvent, &mut event.attributes);
                    }
                    for link in &mut span.links {
                        f(AttributeSite::SpanLink, &mut link.attributes);
                    }
                }
            }
        }
    }
}

impl Signal for Logs {
    type Request = ExportLogsServiceRequest;
    type Response = ExportLogsServiceResponse;
    const KIND: SignalKind = SignalKind::Logs;
    const REJECTED_FIELD: &'static str = "rejectedLogRecords";
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const GRPC_EXPORT_PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

    fn item_count(request: &Self::Request) -> u64 {
        let mut count = 0;
        for rl in &request.resource_logs {
            for sl in &rl.scope_logs {
                count += sl.log_records.len() as u64;
            }
        }
        count
    }

    fn reject_invalid(request: &mut Self::Request) -> Rejected {
        let mut rejected = Rejected::default();
        for rl in &mut request.resource_logs {
            for sl in &mut rl.scope_logs {
                retain_valid(&mut sl.log_records, &mut rejected, |log| {
                    if !log.trace_id.is_empty() && log.trace_id.len() != 16 {
                        Some("trace id must be empty or 16 bytes")
                    } else if !log.span_id.is_empty() && log.span_id.len() != 8 {
                        Some("span id must be empty or 8 bytes")
                    } else {
                        None
                    }
                });
            }
        }
        finish(rejected, Self::KIND)
    }

    fn response(rejected: &Rejected) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (rejected.count > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: i64::try_from(rejected.count).unwrap_or(i64::MAX),
                error_message: rejected.message.clone(),
            }),
        }
    }

    fn rejected_in(response: &Self::Response) -> Rejected {
        response
            .partial_success
            .as_ref()
            .map_or_else(Rejected::default, |p| Rejected {
                count: u64::try_from(p.rejected_log_records).unwrap_or(0),
                message: p.error_message.clone(),
            })
    }

    fn decode_json(body: &[u8]) -> Result<Self::Request, JsonError> {
        json::decode_logs(body)
    }

    fn encode_json(request: &Self::Request) -> Value {
        json::encode_logs(request)
    }

    fn write_json(request: &Self::Request, out: &mut String) {
        json::write_logs(request, out)
    }

    fn visit_attributes(request: &mut Self::Request, f: &mut dyn FnMut(AttributeSite, &mut Vec<KeyValue>)) {
        for rl in &mut request.resource_logs {
            visit_common(rl.resource.as_mut(), f);
            for sl in &mut rl.scope_logs {
                visit_scope(sl.scope.as_mut(), f);
                for log in &mut sl.log_records {
                    f(AttributeSite::LogRecord, &mut log.attributes);
                }
            }
        }
    }

    fn visit_log_bodies(request: &mut Self::Request, f: &mut dyn FnMut(&mut AnyValue, &mut Vec<KeyValue>)) {
        for rl in &mut request.resource_logs {
            for sl in &mut rl.scope_logs {
                for log in &mut sl.log_records {
                    if let Some(body) = log.body.as_mut() {
                        f(body, &mut log.attributes);
                    }
                }
            }
        }
    }
}

/// Number of data points in one metric, whatever its type.
pub fn data_point_count(metric: &Metric) -> u64 {
    let count = match &metric.data {
        None => 0,
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
    };
    count as u64
}

impl Signal for Metrics {
    type Request = ExportMetricsServiceRequest;
    type Response = ExportMetricsServiceResponse;
    const KIND: SignalKind = SignalKind::Metrics;
    const REJECTED_FIELD: &'static str = "rejectedDataPoints";
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const GRPC_EXPORT_PATH: &'static str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

    fn item_count(request: &Self::Request) -> u64 {
        let mut count = 0;
        for rm in &request.resource_metrics {
            for sm in &rm.scope_metrics {
                for metric in &sm.metrics {
                    count += data_point_count(metric);
                }
            }
        }
        count
    }

    fn reject_invalid(request: &mut Self::Request) -> Rejected {
        let mut rejected = Rejected::default();
        for rm in &mut request.resource_metrics {
            for sm in &mut rm.scope_metrics {
                sm.metrics.retain(|metric| {
                    if !metric.name.is_empty() {
                        return true;
                    }
                    if rejected.message.is_empty() {
                        rejected.message = "metric name must not be empty".to_owned();
                    }
                    rejected.count += data_point_count(metric);
                    false
                });
            }
        }
        finish(rejected, Self::KIND)
    }

    fn response(rejected: &Rejected) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (rejected.count > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: i64::try_from(rejected.count).unwrap_or(i64::MAX),
                error_message: rejected.message.clone(),
            }),
        }
    }

    fn rejected_in(response: &Self::Response) -> Rejected {
        response
            .partial_success
            .as_ref()
            .map_or_else(Rejected::default, |p| Rejected {
                count: u64::try_from(p.rejected_data_points).unwrap_or(0),
                message: p.error_message.clone(),
            })
    }

    fn decode_json(body: &[u8]) -> Result<Self::Request, JsonError> {
        json::decode_metrics(body)
    }

    fn encode_json(request: &Self::Request) -> Value {
        json::encode_metrics(request)
    }

    fn write_json(request: &Self::Request, out: &mut String) {
        json::write_metrics(request, out)
    }

    fn visit_attributes(request: &mut Self::Request, f: &mut dyn FnMut(AttributeSite, &mut Vec<KeyValue>)) {
        for rm in &mut request.resource_metrics {
            visit_common(rm.resource.as_mut(), f);
            for sm in &mut rm.scope_metrics {
                visit_scope(sm.scope.as_mut(), f);
                for metric in &mut sm.metrics {
                    visit_points(metric, f);
                }
            }
        }
    }
}

/// Number of items in a protobuf-encoded request of `kind` (counted by a scan, not a decode).
pub fn item_count_protobuf(kind: SignalKind, body: &[u8]) -> Result<u64, crate::wire::Malformed> {
    crate::wire::scan(kind, body).map(|scan| scan.items)
}

/// Appends a protobuf-encoded request of `kind` to `out` as OTLP/JSON text.
pub fn protobuf_to_json(kind: SignalKind, body: &[u8], out: &mut String) -> Result<(), prost::DecodeError> {
    crate::with_signal!(kind, S => <S as Signal>::Request::decode(body).map(|r| S::write_json(&r, out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn span(trace: u8, span: u8) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![span; 8],
            ..Default::default()
        }
    }

    #[test]
    fn all_zero_ids_are_rejected_and_counted() {
        let mut request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(1, 1), span(0, 1), span(1, 0)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(Traces::item_count(&request), 3);
        let rejected = Traces::reject_invalid(&mut request);
        assert_eq!(rejected.count, 2);
        assert_eq!(Traces::item_count(&request), 1);
        assert!(rejected.message.contains("trace id"), "{}", rejected.message);
        let response = Traces::response(&rejected);
        assert_eq!(response.partial_success.unwrap().rejected_spans, 2);
        assert_eq!(Traces::response_json(&rejected)["partialSuccess"]["rejectedSpans"], "2");
        assert_eq!(Traces::response_json(&Rejected::default()), json!({}));
    }
}
