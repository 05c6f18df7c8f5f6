//! Shared pieces of Sift's benchmarks and load generator: seeded, realistic OTLP payloads.
//!
//! One [`generate`] call makes a consistent slice of telemetry: traces of 1–30 spans over a mix of
//! services (5–15 attributes per span, a share of failed traces (one error span each) and of slow traces), log records
//! written inside those spans (so they carry their trace and span ids), and metric series
//! (request counters and latency histograms) whose exemplars point at those traces.
#![warn(missing_docs)]

use sift_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sift_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sift_proto::otlp::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use sift_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use sift_proto::otlp::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use sift_proto::otlp::resource::v1::Resource;
use sift_proto::otlp::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};

/// A small deterministic PRNG (SplitMix64): seeded, reproducible payloads without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The proportions of a workload.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Share of traces with an error span, in percent.
    pub error_percent: u64,
    /// Share of traces slower than one second, in percent.
    pub slow_percent: u64,
    /// Earliest start of a slice (each starts at a seeded offset of up to ~18 minutes after it).
    pub start_unix_nano: u64,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            error_percent: 5,
            slow_percent: 5,
            start_unix_nano: 1_700_000_000_000_000_000,
        }
    }
}

/// One slice of telemetry: traces, the logs written inside them, metrics with exemplars.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The spans.
    pub traces: ExportTraceServiceRequest,
    /// One log record per two spans, carrying the span's trace and span ids.
    pub logs: ExportLogsServiceRequest,
    /// Request counters and latency histograms per route, with exemplars into the traces.
    pub metrics: ExportMetricsServiceRequest,
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

const SERVICES: [&str; 6] = ["checkout", "cart", "payments", "inventory", "frontend", "shipping"];
const ROUTES: [&str; 5] = ["/pay", "/cart", "/items/{id}", "/checkout", "/health"];
const EXTRA_KEYS: [&str; 9] = [
    "user.tier",
    "feature.flag",
    "cloud.region",
    "http.user_agent",
    "net.peer.port",
    "db.system",
    "messaging.system",
    "retry.count",
    "tenant.id",
];
const SLOW_NS: u64 = 1_000_000_000;

fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![
            text("service.name", service),
            text("host.name", "bench-1"),
            text("deployment.environment", "bench"),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "sift.bench".into(),
        version: "1".into(),
        ..Default::default()
    }
}

/// 5–15 attributes of mixed types.
fn span_attributes(rng: &mut Rng, route: &str, error: bool) -> Vec<KeyValue> {
    let mut attributes = vec![
        text("http.route", route),
        text("http.method", "POST"),
        kv(
            "http.status_code",
            any_value::Value::IntValue(if error { 500 } else { 200 }),
        ),
        text("net.peer.name", format!("10.0.{}.{}", rng.below(4), rng.below(250))),
        kv("order.id", any_value::Value::IntValue(rng.below(1_000_000) as i64)),
    ];
    let extra = rng.below(11) as usize;
    for key in EXTRA_KEYS.iter().cycle().skip(rng.below(9) as usize).take(extra) {
        attributes.push(match rng.below(3) {
            0 => text(key, format!("value-{}", rng.below(50))),
            1 => kv(key, any_value::Value::IntValue(rng.below(10_000) as i64)),
            _ => kv(key, any_value::Value::BoolValue(rng.below(2) == 0)),
        });
    }
    attributes
}

