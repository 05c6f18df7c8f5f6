//! The query port's operational endpoints: health, readiness, the JSON error shape, own metrics.

use std::time::Duration;

use serde_json::Value;

use crate::common::{file_config, Sift};

#[test]
fn health_readiness_errors_and_query_latency_metrics() {
    let sift = Sift::start(&file_config());
    let get = |path: &str| reqwest::blocking::get(sift.query_url(path)).unwrap();
    assert_eq!(get("/healthz").status(), 200);
    assert_eq!(get("/readyz").status(), 200);
    let missing = get("/api/v1/nothing");
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["message"].as_str().unwrap().contains("/api/v1/nothing"));
    get("/metrics");
    let text = get("/metrics").text().unwrap();
    // Families with labels appear once they have a sample; these always have one.
    for name in [
        "sift_exporter_queue_bytes",
        "sift_storage_wal_bytes",
        "sift_memory_bytes",
        "sift_query_duration_seconds",
    ] {
        assert!(text.contains(&format!("# TYPE {name}")), "{name} missing from /metrics");
    }
    assert!(sift.metric("sift_query_duration_seconds_count{endpoint=\"/metrics\"}") >= 2.0);
    assert!(sift.metric("sift_query_duration_seconds_count{endpoint=\"/healthz\"}") >= 1.0);
    assert!(sift.metric("sift_memory_bytes") > 1_000_000.0);
}

/// Each thread of process `pid`: its name and niceness, from `/proc`.
fn threads_of(pid: i32) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // ended meanwhile
        };
        // pid (comm) state ppid ... : the name may hold spaces, so fields count from the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // After the name: state is field 3 of the line, niceness field 19.
        out.push((stat[open + 1..close].to_owned(), fields[16].parse().unwrap()));
    }
    out
}

#[test]
fn the_store_threads_run_below_the_receivers() {
    let sift = Sift::start(&crate::common::config(
        "  storage: {}",
        "storage",
        "storage:\n  flush: { interval: 1s }",
    ));
    sift.send_with_sdk("http", &["--traces".to_owned(), "5".to_owned()]);
    // The index writers' threads start with the first documents indexed.
    assert!(
        crate::common::eventually(Duration::from_secs(30), || threads_of(sift.pid()).iter().any(
            |(name, _)| name.starts_with("thrd-tantivy")
                && sift.query("/api/v1/traces?limit=1").1["traces"]
                    .as_array()
                    .is_some_and(|t| !t.is_empty())
        )),
        "no index writer started: {:?}",
        threads_of(sift.pid())
    );
    let threads = threads_of(sift.pid());
    let base = threads
        .iter()
        .find(|(name, _)| name == "sift")
        .map(|t| t.1)
        .unwrap_or(0);
    let nice_of = |prefix: &str| -> Vec<i64> {
        threads
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|t| t.1)
            .collect()
    };
    for prefix in ["sift-store", "thrd-tantivy", "merge_thread", "segment_update"] {
        let nice = nice_of(prefix);
        assert!(!nice.is_empty(), "no {prefix} thread: {threads:?}");
        assert!(
            nice.iter().all(|&n| n == base + 5),
            "{prefix} threads at {nice:?}: {threads:?}"
        );
    }
    assert_eq!(
        nice_of("sift-store-merg").len(),
        1,
        "the merges have a thread of their own"
    );
    let workers = nice_of("tokio-rt");
    assert!(
        !workers.is_empty() && workers.iter().all(|&n| n == base),
        "receivers: {threads:?}"
    );
}
