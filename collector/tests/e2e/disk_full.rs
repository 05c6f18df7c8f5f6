//! A full disk under load, ridden out: Sift's data directory on a small tmpfs this test mounts,
//! spans and logs sent until the disk is full (requests are refused with retry advice, `/readyz`
//! answers 503), space given back (requests succeed again by themselves), then a clean SIGTERM or
//! a SIGKILL, a restart, and every acknowledged span and log record readable.
//!
//! Each request carries its own `service.name`, so `/api/v1/services` says for every request how
//! many of its spans and records are stored. `benches/scripts/disk_full.sh` runs this in a loop.
//! Mounting needs root; `SIFT_SKIP_MOUNT_TESTS=1` skips these tests elsewhere (saying so).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use reqwest::blocking::Client;
use sift_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sift_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use sift_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sift_proto::otlp::resource::v1::Resource;
use sift_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};

use crate::common::{eventually, Sift};

/// Spans and log records per request.
pub const ITEMS: usize = 100;
/// Traces per traces request.
pub const TRACES: usize = 10;

/// The default pipeline's shape (redaction; tail sampling on traces, keeping every trace so that
/// every acknowledged span must be stored), with small WAL segments and frequent flushes so that
/// parts, indexes and checkpoints are all written while the disk fills, and the smallest memory
/// limit, so that the store's head fills while its flushes fail (the storage exporter then waits,
/// its records in the WAL: "store behind" in the log).
fn disk_full_config() -> String {
    "receivers:\n  otlp:\n    protocols:\n      grpc: { endpoint: 127.0.0.1:0 }\n      http: { endpoint: 127.0.0.1:0 }\n\
     processors:\n  redaction: {}\n  tail_sampling:\n    decision_wait: 1s\n    policies:\n      - { name: all, type: always_sample }\n\
     exporters:\n  storage: {}\n\
     service:\n  pipelines:\n\
     \x20   traces: { receivers: [otlp], processors: [redaction, tail_sampling], exporters: [storage] }\n\
     \x20   logs: { receivers: [otlp], processors: [redaction], exporters: [storage] }\n\
     storage:\n  flush: { interval: 2s }\n  memory_limit_mib: 64\n  wal: { segment_size_mib: 4 }\n\
     query:\n  endpoint: 127.0.0.1:0\n"
        .to_owned()
}

/// A tmpfs mounted for one test, grown later with `remount`.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mib: u64) -> Option<Tmpfs> {
        if std::env::var_os("SIFT_SKIP_MOUNT_TESTS").is_some() {
            eprintln!("SIFT_SKIP_MOUNT_TESTS is set: skipping the full-disk test");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "this test mounts a small tmpfs (run as root), or set SIFT_SKIP_MOUNT_TESTS=1"
        );
        Some(Tmpfs { dir })
    }

    fn grow(&self, size_mib: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size_mib}m")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("sift-data")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(service.into())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Trace `n` (of [`TRACES`]) of request `seq` of client `client`.
pub fn trace_id(client: usize, seq: usize, n: usize) -> [u8; 16] {
    let mut trace_id = [0u8; 16];
    trace_id[..4].copy_from_slice(&(client as u32 + 1).to_be_bytes());
    trace_id[4..12].copy_from_slice(&(seq as u64).to_be_bytes());
    trace_id[12..].copy_from_slice(&(n as u32).to_be_bytes());
    trace_id
}

/// Request `seq` of client `client`: its own service (`t<client>-<seq>`), [`ITEMS`] spans in
/// [`TRACES`] traces, some text to index.
pub fn traces_request(client: usize, seq: usize) -> Vec<u8> {
    let service = format!("t{client}-{seq}");
    let now = now_nanos();
    let spans = (0..ITEMS)
        .map(|i| Span {
            trace_id: trace_id(client, seq, i % TRACES).to_vec(),
            span_id: ((seq * ITEMS + i) as u64 + 1).to_be_bytes().to_vec(),
            name: format!("GET /orders/{i} checkout payment inventory"),
            start_time_unix_nano: now + i as u64,
            end_time_unix_nano: now + 1_000_000 + i as u64,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(&service),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Request `seq` of client `client`: its own service (`l<client>-<seq>`), [`ITEMS`] records
/// saying "shipped".
pub fn logs_request(client: usize, seq: usize) -> Vec<u8> {
    let service = format!("l{client}-{seq}");
    let now = now_nanos();
    let log_records = (0..ITEMS)
        .map(|i| LogRecord {
            time_unix_nano: now + i as u64,
            severity_number: 9,
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "order {seq}-{i} shipped to warehouse {client} after payment"
                ))),
            }),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(&service),
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// What the clients saw.
#[derive(Default)]
struct Outcome {
    /// Services (one per request) whose request was acknowledged.
    acked: Vec<String>,
    /// Refusals, by status; each with its Retry-After.
    refused: HashMap<u16, usize>,
    refused_without_retry_after: usize,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.acked.extend(other.acked);
        for (status, n) in other.refused {
            *self.refused.entry(status).or_default() += n;
        }
        self.refused_without_retry_after += other.refused_without_retry_after;
    }

    fn refusals(&self) -> usize {
        self.refused.values().sum()
    }
}

