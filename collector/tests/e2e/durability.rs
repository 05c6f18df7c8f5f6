//! Acknowledged means durable: SIGKILL right after the acks, a damaged WAL tail, a clean SIGTERM.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::path::Path;
use std::time::Duration;

use prost::Message;
use reqwest::blocking::Client;
use serde_json::Value;

use crate::common::{config, each, eventually, file_config, Sift};
use crate::ingest_grpc::spans;

/// (trace id, span id) of every span in the file exporter's traces output, with multiplicity.
fn exported_span_keys(sift: &Sift, path: &Path) -> HashMap<(String, String), usize> {
    let mut keys = HashMap::new();
    for request in crate::common::read_lines(path) {
        each(
            &request,
            &["resourceSpans", "scopeSpans", "spans"],
            &mut |span: &Value| {
                let key = (
                    span["traceId"].as_str().unwrap().to_owned(),
                    span["spanId"].as_str().unwrap().to_owned(),
                );
                *keys.entry(key).or_insert(0) += 1;
            },
        );
    }
    let _ = sift;
    keys
}

/// Sends `requests` requests of 100 spans each with distinct trace ids; returns the acked keys.
fn send_acked(sift: &Sift, threads: usize, requests: usize) -> HashSet<(String, String)> {
    let url = sift.http_url("/v1/traces");
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                let client = Client::new();
                let mut acked = HashSet::new();
                for r in 0..requests {
                    let mut request = spans(100, 1, 20);
                    let trace_id = [[t as u8 + 1; 8], ((r as u64) + 1).to_be_bytes()].concat();
                    for span in &mut request.resource_spans[0].scope_spans[0].spans {
                        span.trace_id = trace_id.clone();
                    }
                    let response = client
                        .post(&url)
                        .header("Content-Type", "application/x-protobuf")
                        .body(request.encode_to_vec())
                        .send()
                        .unwrap();
                    assert_eq!(response.status(), 200);
                    for span in &request.resource_spans[0].scope_spans[0].spans {
                        acked.insert((hex(&span.trace_id), hex(&span.span_id)));
                    }
                }
                acked
            })
        })
        .collect();
    handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_acknowledged_span_survives_sigkill() {
    let mut sift = Sift::start(&file_config());
    let acked = send_acked(&sift, 4, 50);
    assert_eq!(acked.len(), 20_000);
    sift.kill();
    sift.restart();
    let output = sift.dir.join("export/traces.jsonl");
    let complete = eventually(Duration::from_secs(60), || {
        let keys = exported_span_keys(&sift, &output);
        acked.iter().all(|k| keys.contains_key(k))
    });
    let keys = exported_span_keys(&sift, &output);
    let missing = acked.iter().filter(|k| !keys.contains_key(*k)).count();
    assert!(
        complete,
        "{missing} acknowledged spans are missing after kill -9 and restart"
    );
    let duplicates: usize = keys.values().map(|n| n - 1).sum();
    assert_eq!(keys.len(), acked.len(), "nothing that was not sent");
    eprintln!("kill -9 after 20000 acknowledged spans: 0 lost, {duplicates} duplicated on replay");
}

#[test]
fn sigterm_flushes_and_checkpoints_so_a_restart_replays_nothing() {
    let mut sift = Sift::start(&file_config());
    let acked = send_acked(&sift, 2, 10);
    let status = sift.terminate();
    assert!(status.success(), "exit status {status:?}");
    let output = sift.dir.join("export/traces.jsonl");
    let keys = exported_span_keys(&sift, &output);
    assert!(
        acked.iter().all(|k| keys.contains_key(k)),
        "all data exported before exit"
    );
    sift.restart();
    std::thread::sleep(Duration::from_millis(500));
    let again = exported_span_keys(&sift, &output);
    assert_eq!(
        again.values().sum::<usize>(),
        acked.len(),
        "no duplicates after a clean restart"
    );
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files.pop().unwrap()
}

/// Writes 10 acknowledged requests that no exporter has consumed (the exporter's file is a FIFO
/// nobody reads), kills Sift, damages the WAL with `damage`, and restarts with a readable file:
/// returns the set of requests (by trace id) that came out, and the restart's log.
fn damaged_wal_run(damage: impl Fn(&Path)) -> (HashSet<String>, String) {
    let temp = tempfile::tempdir().unwrap();
    let fifo = temp.path().join("blocked.jsonl");
    mkfifo(&fifo);
    let blocked = config(&format!("  file: {{ path: {} }}", fifo.display()), "file", "");
    let mut sift = Sift::start_in(temp.path(), &blocked);
    let client = Client::new();
    for r in 0..10u8 {
        let mut request = spans(5, r + 1, 10);
        request.resource_spans[0].scope_spans[0]
            .spans
            .iter_mut()
            .for_each(|s| s.trace_id = vec![r + 1; 16]);
        let response = sift.post_protobuf(&client, "/v1/traces", request.encode_to_vec());
        assert_eq!(response.status(), 200);
    }
    sift.kill();
    damage(&last_segment(temp.path()));
    let readable = temp.path().join("out.jsonl");
    let fixed = config(&format!("  file: {{ path: {} }}", readable.display()), "file", "");
    drop(sift);
    let sift = Sift::start_in(temp.path(), &fixed);
    let mut traces = HashSet::new();
    eventually(Duration::from_secs(5), || {
        traces.clear();
        for request in crate::common::read_lines(&readable) {
            each(
                &request,
                &["resourceSpans", "scopeSpans", "spans"],
                &mut |span: &Value| {
                    traces.insert(span["traceId"].as_str().unwrap().to_owned());
                },
            );
        }
        traces.len() >= 9
    });
    std::thread::sleep(Duration::from_millis(300));
    (traces, sift.log_text())
}

#[test]
fn a_truncated_wal_tail_is_cut_and_every_intact_record_replayed() {
    let (traces, log) = damaged_wal_run(|segment| {
        let len = std::fs::metadata(segment).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(segment)
            .unwrap()
            .set_len(len - 7)
            .unwrap();
    });
    assert_eq!(traces.len(), 9, "the 9 intact requests, not the torn 10th");
    assert!(!traces.contains(&hex(&[10; 16])));
    assert!(log.contains("damaged tail"), "{log}");
}

#[test]
fn a_bit_flipped_wal_record_is_skipped_and_the_rest_replayed() {
    let (traces, log) = damaged_wal_run(|segment| {
        let mut bytes = std::fs::read(segment).unwrap();
        let last = bytes.len() - 20;
        bytes[last] ^= 0x55;
        std::fs::write(segment, bytes).unwrap();
    });
    assert_eq!(traces.len(), 9, "everything but the damaged record");
    assert!(log.contains("damaged tail"), "{log}");
    // A whole record with a wrong checksum is not a torn write: its bytes are kept, not deleted.
    assert!(log.contains("kept for inspection"), "{log}");
    assert!(log.contains("/wal/damaged/"), "{log}");
}
