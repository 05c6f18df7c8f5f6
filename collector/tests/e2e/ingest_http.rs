//! OTLP/HTTP: the protocol's own JSON examples, lenient JSON, and every class of bad input.

use std::io::Write;
use std::time::Duration;

use prost::Message;
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use sift_proto::status::RpcStatus;

use crate::common::{config, count_items, eventually, file_config, Sift};

fn example(name: &str) -> Vec<u8> {
    let path = format!("{}/../proto/testdata/otlp-json/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn post(sift: &Sift, path: &str, content_type: &str, body: impl Into<reqwest::blocking::Body>) -> Response {
    Client::new()
        .post(sift.http_url(path))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .unwrap()
}

#[test]
fn protocol_examples_come_out_of_the_file_exporter_field_by_field() {
    let sift = Sift::start(&file_config());
    let cases = [
        ("trace.json", "traces"),
        ("logs.json", "logs"),
        ("events.json", "logs"),
        ("metrics.json", "metrics"),
    ];
    for (file, signal) in cases {
        let response = post(&sift, &format!("/v1/{signal}"), "application/json", example(file));
        assert_eq!(response.status(), 200, "{file}");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(
            response.json::<Value>().unwrap(),
            json!({}),
            "{file}: no partial success"
        );
    }
    assert!(eventually(Duration::from_secs(10), || sift.exported("logs").len() == 2
        && sift.exported("metrics").len() == 1));
    assert!(eventually(Duration::from_secs(10), || sift.exported("traces").len() == 1));
    let pairs = [
        ("trace.json", sift.exported("traces")[0].clone()),
        ("logs.json", sift.exported("logs")[0].clone()),
        ("events.json", sift.exported("logs")[1].clone()),
        ("metrics.json", sift.exported("metrics")[0].clone()),
    ];
    for (file, output) in pairs {
        let input: Value = serde_json::from_slice(&example(file)).unwrap();
        sift_proto::json::equivalent(&input, &output).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

#[test]
fn lenient_json_and_partial_success() {
    let sift = Sift::start(&file_config());
    let lenient = json!({"resource_spans": [{"scopeSpans": [{"spans": [
        {"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174", "kind": "SPAN_KIND_SERVER",
         "startTimeUnixNano": 1544712660000000000u64, "endTimeUnixNano": "1544712661000000000",
         "status": {"code": "STATUS_CODE_ERROR"}, "droppedEventsCount": null,
         "attributes": [{"key": "n", "value": {"doubleValue": "NaN"}}, {"key": "e", "value": {"arrayValue": {}}}]},
        {"traceId": "00000000000000000000000000000000", "spanId": "EEE19B7EC3C1B175"}
    ]}]}]});
    let response = post(
        &sift,
        "/v1/traces",
        "application/json; charset=utf-8",
        lenient.to_string(),
    );
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    assert_eq!(body["partialSuccess"]["rejectedSpans"], "1");
    assert!(body["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("trace id"));
    assert!(eventually(Duration::from_secs(10), || sift.exported("traces").len() == 1));
    let span = &sift.exported("traces")[0]["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["kind"], 2);
    assert_eq!(span["status"]["code"], 2);
    assert_eq!(span["startTimeUnixNano"], "1544712660000000000");
    assert_eq!(
        span["attributes"][0]["value"]["doubleValue"], "NaN",
        "valid OTLP/JSON, never null"
    );
    assert_eq!(count_items(&sift.exported("traces"), "traces"), 1);
    assert_eq!(
        sift.metric("sift_receiver_refused_total{signal=\"traces\",protocol=\"http\",reason=\"invalid\"}"),
        1.0
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn bad_input_gets_its_status_and_a_message_and_the_server_keeps_serving() {
    let sift = Sift::start(&config("  file: {}", "file", "").replace(
        "http: { endpoint: 127.0.0.1:0 }",
        "http: { endpoint: 127.0.0.1:0, max_request_body_size_mib: 1 }",
    ));
    let client = Client::new();
    let good = example("trace.json");

    // (what, request, expected status, expected message fragment)
    let big = format!("{{\"resourceSpans\": [], \"pad\": \"{}\"}}", "x".repeat(2 << 20));
    let bomb = gzip(&vec![b' '; 64 << 20]);
    assert!(bomb.len() < 1 << 20, "the bomb itself is small");
    let bad_point = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "ok", "sum": {"dataPoints": [{"asInt": "1", "timeUnixNano": "1"}]}},
        {"name": "bad", "sum": {"aggregationTemporality": 2, "dataPoints": [{"asInt": "1", "timeUnixNano": "soon"}]}}
    ]}]}]});
    let cases: Vec<(&str, reqwest::blocking::RequestBuilder, u16, &str)> = vec![
        (
            "malformed protobuf",
            client
                .post(sift.http_url("/v1/traces"))
                .header("Content-Type", "application/x-protobuf")
                .body(vec![0x0a, 0xff, 0xff, 0xff, 0x0f]),
            400,
            "invalid protobuf traces request",
        ),
        (
            "malformed JSON",
            client
                .post(sift.http_url("/v1/logs"))
                .header("Content-Type", "application/json")
                .body("{\"resourceLogs\": ["),
            400,
            "invalid JSON",
        ),
        (
            "wrong content type",
            client
                .post(sift.http_url("/v1/traces"))
                .header("Content-Type", "text/plain")
                .body("hello"),
            415,
            "unsupported Content-Type",
        ),
        (
            "no content type",
            client.post(sift.http_url("/v1/traces")).body("hello"),
            415,
            "missing Content-Type",
        ),
        (
            "unknown encoding",
            client
                .post(sift.http_url("/v1/traces"))
                .header("Content-Type", "application/json")
                .header("Content-Encoding", "br")
                .body(good.clone()),
            415,
            "unsupported Content-Encoding",
        ),
        (
            "oversized body",
            client
                .post(sift.http_url("/v1/traces"))
                .header("Content-Type", "application/json")
                .body(big),
            413,
            "exceeds",
        ),
        (
            "gzip bomb",
            client
                .post(sift.http_url("/v1/traces"))
                .header("Content-Type", "application/json")
                .header("Content-Encoding", "gzip")
                .body(bomb),
            413,
            "after decompression",
        ),
        (
            "corrupt gzip",
            client
                .post(sift.http_url("/v1/traces"))
                .header("Content-Type", "application/json")
                .header("Content-Encoding", "gzip")
                .body(b"not gzip".to_vec()),
            400,
            "cannot decompress",
        ),
        (
            "malformed data point",
            client
                .post(sift.http_url("/v1/metrics"))
                .header("Content-Type", "application/json")
                .body(bad_point.to_string()),
            400,
            "resourceMetrics[0].scopeMetrics[0].metrics[1].sum.dataPoints[0].timeUnixNano",
        ),
    ];
    for (what, request, status, fragment) in cases {
        let response = request.send().unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        // The error body is a google.rpc.Status in the request's encoding (JSON when unknown).
        let protobuf = response.headers()["content-type"] == "application/x-protobuf";
        let (code, message) = if protobuf {
            let status = RpcStatus::decode(response.bytes().unwrap()).unwrap();
            (status.code, status.message)
        } else {
            let body: Value = response
                .json()
                .unwrap_or_else(|e| panic!("{what}: body is not JSON: {e}"));
            (
                body["code"].as_i64().unwrap() as i32,
                body["message"].as_str().unwrap_or_default().to_owned(),
            )
        };
        assert!(
            message.contains(fragment),
            "{what}: {message:?} should contain {fragment:?}"
        );
        assert!(code > 0, "{what}: a google.rpc.Code");
    }
    // The malformed metrics request was refused whole: nothing of it was stored.
    // A protobuf request gets a protobuf google.rpc.Status.
    let response = post(&sift, "/v1/logs", "application/x-protobuf", vec![0xff_u8; 3]);
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let status = RpcStatus::decode(response.bytes().unwrap()).unwrap();
    assert_eq!(status.code, 3);
    assert!(status.message.contains("invalid protobuf logs request"));

    // Still serving.
    let response = post(&sift, "/v1/traces", "application/json", good);
    assert_eq!(response.status(), 200);
    assert!(eventually(Duration::from_secs(10), || sift.exported("traces").len() == 1));
    assert!(
        sift.exported("metrics").is_empty(),
        "a request with one bad point is refused whole, never half-stored"
    );
    let refused =
        sift.metric("sift_receiver_refused_requests_total{signal=\"traces\",protocol=\"http\",reason=\"too_large\"}");
    assert_eq!(refused, 2.0);
    let (rss, _) = crate::common::memory_of(sift.pid());
    eprintln!(
        "RSS after the bad-input suite (incl. a 64 MiB gzip bomb): {} MiB",
        rss >> 20
    );
}

#[test]
fn protobuf_requests_are_answered_in_protobuf() {
    use sift_proto::otlp::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
    let sift = Sift::start(&file_config());
    let request: ExportLogsServiceRequest = sift_proto::json::decode_logs(&example("logs.json")).unwrap();
    let response = post(&sift, "/v1/logs", "application/x-protobuf", request.encode_to_vec());
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let decoded = ExportLogsServiceResponse::decode(response.bytes().unwrap()).unwrap();
    assert_eq!(decoded.partial_success, None);
    assert!(eventually(Duration::from_secs(10), || sift.exported("logs").len() == 1));
    let input: Value = serde_json::from_slice(&example("logs.json")).unwrap();
    sift_proto::json::equivalent(&input, &sift.exported("logs")[0]).unwrap();
}
