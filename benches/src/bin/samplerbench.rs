//! `sift-samplerbench`: the tail sampler's buffer and policies on the load generator's workload.
//!
//! Buffers N spans (whole traces), then decides every trace with 10 policies, on one thread, and
//! reports spans/s for buffering and deciding (which decodes each pending trace), the memory a
//! pending span holds (its share of the encoded request and origins) and what the buffer adds on
//! top (counted by a counting allocator, not RSS).
//!
//! cargo run --release -p sift-benches --bin sift-samplerbench -- --spans 1000000

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use prost::Message as _;
use serde_json::json;
use sift_benches::{generate, Rng, Shape};
use sift_collector::after_wal::tail_sampling::buffer::{Buffer, Limits};
use sift_collector::after_wal::tail_sampling::policy::{build, decide};
use sift_collector::after_wal::tail_sampling::trace::{encoded_spans, EncodedSpan};
use sift_config::TailSamplingConfig;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Parser)]
struct Args {
    /// Spans to buffer and decide.
    #[arg(long, default_value_t = 1_000_000)]
    spans: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let policies = TailSamplingConfig::parse_policies(
        json!([
            {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
            {"name": "slow", "type": "latency", "latency": {"threshold_ms": 500}},
            {"name": "pay", "type": "string_attribute", "string_attribute": {"key": "http.route", "values": ["/pay"]}},
            {"name": "regex", "type": "string_attribute", "string_attribute": {"key": "http.route", "values": ["/items/.*"], "enabled_regex_matching": true}},
            {"name": "5xx", "type": "numeric_attribute", "numeric_attribute": {"key": "http.status_code", "min_value": 500, "max_value": 599}},
            {"name": "flag", "type": "boolean_attribute", "boolean_attribute": {"key": "feature.flag", "value": true}},
            {"name": "big", "type": "span_count", "span_count": {"min_spans": 25}},
            {"name": "budget", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 1000}},
            {"name": "both", "type": "and", "and": {"and_sub_policy": [
                {"name": "e", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
                {"name": "p", "type": "string_attribute", "string_attribute": {"key": "http.route", "values": ["/pay"]}}]}},
            {"name": "rest", "type": "probabilistic", "probabilistic": {"sampling_percentage": 10}}
        ]),
        "policies",
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let policies: Vec<_> = policies.iter().map(build).collect();

    // The spans, as the sampler gets them from the WAL: slices of the encoded request, with a
    // shared (decoded) origin per scope.
    let mut rng = Rng::new(7);
    let mut spans = Vec::with_capacity(args.spans);
    let mut encoded = 0usize;
    let before_spans = LIVE.load(Ordering::Relaxed);
    while spans.len() < args.spans {
        let request = generate(&mut rng, 4096, &Shape::default()).traces;
        let body = bytes::Bytes::from(request.encode_to_vec());
        encoded += body.len();
        spans.extend(encoded_spans(&body).map_err(|_| anyhow::anyhow!("undecodable request"))?);
    }
    let n = spans.len();
    let span_bytes =
        LIVE.load(Ordering::Relaxed) - before_spans - spans.capacity() * std::mem::size_of::<EncodedSpan>();

    let mut buffer = Buffer::new(Limits {
        decision_wait: Duration::from_secs(3600),
        after_root: None,
        max_traces: usize::MAX,
        max_trace_bytes: usize::MAX,
        max_total_bytes: usize::MAX,
    });
    let before_buffer = LIVE.load(Ordering::Relaxed);
    let now = Instant::now();
    let started = Instant::now();
    for (i, span) in spans.into_iter().enumerate() {
        buffer.insert(span, i as u64, now);
    }
    let insert_time = started.elapsed();
    // `spans` (the Vec) is gone; what remains beyond `before_buffer` minus its allocation is the
    // buffer's own overhead, the spans' structs having moved into it.
    let after_buffer = LIVE.load(Ordering::Relaxed);
    let vec_bytes = n * std::mem::size_of::<EncodedSpan>();
    let overhead = (after_buffer + vec_bytes).saturating_sub(before_buffer) as f64 / n as f64;
    let traces = buffer.len();

    let started = Instant::now();
    let due = buffer.take_due(now + Duration::from_secs(7200));
    let mut kept = 0usize;
    for (_, pending, _) in &due {
        if decide(&policies, &pending.trace(), Instant::now()).sampled {
            kept += 1;
        }
    }
    let decide_time = started.elapsed();
    println!(
        "{}",
        json!({
            "spans": n,
            "traces": traces,
            "kept_traces": kept,
            "buffer_spans_per_s": n as f64 / insert_time.as_secs_f64(),
            "decide_spans_per_s": n as f64 / decide_time.as_secs_f64(),
            "buffer_and_decide_spans_per_s": n as f64 / (insert_time + decide_time).as_secs_f64(),
            "encoded_bytes_per_span": encoded as f64 / n as f64,
            "held_bytes_per_span": span_bytes as f64 / n as f64,
            "buffer_overhead_bytes_per_span": overhead,
        })
    );
    Ok(())
}
