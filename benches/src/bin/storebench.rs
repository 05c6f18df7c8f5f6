//! `sift-storebench`: the storage engine on a realistic dataset (issue: storage benchmarks).
//!
//! Generates N spans and N log records (seeded, the load generator's workload: 1–30 spans per
//! trace, 5–15 attributes, logs inside spans) and, with `--points`, metric points (counters and
//! histograms per service and route, running totals) spread over one closed hour (one partition per
//! table), ingests them into a fresh store the way the storage exporter does (`write` per batch,
//! flushing when the head is due; `tick` every second; retention and compaction on a thread of
//! their own, as the exporter's maintenance task), then measures lookups and searches on the
//! result. Generation is not timed; writing is (ticks included). Every tenth of the spans and logs it prints
//! the ingest rate over that tenth, so the cost of a row at 100M can be compared with its cost
//! at the first million.
//!
//! cargo run --release -p sift-benches --bin sift-storebench -- --spans 10000000 --logs 10000000 --points 1000000

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use prost::Message as _;
use sift_benches::{generate, Generated, Rng, RunningTotals, Shape};
use sift_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sift_proto::SignalKind;
use sift_storage::{LocalStore, LogSearch, Store, StoreOptions, Table, TimeRange};
use sift_wal::WalEntry;

#[derive(Parser)]
struct Args {
    /// Spans to store.
    #[arg(long, default_value_t = 1_000_000)]
    spans: usize,
    /// Log records to store.
    #[arg(long, default_value_t = 1_000_000)]
    logs: usize,
    /// Metric points to store: request counters and latency histograms per service and route, as
    /// running totals, filling at the pace of the other tables over the same hour.
    #[arg(long, default_value_t = 0)]
    points: usize,
    /// Store directory (default: a temporary directory, deleted afterwards).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Lookups and searches to time.
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

const BATCH_SPANS: usize = 4096;
/// Points in one slice's metrics (a counter and a histogram for each of 5 routes).
const POINTS_PER_SET: u64 = 10;

fn shift(generated: &mut Generated, delta: i64) {
    let s = |t: &mut u64| *t = t.saturating_add_signed(delta);
    for rs in &mut generated.traces.resource_spans {
        for ss in &mut rs.scope_spans {
            for span in &mut ss.spans {
                s(&mut span.start_time_unix_nano);
                s(&mut span.end_time_unix_nano);
            }
        }
    }
    for rl in &mut generated.logs.resource_logs {
        for sl in &mut rl.scope_logs {
            for log in &mut sl.log_records {
                s(&mut log.time_unix_nano);
                s(&mut log.observed_time_unix_nano);
            }
        }
    }
}

fn first_start(generated: &Generated) -> u64 {
    generated.traces.resource_spans[0].scope_spans[0]
        .spans
        .first()
        .map_or(0, |s| s.start_time_unix_nano)
}

struct Percentiles(Vec<Duration>);

impl Percentiles {
    fn at(&mut self, q: f64) -> f64 {
        self.0.sort();
        let i = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len()) - 1;
        self.0[i].as_secs_f64() * 1e3
    }
}

fn time_each(n: usize, mut f: impl FnMut(usize)) -> Percentiles {
    Percentiles(
        (0..n)
            .map(|i| {
                let started = Instant::now();
                f(i);
                started.elapsed()
            })
            .collect(),
    )
}

