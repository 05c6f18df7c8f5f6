//! The store's hot stages on small seeded datasets: appending + flushing a batch of spans,
//! trace-by-id, logs by trace, full-text log search; and the tail sampler's insert + decide.
//! (`sift-storebench` and `sift-samplerbench` measure the same at scale.)

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;
use serde_json::json;
use sift_benches::{generate, Rng, Shape};
use sift_collector::after_wal::tail_sampling::buffer::{Buffer, Limits};
use sift_collector::after_wal::tail_sampling::policy::{build, decide};
use sift_collector::after_wal::tail_sampling::trace::encoded_spans;
use sift_config::TailSamplingConfig;
use sift_proto::SignalKind;
use sift_storage::{LocalStore, LogSearch, Store, StoreOptions, TimeRange};
use sift_wal::WalEntry;

fn entry(signal: SignalKind, body: Vec<u8>) -> WalEntry {
    WalEntry {
        kind: sift_wal::EntryKind::Received,
        signal,
        pipeline: "p".into(),
        items: 0,
        body: Bytes::from(body),
    }
}

fn storage(c: &mut Criterion) {
    let mut rng = Rng::new(11);
    let batch = generate(&mut rng, 4096, &Shape::default());
    let mut group = c.benchmark_group("storage");
    group.throughput(Throughput::Elements(4096));
    group.bench_function("append_and_flush_4096_spans", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = LocalStore::open(dir.path(), StoreOptions::default()).unwrap();
                (dir, store, entry(SignalKind::Traces, batch.traces.encode_to_vec()))
            },
            |(dir, store, e)| {
                store.append(1, &[e]).unwrap();
                store.flush().unwrap();
                drop(dir);
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    // A store of ~200k spans and ~100k logs in parts.
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), StoreOptions::default()).unwrap();
    let mut ids = Vec::new();
    for i in 0..50u64 {
        let g = generate(&mut rng, 4096, &Shape::default());
        ids.push(<[u8; 16]>::try_from(g.traces.resource_spans[0].scope_spans[0].spans[0].trace_id.as_slice()).unwrap());
        store
            .append(
                i + 1,
                &[
                    entry(SignalKind::Traces, g.traces.encode_to_vec()),
                    entry(SignalKind::Logs, g.logs.encode_to_vec()),
                ],
            )
            .unwrap();
    }
    store.flush().unwrap();
    let mut lookups = c.benchmark_group("lookups_200k_spans_100k_logs");
    let mut i = 0;
    lookups.bench_function("trace_by_id", |b| {
        b.iter(|| {
            i += 1;
            store.trace(&ids[i % ids.len()], &TimeRange::ALL).unwrap()
        })
    });
    lookups.bench_function("logs_by_trace", |b| {
        b.iter(|| {
            i += 1;
            store.logs_by_trace(&ids[i % ids.len()], &TimeRange::ALL).unwrap()
        })
    });
    lookups.bench_function("log_search_100_newest", |b| {
        b.iter(|| {
            store
                .search_logs(&LogSearch {
                    query: "\"timed out\" AND /pay".into(),
                    limit: 100,
                    ..LogSearch::default()
                })
                .unwrap()
        })
    });
    lookups.finish();
}

fn sampler(c: &mut Criterion) {
    let policies = TailSamplingConfig::parse_policies(
        json!([
            {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
            {"name": "slow", "type": "latency", "latency": {"threshold_ms": 500}},
            {"name": "pay", "type": "string_attribute", "string_attribute": {"key": "http.route", "values": ["/pay"]}},
            {"name": "5xx", "type": "numeric_attribute", "numeric_attribute": {"key": "http.status_code", "min_value": 500, "max_value": 599}},
            {"name": "rest", "type": "probabilistic", "probabilistic": {"sampling_percentage": 10}}
        ]),
        "policies",
    )
    .unwrap();
    let policies: Vec<_> = policies.iter().map(build).collect();
    let request = bytes::Bytes::from(
        generate(&mut Rng::new(5), 4096, &Shape::default())
            .traces
            .encode_to_vec(),
    );
    let mut group = c.benchmark_group("sampler");
    group.throughput(Throughput::Elements(4096));
    group.bench_function("insert_and_decide_4096_spans_5_policies", |b| {
        b.iter_batched(
            || encoded_spans(&request).unwrap(),
            |spans| {
                let now = Instant::now();
                let mut buffer = Buffer::new(Limits {
                    decision_wait: Duration::ZERO,
                    after_root: None,
                    max_traces: usize::MAX,
                    max_trace_bytes: 0,
                    max_total_bytes: usize::MAX,
                });
                for (i, span) in spans.into_iter().enumerate() {
                    buffer.insert(span, i as u64, now);
                }
                buffer
                    .take_due(now)
                    .iter()
                    .filter(|(_, p, _)| decide(&policies, &p.trace(), now).sampled)
                    .count()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, storage, sampler);
criterion_main!(benches);
