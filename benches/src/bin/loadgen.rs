//! `sift-loadgen`: sends pre-encoded OTLP trace requests to an OTLP endpoint over gRPC or
//! HTTP/protobuf from N concurrent connections, flat out, bounded by a duration and a request
//! count, and reports throughput and acknowledgement latency.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use prost::Message;
use sift_benches::{traces_request, Rng};
use sift_proto::RawCodec;

#[derive(Clone, Copy, ValueEnum, Debug)]
enum Protocol {
    Grpc,
    Http,
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
    /// Concurrent connections, each with one request in flight.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Stop after this many seconds (at most 600).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Stop after this many requests in total.
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: u64,
    /// Spans per request.
    #[arg(long, default_value_t = 512)]
    spans_per_request: usize,
    /// Distinct pre-encoded requests cycled through.
    #[arg(long, default_value_t = 32)]
    distinct: usize,
    /// Seed of the payload generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

enum Outcome {
    Acked,
    Refused,
    Failed(String),
}

async fn connection(
    args: Arc<Args>,
    payloads: Arc<Vec<Bytes>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    offset: usize,
) -> anyhow::Result<Vec<u32>> {
    let mut latencies = Vec::new();
    let http = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
    let url = format!("http://{}/v1/traces", args.endpoint);
    let mut grpc = match args.protocol {
        Protocol::Grpc => {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", args.endpoint))?
                .connect()
                .await?;
            Some(tonic::client::Grpc::new(channel).max_encoding_message_size(256 << 20))
        }
        Protocol::Http => None,
    };
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    let mut i = offset;
    while !stop.load(Ordering::Relaxed) {
        if counters.sent.fetch_add(1, Ordering::Relaxed) >= args.max_requests {
            stop.store(true, Ordering::Relaxed);
            break;
        }
        let body = payloads[i % payloads.len()].clone();
        i += 1;
        let started = Instant::now();
        let outcome = match grpc.as_mut() {
            Some(grpc) => {
                grpc.ready().await?;
                match grpc.unary(tonic::Request::new(body), path.clone(), RawCodec).await {
                    Ok(_) => Outcome::Acked,
                    Err(s) if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::ResourceExhausted => {
                        Outcome::Refused
                    }
                    Err(s) => Outcome::Failed(s.to_string()),
                }
            }
            None => match http
                .post(&url)
                .header("Content-Type", "application/x-protobuf")
                .body(body)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    r.bytes().await?;
                    Outcome::Acked
                }
                Ok(r) if r.status().as_u16() == 503 || r.status().as_u16() == 429 => Outcome::Refused,
                Ok(r) => Outcome::Failed(format!("HTTP {}", r.status())),
                Err(e) => Outcome::Failed(e.to_string()),
            },
        };
        let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        match outcome {
            Outcome::Acked => {
                counters.acked.fetch_add(1, Ordering::Relaxed);
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

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    args.duration = args.duration.min(600);
    let args = Arc::new(args);
    let mut rng = Rng::new(args.seed);
    let payloads: Vec<Bytes> = (0..args.distinct.max(1))
        .map(|_| traces_request(&mut rng, args.spans_per_request).encode_to_vec().into())
        .collect();
    let request_bytes = payloads.iter().map(Bytes::len).sum::<usize>() / payloads.len();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let payloads = Arc::new(payloads);
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
            tokio::time::sleep(Duration::from_secs(1)).await;
            let acked = counters.acked.load(Ordering::Relaxed);
            eprintln!(
                "{:>4.0}s  acked {acked} requests ({:.0} spans/s)  refused {}",
                started.elapsed().as_secs_f64(),
                (acked * args.spans_per_request as u64) as f64 / started.elapsed().as_secs_f64(),
                counters.refused.load(Ordering::Relaxed)
            );
        }
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await??);
        }
        anyhow::Ok(all)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut sorted = latencies;
    sorted.sort_unstable();
    let acked = counters.acked.load(Ordering::Relaxed);
    let spans_per_sec = (acked * args.spans_per_request as u64) as f64 / elapsed;
    let report = serde_json::json!({
        "protocol": format!("{:?}", args.protocol).to_lowercase(),
        "connections": args.connections,
        "spans_per_request": args.spans_per_request,
        "request_bytes": request_bytes,
        "seconds": elapsed,
        "requests_sent": counters.sent.load(Ordering::Relaxed).min(args.max_requests),
        "requests_acked": acked,
        "requests_refused": counters.refused.load(Ordering::Relaxed),
        "requests_failed": counters.failed.load(Ordering::Relaxed),
        "spans_per_sec": spans_per_sec,
        "ack_latency_ms": {
            "p50": percentile(&sorted, 0.50), "p90": percentile(&sorted, 0.90),
            "p99": percentile(&sorted, 0.99), "max": percentile(&sorted, 1.0),
        },
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} x{}: {acked} requests acked ({:.0} spans/s), {} refused, {} failed in {elapsed:.1}s; ack latency p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms max {:.2} ms ({} B/request)",
            report["protocol"].as_str().unwrap_or(""),
            args.connections,
            spans_per_sec,
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
