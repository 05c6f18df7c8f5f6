use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::otlp::common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList};
use crate::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use crate::otlp::metrics::v1::{
    exemplar, exponential_histogram_data_point::Buckets, metric, number_data_point, summary_data_point, Exemplar,
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Summary, SummaryDataPoint,
};
use crate::otlp::resource::v1::Resource;
use crate::otlp::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use crate::{with_signal, Signal};

/// Asserts that the scan agrees with prost: both refuse, or both accept with the same item count
/// and the scan's `valid` says whether `reject_invalid` would change the request.
fn agrees(kind: SignalKind, bytes: &[u8]) {
    let scanned = scan(kind, bytes);
    with_signal!(kind, S => {
        match (scanned, <S as Signal>::Request::decode(bytes)) {
            (Ok(scan), Ok(mut request)) => {
                assert_eq!(scan.items, S::item_count(&request), "{kind} items of {bytes:02x?}");
                let before = request.clone();
                S::reject_invalid(&mut request);
                assert_eq!(scan.valid, before == request, "{kind} validity of {bytes:02x?}");
            }
            (Err(_), Err(_)) => {}
            (scanned, decoded) => panic!("{kind}: scan {scanned:?} but prost {:?} for {bytes:02x?}", decoded.map(|_| ())),
        }
    })
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn attributes() -> Vec<KeyValue> {
    vec![
        kv("s", any_value::Value::StringValue("é".into())),
        kv("b", any_value::Value::BoolValue(true)),
        kv("i", any_value::Value::IntValue(-3)),
        kv("d", any_value::Value::DoubleValue(1.5)),
        kv("y", any_value::Value::BytesValue(vec![0, 1])),
        kv(
            "a",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(any_value::Value::KvlistValue(KeyValueList {
                        values: vec![kv("k", any_value::Value::IntValue(1))],
                    })),
                }],
            }),
        ),
    ]
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: attributes(),
        dropped_attributes_count: 2,
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "lib".into(),
        version: "1".into(),
        attributes: attributes(),
        dropped_attributes_count: 1,
    })
}

fn traces() -> Vec<u8> {
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        parent_span_id: vec![3; 8],
        trace_state: "k=v".into(),
        name: "GET /".into(),
        kind: 2,
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        attributes: attributes(),
        events: vec![span::Event {
            time_unix_nano: 1,
            name: "e".into(),
            attributes: attributes(),
            dropped_attributes_count: 1,
        }],
        links: vec![span::Link {
            trace_id: vec![4; 16],
            span_id: vec![5; 8],
            trace_state: "t".into(),
            attributes: attributes(),
            dropped_attributes_count: 1,
            flags: 1,
        }],
        status: Some(Status {
            message: "m".into(),
            code: 2,
        }),
        flags: 256,
        dropped_attributes_count: 1,
        dropped_events_count: 1,
        dropped_links_count: 1,
    };
    let bad = Span {
        span_id: vec![0; 8],
        ..span.clone()
    };
    crate::otlp::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![
                ScopeSpans {
                    scope: scope(),
                    spans: vec![span.clone(), span],
                    schema_url: "u".into(),
                },
                ScopeSpans {
                    scope: None,
                    spans: vec![bad],
                    schema_url: String::new(),
                },
            ],
            schema_url: "u".into(),
        }],
    }
    .encode_to_vec()
}

fn logs() -> Vec<u8> {
    let log = LogRecord {
        time_unix_nano: 1,
        observed_time_unix_nano: 2,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList { values: attributes() })),
        }),
        attributes: attributes(),
        dropped_attributes_count: 1,
        flags: 1,
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        event_name: "ev".into(),
    };
    let bad = LogRecord {
        trace_id: vec![1; 3],
        ..log.clone()
    };
    crate::otlp::collector::logs::v1::ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: vec![log, LogRecord::default(), bad],
                schema_url: "u".into(),
            }],
            schema_url: "u".into(),
        }],
    }
    .encode_to_vec()
}

