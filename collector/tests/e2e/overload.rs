//! Backpressure: with the only exporter blocked, the WAL fills to its limit and receivers refuse
//! with retry advice (503 + Retry-After, UNAVAILABLE + RetryInfo) while memory stays flat; once
//! the exporter moves again, Sift accepts again.

use std::ffi::CString;
use std::io::Read;
use std::time::Duration;

use prost::Message;
use reqwest::blocking::Client;
use sift_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use sift_proto::status::RpcStatus;

use crate::common::{config, eventually, memory_of, Sift};
use crate::ingest_grpc::spans;

#[test]
fn a_blocked_exporter_makes_receivers_refuse_with_retry_advice_and_memory_stays_bounded() {
    let temp = tempfile::tempdir().unwrap();
    let fifo = temp.path().join("blocked.jsonl");
    let c = CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let yaml = config(
        &format!("  file: {{ path: {} }}", fifo.display()),
        "file",
        "storage:\n  wal: { max_size_mib: 4, segment_size_mib: 1 }",
    );
    let sift = Sift::start_in(temp.path(), &yaml);
    let client = Client::new();
    let body = spans(200, 1, 200).encode_to_vec();
    assert!(body.len() > 40_000);

    let send = || sift.post_protobuf(&client, "/v1/traces", body.clone());
    let mut accepted = 0;
    let refusal = loop {
        let response = send();
        if response.status() != 200 {
            break response;
        }
        accepted += 1;
        assert!(accepted < 1000, "never refused");
    };
    assert_eq!(refusal.status(), 503);
    assert_eq!(refusal.headers()["retry-after"], "1");
    let status = RpcStatus::decode(refusal.bytes().unwrap()).unwrap();
    assert_eq!(status.code, 14);
    assert!(status.message.contains("write-ahead log is full"), "{}", status.message);
    assert_eq!(status.retry_delay(), Some(Duration::from_secs(1)));
    assert_eq!(reqwest::blocking::get(sift.query_url("/readyz")).unwrap().status(), 503);

    let grpc_status = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut grpc = TraceServiceClient::connect(sift.grpc_url()).await.unwrap();
            grpc.export(spans(200, 2, 200)).await.unwrap_err()
        });
    assert_eq!(grpc_status.code(), tonic::Code::Unavailable);
    let details = RpcStatus::decode(grpc_status.details()).unwrap();
    assert_eq!(details.retry_delay(), Some(Duration::from_secs(1)));

    // Keep pushing: every request is refused and memory does not grow.
    let (before, _) = memory_of(sift.pid());
    for _ in 0..300 {
        assert_eq!(send().status(), 503);
    }
    let (after, peak) = memory_of(sift.pid());
    eprintln!(
        "overload: {accepted} requests accepted before the 4 MiB WAL filled; RSS {} MiB before and {} MiB after 300 refused requests (peak {} MiB)",
        before >> 20,
        after >> 20,
        peak >> 20
    );
    assert!(
        after < before + (32 << 20),
        "RSS grew from {before} to {after} while refusing"
    );
    assert!(
        sift.metric("sift_receiver_refused_total{signal=\"traces\",protocol=\"http\",reason=\"overloaded\"}")
            >= 300.0 * 200.0
    );

    // Unblock the exporter: the WAL drains and Sift accepts again.
    let reader = std::thread::spawn(move || {
        let mut file = std::fs::File::open(fifo).unwrap();
        let mut sink = vec![0u8; 1 << 20];
        while let Ok(n) = file.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    });
    let ready = || reqwest::blocking::get(sift.query_url("/readyz")).unwrap().status() == 200;
    assert!(
        eventually(Duration::from_secs(30), ready),
        "ready again once the exporter drained the WAL, without any new request"
    );
    assert_eq!(send().status(), 200, "accepts again");
    drop(sift);
    reader.join().unwrap();
}
