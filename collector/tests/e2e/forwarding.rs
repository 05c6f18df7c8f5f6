//! Forwarding with `otlp/<name>`: Sift A → Sift B over every protocol, a downstream that goes
//! away, a crash while it is away, and downstreams that refuse or throttle.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use reqwest::blocking::Client;
use serde_json::Value;

use crate::common::{config, count_items, each, eventually, Sift};
use crate::ingest_grpc::spans;

/// B: receives and writes everything to its file exporter.
fn downstream_config(grpc: &str, http: &str) -> String {
    config("  file: {}", "file", "")
        .replace(
            "grpc: { endpoint: 127.0.0.1:0 }",
            &format!("grpc: {{ endpoint: {grpc} }}"),
        )
        .replace(
            "http: { endpoint: 127.0.0.1:0 }",
            &format!("http: {{ endpoint: {http} }}"),
        )
}

/// A: writes to its own file ("local storage") and forwards to `endpoint` with `protocol`.
fn forwarding_config(endpoint: &str, protocol: &str, compression: &str) -> String {
    config(
        &format!(
            "  file: {{}}\n  otlp/b:\n    endpoint: {endpoint}\n    protocol: {protocol}\n    compression: {compression}\n    headers: {{ x-api-key: \"${{env:SIFT_TEST_DOWNSTREAM_KEY:-k}}\" }}\n    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 0 }}"
        ),
        "file, otlp/b",
        "",
    )
}

fn span_keys(sift: &Sift) -> HashMap<String, usize> {
    let mut keys = HashMap::new();
    for request in sift.exported("traces") {
        each(
            &request,
            &["resourceSpans", "scopeSpans", "spans"],
            &mut |span: &Value| {
                let key = format!(
                    "{}/{}",
                    span["traceId"].as_str().unwrap(),
                    span["spanId"].as_str().unwrap()
                );
                *keys.entry(key).or_insert(0) += 1;
            },
        );
    }
    keys
}

