//! `sift-loadgen`: sends pre-encoded OTLP requests (traces, and optionally the logs and metrics that
//! go with them) to an OTLP endpoint over gRPC or HTTP/protobuf from N concurrent connections, flat
//! out or at a target rate, bounded by a duration and a request count, and reports throughput and
//! acknowledgement latency. Payloads are seeded and generated before the clock starts, so the
//! client does no encoding while it measures: each round through the pre-encoded slices only
//! rewrites their trace ids in place (so that every trace is new to the receiver, as tail sampling
//! and storage must see it) and, with `--live-times`, their span and log times (so that they
//! follow the clock), which is a copy of the request and a few XORs and additions.
//!
//! Metric requests are the exception: they are encoded as they are sent, stamped with the
//! current time and carrying running totals per series (a counter and a histogram per service
//! and route), as an SDK's periodic exporter sends them — the same ten points a slice, but a
//! series' points arrive in time order and its counters only grow, so rates and rollups see
//! real counters rather than the same few points over and over.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use prost::Message;
use sift_benches::{generate, Rng, RunningTotals, Shape};
use sift_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sift_proto::otlp::metrics::v1::metric;
use sift_proto::{RawCodec, Signal, SignalKind, Traces};

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
    /// Stop after this many seconds (at most 7200: soaks run an hour).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Stop after this many requests in total.
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: u64,
    /// Spans per traces request (whole traces of 1-30 spans).
    #[arg(long, default_value_t = 512)]
    spans_per_request: usize,
    /// Share of traces with an error span, in percent.
    #[arg(long, default_value_t = 5)]
    error_percent: u64,
    /// Share of traces slower than 1 s, in percent.
    #[arg(long, default_value_t = 5)]
    slow_percent: u64,
    /// Target spans (or, without traces, items) per second over all connections; 0 = flat out.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Distinct pre-encoded slices cycled through (trace ids are renewed on every round).
    #[arg(long, default_value_t = 32)]
    distinct: usize,
    /// Seed of the payload generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where item times begin, in Unix nanoseconds; they cover the ~18 minutes after it
    /// (default: 20 minutes ago, so a store files them under the current hours).
    #[arg(long, conflicts_with = "live_times")]
    start_unix_nano: Option<u64>,
    /// Span and log times follow the clock, as an application's do: every request is sent with
    /// its newest time moved to the moment it is sent (the others keep their distance to it, so
    /// durations and a trace's logs stay as generated). Without it, every round sends the same
    /// times, so a store's newest records are as old as the run.
    #[arg(long)]
    live_times: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// One pre-encoded request.
struct Payload {
    signal: SignalKind,
    body: Bytes,
    items: u64,
    /// Where the body holds a trace id (span, link, log record, exemplar).
    trace_ids: Vec<usize>,
    /// Where the body holds a span or log time (a fixed64), and the newest of them.
    times: Vec<usize>,
    newest: u64,
    /// Metrics: the slice's points, whose values are added to the running totals when sent.
    metrics: Option<ExportMetricsServiceRequest>,
}

/// Running totals of every metric series the load generator sends, and the time of its last point.
#[derive(Default)]
struct LiveMetrics {
    state: std::sync::Mutex<LiveState>,
}

