//! The query port's operational endpoints: health, readiness, the JSON error shape, own metrics.

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
