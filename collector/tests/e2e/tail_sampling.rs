//! Tail sampling through a running Sift: errors and slow traces kept whole, the rest at the
//! probabilistic share, late spans following the decision, pending traces surviving SIGKILL.

use std::collections::HashMap;
use std::time::Duration;

use prost::Message;
use reqwest::blocking::Client;
use serde_json::Value;
use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sift_proto::otlp::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};

use crate::common::{each, eventually, Sift};

fn sampling_config(decision_wait: &str) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc: {{ endpoint: 127.0.0.1:0 }}\n      http: {{ endpoint: 127.0.0.1:0 }}\n\
         processors:\n  tail_sampling:\n    decision_wait: {decision_wait}\n    policies:\n\
         \x20     - {{ name: errors, type: status_code, status_code: {{ status_codes: [ERROR] }} }}\n\
         \x20     - {{ name: slow, type: latency, latency: {{ threshold_ms: 500 }} }}\n\
         \x20     - {{ name: rest, type: probabilistic, probabilistic: {{ sampling_percentage: 10 }} }}\n\
         exporters:\n  file: {{}}\n\
         service:\n  pipelines:\n\
         \x20   traces: {{ receivers: [otlp], processors: [tail_sampling], exporters: [file] }}\n\
         query:\n  endpoint: 127.0.0.1:0\n"
    )
}

fn trace_id(i: u64) -> Vec<u8> {
    [i.to_be_bytes(), [0xAB; 8]].concat()
}