#[derive(Default)]
struct LiveState {
    last_time: u64,
    totals: RunningTotals,
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl LiveMetrics {
    /// `slice`'s points as running totals at the current time (later than any point sent
    /// before), exemplars pointing at round `round`'s trace ids.
    fn body(&self, slice: &ExportMetricsServiceRequest, round: u64, started: u64) -> Bytes {
        let mut request = slice.clone();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = unix_nanos().max(state.last_time + 1);
        state.last_time = now;
        state.totals.add(&mut request, started, now);
        drop(state);
        let exemplars = request
            .resource_metrics
            .iter_mut()
            .flat_map(|rm| &mut rm.scope_metrics)
            .flat_map(|sm| &mut sm.metrics)
            .filter_map(|m| match &mut m.data {
                Some(metric::Data::Histogram(h)) => Some(&mut h.data_points),
                _ => None,
            })
            .flatten()
            .flat_map(|p| &mut p.exemplars);
        for e in exemplars {
            for (byte, salt) in e.trace_id.iter_mut().zip(round.to_be_bytes()) {
                *byte ^= salt;
            }
        }
        request.encode_to_vec().into()
    }
}

impl Payload {
    /// The body for round `round` through the payloads: round 0 as generated, later rounds with
    /// the first 8 bytes of every trace id XORed with the round (ids stay consistent across the
    /// traces, logs and metrics of a slice); with `now`, every time moved by the same amount so
    /// that the newest is `now`.
    fn body(&self, round: u64, now: Option<u64>) -> Bytes {
        let shift = now.filter(|_| !self.times.is_empty());
        if (round == 0 || self.trace_ids.is_empty()) && shift.is_none() {
            return self.body.clone();
        }
        let mut body = self.body.to_vec();
        if round > 0 {
            for &at in &self.trace_ids {
                for (byte, salt) in body[at..at + 8].iter_mut().zip(round.to_be_bytes()) {
                    *byte ^= salt;
                }
            }
        }
        if let Some(now) = shift {
            for &at in &self.times {
                let field: &mut [u8; 8] = (&mut body[at..at + 8]).try_into().expect("8 bytes");
                let time = u64::from_le_bytes(*field);
                *field = time.wrapping_sub(self.newest).wrapping_add(now).to_le_bytes();
            }
        }
        body.into()
    }
}

/// Offsets of the fixed64 times in `body` whose values are in `times`, each found after its
/// field's tag (a span's start and end, an event's, a log record's time and observed time).
fn time_offsets(body: &[u8], times: &std::collections::HashSet<u64>) -> Vec<usize> {
    // Field numbers 1, 7, 8 and 11 with wire type 1 (fixed64).
    const TAGS: [u8; 4] = [1 << 3 | 1, 7 << 3 | 1, 8 << 3 | 1, 11 << 3 | 1];
    let mut out = Vec::new();
    let mut at = 1;
    while at + 8 <= body.len() {
        let value = u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        if TAGS.contains(&body[at - 1]) && times.contains(&value) {
            out.push(at);
            at += 9;
        } else {
            at += 1;
        }
    }
    out
}

/// Every span and log time of `slice`.
fn slice_times(slice: &sift_benches::Generated) -> std::collections::HashSet<u64> {
    let spans = slice
        .traces
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans);
    let logs = slice
        .logs
        .resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records);
    spans
        .flat_map(|s| {
            let events = s.events.iter().map(|e| e.time_unix_nano);
            [s.start_time_unix_nano, s.end_time_unix_nano].into_iter().chain(events)
        })
        .chain(logs.flat_map(|l| [l.time_unix_nano, l.observed_time_unix_nano]))
        .filter(|&t| t > 0)
        .collect()
}

