//! OTLP → Arrow → Parquet → Arrow → OTLP is lossless, for every signal and metric type.

use arrow_array::RecordBatch;
use proptest::prelude::*;
use sift_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sift_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sift_proto::otlp::common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList};
use sift_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sift_proto::otlp::metrics::v1::{
    exemplar, exponential_histogram_data_point::Buckets, metric, number_data_point,
    summary_data_point::ValueAtQuantile, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint,
};
use sift_proto::otlp::resource::v1::Resource;
use sift_proto::otlp::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};

use super::{logs, metrics, spans, Origin, Table};
use crate::rollup;
use crate::store::part_roundtrip;

fn any_value() -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        "[ -~]{0,12}".prop_map(any_value::Value::StringValue),
        any::<bool>().prop_map(any_value::Value::BoolValue),
        any::<i64>().prop_map(any_value::Value::IntValue),
        any::<f64>()
            .prop_filter("NaN never equals itself", |f| !f.is_nan())
            .prop_map(any_value::Value::DoubleValue),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(any_value::Value::BytesValue),
    ]
    .prop_map(|v| AnyValue { value: Some(v) });
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(|values| AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values }))
            }),
            attributes_of(inner).prop_map(|values| AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList { values }))
            }),
        ]
    })
}

fn attributes_of(value: impl Strategy<Value = AnyValue>) -> impl Strategy<Value = Vec<KeyValue>> {
    proptest::collection::vec(("[a-z.]{1,8}", value), 0..4).prop_map(|kvs| {
        kvs.into_iter()
            .map(|(key, value)| KeyValue {
                key,
                value: Some(value),
                ..Default::default()
            })
            .collect()
    })
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    attributes_of(any_value())
}

fn origin() -> impl Strategy<Value = Origin> {
    (
        attributes(),
        any::<u32>(),
        "[a-z:/.]{0,10}",
        "[a-z.]{0,8}",
        "[0-9.]{0,5}",
        attributes(),
        any::<u32>(),
        "[a-z:/.]{0,10}",
    )
        .prop_map(|(mut attrs, rd, rurl, name, version, sattrs, sd, surl)| {
            attrs.push(KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(format!("svc-{name}"))),
                }),
                ..Default::default()
            });
            Origin {
                resource: Resource {
                    attributes: attrs,
                    dropped_attributes_count: rd,
                    entity_refs: vec![],
                },
                resource_schema_url: rurl,
                scope: InstrumentationScope {
                    name,
                    version,
                    attributes: sattrs,
                    dropped_attributes_count: sd,
                },
                scope_schema_url: surl,
            }
        })
}

fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), len)
}

fn optional_id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(Vec::new()), id(len)]
}

fn span() -> impl Strategy<Value = Span> {
    let event =
        (any::<u64>(), "[a-z ]{0,8}", attributes(), any::<u32>()).prop_map(|(t, name, attributes, d)| span::Event {
            time_unix_nano: t,
            name,
            attributes,
            dropped_attributes_count: d,
        });
    let link = (id(16), id(8), "[a-z=,]{0,8}", attributes(), any::<u32>(), any::<u32>()).prop_map(
        |(trace_id, span_id, trace_state, attributes, d, flags)| span::Link {
            trace_id,
            span_id,
            trace_state,
            attributes,
            dropped_attributes_count: d,
            flags,
        },
    );
    let status = prop_oneof![
        Just(None),
        (1..3i32, "[ -~]{0,10}").prop_map(|(code, message)| Some(Status { code, message }))
    ];
    (
        (
            id(16),
            id(8),
            optional_id(8),
            "[a-z=,]{0,8}",
            any::<u32>(),
            "[ -~]{0,12}",
            0..6i32,
        ),
        (any::<u64>(), any::<u64>(), attributes(), any::<u32>()),
        (
            proptest::collection::vec(event, 0..3),
            any::<u32>(),
            proptest::collection::vec(link, 0..2),
            any::<u32>(),
            status,
        ),
    )
        .prop_map(
            |(
                (trace_id, span_id, parent_span_id, trace_state, flags, name, kind),
                (start, end, attributes, da),
                (events, de, links, dl, status),
            )| Span {
                trace_id,
                span_id,
                trace_state,
                parent_span_id,
                flags,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                dropped_attributes_count: da,
                events,
                dropped_events_count: de,
                links,
                dropped_links_count: dl,
                status,
            },
        )
}

