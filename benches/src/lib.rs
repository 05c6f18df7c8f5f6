//! Shared pieces of Sift's benchmarks and load generator: seeded, realistic OTLP payloads.
#![warn(missing_docs)]

use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sift_proto::otlp::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
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

/// A traces request of `spans` spans in traces of 1–30 spans, with 6 attributes per span,
/// 5% error spans, spread over a handful of services.
pub fn traces_request(rng: &mut Rng, spans: usize) -> ExportTraceServiceRequest {
    let service = SERVICES[rng.below(SERVICES.len() as u64) as usize];
    let mut out = Vec::with_capacity(spans);
    let now = 1_700_000_000_000_000_000u64 + rng.below(1 << 40);
    while out.len() < spans {
        let trace_id = [rng.next_u64().to_be_bytes(), rng.next_u64().to_be_bytes()].concat();
        let trace_len = (1 + rng.below(30) as usize).min(spans - out.len());
        let root_id = rng.next_u64().max(1).to_be_bytes().to_vec();
        for i in 0..trace_len {
            let route = ROUTES[rng.below(ROUTES.len() as u64) as usize];
            let start = now + i as u64 * 1_000;
            let error = rng.below(100) < 5;
            out.push(Span {
                trace_id: trace_id.clone(),
                span_id: if i == 0 {
                    root_id.clone()
                } else {
                    rng.next_u64().max(1).to_be_bytes().to_vec()
                },
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
                end_time_unix_nano: start + 1_000 + rng.below(5_000_000),
                attributes: vec![
                    text("http.route", route),
                    text("http.method", "POST"),
                    kv(
                        "http.status_code",
                        any_value::Value::IntValue(if error { 500 } else { 200 }),
                    ),
                    text("net.peer.name", "10.0.0.7"),
                    kv("order.id", any_value::Value::IntValue(rng.below(1_000_000) as i64)),
                    text("user.tier", if rng.below(2) == 0 { "gold" } else { "free" }),
                ],
                status: Some(Status {
                    code: if error {
                        status::StatusCode::Error as i32
                    } else {
                        status::StatusCode::Ok as i32
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
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", service), text("host.name", "bench-1")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "sift.bench".into(),
                    version: "1".into(),
                    ..Default::default()
                }),
                spans: out,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