/// Offsets of the 16-byte trace ids of `ids` in `body`, each found after its length prefix.
fn trace_id_offsets(body: &[u8], ids: &std::collections::HashSet<[u8; 16]>) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 1;
    while at + 16 <= body.len() {
        if body[at - 1] == 16 && body[at..at + 16].try_into().is_ok_and(|id: [u8; 16]| ids.contains(&id)) {
            out.push(at);
            at += 16;
        } else {
            at += 1;
        }
    }
    out
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
    live: Arc<LiveMetrics>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
) -> anyhow::Result<Vec<u32>> {
    let mut latencies = Vec::new();
    let started_unix = unix_nanos();
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
    // Requests are numbered across connections; with a rate, request n waits for its slot.
    let interval = (args.rate > 0).then(|| {
        let items = payloads.iter().map(|p| p.items).sum::<u64>() as f64 / payloads.len() as f64;
        Duration::from_secs_f64(items / args.rate as f64)
    });
    while !stop.load(Ordering::Relaxed) {
        let n = counters.sent.fetch_add(1, Ordering::Relaxed);
        if n >= args.max_requests {
            stop.store(true, Ordering::Relaxed);
            break;
        }
        if let Some(interval) = interval {
            tokio::time::sleep_until((epoch + interval.mul_f64(n as f64)).into()).await;
        }
        let i = n as usize;
        let payload = &payloads[i % payloads.len()];
        let round = (i / payloads.len()) as u64;
        let body = match &payload.metrics {
            Some(slice) => live.body(slice, round, started_unix),
            None => payload.body(round, args.live_times.then(unix_nanos)),
        };
        let started = Instant::now();
        let outcome = match grpc.as_mut() {
            Some(grpc) => {
                grpc.ready().await?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(
                    sift_proto::with_signal!(payload.signal, S => S::GRPC_EXPORT_PATH),
                );
                match grpc.unary(tonic::Request::new(body), path, RawCodec).await {
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
                    .body(body)
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let shape = Shape {
        error_percent: args.error_percent,
        slow_percent: args.slow_percent,
        start_unix_nano: args
            .start_unix_nano
            .unwrap_or_else(|| now.saturating_sub(1_200_000_000_000)),
    };
    let mut out = Vec::new();
    for _ in 0..args.distinct.max(1) {
        let slice = generate(&mut rng, args.spans_per_request, &shape);
        let ids: std::collections::HashSet<[u8; 16]> = slice
            .traces
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .filter_map(|span| span.trace_id.as_slice().try_into().ok())
            .collect();
        let times = slice_times(&slice);
        let newest = times.iter().copied().max().unwrap_or(0);
        for signal in &args.signals {
            let (body, items) = match signal.kind() {
                SignalKind::Traces => (slice.traces.encode_to_vec(), Traces::item_count(&slice.traces)),
                SignalKind::Logs => (slice.logs.encode_to_vec(), sift_proto::Logs::item_count(&slice.logs)),
                SignalKind::Metrics => (
                    slice.metrics.encode_to_vec(),
                    sift_proto::Metrics::item_count(&slice.metrics),
                ),
            };
            out.push(Payload {
                signal: signal.kind(),
                trace_ids: trace_id_offsets(&body, &ids),
                times: match signal.kind() {
                    SignalKind::Metrics => Vec::new(),
                    _ => time_offsets(&body, &times),
                },
                newest,
                body: body.into(),
                items,
                metrics: (signal.kind() == SignalKind::Metrics).then(|| slice.metrics.clone()),
            });
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    args.duration = args.duration.min(7200);
    let args = Arc::new(args);
    let payloads = Arc::new(payloads(&args));
    let request_bytes = payloads.iter().map(|p| p.body.len()).sum::<usize>() / payloads.len();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let counters = Arc::new(Counters::default());
    let live = Arc::new(LiveMetrics::default());
    let stop = Arc::new(AtomicBool::new(false));
    let progress = ProgressBar::new(args.duration);
    progress.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let latencies = runtime.block_on(async {
        let tasks: Vec<_> = (0..args.connections.max(1))
            .map(|_| {
                tokio::spawn(connection(
                    args.clone(),
                    payloads.clone(),
                    live.clone(),
                    counters.clone(),
                    stop.clone(),
                    started,
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
        "target_rate": args.rate,
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use sift_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
    use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
    use sift_proto::otlp::metrics::v1::number_data_point;

    use super::*;

    fn span_ids(request: &ExportTraceServiceRequest) -> HashSet<Vec<u8>> {
        let spans = request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans);
        spans.map(|s| s.trace_id.clone()).collect()
    }

    #[test]
    fn every_round_renews_the_trace_ids_of_traces_and_logs_alike() {
        let args = Args::parse_from(["sift-loadgen", "--signals", "traces,logs", "--distinct", "2"]);
        let payloads = payloads(&args);
        let (traces, logs) = (&payloads[0], &payloads[1]);
        let original = span_ids(&ExportTraceServiceRequest::decode(traces.body(0, None)).unwrap());
        let renewed = ExportTraceServiceRequest::decode(traces.body(3, None)).unwrap();
        let ids = span_ids(&renewed);
        assert_eq!(ids.len(), original.len());
        assert!(ids.is_disjoint(&original));
        assert_eq!(Traces::item_count(&renewed), traces.items);
        let logs = ExportLogsServiceRequest::decode(logs.body(3, None)).unwrap();
        let log_ids: HashSet<Vec<u8>> = logs
            .resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .map(|l| l.trace_id.clone())
            .collect();
        assert!(!log_ids.is_empty() && log_ids.is_subset(&ids));
    }

    /// Every span and log time of a request, in order.
    fn times_of(payload: &Payload, body: Bytes) -> Vec<u64> {
        match payload.signal {
            SignalKind::Traces => ExportTraceServiceRequest::decode(body)
                .unwrap()
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .flat_map(|s| [s.start_time_unix_nano, s.end_time_unix_nano])
                .collect(),
            _ => ExportLogsServiceRequest::decode(body)
                .unwrap()
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .flat_map(|sl| &sl.log_records)
                .flat_map(|l| [l.time_unix_nano, l.observed_time_unix_nano])
                .collect(),
        }
    }

    #[test]
    fn live_times_move_every_span_and_log_time_to_end_at_the_sending_time() {
        let args = Args::parse_from([
            "sift-loadgen",
            "--signals",
            "traces,logs",
            "--distinct",
            "3",
            "--live-times",
        ]);
        let payloads = payloads(&args);
        let now = 1_900_000_000_000_000_000;
        for slice in payloads.chunks(2) {
            let mut newest = 0;
            for payload in slice {
                let generated = times_of(payload, payload.body(0, None));
                let sent = times_of(payload, payload.body(5, Some(now)));
                assert!(generated.len() >= 2 && generated.iter().all(|&t| t > 0 && t <= payload.newest));
                let expected: Vec<u64> = generated.iter().map(|t| now - (payload.newest - t)).collect();
                assert_eq!(sent, expected, "every time moved by the same amount");
                newest = newest.max(sent.iter().copied().max().unwrap());
            }
            assert_eq!(newest, now, "the slice's newest time is the sending time");
            // Trace ids are still renewed, the same way in spans and logs.
            let ids = span_ids(&ExportTraceServiceRequest::decode(slice[0].body(5, Some(now))).unwrap());
            assert!(ids.is_disjoint(&span_ids(
                &ExportTraceServiceRequest::decode(slice[0].body(0, None)).unwrap()
            )));
            let logs = ExportLogsServiceRequest::decode(slice[1].body(5, Some(now))).unwrap();
            assert!(logs.resource_logs[0].scope_logs[0]
                .log_records
                .iter()
                .all(|l| ids.contains(&l.trace_id)));
        }
    }

    #[test]
    fn metric_requests_carry_running_totals_at_increasing_times() {
        let args = Args::parse_from(["sift-loadgen", "--signals", "traces,metrics", "--distinct", "1"]);
        let payloads = payloads(&args);
        let (traces, metrics) = (&payloads[0], &payloads[1]);
        let slice = metrics.metrics.as_ref().expect("metrics are made as they are sent");
        let live = LiveMetrics::default();
        let sent: Vec<ExportMetricsServiceRequest> = (0..3)
            .map(|round| ExportMetricsServiceRequest::decode(live.body(slice, round, 1)).unwrap())
            .collect();
        let points = |r: &ExportMetricsServiceRequest| -> Vec<(u64, i64)> {
            r.resource_metrics[0].scope_metrics[0]
                .metrics
                .iter()
                .flat_map(|m| match &m.data {
                    Some(metric::Data::Sum(s)) => s
                        .data_points
                        .iter()
                        .map(|p| match p.value {
                            Some(number_data_point::Value::AsInt(v)) => (p.time_unix_nano, v),
                            _ => (p.time_unix_nano, -1),
                        })
                        .collect(),
                    Some(metric::Data::Histogram(h)) => h
                        .data_points
                        .iter()
                        .map(|p| (p.time_unix_nano, p.count as i64))
                        .collect(),
                    _ => Vec::new(),
                })
                .collect()
        };
        let (first, second, third) = (points(&sent[0]), points(&sent[1]), points(&sent[2]));
        assert_eq!(first.len(), 10);
        for ((a, b), c) in first.iter().zip(&second).zip(&third) {
            assert!(a.0 < b.0 && b.0 < c.0, "times grow: {a:?} {b:?} {c:?}");
            // Each round adds the slice's own counts again.
            assert_eq!(b.1 - a.1, a.1);
            assert_eq!(c.1 - b.1, a.1);
        }
        // Exemplars point at the traces of the same round.
        let round_traces = span_ids(&ExportTraceServiceRequest::decode(traces.body(2, None)).unwrap());
        let exemplar_ids: HashSet<Vec<u8>> = sent[2].resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .flat_map(|m| match &m.data {
                Some(metric::Data::Histogram(h)) => h
                    .data_points
                    .iter()
                    .flat_map(|p| p.exemplars.iter().map(|e| e.trace_id.clone()))
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        assert!(!exemplar_ids.is_empty() && exemplar_ids.is_subset(&round_traces));
    }
}