fn log() -> impl Strategy<Value = LogRecord> {
    (
        (
            any::<u64>(),
            any::<u64>(),
            0..25i32,
            "[A-Z]{0,5}",
            prop::option::of(any_value()),
        ),
        (
            attributes(),
            any::<u32>(),
            any::<u32>(),
            optional_id(16),
            optional_id(8),
            "[a-z.]{0,8}",
        ),
    )
        .prop_map(
            |((t, o, sn, st, body), (attributes, d, flags, trace_id, span_id, event_name))| LogRecord {
                time_unix_nano: t,
                observed_time_unix_nano: o,
                severity_number: sn,
                severity_text: st,
                body,
                attributes,
                dropped_attributes_count: d,
                flags,
                trace_id,
                span_id,
                event_name,
            },
        )
}

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN never equals itself", |f| !f.is_nan())
}

fn exemplars() -> impl Strategy<Value = Vec<Exemplar>> {
    let value = prop_oneof![
        Just(None),
        finite().prop_map(|d| Some(exemplar::Value::AsDouble(d))),
        any::<i64>().prop_map(|i| Some(exemplar::Value::AsInt(i))),
    ];
    let e = (attributes(), any::<u64>(), optional_id(8), optional_id(16), value).prop_map(
        |(filtered_attributes, time_unix_nano, span_id, trace_id, value)| Exemplar {
            filtered_attributes,
            time_unix_nano,
            span_id,
            trace_id,
            value,
        },
    );
    proptest::collection::vec(e, 0..3)
}

fn number_point() -> impl Strategy<Value = NumberDataPoint> {
    let value = prop_oneof![
        Just(None),
        finite().prop_map(|d| Some(number_data_point::Value::AsDouble(d))),
        any::<i64>().prop_map(|i| Some(number_data_point::Value::AsInt(i))),
    ];
    (
        attributes(),
        any::<u64>(),
        any::<u64>(),
        exemplars(),
        any::<u32>(),
        value,
    )
        .prop_map(|(attributes, start, time, exemplars, flags, value)| NumberDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: time,
            exemplars,
            flags,
            value,
        })
}

