//! Golden scenarios: each file in `tests/golden/` is a request and the exact response expected
//! (status and body), answered from a store loaded with the OTLP protocol's own JSON examples.
//! `SIFT_BLESS=1 cargo test -p sift-query --test golden` rewrites the expected responses; review
//! the diff before committing it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use bytes::Bytes;
use prost::Message as _;
use serde_json::{json, Value};
use sift_proto::SignalKind;
use sift_query::{Backends, Health};
use sift_storage::{LocalStore, StoreOptions};
use sift_wal::WalEntry;
use tower::ServiceExt as _;

struct NoHealth;

impl Health for NoHealth {
    fn metrics_text(&self) -> String {
        String::new()
    }
    fn readiness(&self) -> Result<(), sift_query::NotReady> {
        Ok(())
    }
}

/// This crate's folder, where `cargo test` runs the tests from (the path compiled in may be
/// another checkout's, when checkouts share a target directory).
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

fn testdata(name: &str) -> Vec<u8> {
    let path = manifest_dir().join("../proto/testdata/otlp-json").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn store(dir: &Path) -> Arc<LocalStore> {
    let store = LocalStore::open(dir, StoreOptions::default()).unwrap();
    let entry = |signal, body: Vec<u8>| WalEntry {
        kind: sift_wal::EntryKind::Received,
        signal,
        pipeline: "p".into(),
        items: 0,
        body: Bytes::from(body),
    };
    let traces = sift_proto::json::decode_traces(&testdata("trace.json")).unwrap();
    let logs = sift_proto::json::decode_logs(&testdata("logs.json")).unwrap();
    let events = sift_proto::json::decode_logs(&testdata("events.json")).unwrap();
    let metrics = sift_proto::json::decode_metrics(&testdata("metrics.json")).unwrap();
    store
        .append(
            1,
            &[
                entry(SignalKind::Traces, traces.encode_to_vec()),
                entry(SignalKind::Logs, logs.encode_to_vec()),
            ],
        )
        .unwrap();
    // Half in parts, half in the head: answers must not depend on where rows are.
    store.flush().unwrap();
    store
        .append(
            2,
            &[
                entry(SignalKind::Logs, events.encode_to_vec()),
                entry(SignalKind::Metrics, metrics.encode_to_vec()),
            ],
        )
        .unwrap();
    store.refresh().unwrap();
    Arc::new(store)
}

async fn answer(router: &axum::Router, method: &str, uri: &str, body: Option<&str>) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())),
    )
}

fn scenarios() -> Vec<PathBuf> {
    let dir = manifest_dir().join("tests/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn golden_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let router = sift_query::router(Backends {
        health: Arc::new(NoHealth),
        store: Some(store(dir.path())),
        sampling: None,
    });
    let bless = std::env::var_os("SIFT_BLESS").is_some();
    let mut failures = Vec::new();
    let files = scenarios();
    assert!(files.len() >= 10, "the golden scenarios are missing");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut scenario: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let method = scenario["method"].as_str().unwrap_or("GET").to_owned();
        let uri = scenario["request"].as_str().unwrap().to_owned();
        let body = scenario["body"].as_str().map(str::to_owned);
        let (status, response) = answer(&router, &method, &uri, body.as_deref()).await;
        if bless {
            scenario["status"] = json!(status);
            scenario["response"] = response;
            std::fs::write(&path, serde_json::to_string_pretty(&scenario).unwrap() + "\n").unwrap();
        } else if scenario["status"] != json!(status) || scenario["response"] != response {
            failures.push(format!(
                "{}: {method} {uri}\n  expected {} {}\n  got      {status} {}",
                path.display(),
                scenario["status"],
                scenario["response"],
                response
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} scenario(s) differ (SIFT_BLESS=1 to accept):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
