//! The query API and the store end to end: data sent by the OpenTelemetry Python SDK comes back
//! field by field; a trace split across a crash and across hour partitions comes back whole;
//! SIGKILL during sustained ingest, 20 times, loses and duplicates nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use reqwest::blocking::Client;
use serde_json::Value;
use sift_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sift_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use sift_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sift_proto::otlp::resource::v1::Resource;

use crate::common::{config, eventually, Sift};
use crate::ingest_grpc::spans;

/// A config with the storage exporter for all signals, flushing every second.
fn storage_config() -> String {
    config("  storage: {}", "storage", "storage:\n  flush: { interval: 1s }")
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Checks one trace sent by `send_telemetry.py` (trace number `i`, service `service`); returns
/// how many latency exemplars point at it (the SDK keeps the last measurement per histogram
/// bucket, so only some traces have one).
fn check_sdk_trace(sift: &Sift, trace_id: &str, i: u64, service: &str) -> usize {
    let (status, trace) = sift.query(&format!("/api/v1/traces/{trace_id}"));
    assert_eq!(status, 200, "{trace}");
    assert_eq!(
        trace["trace_id"],
        trace_id.to_lowercase(),
        "ids are answered in lowercase"
    );
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2, "{trace}");
    let root = spans.iter().find(|s| s["name"] == "POST /pay").expect("root span");
    let child = spans.iter().find(|s| s["name"] == "SELECT orders").expect("child span");
    assert_eq!(root["parent_span_id"], "");
    assert_eq!(child["parent_span_id"], root["span_id"]);
    assert_eq!(root["service_name"], service);
    assert_eq!(root["kind"], "INTERNAL");
    assert_eq!(root["attributes"]["order.id"], i, "int attributes stay ints");
    assert_eq!(root["attributes"]["http.route"], "/pay");
    assert_eq!(root["resource"]["service.name"], service);
    assert_eq!(child["attributes"]["db.system"], "postgresql");
    let error = i.is_multiple_of(5);
    assert_eq!(child["status"]["code"], if error { "ERROR" } else { "UNSET" });
    if error {
        assert_eq!(child["status"]["message"], "deadlock detected");
        assert_eq!(child["events"][0]["name"], "exception");
        assert_eq!(
            child["events"][0]["attributes"]["exception.message"],
            "deadlock detected"
        );
    }
    let summary = &trace["summary"];
    assert_eq!(summary["root_name"], "POST /pay");
    assert_eq!(summary["root_service"], service);
    assert_eq!(summary["span_count"], 2);
    assert_eq!(summary["error_count"], u64::from(error));
    assert_eq!(summary["services"], serde_json::json!([service]));
    let start: u64 = root["start_time_unix_nano"].as_str().unwrap().parse().unwrap();
    let end: u64 = root["end_time_unix_nano"].as_str().unwrap().parse().unwrap();
    assert_eq!(summary["duration_ns"], end - start);
    assert_eq!(root["duration_ns"], end - start);

    let logs = trace["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1, "{trace}");
    assert_eq!(logs[0]["body"], format!("charged order {i} step 0"));
    assert_eq!(
        logs[0]["span_id"], child["span_id"],
        "the log was written inside the child span"
    );
    assert_eq!(logs[0]["severity_text"], "INFO");
    assert_eq!(logs[0]["severity_number"], 9);
    assert_eq!(logs[0]["attributes"]["order.id"], i);
    assert_eq!(logs[0]["service_name"], service);

    let exemplars = trace["exemplars"].as_array().unwrap();
    let latency: Vec<&Value> = exemplars
        .iter()
        .filter(|e| e["metric"] == "http.server.duration")
        .collect();
    for e in &latency {
        assert_eq!(e["trace_id"], trace_id.to_lowercase());
        assert_eq!(e["span_id"], root["span_id"]);
        assert_eq!(e["value"], 10.0 + i as f64);
        assert_eq!(e["labels"]["http.route"], if i % 2 == 1 { "/pay" } else { "/refund" });
        assert_eq!(e["service_name"], service);
    }
    latency.len()
}

#[test]
fn every_endpoint_returns_what_the_python_sdk_sent_across_a_restart() {
    let mut sift = Sift::start(&storage_config());
    let first = sift.sdk_report(
        "http",
        &["--traces".into(), "10".into(), "--service".into(), "checkout".into()],
    );
    // A clean restart between the two services: the first half is read back from parts.
    assert!(sift.terminate().success());
    sift.restart();
    let second = sift.sdk_report(
        "grpc",
        &["--traces".into(), "10".into(), "--service".into(), "billing".into()],
    );

    let ids = |report: &Value| -> Vec<String> {
        report["trace_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let (checkout, billing) = (ids(&first), ids(&second));
    assert!(eventually(Duration::from_secs(20), || {
        sift.query(&format!("/api/v1/traces/{}", billing[9])).0 == 200
    }));
    let mut exemplars = 0;
    for (i, id) in checkout.iter().enumerate() {
        exemplars += check_sdk_trace(&sift, id, i as u64, "checkout");
    }
    assert!(exemplars >= 2, "one exemplar per route at least: {exemplars}");
    let mut exemplars = 0;
    for (i, id) in billing.iter().enumerate() {
        exemplars += check_sdk_trace(&sift, &id.to_uppercase(), i as u64, "billing");
    }
    assert!(exemplars >= 2, "one exemplar per route at least: {exemplars}");

    // Trace search (from the span index: spans are searchable once it commits, within seconds):
    // by service, newest first; errors only; by attribute; by duration.
    let mut newest_first = billing.clone();
    newest_first.reverse();
    let by_service = || -> Vec<String> {
        let (status, found) = sift.query("/api/v1/traces?service=billing&limit=100");
        assert_eq!(status, 200);
        found["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["trace_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(eventually(Duration::from_secs(20), || !by_service().is_empty()));
    assert_eq!(by_service(), newest_first);
    // A search's summary (read from the index) is the trace's (computed from its spans).
    let (_, found) = sift.query("/api/v1/traces?service=checkout&limit=100");
    assert_eq!(found["traces"].as_array().unwrap().len(), 10);
    for summary in found["traces"].as_array().unwrap() {
        let id = summary["trace_id"].as_str().unwrap();
        let mut expected = sift.query(&format!("/api/v1/traces/{id}")).1["summary"].clone();
        expected["trace_id"] = id.into();
        assert_eq!(summary, &expected);
    }
    let (_, errors) = sift.query("/api/v1/traces?status=error&limit=100");
    assert_eq!(
        errors["traces"].as_array().unwrap().len(),
        4,
        "traces 0 and 5 of both runs"
    );
    let (_, by_attr) = sift.query("/api/v1/traces?attr=order.id:7&attr=service.name:checkout");
    let by_attr = by_attr["traces"].as_array().unwrap();
    assert_eq!(by_attr.len(), 1);
    assert_eq!(by_attr[0]["trace_id"], checkout[7].as_str());
    let (_, slow) = sift.query("/api/v1/traces?min_duration=1h");
    assert_eq!(slow["traces"], serde_json::json!([]));
    // Full-text over spans (status messages, event attributes): the four error traces.
    assert!(eventually(Duration::from_secs(10), || {
        sift.query("/api/v1/traces?q=%22deadlock%20detected%22&limit=100").1["traces"]
            .as_array()
            .map_or(0, Vec::len)
            == 4
    }));
    let (_, by_text) = sift.query("/api/v1/traces?q=exception.message:deadlock&service=billing");
    assert_eq!(by_text["traces"].as_array().unwrap().len(), 2);
    let (_, limited) = sift.query("/api/v1/traces?limit=3");
    assert_eq!(limited["traces"].as_array().unwrap().len(), 3);

    // Full-text log search (head records become searchable at the next index commit, within 5 s).
    assert!(eventually(Duration::from_secs(10), || {
        sift.query("/api/v1/logs?q=%22charged%20order%209%22").1["logs"]
            .as_array()
            .map_or(0, Vec::len)
            == 2
    }));
    let (_, logs) = sift.query("/api/v1/logs?q=%22charged%20order%207%22");
    let logs = logs["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert!(logs[0]["highlight"].as_str().unwrap().contains("<em>7</em>"));
    let (_, one) = sift.query("/api/v1/logs?q=charged%20AND%20order.id:7&service=billing");
    let one = one["logs"].as_array().unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["trace_id"], billing[7].as_str());
    let (_, by_trace) = sift.query(&format!("/api/v1/logs?trace_id={}", checkout[3]));
    assert_eq!(by_trace["logs"][0]["body"], "charged order 3 step 0");
    let (_, none) = sift.query("/api/v1/logs?q=charged&severity_min=error");
    assert_eq!(none["logs"], serde_json::json!([]));

    // Services.
    let services = sift.service_counts();
    assert_eq!(services.get("checkout"), Some(&(20, 10)));
    assert_eq!(services.get("billing"), Some(&(20, 10)));

    // Metrics: the counter's final values per route (5 + 5 per service).
    let (status, series) =
        sift.query("/api/v1/metrics?name=http.server.requests&match=service.name:checkout&agg=max&step=1h");
    assert_eq!(status, 200, "{series}");
    let series = series["series"].as_array().unwrap();
    assert_eq!(series.len(), 2, "one series per route: {series:?}");
    let total: f64 = series
        .iter()
        .map(|s| s["points"].as_array().unwrap().last().unwrap()[1].as_f64().unwrap())
        .sum();
    assert_eq!(total, 10.0);
    let (_, p99) = sift.query("/api/v1/metrics?name=http.server.duration&agg=p99&step=1h&match=http.route:/pay");
    assert_eq!(p99["series"].as_array().unwrap().len(), 2, "two services");

    // `sift query` end to end.
    let server = sift.query_url("");
    let output = std::process::Command::new(crate::common::SIFT)
        .args(["query", "trace", &checkout[5], "--server", &server])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("POST /pay (checkout)"), "{text}");
    assert!(
        text.contains("  ├─ SELECT orders (checkout)"),
        "the child is indented under its parent: {text}"
    );
    assert!(text.contains("ERROR deadlock detected"), "{text}");
    assert!(text.contains("INFO charged order 5 step 0"), "{text}");
    let output = std::process::Command::new(crate::common::SIFT)
        .args(["query", "logs", "charged AND order.id:2", "--json", "--server", &server])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["logs"].as_array().unwrap().len(), 2);
    let output = std::process::Command::new(crate::common::SIFT)
        .args(["query", "trace", "nothex", "--server", &server])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a hex trace id"));
}

/// A logs request of one WARN record (ids may be empty).
pub fn log_request(trace_id: &[u8], span_id: &[u8], time: u64, body: &str) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: time,
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(body.into())),
                    }),
                    trace_id: trace_id.to_vec(),
                    span_id: span_id.to_vec(),
                    severity_number: 13,
                    severity_text: "WARN".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn a_trace_split_across_a_crash_and_partitions_comes_back_together() {
    let mut sift = Sift::start(&storage_config());
    let client = Client::new();
    let trace_id = vec![0x5a; 16];
    let two_hours_ago = now_nanos() - 2 * 3_600_000_000_000;
    let mut early = spans(1, 0x5a, 4);
    early.resource_spans[0].scope_spans[0].spans[0].start_time_unix_nano = two_hours_ago;
    early.resource_spans[0].scope_spans[0].spans[0].end_time_unix_nano = two_hours_ago + 1_000_000;
    assert_eq!(
        sift.post_protobuf(&client, "/v1/traces", early.encode_to_vec())
            .status(),
        200
    );
    let log = log_request(&trace_id, &1u64.to_be_bytes(), two_hours_ago + 10, "first half");
    assert_eq!(
        sift.post_protobuf(&client, "/v1/logs", log.encode_to_vec()).status(),
        200
    );
    // Acknowledged, maybe not yet flushed: SIGKILL, then the rest of the trace after the restart.
    sift.kill();
    sift.restart();
    let mut late = spans(2, 0x5a, 4);
    late.resource_spans[0].scope_spans[0].spans.remove(0);
    let late_span = &mut late.resource_spans[0].scope_spans[0].spans[0];
    late_span.parent_span_id = 1u64.to_be_bytes().to_vec();
    late_span.start_time_unix_nano = now_nanos();
    late_span.end_time_unix_nano = late_span.start_time_unix_nano + 5;
    assert_eq!(
        sift.post_protobuf(&client, "/v1/traces", late.encode_to_vec()).status(),
        200
    );
    let log = log_request(&trace_id, &2u64.to_be_bytes(), now_nanos(), "second half");
    assert_eq!(
        sift.post_protobuf(&client, "/v1/logs", log.encode_to_vec()).status(),
        200
    );

    let path = format!("/api/v1/traces/{}", hex::encode(&trace_id));
    assert!(
        eventually(Duration::from_secs(10), || {
            let (status, trace) = sift.query(&path);
            status == 200
                && trace["spans"].as_array().unwrap().len() == 2
                && trace["logs"].as_array().unwrap().len() == 2
        }),
        "{:?}",
        sift.query(&path)
    );
    let (_, trace) = sift.query(&path);
    assert_eq!(trace["logs"][0]["body"], "first half");
    assert_eq!(trace["logs"][1]["body"], "second half");
    assert_eq!(trace["summary"]["root_name"], "span 0");
    // Two hour partitions on disk by now (the first half was replayed from the WAL and flushed).
    assert!(eventually(Duration::from_secs(10), || std::fs::read_dir(
        sift.dir.join("spans")
    )
    .map_or(0, |d| d.count())
        == 2));
    // Bounded by time, only the early half.
    let start = two_hours_ago / 1_000_000_000 - 60;
    let (_, early_only) = sift.query(&format!("{path}?start={start}&end={}", start + 600));
    assert_eq!(early_only["spans"].as_array().unwrap().len(), 1);
}