fn metric_data() -> impl Strategy<Value = metric::Data> {
    let opt = || prop::option::of(finite());
    let counts = || proptest::collection::vec(any::<u64>(), 0..5);
    let buckets = move || {
        prop::option::of((any::<i32>(), counts()).prop_map(|(offset, bucket_counts)| Buckets { offset, bucket_counts }))
    };
    let histogram = (
        (attributes(), any::<u64>(), any::<u64>(), any::<u64>(), opt()),
        (
            counts(),
            proptest::collection::vec(finite(), 0..4),
            exemplars(),
            any::<u32>(),
            opt(),
            opt(),
        ),
    )
        .prop_map(
            |((attributes, start, time, count, sum), (bucket_counts, explicit_bounds, exemplars, flags, min, max))| {
                HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count,
                    sum,
                    bucket_counts,
                    explicit_bounds,
                    exemplars,
                    flags,
                    min,
                    max,
                }
            },
        );
    let exponential = (
        (
            attributes(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            opt(),
            any::<i32>(),
            any::<u64>(),
        ),
        (buckets(), buckets(), any::<u32>(), exemplars(), opt(), opt(), finite()),
    )
        .prop_map(
            |(
                (attributes, start, time, count, sum, scale, zero_count),
                (positive, negative, flags, exemplars, min, max, zero_threshold),
            )| {
                ExponentialHistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count,
                    sum,
                    scale,
                    zero_count,
                    positive,
                    negative,
                    flags,
                    exemplars,
                    min,
                    max,
                    zero_threshold,
                }
            },
        );
    let summary = (
        attributes(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        finite(),
        proptest::collection::vec((finite(), finite()), 0..4),
        any::<u32>(),
    )
        .prop_map(|(attributes, start, time, count, sum, q, flags)| SummaryDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: time,
            count,
            sum,
            quantile_values: q
                .into_iter()
                .map(|(quantile, value)| ValueAtQuantile { quantile, value })
                .collect(),
            flags,
        });
    prop_oneof![
        number_point().prop_map(|p| metric::Data::Gauge(Gauge { data_points: vec![p] })),
        (number_point(), 0..3i32, any::<bool>()).prop_map(|(p, t, m)| metric::Data::Sum(Sum {
            data_points: vec![p],
            aggregation_temporality: t,
            is_monotonic: m
        })),
        (histogram, 0..3i32).prop_map(|(p, t)| metric::Data::Histogram(Histogram {
            data_points: vec![p],
            aggregation_temporality: t
        })),
        (exponential, 0..3i32).prop_map(|(p, t)| metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![p],
            aggregation_temporality: t
        })),
        summary.prop_map(|p| metric::Data::Summary(Summary { data_points: vec![p] })),
    ]
}

fn metric_one_point() -> impl Strategy<Value = Metric> {
    (
        "[a-z._]{1,10}",
        "[ -~]{0,10}",
        "[a-zA-Z/]{0,4}",
        attributes(),
        metric_data(),
    )
        .prop_map(|(name, description, unit, metadata, data)| Metric {
            name,
            description,
            unit,
            metadata,
            data: Some(data),
        })
}

/// The batch after a trip through a Parquet part on disk.
fn via_parquet(table: Table, batch: &RecordBatch) -> RecordBatch {
    let dir = tempfile::tempdir().unwrap();
    part_roundtrip(&dir.path().join("part.parquet"), table, batch)
}

