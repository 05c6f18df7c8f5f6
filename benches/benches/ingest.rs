//! Criterion benches of the ingest hot path: OTLP decode (protobuf, JSON), the validating scan
//! that replaces decoding when no processor needs the fields, and WAL append.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;
use sift_benches::{traces_request, Rng};
use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sift_proto::{Signal, Traces};

fn decode(c: &mut Criterion) {
    let request = traces_request(&mut Rng::new(1), 512);
    let protobuf = request.encode_to_vec();
    let json = Traces::encode_json(&request).to_string().into_bytes();
    let mut group = c.benchmark_group("decode_512_spans");
    group.throughput(Throughput::Elements(512));
    group.bench_function("protobuf", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(protobuf.as_slice()).unwrap())
    });
    group.bench_function("protobuf_scan", |b| {
        b.iter(|| sift_proto::wire::scan(Traces::KIND, &protobuf).unwrap())
    });
    group.bench_function("json", |b| b.iter(|| Traces::decode_json(&json).unwrap()));
    group.bench_function("reject_invalid+count", |b| {
        b.iter_batched(
            || request.clone(),
            |mut r| {
                Traces::reject_invalid(&mut r);
                Traces::item_count(&r)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn wal_append(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wal = sift_wal::Wal::open(
        dir.path(),
        sift_wal::WalOptions {
            max_bytes: 1 << 40,
            segment_bytes: 64 << 20,
            queue_depth: 4096,
        },
    )
    .unwrap();
    let appender = wal.appender();
    let payload = bytes::Bytes::from(traces_request(&mut Rng::new(2), 512).encode_to_vec());
    let mut group = c.benchmark_group("wal_append_512_spans");
    group.throughput(Throughput::Elements(512 * 16));
    group.sample_size(20);
    group.bench_function("16_concurrent_appends_group_commit", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let tasks: Vec<_> = (0..16)
                    .map(|_| {
                        let appender = appender.clone();
                        let payload = payload.clone();
                        tokio::spawn(async move { appender.append(payload).await.unwrap() })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            })
        })
    });
    group.finish();
    // The WAL is never consumed here: keep it from growing past the benchmark's needs.
    drop(wal);
}

criterion_group!(benches, decode, wal_append);
criterion_main!(benches);