/// Clients sending traces and logs requests in turn until `stop` (or `max_requests` each).
fn load(sift: &Sift, clients: usize, first_seq: usize, max_requests: usize, stop: Arc<AtomicBool>) -> Outcome {
    let handles: Vec<_> = (0..clients)
        .map(|client| {
            let traces = sift.http_url("/v1/traces");
            let logs = sift.http_url("/v1/logs");
            let stop = stop.clone();
            std::thread::spawn(move || {
                let http = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
                let mut outcome = Outcome::default();
                for seq in first_seq..first_seq + max_requests {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    for (url, body, service) in [
                        (&traces, traces_request(client, seq), format!("t{client}-{seq}")),
                        (&logs, logs_request(client, seq), format!("l{client}-{seq}")),
                    ] {
                        let Ok(response) = http
                            .post(url.as_str())
                            .header("Content-Type", "application/x-protobuf")
                            .body(body)
                            .send()
                        else {
                            continue;
                        };
                        let status = response.status().as_u16();
                        if status == 200 {
                            outcome.acked.push(service);
                        } else {
                            *outcome.refused.entry(status).or_default() += 1;
                            if response.headers().get("retry-after").is_none() {
                                outcome.refused_without_retry_after += 1;
                            }
                        }
                    }
                }
                outcome
            })
        })
        .collect();
    let mut all = Outcome::default();
    for handle in handles {
        all.merge(handle.join().unwrap());
    }
    all
}

fn free_bytes(path: &Path) -> u64 {
    let output = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// Acknowledged requests whose items are not all stored.
fn missing(sift: &Sift, acked: &[String]) -> Vec<String> {
    let stored = sift.service_counts();
    acked
        .iter()
        .filter(|service| {
            let (spans, logs) = stored.get(*service).copied().unwrap_or_default();
            let count = if service.starts_with('t') { spans } else { logs };
            count < ITEMS as u64
        })
        .cloned()
        .collect()
}

/// How Sift is stopped after the disk filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Space returns, Sift accepts again, then SIGTERM.
    TermAfterSpaceReturns,
    /// Space returns, Sift accepts again, then SIGKILL.
    KillAfterSpaceReturns,
    /// SIGTERM while the disk is still full (space returns before the restart).
    TermWhileFull,
}

