use serde_json::{json, Value};

use super::*;

use crate::test_vector as vector;

fn round_trip(name: &str, decode: fn(&[u8]) -> Result<Value, JsonError>) {
    let input: Value = serde_json::from_slice(&vector(name)).unwrap();
    let output = decode(&vector(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    equivalence::equivalent(&input, &output).unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn protocol_examples_round_trip_field_by_field() {
    round_trip("trace.json", |b| decode_traces(b).map(|r| encode_traces(&r)));
    round_trip("logs.json", |b| decode_logs(b).map(|r| encode_logs(&r)));
    round_trip("events.json", |b| decode_logs(b).map(|r| encode_logs(&r)));
    round_trip("metrics.json", |b| decode_metrics(b).map(|r| encode_metrics(&r)));
}

#[test]
fn protocol_examples_decode_to_the_expected_values() {
    let traces = decode_traces(&vector("trace.json")).unwrap();
    let span = &traces.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(hex::encode(&span.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.kind, 2);
    let metrics = decode_metrics(&vector("metrics.json")).unwrap();
    assert_eq!(metrics.resource_metrics[0].scope_metrics[0].metrics.len(), 4);
}

#[test]
fn lenient_forms_are_accepted() {
    let body = json!({
        "resource_spans": [{
            "resource": null,
            "scopeSpans": [{
                "spans": [{
                    "traceId": "5b8efff798038103d269b633813fc60c",
                    "span_id": "eee19b7ec3c1b174",
                    "kind": "SPAN_KIND_CLIENT",
                    "startTimeUnixNano": 1544712660000000000u64,
                    "endTimeUnixNano": "1544712661000000000",
                    "status": {"code": "STATUS_CODE_ERROR", "message": null},
                    "droppedAttributesCount": null,
                    "somethingFromTheFuture": {"x": 1},
                    "attributes": [
                        {"key": "a", "value": {"arrayValue": {}}},
                        {"key": "k", "value": {"kvlistValue": {}}},
                        {"key": "d", "value": {"doubleValue": "NaN"}},
                        {"key": "i", "value": {"intValue": 42}},
                        {"key": "e", "value": {}}
                    ]
                }]
            }]
        }]
    });
    let request = decode_traces(body.to_string().as_bytes()).unwrap();
    let span = &request.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.kind, 3);
    assert_eq!(span.status.as_ref().unwrap().code, 2);
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.attributes.len(), 5);
    let encoded = encode_traces(&request);
    let attrs = &encoded["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"];
    assert_eq!(attrs[2]["value"]["doubleValue"], "NaN");
    assert_eq!(attrs[3]["value"]["intValue"], "42");

    let metrics = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
        "name": "m",
        "sum": {"aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA", "isMonotonic": true,
                "dataPoints": [{"asDouble": "Infinity", "timeUnixNano": 5}]}
    }]}]}]});
    let request = decode_metrics(metrics.to_string().as_bytes()).unwrap();
    let encoded = encode_metrics(&request);
    let sum = &encoded["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"];
    assert_eq!(sum["aggregationTemporality"], 1);
    assert_eq!(sum["dataPoints"][0]["asDouble"], "Infinity");
}

#[test]
fn a_malformed_data_point_is_an_error_naming_the_field() {
    let metrics = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "ok", "gauge": {"dataPoints": [{"asInt": "1", "timeUnixNano": "5"}]}},
        {"name": "bad", "gauge": {"dataPoints": [{"asInt": "1", "timeUnixNano": "yesterday"}]}}
    ]}]}]});
    let err = decode_metrics(metrics.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        err.path,
        "resourceMetrics[0].scopeMetrics[0].metrics[1].gauge.dataPoints[0].timeUnixNano"
    );
    assert!(err.to_string().contains("yesterday"), "{err}");

    let bad_enum = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "s", "sum": {"aggregationTemporality": "SOMETIMES", "dataPoints": []}}
    ]}]}]});
    let err = decode_metrics(bad_enum.to_string().as_bytes()).unwrap_err();
    assert!(err.path.ends_with("sum.aggregationTemporality"), "{err}");
}

#[test]
fn structural_errors_are_reported() {
    assert!(decode_traces(b"{not json")
        .unwrap_err()
        .message
        .starts_with("invalid JSON"));
    let err = decode_traces(br#"{"resourceSpans": {}}"#).unwrap_err();
    assert_eq!(err.to_string(), "resourceSpans: expected an array, found an object");
    let err = decode_traces(br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "abc"}]}]}]}"#).unwrap_err();
    assert_eq!(err.path, "resourceSpans[0].scopeSpans[0].spans[0].traceId");
    let two_members =
        br#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "a", "intValue": 1}}]}]}]}"#;
    assert!(decode_logs(two_members).unwrap_err().message.contains("oneof"));
}

mod properties {
    use proptest::prelude::*;

    use super::super::*;
    use crate::otlp::collector::logs::v1::ExportLogsServiceRequest;
    use crate::otlp::common::v1::{any_value, AnyValue, ArrayValue, KeyValue, KeyValueList};
    use crate::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    fn any_value_strategy() -> impl Strategy<Value = AnyValue> {
        let leaf = prop_oneof![
            any::<String>().prop_map(any_value::Value::StringValue),
            any::<bool>().prop_map(any_value::Value::BoolValue),
            any::<i64>().prop_map(any_value::Value::IntValue),
            any::<f64>()
                .prop_filter("NaN never equals itself", |f| !f.is_nan())
                .prop_map(any_value::Value::DoubleValue),
            proptest::collection::vec(any::<u8>(), 0..16).prop_map(any_value::Value::BytesValue),
        ];
        let leaf = leaf.prop_map(|v| AnyValue { value: Some(v) });
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(|values| AnyValue {
                    value: Some(any_value::Value::ArrayValue(ArrayValue { values }))
                }),
                proptest::collection::vec(("[a-z.]{1,8}", inner), 0..4).prop_map(|kvs| AnyValue {
                    value: Some(any_value::Value::KvlistValue(KeyValueList {
                        values: kvs
                            .into_iter()
                            .map(|(key, value)| KeyValue {
                                key,
                                value: Some(value),
                                ..Default::default()
                            })
                            .collect(),
                    })),
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn log_records_round_trip(
            body in any_value_strategy(),
            time in any::<u64>(),
            severity in 0i32..25,
            trace_id in proptest::collection::vec(any::<u8>(), 16),
            attrs in proptest::collection::vec(("[a-z]{1,6}", any_value_strategy()), 0..5),
        ) {
            let record = LogRecord {
                time_unix_nano: time,
                severity_number: severity,
                body: Some(body),
                trace_id,
                attributes: attrs.into_iter().map(|(key, value)| KeyValue { key, value: Some(value), ..Default::default() }).collect(),
                ..Default::default()
            };
            let request = ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    scope_logs: vec![ScopeLogs { log_records: vec![record], ..Default::default() }],
                    ..Default::default()
                }],
            };
            let text = encode_logs(&request).to_string();
            let back = decode_logs(text.as_bytes()).unwrap();
            prop_assert_eq!(back, request);
        }
    }
}
