//! `sift-loadgen`: sends pre-encoded OTLP requests (traces, and optionally the logs and metrics that
//! go with them) to an OTLP endpoint over gRPC or HTTP/protobuf from N concurrent connections, flat
//! out, bounded by a duration and a request count, and reports throughput and acknowledgement
//! latency. Payloads are seeded and generated before the clock starts, so the client does no
//! encoding while it measures.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use prost::Message;
use sift_benches::{generate, Rng, Shape};
use sift_proto::{RawCodec, Signal, SignalKind};

#[derive(Clone, Copy, ValueEnum, Debug)]
enum Protocol {
    Grpc,
    Http,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
enum SignalArg {
    Traces,
    Logs,
    Metrics,
}

impl SignalArg {
    fn kind(self) -> SignalKind {
        match self {
            SignalArg::Traces => SignalKind::Traces,
            SignalArg::Logs => SignalKind::Logs,
            SignalArg::Metrics => SignalKind::Metrics,
        }
    }
}

#[derive(Parser, Debug)]
#[command(about = "OTLP load generator for Sift (and any OTLP receiver)")]
struct Args {
    /// Transport.
    #[arg(long, value_enum, default_value_t = Protocol::Http)]
    protocol: Protocol,
    /// host:port of the OTLP receiver.
    #[arg(long, default_value = "127.0.0.1:4318")]
    endpoint: String,
    /// Signals to send, comma-separated; logs and metrics belong to the generated traces.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "traces")]
    signals: Vec<SignalArg>,
    /// Concurrent connections, each with one request in flight.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Stop after this many seconds (at most 600).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Stop after this many requests in total.
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: u64,
    /// Spans per traces request (whole traces of 1-30 spans).
    #[arg(long, default_value_t = 512)]
    spans_per_request: usize,
    /// Share of error spans, in percent.
    #[arg(long, default_value_t = 5)]
    error_percent: u64,
    /// Share of traces slower than 1 s, in percent.
    #[arg(long, default_value_t = 5)]
    slow_percent: u64,
    /// Distinct pre-encoded slices cycled through.
    #[arg(long, default_value_t = 32)]
    distinct: usize,
    /// Seed of the payload generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// One pre-encoded request.
struct Payload {
    signal: SignalKind,
    body: Bytes,
    items: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    items: [AtomicU64; 3],
}

fn index(signal: SignalKind) -> usize {
    match signal {
        SignalKind::Traces => 0,
        SignalKind::Logs => 1,
        SignalKind::Metrics => 2,
    }
}

enum Outcome {
    Acked,
    Refused,
    Failed(String),
}

async fn connection(
    args: Arc<Args>,
    payloads: Arc<Vec<Payload>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    offset: usize,
) -> anyhow::Result<Vec<u32>> {
    let mut latencies = Vec::new();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .build()?;
    let mut grpc = match args.protocol {
        Protocol::Grpc => {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", args.endpoint))?
                .tcp_nodelay(true)
                .initial_stream_window_size(Some(4 << 20))
                .initial_connection_window_size(Some(16 << 20))
                .connect()
                .await?;
            Some(tonic::client::Grpc::new(channel).max_encoding_message_size(256 << 20))
        }
        Protocol::Http => None,
    };
    let mut i = offset;
    while !stop.load(Ordering::Relaxed) {
        if counters.sent.fetch_add(1, Ordering::Relaxed) >= args.max_requests {
            stop.store(true, Ordering::Relaxed);
            break;
        }
        let payload = &payloads[i % payloads.len()];
        i += 1;
        let started = Instant::now();
        let outcome = match grpc.as_mut() {
            Some(grpc) => {
                grpc.ready().await?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(
                    sift_proto::with_signal!(payload.signal, S => S::GRPC_EXPORT_PATH),
                );
                match grpc
                    .unary(tonic::Request::new(payload.body.clone()), path, RawCodec)
                    .await
                {
                    Ok(_) => Outcome::Acked,
                    Err(s) if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::ResourceExhausted) => {
                        Outcome::Refused
                    }
                    Err(s) => Outcome::Failed(s.to_string()),
                }
            }
            None => {
                let url = format!("http://{}/v1/{}", args.endpoint, payload.signal);
                let sent = http
                    .post(&url)
                    .header("Content-Type", "application/x-protobuf")
                    .body(payload.body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await?;
                        Outcome::Acked
                    }
                    Ok(r) if r.status().as_u16() == 503 || r.status().as_u16() == 429 => Outcome::Refused,
                    Ok(r) => Outcome::Failed(format!("HTTP {}", r.status())),
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
        };
        let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        match outcome {
            Outcome::Acked => {
                counters.acked.fetch_add(1, Ordering::Relaxed);
                counters.items[index(payload.signal)].fetch_add(payload.items, Ordering::Relaxed);
                latencies.push(micros);
            }
            Outcome::Refused => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Outcome::Failed(e) => {
                if counters.failed.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("request failed: {e}");
                }
            }
        }
    }
    Ok(latencies)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

/// Pre-encodes `distinct` slices of the selected signals, interleaved.
fn payloads(args: &Args) -> Vec<Payload> {
    let mut rng = Rng::new(args.seed);
    let shape = Shape {
        error_percent: args.error_percent,
        slow_percent: args.slow_percent,
    };
    let mut out = Vec::new();
    for _ in 0..args.distinct.max(1) {
        let slice = generate(&mut rng, args.spans_per_request, &shape);
        for signal in &args.signals {
            let (body, items) = match signal.kind() {
                SignalKind::Traces => (
                    slice.traces.encode_to_vec(),
                    sift_proto::Traces::item_count(&slice.traces),
                ),
                SignalKind::Logs => (slice.logs.encode_to_vec(), sift_proto::Logs::item_count(&slice.logs)),
                SignalKind::Metrics => (
                    slice.metrics.encode_to_vec(),
                    sift_proto::Metrics::item_count(&slice.metrics),
                ),
            };
            out.push(Payload {
                signal: signal.kind(),
                body: body.into(),
                items,
            });
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    args.duration = args.duration.min(600);
    let args = Arc::new(args);
    let payloads = Arc::new(payloads(&args));
    let request_bytes = payloads.iter().map(|p| p.body.len()).sum::<usize>() / payloads.len();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let progress = ProgressBar::new(args.duration);
    progress.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let latencies = runtime.block_on(async {
        let tasks: Vec<_> = (0..args.connections.max(1))
            .map(|c| {
                tokio::spawn(connection(
                    args.clone(),
                    payloads.clone(),
                    counters.clone(),
                    stop.clone(),
                    c * 7,
                ))
            })
            .collect();
        let deadline = started + Duration::from_secs(args.duration);
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let elapsed = started.elapsed().as_secs_f64();
            let spans = counters.items[0].load(Ordering::Relaxed);
            progress.set_position(elapsed as u64);
            progress.set_message(format!(
                "{} requests acked, {:.0} spans/s, {} refused",
                counters.acked.load(Ordering::Relaxed),
                spans as f64 / elapsed,
                counters.refused.load(Ordering::Relaxed)
            ));
        }
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await??);
        }
        anyhow::Ok(all)
    })?;
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let mut sorted = latencies;
    sorted.sort_unstable();
    let acked = counters.acked.load(Ordering::Relaxed);
    let items = |signal: SignalKind| counters.items[index(signal)].load(Ordering::Relaxed);
    let report = serde_json::json!({
        "protocol": format!("{:?}", args.protocol).to_lowercase(),
        "signals": args.signals.iter().map(|s| s.kind().as_str()).collect::<Vec<_>>(),
        "connections": args.connections,
        "spans_per_request": args.spans_per_request,
        "request_bytes": request_bytes,
        "seconds": elapsed,
        "requests_sent": counters.sent.load(Ordering::Relaxed).min(args.max_requests),
        "requests_acked": acked,
        "requests_refused": counters.refused.load(Ordering::Relaxed),
        "requests_failed": counters.failed.load(Ordering::Relaxed),
        "spans_acked": items(SignalKind::Traces),
        "log_records_acked": items(SignalKind::Logs),
        "data_points_acked": items(SignalKind::Metrics),
        "spans_per_sec": items(SignalKind::Traces) as f64 / elapsed,
        "log_records_per_sec": items(SignalKind::Logs) as f64 / elapsed,
        "data_points_per_sec": items(SignalKind::Metrics) as f64 / elapsed,
        "ack_latency_ms": {
            "p50": percentile(&sorted, 0.50), "p90": percentile(&sorted, 0.90),
            "p99": percentile(&sorted, 0.99), "max": percentile(&sorted, 1.0),
        },
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} x{}: {acked} requests acked ({:.0} spans/s, {:.0} log records/s, {:.0} data points/s), {} refused, {} failed in {elapsed:.1}s; ack latency p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms max {:.2} ms ({} B/request)",
            report["protocol"].as_str().unwrap_or(""),
            args.connections,
            report["spans_per_sec"].as_f64().unwrap_or(0.0),
            report["log_records_per_sec"].as_f64().unwrap_or(0.0),
            report["data_points_per_sec"].as_f64().unwrap_or(0.0),
            report["requests_refused"],
            report["requests_failed"],
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.90),
            percentile(&sorted, 0.99),
            percentile(&sorted, 1.0),
            request_bytes,
        );
    }
    Ok(())
}