/// Resident and peak memory of this process, in MiB (Linux; 0 elsewhere).
fn memory_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let temp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let store = std::sync::Arc::new(LocalStore::open(&dir, StoreOptions::default())?);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    // The last closed hour: every row lands in one partition per table.
    let hour = 3_600_000_000_000u64;
    let window_start = (now / hour - 1) * hour;
    let batches = (args.spans + args.logs * 2).div_ceil(BATCH_SPANS);
    let mut rng = Rng::new(42);
    let mut position = 0u64;
    let (mut span_rows, mut log_rows, mut point_rows) = (0u64, 0u64, 0u64);
    let (mut span_bytes, mut log_bytes, mut point_bytes) = (0u64, 0u64, 0u64);
    let (mut span_time, mut log_time, mut point_time) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut totals = RunningTotals::default();
    let mut sample_traces: Vec<[u8; 16]> = Vec::new();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let maintenance = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                store.maintain_if_due();
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let total_rows = (args.spans + args.logs) as u64;
    let step = total_rows.div_ceil(10).max(1);
    let (mut step_rows, mut step_time) = (0u64, Duration::ZERO);
    let mut steps = Vec::new();
    let mut last_tick = Instant::now();
    let mut write = |signal: SignalKind, body: Vec<u8>, position: u64| -> anyhow::Result<(u64, Duration)> {
        let entry = WalEntry {
            kind: sift_wal::EntryKind::Received,
            signal,
            pipeline: signal.as_str().into(),
            items: 0,
            body: Bytes::from(body),
        };
        let started = Instant::now();
        let added = store.write(position, vec![(position, entry)])?;
        if last_tick.elapsed() >= Duration::from_secs(1) {
            store.tick();
            last_tick = Instant::now();
        }
        Ok((added.values().sum(), started.elapsed()))
    };
    for b in 0..batches {
        let mut generated = generate(&mut rng, BATCH_SPANS, &Shape::default());
        let target = window_start + (b as u64 * hour) / batches as u64;
        let delta = target as i64 - first_start(&generated) as i64;
        shift(&mut generated, delta);
        let before = span_rows + log_rows;
        // A batch has half as many log records as spans: spans skip batches so that both tables
        // fill at the same pace and every tenth has the same mix.
        let spans_ahead = span_rows as u128 * args.logs as u128 > log_rows as u128 * args.spans as u128;
        if (span_rows as usize) < args.spans && !spans_ahead {
            if let Some(span) = generated.traces.resource_spans[0].scope_spans[0].spans.get(b % 7) {
                if sample_traces.len() < 100_000 && b % 3 == 0 {
                    sample_traces.push(span.trace_id.as_slice().try_into()?);
                }
            }
            let body = generated.traces.encode_to_vec();
            span_bytes += body.len() as u64;
            position += 1;
            let (rows, took) = write(SignalKind::Traces, body, position)?;
            span_rows += rows;
            span_time += took;
            step_time += took;
        }
        if (log_rows as usize) < args.logs {
            let body = generated.logs.encode_to_vec();
            log_bytes += body.len() as u64;
            position += 1;
            let (rows, took) = write(SignalKind::Logs, body, position)?;
            log_rows += rows;
            log_time += took;
            step_time += took;
        }
        // Metric points keep pace with the rows of both tables: as many copies of the slice's
        // points (a counter and a histogram per route) as it takes, spread over the batch's share
        // of the hour.
        let points_due = (args.points as u128 * (span_rows + log_rows) as u128 / total_rows.max(1) as u128) as u64;
        let sets = points_due
            .min(args.points as u64)
            .saturating_sub(point_rows)
            .div_ceil(POINTS_PER_SET);
        if sets > 0 {
            let slot = hour / batches as u64;
            let mut request = ExportMetricsServiceRequest::default();
            for set in 0..sets {
                let mut points = generated.metrics.clone();
                let at = target + set * slot / sets;
                totals.add(&mut points, window_start, at);
                request.resource_metrics.extend(points.resource_metrics);
            }
            let body = request.encode_to_vec();
            point_bytes += body.len() as u64;
            position += 1;
            let (rows, took) = write(SignalKind::Metrics, body, position)?;
            point_rows += rows;
            point_time += took;
        }
        step_rows += span_rows + log_rows - before;
        let done = span_rows as usize >= args.spans && log_rows as usize >= args.logs;
        if step_rows >= step || done {
            let layout = store.layout();
            let (rss, peak) = memory_mib();
            let line = serde_json::json!({
                "rows": span_rows + log_rows,
                "points": point_rows,
                "rows_per_s": step_rows as f64 / step_time.as_secs_f64(),
                "parts": layout.parts.values().max().copied().unwrap_or(0),
                "index_segments": layout.index_segments.values().max().copied().unwrap_or(0),
                "merges_started": store.merge_stats().started,
                "rss_mib": rss,
                "peak_rss_mib": peak,
            });
            eprintln!("{line}");
            steps.push(line);
            (step_rows, step_time) = (0, Duration::ZERO);
        }
        if done {
            break;
        }
    }
    let started = Instant::now();
    store.flush()?;
    let last_flush = started.elapsed();
    span_time += last_flush / 2;
    log_time += last_flush / 2;
    stop.store(true, std::sync::atomic::Ordering::Release);
    maintenance
        .join()
        .map_err(|_| anyhow::anyhow!("maintenance thread panicked"))?;
    let disk = store.disk_bytes();

    // Lookups: warm the page cache and footers once, then time.
    let queries = args.queries.min(sample_traces.len());
    for id in sample_traces.iter().take(queries) {
        store.trace(id, &TimeRange::ALL)?;
    }
    let mut found = 0usize;
    let mut trace_ms = time_each(queries, |i| {
        found += usize::from(!store.trace(&sample_traces[i], &TimeRange::ALL).unwrap().is_empty());
    });
    let mut logs_ms = time_each(queries, |i| {
        store.logs_by_trace(&sample_traces[i], &TimeRange::ALL).unwrap();
    });
    let words = [
        "timed out",
        "order",
        "\"POST /pay\"",
        "upstream AND checkout",
        "/cart",
        "ms AND NOT ERROR",
        "handled",
        "12345",
    ];
    let mut hits = 0usize;
    let mut search_ms = time_each(queries, |i| {
        let search = LogSearch {
            query: words[i % words.len()].to_owned(),
            limit: 100,
            ..LogSearch::default()
        };
        hits += store.search_logs(&search).unwrap().len();
    });
    let report = serde_json::json!({
        "spans": span_rows,
        "logs": log_rows,
        "points": point_rows,
        "ingest_spans_per_s": span_rows as f64 / span_time.as_secs_f64(),
        "ingest_logs_per_s": log_rows as f64 / log_time.as_secs_f64(),
        "disk_bytes_per_span": disk.get(&Table::Spans).copied().unwrap_or(0) as f64 / span_rows.max(1) as f64,
        "protobuf_bytes_per_span": span_bytes as f64 / span_rows.max(1) as f64,
        "disk_bytes_per_log": disk.get(&Table::Logs).copied().unwrap_or(0) as f64 / log_rows.max(1) as f64,
        "protobuf_bytes_per_log": log_bytes as f64 / log_rows.max(1) as f64,
        "ingest_points_per_s": point_rows as f64 / point_time.as_secs_f64().max(1e-9),
        "disk_bytes_per_point": disk.get(&Table::Metrics).copied().unwrap_or(0) as f64 / point_rows.max(1) as f64,
        "protobuf_bytes_per_point": point_bytes as f64 / point_rows.max(1) as f64,
        "trace_by_id_ms": { "p50": trace_ms.at(0.5), "p99": trace_ms.at(0.99), "found": found, "queries": queries },
        "logs_by_trace_ms": { "p50": logs_ms.at(0.5), "p99": logs_ms.at(0.99) },
        "log_search_ms": { "p50": search_ms.at(0.5), "p99": search_ms.at(0.99), "hits": hits },
        "peak_rss_mib": memory_mib().1,
        "ingest_by_tenth": steps,
    });
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