/// Generates about `spans` spans (in whole traces) and the logs and metrics that go with them.
pub fn generate(rng: &mut Rng, spans: usize, shape: &Shape) -> Generated {
    let service = SERVICES[rng.below(SERVICES.len() as u64) as usize];
    let now = shape.start_unix_nano + rng.below(1 << 40);
    let mut out = Vec::with_capacity(spans);
    let mut logs = Vec::with_capacity(spans / 2 + 1);
    let mut requests = vec![0i64; ROUTES.len()];
    let mut latency: Vec<Vec<Sample>> = vec![Vec::new(); ROUTES.len()];
    while out.len() < spans {
        let trace_id = [rng.next_u64().to_be_bytes(), rng.next_u64().to_be_bytes()].concat();
        let trace_len = (1 + rng.below(30) as usize).min(spans - out.len());
        let root_id = rng.next_u64().max(1).to_be_bytes().to_vec();
        let route_index = rng.below(ROUTES.len() as u64) as usize;
        let route = ROUTES[route_index];
        let slow = rng.percent(shape.slow_percent);
        // A failed trace has one error span (a client call), as a failed request usually does.
        let failed_at = rng
            .percent(shape.error_percent)
            .then(|| rng.below(trace_len as u64) as usize);
        let root_duration = if slow {
            SLOW_NS + rng.below(SLOW_NS)
        } else {
            1_000_000 + rng.below(200_000_000)
        };
        for i in 0..trace_len {
            let error = failed_at == Some(i);
            let start = now + i as u64 * 1_000;
            let duration = if i == 0 {
                root_duration
            } else {
                1_000 + rng.below(root_duration / 2)
            };
            let span_id = if i == 0 {
                root_id.clone()
            } else {
                rng.next_u64().max(1).to_be_bytes().to_vec()
            };
            if i % 2 == 0 {
                logs.push(LogRecord {
                    time_unix_nano: start + duration / 2,
                    observed_time_unix_nano: start + duration / 2,
                    severity_number: if error {
                        SeverityNumber::Error as i32
                    } else {
                        SeverityNumber::Info as i32
                    },
                    severity_text: if error { "ERROR".into() } else { "INFO".into() },
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(format!(
                            "handled POST {route} for order {} in {} ms{}",
                            rng.below(1_000_000),
                            duration / 1_000_000,
                            if error { ": upstream timed out" } else { "" }
                        ))),
                    }),
                    attributes: vec![text("http.route", route), kv("attempt", any_value::Value::IntValue(1))],
                    trace_id: trace_id.clone(),
                    span_id: span_id.clone(),
                    ..Default::default()
                });
            }
            if i == 0 {
                requests[route_index] += 1;
                latency[route_index].push((duration as f64 / 1e6, trace_id.clone(), span_id.clone()));
            }
            out.push(Span {
                trace_id: trace_id.clone(),
                span_id,
                parent_span_id: if i == 0 { Vec::new() } else { root_id.clone() },
                name: if i == 0 {
                    format!("POST {route}")
                } else {
                    format!("SELECT orders {i}")
                },
                kind: if i == 0 {
                    span::SpanKind::Server as i32
                } else {
                    span::SpanKind::Client as i32
                },
                start_time_unix_nano: start,
                end_time_unix_nano: start + duration,
                attributes: span_attributes(rng, route, error),
                status: Some(Status {
                    code: if error {
                        status::StatusCode::Error as i32
                    } else {
                        status::StatusCode::Unset as i32
                    },
                    message: if error {
                        "upstream timed out".into()
                    } else {
                        String::new()
                    },
                }),
                ..Default::default()
            });
        }
    }
    let metrics = metrics(now, &requests, &latency);
    Generated {
        traces: ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource(service)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans: out,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        },
        logs: ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(resource(service)),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records: logs,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        },
        metrics: ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource(service)),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        },
    }
}

/// One root span's latency in ms with its trace and span ids (for exemplars).
type Sample = (f64, Vec<u8>, Vec<u8>);