#[test]
fn sift_a_forwards_every_signal_to_sift_b_over_every_protocol() {
    for protocol in ["grpc", "http_protobuf", "http_json"] {
        let b = Sift::start(&downstream_config("127.0.0.1:0", "127.0.0.1:0"));
        let endpoint = if protocol == "grpc" {
            b.grpc_url()
        } else {
            b.http_url("")
        };
        let a = Sift::start(&forwarding_config(&endpoint, protocol, "gzip"));
        let expected = a.send_with_sdk("http", &["--traces".to_owned(), "15".to_owned()]);
        for (i, signal) in ["traces", "logs", "metrics"].iter().enumerate() {
            let arrived = eventually(Duration::from_secs(20), || {
                count_items(&b.exported(signal), signal) as u64 == expected[i]
            });
            assert!(
                arrived,
                "{protocol}: B has {} {signal} items, expected {}",
                count_items(&b.exported(signal), signal),
                expected[i]
            );
            assert_eq!(
                count_items(&a.exported(signal), signal) as u64,
                expected[i],
                "{protocol}: A stored {signal}"
            );
            // B acknowledged before A counts: allow A a moment to record the send.
            let sample = format!("sift_exporter_sent_total{{exporter=\"otlp/b\",signal=\"{signal}\"}}");
            let counted = eventually(Duration::from_secs(5), || a.metric(&sample) as u64 == expected[i]);
            assert!(counted, "{protocol}: {signal} counted as sent: {}", a.metric(&sample));
        }
        assert_eq!(span_keys(&a), span_keys(&b), "{protocol}: the same spans, once each");
        // Field by field: what B stored is what A stored.
        let a_logs: Vec<Value> = a.exported("logs");
        let b_logs: Vec<Value> = b.exported("logs");
        let records = |requests: &[Value]| {
            let mut out = Vec::new();
            for r in requests {
                each(r, &["resourceLogs", "scopeLogs", "logRecords"], &mut |l| {
                    out.push(l.clone())
                });
            }
            out.sort_by_key(|l| {
                l["timeUnixNano"].as_str().unwrap_or_default().to_owned()
                    + l["body"]["stringValue"].as_str().unwrap_or_default()
            });
            out
        };
        let (a_records, b_records) = (records(&a_logs), records(&b_logs));
        for (x, y) in a_records.iter().zip(&b_records) {
            sift_proto::json::equivalent(x, y).unwrap_or_else(|e| panic!("{protocol}: {e}"));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn post_spans(client: &Client, a: &Sift, seed: u64) {
    let mut request = spans(100, 1, 20);
    for span in &mut request.resource_spans[0].scope_spans[0].spans {
        span.trace_id = [seed.to_be_bytes(), [7; 8]].concat();
    }
    let response = a.post_protobuf(client, "/v1/traces", request.encode_to_vec());
    assert_eq!(response.status(), 200);
}

#[test]
fn a_downstream_down_for_30_seconds_gets_everything_and_local_storage_never_stalls() {
    let (grpc_port, http_port) = (free_port(), free_port());
    let b_config = downstream_config(&format!("127.0.0.1:{grpc_port}"), &format!("127.0.0.1:{http_port}"));
    let b_dir = tempfile::tempdir().unwrap();
    let mut b = Sift::start_in(b_dir.path(), &b_config);
    let a = Sift::start(&forwarding_config(
        &format!("http://127.0.0.1:{grpc_port}"),
        "grpc",
        "zstd",
    ));
    let client = Client::new();
    let mut sent = 0u64;
    for seed in 1..=60 {
        post_spans(&client, &a, seed);
        sent += 100;
    }
    b.kill();
    let down_at = Instant::now();
    let mut slowest_local = Duration::ZERO;
    let mut seed = 61;
    // B stays down at least 30 s and for at least 80 requests (however fast this machine is
    // today), at most 120 s.
    while (down_at.elapsed() < Duration::from_secs(30) || seed <= 140) && down_at.elapsed() < Duration::from_secs(120) {
        post_spans(&client, &a, seed);
        seed += 1;
        sent += 100;
        // Local storage keeps up while B is down.
        let started = Instant::now();
        assert!(eventually(
            Duration::from_secs(5),
            || count_items(&a.exported("traces"), "traces") as u64 == sent
        ));
        slowest_local = slowest_local.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    b.restart();
    for _ in 0..60 {
        post_spans(&client, &a, seed);
        seed += 1;
        sent += 100;
    }
    assert!(sent >= 20_000, "{sent}");
    let complete = eventually(Duration::from_secs(60), || span_keys(&b).len() as u64 == sent);
    let keys = span_keys(&b);
    if !complete {
        let a_keys = span_keys(&a);
        let mut missing: Vec<&String> = a_keys.keys().filter(|k| !keys.contains_key(*k)).collect();
        missing.sort();
        missing.truncate(3);
        let b_log = b.log_text();
        let a_text = a.log_text();
        let a_log: Vec<&str> = a_text.lines().filter(|l| !l.contains("export failed")).collect();
        panic!(
            "B has {} of {sent} spans; missing e.g. {missing:?}\nA:\n{}\nB:\n{b_log}",
            keys.len(),
            a_log.join("\n")
        );
    }
    let duplicates: usize = keys.values().map(|n| n - 1).sum();
    let retried = a.metric("sift_exporter_retried_total{exporter=\"otlp/b\",signal=\"traces\"}");
    eprintln!(
        "downstream down 30 s during {sent} spans: 0 lost, {duplicates} duplicates at B, {retried} span retries; slowest local write while down {slowest_local:?}"
    );
    assert_eq!(
        a.metric("sift_exporter_failed_total{exporter=\"otlp/b\",signal=\"traces\"}"),
        0.0
    );
}

#[test]
fn everything_reaches_the_downstream_after_a_crash_while_it_was_down() {
    let (grpc_port, http_port) = (free_port(), free_port());
    let mut a = Sift::start(&forwarding_config(
        &format!("http://127.0.0.1:{http_port}"),
        "http_protobuf",
        "gzip",
    ));
    let client = Client::new();
    for seed in 1..=40 {
        post_spans(&client, &a, seed);
    }
    assert!(eventually(Duration::from_secs(5), || a.metric(
        "sift_exporter_retried_total{exporter=\"otlp/b\",signal=\"traces\"}"
    ) > 0.0));
    a.kill();
    a.restart();
    let b_dir = tempfile::tempdir().unwrap();
    let b = Sift::start_in(
        b_dir.path(),
        &downstream_config(&format!("127.0.0.1:{grpc_port}"), &format!("127.0.0.1:{http_port}")),
    );
    assert!(
        eventually(Duration::from_secs(30), || span_keys(&b).len() == 4000),
        "B has {}",
        span_keys(&b).len()
    );
}

/// A fake OTLP/HTTP downstream whose answer to each request `respond` decides.
struct FakeDownstream {
    address: SocketAddr,
    received: Received,
    _runtime: tokio::runtime::Runtime,
}

/// Every request the fake received, with when.
type Received = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

type Respond = Arc<dyn Fn(usize, &[u8]) -> (u16, Vec<(&'static str, String)>) + Send + Sync>;

impl FakeDownstream {
    fn start(respond: Respond) -> FakeDownstream {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let received: Received = Arc::default();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let address = listener.local_addr().unwrap();
        let state = (received.clone(), respond);
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                axum::routing::post(
                    |axum::extract::State((received, respond)): axum::extract::State<(Received, Respond)>,
                     body: axum::body::Bytes| async move {
                        let n = {
                            let mut received = received.lock().unwrap();
                            received.push((Instant::now(), body.to_vec()));
                            received.len() - 1
                        };
                        let (status, headers) = respond(n, &body);
                        let mut response = axum::response::Response::builder().status(status);
                        for (k, v) in headers {
                            response = response.header(k, v);
                        }
                        response.body(axum::body::Body::empty()).unwrap()
                    },
                ),
            )
            .with_state(state);
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeDownstream {
            address,
            received,
            _runtime: runtime,
        }
    }
}

fn decoded_span_names(body: &[u8]) -> Vec<String> {
    use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
    let request = ExportTraceServiceRequest::decode(body).unwrap();
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect()
}

#[test]
fn requests_a_downstream_refuses_with_400_are_dropped_and_counted_and_the_rest_arrive() {
    let fake = FakeDownstream::start(Arc::new(|_, body: &[u8]| {
        let poisoned = decoded_span_names(body).iter().any(|n| n.starts_with("poison"));
        (if poisoned { 400 } else { 200 }, Vec::new())
    }));
    let a = Sift::start(&forwarding_config(
        &format!("http://{}", fake.address),
        "http_protobuf",
        "none",
    ));
    let client = Client::new();
    for i in 0..10u64 {
        let mut request = spans(5, 1, 1);
        for span in &mut request.resource_spans[0].scope_spans[0].spans {
            span.trace_id = [i.to_be_bytes(), [3; 8]].concat();
            if i % 3 == 0 {
                span.name = format!("poison {i}");
            }
        }
        let response = a.post_protobuf(&client, "/v1/traces", request.encode_to_vec());
        assert_eq!(response.status(), 200);
        // One request at a time, so that no good request is merged with a poisoned one.
        assert!(eventually(
            Duration::from_secs(5),
            || fake.received.lock().unwrap().len() as u64 == i + 1
        ));
    }
    let failed = eventually(Duration::from_secs(5), || {
        a.metric("sift_exporter_failed_total{exporter=\"otlp/b\",signal=\"traces\"}") == 20.0
    });
    assert!(failed, "4 poisoned requests of 5 spans are counted as failed");
    assert_eq!(
        a.metric("sift_exporter_sent_total{exporter=\"otlp/b\",signal=\"traces\"}"),
        30.0
    );
    assert_eq!(fake.received.lock().unwrap().len(), 10, "400s are not retried");
}

#[test]
fn a_429_with_retry_after_is_honoured() {
    let fake = FakeDownstream::start(Arc::new(|n, _: &[u8]| {
        if n == 0 {
            (429, vec![("retry-after", "2".to_owned())])
        } else {
            (200, Vec::new())
        }
    }));
    let a = Sift::start(&forwarding_config(
        &format!("http://{}", fake.address),
        "http_protobuf",
        "none",
    ));
    post_spans(&Client::new(), &a, 1);
    assert!(eventually(Duration::from_secs(10), || fake
        .received
        .lock()
        .unwrap()
        .len()
        >= 2));
    let received = fake.received.lock().unwrap();
    let waited = received[1].0 - received[0].0;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    assert!(waited < Duration::from_secs(4), "not much later either: {waited:?}");
    assert_eq!(decoded_span_names(&received[1].1).len(), 100, "the whole request again");
}

#[test]
fn drop_oldest_keeps_a_dead_downstream_from_filling_the_wal() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let yaml = config(
        &format!(
            "  file: {{}}\n  otlp/dead:\n    endpoint: {dead}\n    retry_on_failure: {{ initial_interval: 50ms, max_interval: 100ms, max_elapsed_time: 0 }}\n    sending_queue: {{ queue_size_mib: 1, full_policy: drop_oldest }}"
        ),
        "file, otlp/dead",
        "storage:\n  wal: { max_size_mib: 6, segment_size_mib: 1 }",
    );
    let a = Sift::start(&yaml);
    let client = Client::new();
    let body = spans(200, 1, 200).encode_to_vec();
    for _ in 0..200 {
        let response = a.post_protobuf(&client, "/v1/traces", body.clone());
        assert_eq!(
            response.status(),
            200,
            "never refused: the dead exporter drops its oldest backlog instead"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let total = 200.0 * 200.0;
    assert!(eventually(
        Duration::from_secs(10),
        || count_items(&a.exported("traces"), "traces") as f64 == total
    ));
    let dropped = a.metric("sift_exporter_dropped_total{exporter=\"otlp/dead\",signal=\"traces\"}");
    assert!(dropped > 0.0 && dropped <= total, "{dropped}");
    assert!(a.metric("sift_storage_wal_bytes") <= (6 << 20) as f64);
    eprintln!("drop_oldest: {dropped} of {total} spans dropped for the dead downstream, none refused");
}

/// A gRPC OTLP trace receiver behind TLS with a freshly made certificate, counting spans.
struct TlsDownstream {
    address: SocketAddr,
    spans: Arc<Mutex<usize>>,
    ca_pem: String,
    _runtime: tokio::runtime::Runtime,
}

#[derive(Clone)]
struct CountingTraces(Arc<Mutex<usize>>);

#[tonic::async_trait]
impl sift_proto::otlp::collector::trace::v1::trace_service_server::TraceService for CountingTraces {
    async fn export(
        &self,
        request: tonic::Request<sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<sift_proto::otlp::collector::trace::v1::ExportTraceServiceResponse>, tonic::Status>
    {
        let n: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        *self.0.lock().unwrap() += n;
        Ok(tonic::Response::new(Default::default()))
    }
}

impl TlsDownstream {
    /// `client_ca`: when given, clients must present a certificate issued by it (mutual TLS).
    fn start(client_ca: Option<&str>) -> TlsDownstream {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert, key) = (certified.cert.pem(), certified.signing_key.serialize_pem());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let address = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(0));
        let service = sift_proto::otlp::collector::trace::v1::trace_service_server::TraceServiceServer::new(
            CountingTraces(spans.clone()),
        )
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        let mut tls =
            tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(&cert, &key));
        if let Some(client_ca) = client_ca {
            tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(client_ca));
        }
        runtime.spawn(async move {
            tonic::transport::Server::builder()
                .tls_config(tls)
                .unwrap()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
                .unwrap()
        });
        TlsDownstream {
            address,
            spans,
            ca_pem: cert,
            _runtime: runtime,
        }
    }
}

#[test]
fn forwarding_over_tls_trusts_the_configured_ca_and_nothing_else() {
    let downstream = TlsDownstream::start(None);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &downstream.ca_pem).unwrap();
    let port = downstream.address.port();
    let exporter = |tls: &str| {
        config(
            &format!(
                "  file: {{}}\n  otlp/b:\n    endpoint: https://localhost:{port}\n    retry_on_failure: {{ initial_interval: 100ms, max_interval: 200ms, max_elapsed_time: 0 }}\n{tls}"
            ),
            "file, otlp/b",
            "",
        )
    };
    // Without the CA the server is not trusted: nothing arrives, the exporter keeps retrying.
    let untrusted = Sift::start(&exporter(""));
    post_spans(&Client::new(), &untrusted, 1);
    assert!(eventually(Duration::from_secs(10), || {
        untrusted.metric("sift_exporter_retried_total{exporter=\"otlp/b\",signal=\"traces\"}") > 0.0
    }));
    assert_eq!(*downstream.spans.lock().unwrap(), 0);
    drop(untrusted);
    // With it, everything arrives.
    let trusted = Sift::start(&exporter(&format!("    tls: {{ ca_file: {} }}", ca.display())));
    post_spans(&Client::new(), &trusted, 2);
    assert!(eventually(Duration::from_secs(10), || *downstream
        .spans
        .lock()
        .unwrap()
        == 100));
}

#[test]
fn small_requests_are_batched_by_age() {
    let fake = FakeDownstream::start(Arc::new(|_, _: &[u8]| (200, Vec::new())));
    let yaml = forwarding_config(&format!("http://{}", fake.address), "http_protobuf", "none").replace(
        "    retry_on_failure:",
        "    batch: { flush_timeout: 1s, min_size_kib: 1024 }\n    retry_on_failure:",
    );
    let a = Sift::start(&yaml);
    let client = Client::new();
    for i in 0..5u64 {
        let mut request = spans(3, 1, 1);
        for span in &mut request.resource_spans[0].scope_spans[0].spans {
            span.trace_id = [i.to_be_bytes(), [5; 8]].concat();
        }
        assert_eq!(
            a.post_protobuf(&client, "/v1/traces", request.encode_to_vec()).status(),
            200
        );
    }
    assert!(eventually(Duration::from_secs(5), || a
        .metric("sift_exporter_sent_total{exporter=\"otlp/b\",signal=\"traces\"}")
        == 15.0));
    let received = fake.received.lock().unwrap();
    assert_eq!(
        received.len(),
        1,
        "five small requests within the flush timeout go out as one"
    );
    assert_eq!(decoded_span_names(&received[0].1).len(), 15);
}

#[test]
fn mutual_tls_presents_the_configured_client_certificate() {
    let client = rcgen::generate_simple_self_signed(vec!["sift-a".to_owned()]).unwrap();
    let (client_cert, client_key) = (client.cert.pem(), client.signing_key.serialize_pem());
    let downstream = TlsDownstream::start(Some(&client_cert));
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (ca, cert, key) = (
        write("ca.pem", &downstream.ca_pem),
        write("client.pem", &client_cert),
        write("client.key", &client_key),
    );
    let port = downstream.address.port();
    let exporter = |tls: String| {
        config(
            &format!(
                "  file: {{}}\n  otlp/b:\n    endpoint: https://localhost:{port}\n    retry_on_failure: {{ initial_interval: 100ms, max_interval: 200ms, max_elapsed_time: 0 }}\n    tls: {tls}"
            ),
            "file, otlp/b",
            "",
        )
    };
    let anonymous = Sift::start(&exporter(format!("{{ ca_file: {ca} }}")));
    post_spans(&Client::new(), &anonymous, 1);
    assert!(eventually(Duration::from_secs(10), || {
        anonymous.metric("sift_exporter_retried_total{exporter=\"otlp/b\",signal=\"traces\"}") > 0.0
    }));
    assert_eq!(*downstream.spans.lock().unwrap(), 0, "no client certificate, no entry");
    drop(anonymous);
    let identified = Sift::start(&exporter(format!(
        "{{ ca_file: {ca}, cert_file: {cert}, key_file: {key} }}"
    )));
    post_spans(&Client::new(), &identified, 2);
    assert!(eventually(Duration::from_secs(10), || *downstream
        .spans
        .lock()
        .unwrap()
        == 100));
}