fn metrics() -> Vec<u8> {
    let exemplar = Exemplar {
        filtered_attributes: attributes(),
        time_unix_nano: 1,
        span_id: vec![2; 8],
        trace_id: vec![1; 16],
        value: Some(exemplar::Value::AsInt(-4)),
    };
    let gauge = Metric {
        name: "g".into(),
        description: "d".into(),
        unit: "1".into(),
        metadata: attributes(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![
                NumberDataPoint {
                    attributes: attributes(),
                    start_time_unix_nano: 1,
                    time_unix_nano: 2,
                    exemplars: vec![exemplar.clone()],
                    flags: 1,
                    value: Some(number_data_point::Value::AsInt(5)),
                };
                2
            ],
        })),
    };
    let exponential = Metric {
        name: "e".into(),
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                attributes: attributes(),
                count: 3,
                sum: Some(1.0),
                scale: -2,
                zero_count: 1,
                positive: Some(Buckets {
                    offset: -1,
                    bucket_counts: vec![1, 300],
                }),
                negative: Some(Buckets {
                    offset: 2,
                    bucket_counts: vec![0],
                }),
                exemplars: vec![exemplar],
                min: Some(0.0),
                max: Some(2.0),
                zero_threshold: 0.5,
                ..Default::default()
            }],
            aggregation_temporality: 2,
        })),
        ..Default::default()
    };
    let summary = Metric {
        name: "s".into(),
        data: Some(metric::Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                count: 2,
                sum: 3.0,
                quantile_values: vec![summary_data_point::ValueAtQuantile {
                    quantile: 0.5,
                    value: 1.0,
                }],
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let unnamed = Metric {
        name: String::new(),
        ..summary.clone()
    };
    let mut request = crate::json::decode_metrics(&vector("metrics.json")).unwrap();
    request.resource_metrics.push(ResourceMetrics {
        resource: resource(),
        scope_metrics: vec![ScopeMetrics {
            scope: scope(),
            metrics: vec![gauge, exponential, summary, unnamed],
            schema_url: "u".into(),
        }],
        schema_url: "u".into(),
    });
    request.encode_to_vec()
}

use crate::test_vector as vector;

fn seeds() -> Vec<(SignalKind, Vec<u8>)> {
    vec![
        (SignalKind::Traces, traces()),
        (
            SignalKind::Traces,
            crate::json::decode_traces(&vector("trace.json"))
                .unwrap()
                .encode_to_vec(),
        ),
        (SignalKind::Logs, logs()),
        (
            SignalKind::Logs,
            crate::json::decode_logs(&vector("logs.json")).unwrap().encode_to_vec(),
        ),
        (SignalKind::Metrics, metrics()),
    ]
}

#[test]
fn well_formed_requests_are_counted_and_checked_like_prost_does() {
    for (kind, bytes) in seeds() {
        agrees(kind, &bytes);
    }
    let scanned = scan(SignalKind::Traces, &traces()).unwrap();
    assert_eq!(scanned, Scan { items: 3, valid: false });
    let clean = crate::json::decode_traces(&vector("trace.json"))
        .unwrap()
        .encode_to_vec();
    assert_eq!(
        scan(SignalKind::Traces, &clean).unwrap(),
        Scan { items: 1, valid: true }
    );
    assert_eq!(
        scan(SignalKind::Logs, &logs()).unwrap(),
        Scan { items: 3, valid: false }
    );
    // metrics.json: 4 points; ours: 2 + 1 + 1 + 1 (unnamed).
    assert_eq!(
        scan(SignalKind::Metrics, &metrics()).unwrap(),
        Scan { items: 9, valid: false }
    );
    assert_eq!(scan(SignalKind::Logs, &[]).unwrap(), Scan { items: 0, valid: true });
}

/// Field `tag` of wire type 2 holding `body`.
fn field(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag << 3 | 2];
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

#[test]
fn edge_cases_of_the_wire_format_agree_with_prost() {
    let point = field(7, &field(1, b"k")); // one number point with an attribute
    let gauge = |n: usize| point.repeat(n);
    // One metric whose data oneof is a gauge of 2 points, then more gauge (merged: 3), then a sum
    // (replaces: 1), and a name given twice (the last, empty, wins).
    let metric = [field(1, b"m"), field(5, &gauge(2)), field(5, &gauge(1))].concat();
    let replaced = [metric.clone(), field(7, &gauge(1))].concat();
    let renamed = [metric.clone(), field(1, b"")].concat();
    for metric in [metric, replaced, renamed] {
        let request = field(1, &field(2, &field(2, &metric)));
        agrees(SignalKind::Metrics, &request);
    }
    // Packed and unpacked repeated scalars, and a packed run that is cut.
    let histogram_point = |body: &[u8]| {
        field(
            1,
            &field(2, &field(2, &[field(1, b"h"), field(9, &field(1, body))].concat())),
        )
    };
    for body in [
        field(6, &[0; 16]),
        [vec![6 << 3 | 1], vec![0; 8]].concat(),
        field(6, &[0; 12]),
        field(7, &[0; 8]),
    ] {
        agrees(SignalKind::Metrics, &histogram_point(&body));
    }
    // Unknown fields of every wire type, groups (nested and mismatched), bad keys and varints.
    let span = |extra: &[u8]| {
        field(
            1,
            &field(
                2,
                &field(2, &[field(1, &[1; 16]), field(2, &[1; 8]), extra.to_vec()].concat()),
            ),
        )
    };
    for extra in [
        vec![99 << 3],
        vec![
            0xf8,
            0x06,
            5,
            99 << 3 | 1,
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
            99 << 3 | 5,
            1,
            2,
            3,
            4,
        ],
        vec![30 << 3 | 3, 31 << 3 | 3, 31 << 3 | 4, 30 << 3 | 4],
        vec![30 << 3 | 3, 31 << 3 | 4],
        vec![30 << 3 | 4],
        vec![30 << 3 | 6, 0],
        vec![0, 0],
        vec![1 << 3, 1], // trace_id as a varint
        vec![5 << 3 | 2, 2, 0xff, 0xfe],
        vec![30 << 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        vec![30 << 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
        vec![
            30 << 3,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0x01,
        ],
        vec![0xff, 0xff, 0xff, 0xff, 0x1f, 0],
    ] {
        agrees(SignalKind::Traces, &span(&extra));
    }
}

#[test]
fn nesting_is_limited_where_prost_limits_it() {
    // A log body of arrays nested `n` deep, with and without an unknown field at the bottom.
    for n in 90..100 {
        for bottom in [Vec::new(), vec![9 << 3, 1]] {
            let mut value = bottom.clone();
            for _ in 0..n {
                value = field(1, &field(5, &value)); // ArrayValue.values = AnyValue{array_value}
            }
            // LogRecord.body = AnyValue{array_value}, inside ScopeLogs and ResourceLogs.
            let request = field(1, &field(2, &field(2, &field(5, &field(5, &value)))));
            agrees(SignalKind::Logs, &request);
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..4)).prop_map(|(at, b)| Mutation::Insert(at, b)),
        (any::<usize>(), 1usize..6).prop_map(|(at, n)| Mutation::Remove(at, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn mutated_requests_are_judged_like_prost_judges_them(
        seed in 0usize..5,
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let seeds = seeds();
        let (kind, mut bytes) = seeds[seed % seeds.len()].clone();
        for m in mutations {
            let len = bytes.len().max(1);
            match m {
                Mutation::Set(at, byte) => {
                    let at = at % len;
                    if at < bytes.len() {
                        bytes[at] = byte;
                    }
                }
                Mutation::Insert(at, inserted) => {
                    let at = at % (bytes.len() + 1);
                    bytes.splice(at..at, inserted);
                }
                Mutation::Remove(at, n) => {
                    let at = at % len;
                    let end = (at + n).min(bytes.len());
                    bytes.drain(at.min(end)..end);
                }
            }
        }
        agrees(kind, &bytes);
    }
}

/// A field as the protocol's descriptors declare it: `FieldDescriptorProto` type, repeated, and
/// the message type's name.
type Declared = (u64, bool, String);

/// Every message of the protocol's `FileDescriptorSet` (as generated into `opentelemetry-proto`),
/// by full name, read with this module's own wire primitives.
fn declared_messages() -> std::collections::HashMap<String, std::collections::BTreeMap<u32, Declared>> {
    fn fields_of(mut buf: &[u8], mut each: impl FnMut(u32, &[u8], u64)) {
        while !buf.is_empty() {
            let (tag, wire) = key(&mut buf).unwrap();
            match wire {
                LEN => each(tag, delimited(&mut buf).unwrap(), 0),
                VARINT => each(tag, &[], varint(&mut buf).unwrap()),
                _ => skip(&mut buf, tag, wire, RECURSION_LIMIT).unwrap(),
            }
        }
    }
    fn message(
        prefix: &str,
        body: &[u8],
        out: &mut std::collections::HashMap<String, std::collections::BTreeMap<u32, Declared>>,
    ) {
        let mut name = String::new();
        fields_of(body, |tag, bytes, _| {
            if tag == 1 {
                name = String::from_utf8(bytes.to_vec()).unwrap();
            }
        });
        let full = format!("{prefix}.{name}");
        let mut fields = std::collections::BTreeMap::new();
        fields_of(body, |tag, bytes, _| match tag {
            2 => {
                let (mut number, mut repeated, mut ty, mut type_name) = (0, false, 0, String::new());
                fields_of(bytes, |tag, bytes, value| match tag {
                    3 => number = u32::try_from(value).unwrap(),
                    4 => repeated = value == 3,
                    5 => ty = value,
                    6 => type_name = String::from_utf8(bytes.trim_ascii_start().to_vec()).unwrap(),
                    _ => {}
                });
                fields.insert(number, (ty, repeated, type_name.trim_start_matches('.').to_owned()));
            }
            3 => message(&full, bytes, out),
            _ => {}
        });
        out.insert(full, fields);
    }
    let mut out = std::collections::HashMap::new();
    fields_of(opentelemetry_proto::DESCRIPTORS, |tag, file, _| {
        assert_eq!(tag, 1);
        let mut package = String::new();
        fields_of(file, |tag, bytes, _| {
            if tag == 2 {
                package = String::from_utf8(bytes.to_vec()).unwrap();
            }
        });
        fields_of(file, |tag, bytes, _| {
            if tag == 4 {
                message(&package, bytes, &mut out);
            }
        });
    });
    out
}

/// What a table entry means in descriptor terms, or why it cannot stand for `declared`.
fn matches(ty: Ty, declared: Option<&Declared>) -> Result<(), String> {
    const VARINTS: [u64; 8] = [3, 4, 5, 8, 13, 14, 17, 18];
    const FIXED64S: [u64; 3] = [1, 6, 16];
    const FIXED32S: [u64; 3] = [2, 7, 15];
    let ok = match (ty, declared) {
        (Ty::Unknown, None) => true,
        (_, None) | (Ty::Unknown, Some(_)) => false,
        (Ty::Varint, Some((t, false, _))) => VARINTS.contains(t),
        (Ty::RepeatedVarint, Some((t, true, _))) => VARINTS.contains(t),
        (Ty::Fixed64, Some((t, false, _))) => FIXED64S.contains(t),
        (Ty::RepeatedFixed64, Some((t, true, _))) => FIXED64S.contains(t),
        (Ty::Fixed32, Some((t, false, _))) => FIXED32S.contains(t),
        (Ty::Str | Ty::Name, Some((t, _, _))) => *t == 9,
        (Ty::Bytes | Ty::Id(_), Some((t, false, _))) => *t == 12,
        (Ty::Message(schema), Some((11, _, name))) => schema.name == name,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("declared {declared:?}"))
    }
}

#[test]
fn every_table_matches_the_protocols_descriptors() {
    let declared = declared_messages();
    let mut pending: Vec<&'static Schema> = vec![&EXPORT_TRACES, &EXPORT_LOGS, &EXPORT_METRICS];
    let mut checked = std::collections::BTreeSet::new();
    while let Some(schema) = pending.pop() {
        if !checked.insert(schema.name) {
            continue;
        }
        let fields = declared
            .get(schema.name)
            .unwrap_or_else(|| panic!("{} is not in the descriptors", schema.name));
        let last = fields.keys().max().copied().unwrap_or(0) as usize;
        assert!(schema.fields.len() > last, "{}: field {last} is missing", schema.name);
        for (number, ty) in schema.fields.iter().enumerate().skip(1) {
            let number = u32::try_from(number).unwrap();
            matches(*ty, fields.get(&number)).unwrap_or_else(|e| panic!("{} field {number}: {e}", schema.name));
            if let Ty::Message(child) = ty {
                pending.push(child);
            }
        }
    }
    assert_eq!(checked.len(), 34, "{checked:?}");
}