#[test]
fn sigkill_during_sustained_ingest_twenty_times_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut sift = Sift::start_in(dir.path(), &storage_config());
    let acked: Arc<Mutex<Vec<[u8; 16]>>> = Arc::new(Mutex::new(Vec::new()));
    let mut sent_total = 0u64;
    let mut next = 1u64;
    for round in 0..20u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let url = sift.http_url("/v1/traces");
        let sender = {
            let (stop, acked) = (stop.clone(), acked.clone());
            let first = next;
            std::thread::spawn(move || {
                let client = Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                let mut n = first;
                let started = Instant::now();
                // Bounded: stops when told, at 400 requests, or after 10 s.
                while !stop.load(Ordering::Relaxed) && n < first + 150 && started.elapsed() < Duration::from_secs(10) {
                    let mut request = spans(10, 1, 50);
                    request.resource_spans[0].resource = Some(Resource {
                        attributes: vec![KeyValue {
                            key: "service.name".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("crash".into())),
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    });
                    let trace_id: [u8; 16] = [[0xc0; 8], n.to_be_bytes()].concat().try_into().unwrap();
                    for span in &mut request.resource_spans[0].scope_spans[0].spans {
                        span.trace_id = trace_id.to_vec();
                    }
                    n += 1;
                    match client
                        .post(&url)
                        .header("Content-Type", "application/x-protobuf")
                        .body(request.encode_to_vec())
                        .send()
                    {
                        Ok(r) if r.status() == 200 => acked.lock().unwrap().push(trace_id),
                        _ => break, // killed mid-request: not acknowledged
                    }
                }
                n - first
            })
        };
        // Kill at a different moment each round (some rounds during a flush).
        std::thread::sleep(Duration::from_millis(150 + (round * 263) % 1100));
        sift.kill();
        stop.store(true, Ordering::Relaxed);
        let sent = sender.join().unwrap();
        sent_total += sent;
        next += sent;
        sift.restart();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "the load ran: {} acked", acked.len());
    // After the last restart the store catches up with the WAL first.
    assert!(eventually(Duration::from_secs(30), || sift
        .metric("sift_exporter_queue_bytes{exporter=\"storage\"}")
        == 0.0));
    // Every acknowledged trace: readable, exactly its 10 spans (a duplicate replay would show 20).
    let client = Client::new();
    let mut counts: HashMap<usize, usize> = HashMap::new();
    let mut missing = Vec::new();
    for trace_id in &acked {
        let url = sift.query_url(&format!("/api/v1/traces/{}", hex::encode(trace_id)));
        let body: Value = client.get(&url).send().unwrap().json().unwrap();
        let n = body["spans"].as_array().map_or(0, Vec::len);
        if n != 10 {
            missing.push(u64::from_be_bytes(trace_id[8..].try_into().unwrap()));
        }
        *counts.entry(n).or_default() += 1;
    }
    assert!(missing.is_empty(), "acknowledged traces not stored whole: {missing:?}");
    assert_eq!(
        counts,
        HashMap::from([(10, acked.len())]),
        "spans per acknowledged trace"
    );
    // Nothing beyond what was sent, each once.
    let (_, services) = sift.query("/api/v1/services");
    let stored = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["span_count"].as_u64().unwrap())
        .sum::<u64>();
    assert!(
        stored >= acked.len() as u64 * 10 && stored <= sent_total * 10,
        "stored {stored}, acked {}, sent {sent_total}",
        acked.len()
    );
    assert_eq!(stored % 10, 0, "requests are stored whole");
}