/// Metric points (one per item) after a trip through a Parquet part on disk.
fn stored_points(items: &[(Origin, Metric)]) -> RecordBatch {
    let request = ExportMetricsServiceRequest {
        resource_metrics: items
            .iter()
            .map(|(o, m)| ResourceMetrics {
                resource: Some(o.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(o.scope.clone()),
                    metrics: vec![m.clone()],
                    schema_url: o.scope_schema_url.clone(),
                }],
                schema_url: o.resource_schema_url.clone(),
            })
            .collect(),
    };
    let mut builder = metrics::MetricBuilder::default();
    metrics::for_each(&request, |point| point.append_to(&mut builder));
    via_parquet(Table::Metrics, &builder.finish())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn spans_round_trip(items in proptest::collection::vec((origin(), span()), 1..6)) {
        let request = ExportTraceServiceRequest {
            resource_spans: items.iter().map(|(o, s)| ResourceSpans {
                resource: Some(o.resource.clone()),
                scope_spans: vec![ScopeSpans { scope: Some(o.scope.clone()), spans: vec![s.clone()], schema_url: o.scope_schema_url.clone() }],
                schema_url: o.resource_schema_url.clone(),
            }).collect(),
        };
        let mut builder = spans::SpanBuilder::default();
        spans::for_each(&request, |origin, span| builder.append(origin, span));
        let batch = via_parquet(Table::Spans, &builder.finish());
        let back = spans::rows(&batch).unwrap();
        let expected: Vec<_> = items.into_iter().map(|(origin, span)| spans::SpanRow { origin, span }).collect();
        prop_assert_eq!(back, expected);
    }

    #[test]
    fn attributes_round_trip_through_keys_and_values(
        items in proptest::collection::vec(("[a-z.]{0,8}", 0u8..3, any_value(), any::<i32>()), 0..6)
    ) {
        // Missing and empty values, and the profiling-only key index, come back as they went.
        let attributes: Vec<KeyValue> = items
            .into_iter()
            .map(|(key, kind, value, key_strindex)| KeyValue {
                key,
                value: match kind {
                    0 => None,
                    1 => Some(AnyValue::default()),
                    _ => Some(value),
                },
                key_strindex,
            })
            .collect();
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        super::encode_attributes(&attributes, &mut keys, &mut values);
        // The keys are exactly the `KeyValue`s without their values, as prost writes them.
        let without_values: Vec<KeyValue> = attributes.iter().map(|kv| KeyValue { value: None, ..kv.clone() }).collect();
        let mut expected_keys = Vec::new();
        super::encode_list(&without_values, &mut expected_keys);
        prop_assert_eq!(&keys, &expected_keys);
        prop_assert_eq!(super::decode_attributes(&keys, &values).unwrap(), attributes.clone());
        if !attributes.is_empty() {
            // A value lost or added is an error, not a silent shift.
            prop_assert!(super::decode_attributes(&keys, &values[..values.len() - 1]).is_err());
            let mut more = values.clone();
            more.push(0);
            prop_assert!(super::decode_attributes(&keys, &more).is_err());
        }
    }

    #[test]
    fn logs_round_trip(items in proptest::collection::vec((origin(), log()), 1..6)) {
        let request = ExportLogsServiceRequest {
            resource_logs: items.iter().map(|(o, l)| ResourceLogs {
                resource: Some(o.resource.clone()),
                scope_logs: vec![ScopeLogs { scope: Some(o.scope.clone()), log_records: vec![l.clone()], schema_url: o.scope_schema_url.clone() }],
                schema_url: o.resource_schema_url.clone(),
            }).collect(),
        };
        let mut builder = logs::LogBuilder::default();
        logs::for_each(&request, |origin, log| builder.append(origin, log));
        let batch = via_parquet(Table::Logs, &builder.finish());
        let back = logs::rows(&batch).unwrap();
        let expected: Vec<_> = items.into_iter().map(|(origin, log)| logs::LogRow { origin, log }).collect();
        prop_assert_eq!(back, expected);
    }

    #[test]
    fn metric_points_round_trip(items in proptest::collection::vec((origin(), metric_one_point()), 1..6)) {
        let batch = stored_points(&items);
        let back = metrics::rows(&batch).unwrap();
        let expected: Vec<_> = items.into_iter().map(|(origin, metric)| metrics::MetricRow { origin, metric }).collect();
        prop_assert_eq!(back, expected);
    }

    /// What metric queries read of stored points — samples and labels from the columns of
    /// `SAMPLE_COLUMNS` alone — is what the whole points say.
    #[test]
    fn metric_samples_read_from_columns_are_those_of_the_points(
        items in proptest::collection::vec((origin(), metric_one_point()), 1..8),
        repeat in 1usize..3,
    ) {
        // Points of one series one after another (the labels and bounds kept from the last
        // point are used), and of others in between.
        let items: Vec<_> = items.iter().flat_map(|item| std::iter::repeat_n(item.clone(), repeat)).collect();
        let batch = stored_points(&items);
        let read: Vec<usize> = rollup::SAMPLE_COLUMNS.iter().map(|name| batch.schema().index_of(name).unwrap()).collect();
        let projected = batch.project(&read).unwrap();
        let columns = rollup::SampleColumns::new(&projected).unwrap();
        let mut labels = rollup::RawLabels::default();
        for (row, point) in metrics::rows(&batch).unwrap().iter().enumerate() {
            prop_assert_eq!(Some(columns.sample(row).unwrap()), rollup::Sample::of(point));
            prop_assert_eq!(labels.of(&columns, row).unwrap(), &rollup::labels(point));
        }
    }
}