/// Fills the disk under load, stops Sift as `stop` says (freeing space before or after), restarts
/// it and checks that every acknowledged item is stored. Returns a one-line summary.
pub fn fill_free_stop_restart(stop_with: Stop) -> Option<String> {
    let fs = Tmpfs::mount(32)?;
    let mut sift = Sift::start_in(&fs.path(), &disk_full_config());

    // Fill: load until requests are refused for a few seconds (bounded in time and count).
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let watcher = {
        let stop = stop.clone();
        let path = fs.path();
        let readyz = sift.query_url("/readyz");
        std::thread::spawn(move || {
            let mut full_since: Option<Instant> = None;
            let mut saw_unready = false;
            while started.elapsed() < Duration::from_secs(90) {
                if free_bytes(&path) < 1 << 20 {
                    full_since.get_or_insert_with(Instant::now);
                }
                if full_since.is_some() {
                    if let Ok(response) = reqwest::blocking::get(&readyz) {
                        saw_unready |= response.status() == 503;
                    }
                }
                if full_since.is_some_and(|at| at.elapsed() > Duration::from_secs(5)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            stop.store(true, Ordering::Relaxed);
            (full_since.is_some(), saw_unready)
        })
    };
    let mut outcome = load(&sift, 3, 0, 20_000, stop);
    let (filled, saw_unready) = watcher.join().unwrap();
    assert!(filled, "the disk never filled; log:\n{}", sift.log_text());
    assert!(outcome.refusals() > 0, "nothing was refused on a full disk");
    assert_eq!(
        outcome.refused.keys().copied().collect::<Vec<_>>(),
        vec![503],
        "{:?}",
        outcome.refused
    );
    assert_eq!(
        outcome.refused_without_retry_after, 0,
        "every refusal carries Retry-After"
    );
    assert!(saw_unready, "/readyz answered 200 while the disk was full");
    let while_full = (outcome.acked.len(), outcome.refusals());

    if stop_with == Stop::TermWhileFull {
        // Shutdown keeps its bound on a full disk: what cannot be flushed stays in the WAL.
        let began = Instant::now();
        let status = sift.terminate();
        assert!(status.success(), "{status}; log:\n{}", sift.log_text());
        assert!(
            began.elapsed() < Duration::from_secs(25),
            "shutdown took {:?}",
            began.elapsed()
        );
        fs.grow(1024);
        sift.restart();
        return Some(check_restart(&mut sift, &outcome, stop_with, while_full));
    }

    // Space returns: Sift is ready again and accepts requests by itself within seconds.
    fs.grow(1024);
    assert!(
        eventually(Duration::from_secs(15), || sift.query("/readyz").0 == 200),
        "not ready 15 s after space returned; log:\n{}",
        sift.log_text()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seq = 1_000_000;
    loop {
        let after = load(&sift, 2, seq, 5, Arc::new(AtomicBool::new(false)));
        seq += 5;
        let accepted = after.refusals() == 0;
        outcome.merge(after);
        if accepted {
            break;
        }
        assert!(Instant::now() < deadline, "still refusing 15 s after space returned");
        std::thread::sleep(Duration::from_millis(200));
    }

    if stop_with == Stop::KillAfterSpaceReturns {
        sift.kill();
    } else {
        let began = Instant::now();
        let status = sift.terminate();
        assert!(status.success(), "{status}; log:\n{}", sift.log_text());
        assert!(
            began.elapsed() < Duration::from_secs(25),
            "shutdown took {:?}",
            began.elapsed()
        );
    }
    sift.restart();
    Some(check_restart(&mut sift, &outcome, stop_with, while_full))
}

/// After the restart: every acknowledged request is stored (waiting for the WAL replay).
fn check_restart(sift: &mut Sift, outcome: &Outcome, stop_with: Stop, while_full: (usize, usize)) -> String {
    // Everything since the last flush before the disk filled is replayed from the WAL (in a debug
    // build, with another test on the same two cores, that takes up to about a minute).
    let restarted = Instant::now();
    let complete = eventually(Duration::from_secs(180), || missing(sift, &outcome.acked).is_empty());
    let replayed_in = restarted.elapsed();
    let lost = missing(sift, &outcome.acked);
    assert!(
        complete,
        "{} of {} acknowledged requests are not (fully) stored after the restart, e.g. {:?}; log:\n{}",
        lost.len(),
        outcome.acked.len(),
        &lost[..lost.len().min(5)],
        sift.log_text()
    );
    assert!(
        !sift.log_text().contains("kept for inspection"),
        "WAL recovery met damage a crash does not explain:\n{}",
        sift.log_text()
    );
    // At least once is the promise; how often a request's items were stored more than once:
    let stored = sift.service_counts();
    let duplicated = outcome
        .acked
        .iter()
        .filter(|service| {
            let (spans, logs) = stored.get(*service).copied().unwrap_or_default();
            spans.max(logs) > ITEMS as u64
        })
        .count();
    sift.terminate();
    format!(
        "{stop_with:?}: {} requests acknowledged ({} while filling, {} refusals), all stored {:.1} s after the restart ({duplicated} stored more than once)",
        outcome.acked.len(),
        while_full.0,
        while_full.1,
        replayed_in.as_secs_f64()
    )
}

/// Every stop, one after the other (run side by side they starve the other end-to-end tests of
/// the machine's two cores).
#[test]
fn a_full_disk_then_sigterm_or_sigkill_loses_nothing_acknowledged() {
    for stop in [
        Stop::TermAfterSpaceReturns,
        Stop::KillAfterSpaceReturns,
        Stop::TermWhileFull,
    ] {
        if let Some(summary) = fill_free_stop_restart(stop) {
            eprintln!("{summary}");
        }
    }
}