const BOUNDS_MS: [f64; 8] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// A request counter and a latency histogram per route; exemplars point at the slowest trace.
fn metrics(now: u64, requests: &[i64], latency: &[Vec<Sample>]) -> Vec<Metric> {
    let mut counter_points = Vec::new();
    let mut histogram_points = Vec::new();
    for (i, route) in ROUTES.iter().enumerate() {
        let attributes = vec![text("http.route", *route)];
        counter_points.push(NumberDataPoint {
            attributes: attributes.clone(),
            start_time_unix_nano: now - 60_000_000_000,
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsInt(requests[i])),
            ..Default::default()
        });
        let mut buckets = vec![0u64; BOUNDS_MS.len() + 1];
        for (ms, _, _) in &latency[i] {
            buckets[BOUNDS_MS.iter().position(|b| ms <= b).unwrap_or(BOUNDS_MS.len())] += 1;
        }
        let slowest = latency[i].iter().max_by(|a, b| a.0.total_cmp(&b.0));
        histogram_points.push(HistogramDataPoint {
            attributes,
            start_time_unix_nano: now - 60_000_000_000,
            time_unix_nano: now,
            count: latency[i].len() as u64,
            sum: Some(latency[i].iter().map(|(ms, _, _)| ms).sum()),
            bucket_counts: buckets,
            explicit_bounds: BOUNDS_MS.to_vec(),
            exemplars: slowest
                .map(|(ms, trace_id, span_id)| Exemplar {
                    time_unix_nano: now,
                    trace_id: trace_id.clone(),
                    span_id: span_id.clone(),
                    value: Some(exemplar::Value::AsDouble(*ms)),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        });
    }
    vec![
        Metric {
            name: "http.server.requests".into(),
            unit: "1".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: counter_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        Metric {
            name: "http.server.duration".into(),
            unit: "ms".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: histogram_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        },
    ]
}

/// Running totals of cumulative metric series (by resource, metric and point attributes), as an
/// SDK's exporter reports them: each slice's counts are added to everything sent before.
#[derive(Debug, Default)]
pub struct RunningTotals {
    counters: std::collections::HashMap<String, i64>,
    histograms: std::collections::HashMap<String, (u64, f64, Vec<u64>)>,
}

impl RunningTotals {
    /// Turns `request`'s points (the counts of one slice, as [`generate`] makes them) into running
    /// totals started at `start` and stamped `time` (their exemplars too).
    pub fn add(&mut self, request: &mut ExportMetricsServiceRequest, start: u64, time: u64) {
        for rm in &mut request.resource_metrics {
            let service = format!("{:?}", rm.resource.as_ref().map(|r| &r.attributes));
            for m in rm.scope_metrics.iter_mut().flat_map(|sm| &mut sm.metrics) {
                let name = m.name.clone();
                match &mut m.data {
                    Some(metric::Data::Sum(sum)) => {
                        for p in &mut sum.data_points {
                            let key = format!("{service}/{name}/{:?}", p.attributes);
                            let total = self.counters.entry(key).or_default();
                            if let Some(number_data_point::Value::AsInt(v)) = p.value {
                                *total += v;
                            }
                            p.value = Some(number_data_point::Value::AsInt(*total));
                            (p.start_time_unix_nano, p.time_unix_nano) = (start, time);
                        }
                    }
                    Some(metric::Data::Histogram(h)) => {
                        for p in &mut h.data_points {
                            let key = format!("{service}/{name}/{:?}", p.attributes);
                            let (count, sum, buckets) = self.histograms.entry(key).or_default();
                            *count += p.count;
                            *sum += p.sum.unwrap_or(0.0);
                            buckets.resize(p.bucket_counts.len().max(buckets.len()), 0);
                            buckets.iter_mut().zip(&p.bucket_counts).for_each(|(a, b)| *a += b);
                            (p.count, p.sum) = (*count, Some(*sum));
                            p.bucket_counts.clone_from(buckets);
                            (p.start_time_unix_nano, p.time_unix_nano) = (start, time);
                            for e in &mut p.exemplars {
                                e.time_unix_nano = time;
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// A traces request of about `spans` spans with the default [`Shape`].
pub fn traces_request(rng: &mut Rng, spans: usize) -> ExportTraceServiceRequest {
    generate(rng, spans, &Shape::default()).traces
}

#[cfg(test)]
mod tests {
    use sift_proto::{Logs, Metrics, Signal, Traces};

    use super::*;

    #[test]
    fn generation_is_seeded_and_consistent() {
        let a = generate(&mut Rng::new(7), 512, &Shape::default());
        let b = generate(&mut Rng::new(7), 512, &Shape::default());
        assert_eq!(a, b, "same seed, same payload");
        assert_eq!(Traces::item_count(&a.traces), 512);
        assert!(Logs::item_count(&a.logs) >= 200);
        assert_eq!(Metrics::item_count(&a.metrics), 10);
        let spans = &a.traces.resource_spans[0].scope_spans[0].spans;
        assert!(spans.iter().all(|s| (5..=15).contains(&s.attributes.len())));
        let many = generate(&mut Rng::new(7), 5_000, &Shape::default());
        let many = &many.traces.resource_spans[0].scope_spans[0].spans;
        let traces: std::collections::HashSet<_> = many.iter().map(|s| s.trace_id.clone()).collect();
        let failed: Vec<_> = many
            .iter()
            .filter(|s| s.status.as_ref().is_some_and(|st| st.code == 2))
            .map(|s| s.trace_id.clone())
            .collect();
        let distinct: std::collections::HashSet<_> = failed.iter().collect();
        assert_eq!(distinct.len(), failed.len(), "one error span per failed trace");
        let share = failed.len() as f64 / traces.len() as f64;
        assert!((0.02..=0.09).contains(&share), "about 5% of traces failed: {share}");
        let log_trace_ids: std::collections::HashSet<_> = a.logs.resource_logs[0].scope_logs[0]
            .log_records
            .iter()
            .map(|l| l.trace_id.clone())
            .collect();
        assert!(
            log_trace_ids.iter().all(|t| spans.iter().any(|s| &s.trace_id == t)),
            "logs belong to the traces"
        );
    }
}
