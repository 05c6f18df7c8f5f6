//! Cost of the redaction processor with the embedded default rules, on a realistic 512-span
//! request without secrets (the common case) and on one where every span carries one.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;
use sift_benches::{traces_request, Rng};
use sift_collector::processor::redaction::Redactor;
use sift_config::{ComponentId, Config, ProcessorConfig};
use sift_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use sift_proto::Traces;

fn default_redactor() -> Redactor {
    let config = Config::embedded_default();
    let ProcessorConfig::Redaction(rules) = &config.processors[&ComponentId::parse("redaction").unwrap()] else {
        panic!("not a redaction processor")
    };
    Redactor::new(rules)
}

fn redaction(c: &mut Criterion) {
    let redactor = default_redactor();
    let clean = traces_request(&mut Rng::new(3), 512);
    let mut dirty = clean.clone();
    for span in &mut dirty.resource_spans[0].scope_spans[0].spans {
        span.attributes.push(KeyValue {
            key: "note".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(
                    "card 4111 1111 1111 1111 from bob@corp.io".into(),
                )),
            }),
            ..Default::default()
        });
    }
    let mut group = c.benchmark_group("redaction_default_rules_512_spans");
    group.throughput(Throughput::Bytes(clean.encoded_len() as u64));
    group.bench_function("clean", |b| {
        b.iter_batched(
            || clean.clone(),
            |mut r| redactor.redact::<Traces>(&mut r),
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Bytes(dirty.encoded_len() as u64));
    group.bench_function("secret_in_every_span", |b| {
        b.iter_batched(
            || dirty.clone(),
            |mut r| redactor.redact::<Traces>(&mut r),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, redaction);
criterion_main!(benches);