/// Span `n` (0 = root) of trace `i`: trace 20k is an error trace, 20k+1 a slow one.
fn span(i: u64, n: u64) -> Span {
    let error = i.is_multiple_of(20) && n == 1;
    let duration_ms = if n == 0 && i % 20 == 1 { 800 } else { 50 };
    let start = 1_700_000_000_000_000_000 + i * 1_000_000_000;
    Span {
        trace_id: trace_id(i),
        span_id: (i * 10 + n + 1).to_be_bytes().to_vec(),
        parent_span_id: if n == 0 {
            Vec::new()
        } else {
            (i * 10 + 1).to_be_bytes().to_vec()
        },
        name: format!("span {n}"),
        start_time_unix_nano: start,
        end_time_unix_nano: start + duration_ms * 1_000_000,
        status: Some(Status {
            code: if error { status::StatusCode::Error as i32 } else { 0 },
            message: String::new(),
        }),
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn send(sift: &Sift, spans: Vec<Span>) {
    let request = request(spans);
    assert_eq!(
        sift.post_protobuf(&Client::new(), "/v1/traces", request.encode_to_vec())
            .status(),
        200
    );
}

/// Sends traces `range`, 3 spans each; the last span of every trace in a second request.
fn send_traces(sift: &Sift, range: std::ops::Range<u64>) {
    let ids: Vec<u64> = range.collect();
    for chunk in ids.chunks(100) {
        send(sift, chunk.iter().flat_map(|i| [span(*i, 0), span(*i, 1)]).collect());
        send(sift, chunk.iter().map(|i| span(*i, 2)).collect());
    }
}

/// Stored spans per trace index.
fn stored(sift: &Sift) -> HashMap<u64, usize> {
    let mut traces = HashMap::new();
    for request in sift.exported("traces") {
        each(&request, &["resourceSpans", "scopeSpans", "spans"], &mut |s: &Value| {
            let id = hex::decode(s["traceId"].as_str().unwrap()).unwrap();
            let i = u64::from_be_bytes(id[..8].try_into().unwrap());
            *traces.entry(i).or_insert(0) += 1;
        });
    }
    traces
}

fn decisions(sift: &Sift) -> f64 {
    let text = reqwest::blocking::get(sift.query_url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("sift_sampling_decisions_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn errors_and_slow_traces_are_kept_whole_and_the_rest_at_ten_percent() {
    let sift = Sift::start(&sampling_config("1s"));
    send_traces(&sift, 0..2000);
    assert!(
        eventually(Duration::from_secs(20), || decisions(&sift) == 2000.0),
        "decisions: {}",
        decisions(&sift)
    );
    assert!(eventually(Duration::from_secs(10), || {
        let traces = stored(&sift);
        (0..2000).filter(|i| i % 20 < 2).all(|i| traces.get(&i) == Some(&3))
    }));
    let traces = stored(&sift);
    assert!(traces.values().all(|n| *n == 3), "every stored trace is complete, once");
    let rest = (0..2000u64)
        .filter(|i| i % 20 >= 2)
        .filter(|i| traces.contains_key(i))
        .count();
    let share = rest as f64 / 1800.0 * 100.0;
    eprintln!("tail sampling: 100 error + 100 slow traces kept whole, {rest} of 1800 others kept ({share:.1}%)");
    assert!((7.5..=12.5).contains(&share), "{share}% of the rest kept");
    // Adjusted counts: spans kept by the 10% share stand for 10 traces; errors and slow ones for 1.
    let mut adjusted: HashMap<u64, Option<f64>> = HashMap::new();
    for request in sift.exported("traces") {
        each(&request, &["resourceSpans", "scopeSpans", "spans"], &mut |s: &Value| {
            let id = hex::decode(s["traceId"].as_str().unwrap()).unwrap();
            let i = u64::from_be_bytes(id[..8].try_into().unwrap());
            let count = s["attributes"].as_array().and_then(|a| {
                a.iter()
                    .find(|kv| kv["key"] == "sampling.adjusted_count")
                    .and_then(|kv| kv["value"]["doubleValue"].as_f64())
            });
            adjusted.insert(i, count);
        });
    }
    for (i, count) in &adjusted {
        let expected = if i % 20 < 2 { None } else { Some(10.0) };
        assert_eq!(*count, expected, "trace {i}");
    }

    // Late spans follow the decision.
    let dropped = (2..2000u64).find(|i| i % 20 >= 2 && !traces.contains_key(i)).unwrap();
    let kept_by_share = (2..2000u64).find(|i| i % 20 >= 2 && traces.contains_key(i)).unwrap();
    send(&sift, vec![span(0, 7), span(dropped, 7), span(kept_by_share, 7)]);
    assert!(
        eventually(Duration::from_secs(5), || stored(&sift).get(&0) == Some(&4)
            && stored(&sift).get(&kept_by_share) == Some(&4)),
        "late spans of kept traces"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(!stored(&sift).contains_key(&dropped), "late span of a dropped trace");
    assert_eq!(sift.metric("sift_sampling_late_spans_total"), 3.0);
    // The late span of a trace kept by the 10% share stands for 10 as well.
    let mut late_adjusted = None;
    for request in sift.exported("traces") {
        each(&request, &["resourceSpans", "scopeSpans", "spans"], &mut |s: &Value| {
            let id = hex::decode(s["traceId"].as_str().unwrap()).unwrap();
            let late = s["spanId"].as_str() == Some(&format!("{:016x}", kept_by_share * 10 + 8));
            if late && u64::from_be_bytes(id[..8].try_into().unwrap()) == kept_by_share {
                late_adjusted = s["attributes"].as_array().and_then(|a| {
                    a.iter()
                        .find(|kv| kv["key"] == "sampling.adjusted_count")
                        .and_then(|kv| kv["value"]["doubleValue"].as_f64())
                });
            }
        });
    }
    assert_eq!(late_adjusted, Some(10.0));
    assert_eq!(
        sift.metric("sift_sampling_decisions_total{decision=\"sampled\",policy=\"errors\"}"),
        100.0
    );
    // Every due trace's decision latency is recorded (the tick is 100 ms).
    assert_eq!(sift.metric("sift_sampling_decision_latency_seconds_count"), 2000.0);
    let mean = sift.metric("sift_sampling_decision_latency_seconds_sum") / 2000.0;
    eprintln!("decision latency after decision_wait: mean {:.1} ms", mean * 1000.0);
}

#[test]
fn pending_traces_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut sift = Sift::start_in(dir.path(), &sampling_config("3s"));
    send_traces(&sift, 0..500);
    assert_eq!(stored(&sift).len(), 0, "nothing decided yet");
    sift.kill();
    sift.restart();
    assert!(eventually(Duration::from_secs(20), || {
        let traces = stored(&sift);
        (0..500).filter(|i| i % 20 < 2).all(|i| traces.get(&i) == Some(&3))
    }));
    std::thread::sleep(Duration::from_millis(500));
    assert!(stored(&sift).values().all(|n| *n == 3), "complete and not twice");
}

fn api_config(policies: &str) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      http: {{ endpoint: 127.0.0.1:0 }}\n\
         processors:\n  tail_sampling:\n    decision_wait: 300ms\n    policies:\n{policies}\n\
         exporters:\n  storage: {{}}\n\
         service:\n  pipelines:\n\
         \x20   traces: {{ receivers: [otlp], processors: [tail_sampling], exporters: [storage] }}\n\
         query:\n  endpoint: 127.0.0.1:0\n"
    )
}

fn decision_of(sift: &Sift, i: u64) -> Value {
    sift.query(&format!("/api/v1/sampling/decisions/{}", hex(&trace_id(i))))
        .1
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn policies_change_at_run_time_by_put_and_sighup_and_decisions_are_reported() {
    let mut sift = Sift::start(&api_config(
        "      - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }",
    ));
    let (status, live) = sift.query("/api/v1/sampling/policies");
    assert_eq!(status, 200);
    assert_eq!(live["policies"][0]["name"], "errors");

    // Trace 1 (no error): pending, then not sampled.
    send(&sift, vec![span(1, 0), span(1, 1)]);
    assert_eq!(decision_of(&sift, 1)["decision"], "pending");
    assert!(eventually(Duration::from_secs(10), || decision_of(&sift, 1)
        ["decision"]
        == "not_sampled"));
    let (status, unknown) = sift.query(&format!("/api/v1/sampling/decisions/{}", hex(&[7; 16])));
    assert_eq!(status, 404, "{unknown}");

    // An invalid PUT changes nothing and says where the problem is.
    let first_policy = || sift.query("/api/v1/sampling/policies").1["policies"][0]["name"].clone();
    let put = |body: &str| {
        Client::new()
            .put(sift.query_url("/api/v1/sampling/policies"))
            .body(body.to_owned())
            .send()
            .unwrap()
    };
    let bad = put("- { name: slow, type: latency, latency: { threshold_ms: -5 } }");
    assert_eq!(bad.status(), 400);
    let message = bad.json::<Value>().unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("policies[0].latency.threshold_ms"), "{message}");
    assert_eq!(first_policy(), "errors");

    // A valid PUT (YAML) applies to new traces at once.
    assert_eq!(
        put("policies:\n  - { name: everything, type: always_sample }\n").status(),
        200
    );
    assert_eq!(first_policy(), "everything");
    send(&sift, vec![span(2, 0), span(2, 1)]);
    assert!(eventually(Duration::from_secs(10), || decision_of(&sift, 2)
        ["decision"]
        == "sampled"));
    assert_eq!(decision_of(&sift, 2)["policy"], "everything");
    assert!(decision_of(&sift, 2)["decided_at"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .is_ok());
    // The stored trace carries its decision.
    let path = format!("/api/v1/traces/{}", hex(&trace_id(2)));
    assert!(eventually(Duration::from_secs(10), || sift.query(&path).0 == 200));
    assert_eq!(sift.query(&path).1["sampling"]["decision"], "sampled");
    assert_eq!(
        sift.query(&format!("/api/v1/traces/{}", hex(&trace_id(1)))).0,
        404,
        "dropped"
    );

    // SIGHUP reloads the policies from the file.
    std::fs::write(
        sift.dir.join("sift-test.yaml"),
        api_config("      - { name: nothing, type: probabilistic, probabilistic: { sampling_percentage: 0 } }"),
    )
    .unwrap();
    unsafe { libc::kill(sift.pid(), libc::SIGHUP) };
    assert!(eventually(Duration::from_secs(5), || sift
        .query("/api/v1/sampling/policies")
        .1["policies"][0]["name"]
        == "nothing"));
    send(&sift, vec![span(3, 0), span(3, 1)]);
    assert!(eventually(Duration::from_secs(10), || decision_of(&sift, 3)
        ["decision"]
        == "not_sampled"));
    assert!(sift.terminate().success());
}

#[test]
fn python_sdk_traces_errors_and_slow_kept_whole_and_the_rest_at_ten_percent() {
    let config = String::from(
        "receivers:\n  otlp:\n    protocols:\n      grpc: { endpoint: 127.0.0.1:0 }\n      http: { endpoint: 127.0.0.1:0 }\n\
         processors:\n  tail_sampling:\n    decision_wait: 1s\n    policies:\n\
         \x20     - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }\n\
         \x20     - { name: slow, type: latency, latency: { threshold_ms: 500 } }\n\
         \x20     - { name: rest, type: probabilistic, probabilistic: { sampling_percentage: 10 } }\n\
         exporters:\n  file: {}\n  nop: {}\n\
         service:\n  pipelines:\n\
         \x20   traces: { receivers: [otlp], processors: [tail_sampling], exporters: [file] }\n\
         \x20   logs: { receivers: [otlp], exporters: [nop] }\n\
         \x20   metrics: { receivers: [otlp], exporters: [nop] }\n\
         query:\n  endpoint: 127.0.0.1:0\n"
    );
    let sift = Sift::start(&config);
    let args: Vec<String> = [
        "--traces",
        "2000",
        "--logs-per-span",
        "0",
        "--error-every",
        "20",
        "--slow-every",
        "20",
        "--slow-ms",
        "800",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let report = sift.sdk_report("grpc", &args);
    let ids: Vec<String> = report["trace_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2000);
    assert_eq!(report["spans"], 4000, "the SDK exported every span");
    assert!(
        eventually(Duration::from_secs(30), || decisions(&sift) == 2000.0),
        "decisions: {}, pending {}, late {}, accepted {}",
        decisions(&sift),
        sift.metric("sift_sampling_traces_pending"),
        sift.metric("sift_sampling_late_spans_total"),
        sift.metric("sift_receiver_accepted_total{signal=\"traces\",protocol=\"grpc\"}"),
    );
    let stored_by_id = |sift: &Sift| {
        let mut traces: HashMap<String, usize> = HashMap::new();
        for request in sift.exported("traces") {
            each(&request, &["resourceSpans", "scopeSpans", "spans"], &mut |s: &Value| {
                *traces.entry(s["traceId"].as_str().unwrap().to_owned()).or_insert(0) += 1;
            });
        }
        traces
    };
    assert!(
        eventually(Duration::from_secs(10), || {
            let stored = stored_by_id(&sift);
            ids.iter()
                .enumerate()
                .filter(|(i, _)| i % 20 < 2)
                .all(|(_, id)| stored.get(id) == Some(&2))
        }),
        "every error and slow trace stored whole"
    );
    let stored = stored_by_id(&sift);
    assert!(stored.values().all(|n| *n == 2), "every stored trace is complete");
    assert!(stored.keys().all(|id| ids.contains(id)), "nothing else stored");
    let rest = ids
        .iter()
        .enumerate()
        .filter(|(i, id)| i % 20 >= 2 && stored.contains_key(*id))
        .count();
    let share = rest as f64 / 1800.0 * 100.0;
    eprintln!("python sdk: 100 error + 100 slow traces kept whole, {rest} of 1800 others kept ({share:.1}%)");
    assert!((7.5..=12.5).contains(&share), "{share}% of the rest kept");
}

#[test]
fn logs_follow_their_traces_decisions() {
    let config = String::from(
        "receivers:\n  otlp:\n    protocols:\n      grpc: { endpoint: 127.0.0.1:0 }\n      http: { endpoint: 127.0.0.1:0 }\n\
         processors:\n  tail_sampling:\n    decision_wait: 500ms\n    policies:\n\
         \x20     - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }\n\
         exporters:\n  file: {}\n  nop: {}\n\
         service:\n  pipelines:\n\
         \x20   traces: { receivers: [otlp], processors: [tail_sampling], exporters: [file] }\n\
         \x20   logs: { receivers: [otlp], processors: [tail_sampling], exporters: [file] }\n\
         \x20   metrics: { receivers: [otlp], exporters: [nop] }\n\
         query:\n  endpoint: 127.0.0.1:0\n",
    );
    let sift = Sift::start(&config);
    // A record without a trace id passes at once.
    let plain = crate::query::log_request(&[], &[], 0, "no trace");
    assert_eq!(
        sift.post_protobuf(&Client::new(), "/v1/logs", plain.encode_to_vec())
            .status(),
        200
    );
    // 20 traces with one log inside each; traces 0, 5, 10, 15 have an error span and are kept.
    let report = sift.sdk_report("http", &["--traces".into(), "20".into()]);
    let ids: Vec<String> = report["trace_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let logs_by_trace = |sift: &Sift| {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for request in sift.exported("logs") {
            each(
                &request,
                &["resourceLogs", "scopeLogs", "logRecords"],
                &mut |log: &Value| {
                    out.entry(log["traceId"].as_str().unwrap_or("").to_owned())
                        .or_default()
                        .push(log["body"]["stringValue"].as_str().unwrap_or("").to_owned());
                },
            );
        }
        out
    };
    assert!(
        eventually(Duration::from_secs(15), || logs_by_trace(&sift).len() == 5),
        "{:?}",
        logs_by_trace(&sift)
    );
    // Wait past the longest hold (2 × decision wait + 1 s): dropped traces' logs stay dropped.
    std::thread::sleep(Duration::from_millis(2500));
    let logs = logs_by_trace(&sift);
    assert_eq!(logs.get(""), Some(&vec!["no trace".to_owned()]), "no trace id: passes");
    for (i, id) in ids.iter().enumerate() {
        if i % 5 == 0 {
            assert_eq!(
                logs.get(id),
                Some(&vec![format!("charged order {i} step 0")]),
                "kept trace {i}"
            );
        } else {
            assert_eq!(logs.get(id), None, "dropped trace {i}");
        }
    }
    assert_eq!(logs.len(), 5);
    assert_eq!(sift.metric("sift_sampling_logs_dropped_total"), 16.0);
}

#[test]
fn a_replay_after_sigkill_decides_nothing_twice() {
    let config = String::from(
        "receivers:\n  otlp:\n    protocols:\n      http: { endpoint: 127.0.0.1:0 }\n\
         processors:\n  tail_sampling:\n    decision_wait: 3s\n    maximum_trace_size_bytes: 2000\n    policies:\n\
         \x20     - { name: budget, type: rate_limiting, rate_limiting: { spans_per_second: 50 } }\n\
         exporters:\n  file: {}\n\
         service:\n  pipelines:\n\
         \x20   traces: { receivers: [otlp], processors: [tail_sampling], exporters: [file] }\n\
         query:\n  endpoint: 127.0.0.1:0\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let mut sift = Sift::start_in(dir.path(), &config);
    // Trace 1000 is small and waits 3 s: the sampler's checkpoint stays before everything after it.
    send(&sift, vec![span(1000, 0)]);
    // Twenty large traces are decided at once (over maximum_trace_size_bytes); the rate limit keeps
    // some and drops the rest.
    for i in 0..20u64 {
        let spans = (0..30)
            .map(|n| {
                let mut s = span(i, n);
                s.name = "x".repeat(100);
                s
            })
            .collect();
        send(&sift, spans);
    }
    assert!(
        eventually(Duration::from_secs(10), || decisions(&sift) == 20.0),
        "{}",
        decisions(&sift)
    );
    assert!(eventually(Duration::from_secs(10), || stored(&sift).len()
        == sift.metric("sift_sampling_decisions_total{decision=\"sampled\",policy=\"budget\"}")
            as usize));
    let before = stored(&sift);
    sift.kill();
    sift.restart();
    // The replay meets the twenty traces again, with their recorded decisions: only trace 1000 is
    // decided in the new process.
    assert!(
        eventually(Duration::from_secs(10), || decisions(&sift) == 1.0),
        "{}",
        decisions(&sift)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(decisions(&sift), 1.0);
    let after = stored(&sift);
    for i in 0..20u64 {
        assert_eq!(after.get(&i), before.get(&i), "trace {i} stored as before the crash");
    }
}

/// A WAL record as Sift wrote it before entry version 3: `2 | signal | items | name | body`, with
/// the sampler's output tagged `<pipeline>#sampled` and dropped ids as empty spans `#dropped`.
fn v2_entry(name: &str, items: u32, spans: Vec<Span>) -> bytes::Bytes {
    let body = request(spans).encode_to_vec();
    let mut out = vec![2u8, 1];
    out.extend_from_slice(&items.to_le_bytes());
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&body);
    out.into()
}

#[test]
fn a_log_written_before_entry_version_3_replays_with_its_decisions() {
    let dir = tempfile::tempdir().unwrap();
    // Trace 1 was kept and written as sampled; trace 2 was dropped; trace 3 was still pending.
    let records = [
        v2_entry("traces", 1, vec![span(1, 0)]),
        v2_entry("traces", 1, vec![span(2, 0)]),
        v2_entry("traces", 1, vec![span(3, 0)]),
        v2_entry("traces#sampled", 1, vec![span(1, 0)]),
        v2_entry(
            "traces#dropped",
            0,
            vec![Span {
                trace_id: trace_id(2),
                ..Default::default()
            }],
        ),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut wal = sift_wal::Wal::open(&dir.path().join("wal"), sift_wal::WalOptions::default()).unwrap();
        let appender = wal.appender();
        for record in records {
            appender.append(record).await.unwrap();
        }
        wal.close();
    });
    let config = String::from(
        "receivers:\n  otlp:\n    protocols:\n      http: { endpoint: 127.0.0.1:0 }\n\
         processors:\n  tail_sampling:\n    decision_wait: 1s\n    policies:\n\
         \x20     - { name: all, type: always_sample }\n\
         exporters:\n  file: {}\n\
         service:\n  pipelines:\n\
         \x20   traces: { receivers: [otlp], processors: [tail_sampling], exporters: [file] }\n\
         query:\n  endpoint: 127.0.0.1:0\n",
    );
    let sift = Sift::start_in(dir.path(), &config);
    // Only the pending trace is decided by the new process; the kept one is exported from its
    // recorded output, the dropped one not at all.
    assert!(
        eventually(Duration::from_secs(10), || stored(&sift).len() == 2),
        "{:?}",
        stored(&sift)
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(stored(&sift), HashMap::from([(1, 1), (3, 1)]));
    assert_eq!(decisions(&sift), 1.0);
}
