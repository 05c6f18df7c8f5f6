//! Damaged files on disk: bytes flipped in a spans part, a logs part and a log index file while
//! Sift is stopped. After the restart the rest stays queryable, answers say they are partial, the
//! damage is reported by file name and in `sift_storage_damaged_files`, and the index is rebuilt.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::blocking::Client;

use crate::common::{config, eventually, Sift};
use crate::disk_full::{logs_request, trace_id, traces_request, ITEMS, TRACES};

/// Every file under `dir` whose name ends with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn flip(path: &Path, count: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + count] {
        *b ^= 0xFF;
    }
    std::fs::write(path, bytes).unwrap();
}

/// Sends requests `seqs` of traces and logs, then waits until they are flushed into `parts` parts
/// per signal.
fn send_and_flush(sift: &Sift, seqs: std::ops::Range<usize>, parts: usize) {
    let client = Client::new();
    for seq in seqs {
        assert_eq!(
            sift.post_protobuf(&client, "/v1/traces", traces_request(0, seq))
                .status(),
            200
        );
        assert_eq!(
            sift.post_protobuf(&client, "/v1/logs", logs_request(0, seq)).status(),
            200
        );
    }
    let flushed = eventually(Duration::from_secs(20), || {
        files(&sift.dir.join("spans"), ".parquet").len() == parts
            && files(&sift.dir.join("logs"), ".parquet").len() == parts
    });
    assert!(flushed, "parts were not written; log:\n{}", sift.log_text());
}

#[test]
fn damaged_parts_and_index_leave_the_rest_queryable_reported_and_rebuilt() {
    let mut sift = Sift::start(&config(
        "  storage: {}",
        "storage",
        "storage:\n  flush: { interval: 1s }",
    ));
    send_and_flush(&sift, 0..3, 1);
    send_and_flush(&sift, 3..6, 2);
    assert!(eventually(Duration::from_secs(10), || {
        sift.query("/api/v1/logs?q=shipped&limit=1000").1["logs"]
            .as_array()
            .map_or(0, Vec::len)
            == 6 * ITEMS
    }));
    assert!(sift.terminate().success());

    let old_spans = files(&sift.dir.join("spans"), ".parquet")[0].clone();
    let old_logs = files(&sift.dir.join("logs"), ".parquet")[0].clone();
    flip(&old_spans, 20);
    flip(&old_logs, 20);
    let index_file = files(&sift.dir.join("logs"), ".term")[0].clone();
    flip(&index_file, 1);
    sift.restart();

    // Traces in the intact part: every one answers, saying the answer may be partial.
    for seq in 3..6 {
        for n in 0..TRACES {
            let (status, body) = sift.query(&format!("/api/v1/traces/{}", hex::encode(trace_id(0, seq, n))));
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["spans"].as_array().unwrap().len(), ITEMS / TRACES);
            assert_eq!(body["partial"], true);
        }
    }
    // Traces in the damaged part: not found, and the answer says why it may be missing.
    let (status, body) = sift.query(&format!("/api/v1/traces/{}", hex::encode(trace_id(0, 0, 0))));
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("damaged"), "{body}");
    // Trace search answers from the rest.
    let (status, body) = sift.query("/api/v1/traces?service=t0-4&start=0");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["traces"].as_array().unwrap().len(), TRACES);
    assert_eq!(body["partial"], true);

    // The damaged index is rebuilt from the intact logs part: a search finds its records.
    let rebuilt = eventually(Duration::from_secs(20), || {
        let (status, body) = sift.query("/api/v1/logs?q=shipped&limit=1000&start=0");
        status == 200 && body["logs"].as_array().map_or(0, Vec::len) == 3 * ITEMS
    });
    assert!(rebuilt, "{}", sift.query("/api/v1/logs?q=shipped&limit=1000&start=0").1);
    let (_, body) = sift.query("/api/v1/logs?q=shipped&limit=1000&start=0");
    assert_eq!(body["partial"], true, "a logs part is quarantined");

    // Reported: by file name in the log, and as a gauge (two quarantined parts once the index is
    // rebuilt); still ready.
    let log = sift.log_text();
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        log.contains("damaged part") && log.contains(&name(&old_spans)) && log.contains(&name(&old_logs)),
        "{log}"
    );
    assert!(log.contains("full-text index damaged"), "{log}");
    assert!(log.contains("full-text index rebuilt"), "{log}");
    assert!(eventually(Duration::from_secs(10), || sift
        .metric("sift_storage_damaged_files")
        == 2.0));
    assert_eq!(sift.query("/readyz").0, 200);
    assert!(sift.dir.join("quarantine").join("spans").exists());
}
