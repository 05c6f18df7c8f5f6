//! Full-text log search returns exactly what a scan of the same records returns: the `limit`
//! newest matches in the range, newest first, whatever index segments the records were committed
//! in and in whatever order their times arrived (a segment's newest record decides whether it is
//! read at all, so late records and out-of-order batches are what this exercises). Full-text
//! trace search applies its other filters before the limit.

mod common;

use std::time::Duration;

use common::{log_entry, span_entry, text, trace_id, BASE};
use proptest::prelude::*;
use sift_proto::otlp::logs::v1::LogRecord;
use sift_proto::otlp::trace::v1::{status, Span, Status};
use sift_storage::{LocalStore, LogSearch, Store, StoreOptions, TimeRange, TraceFilter};

const WORDS: [&str; 3] = ["alpha", "beta", "gamma"];

/// A record's body: the words whose bit is set in `mask`, and a number of its own.
fn body(mask: u8, n: usize) -> String {
    let mut words: Vec<String> = WORDS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, w)| (*w).to_owned())
        .collect();
    words.push(format!("n{n}"));
    words.join(" ")
}

fn store(dir: &std::path::Path) -> LocalStore {
    LocalStore::open(
        dir,
        StoreOptions {
            flush_interval: Duration::from_secs(3600),
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn full_text_trace_search_filters_before_the_limit() {
    // 400 traces whose one span says "checkout step"; every 50th failed. The 5 newest failed
    // traces are older than 300 traces that match the words but not the status.
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let spans: Vec<Span> = (0..400u64)
        .map(|n| Span {
            trace_id: trace_id(n).to_vec(),
            span_id: (n + 1).to_be_bytes().to_vec(),
            name: "checkout step".into(),
            start_time_unix_nano: BASE + n * 1_000_000,
            end_time_unix_nano: BASE + n * 1_000_000 + 500,
            status: (n % 50 == 0).then(|| Status {
                code: status::StatusCode::Error as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    store.append(1, &[span_entry(spans)]).unwrap();
    store.flush().unwrap();
    store.refresh().unwrap();
    let filter = TraceFilter {
        query: Some("checkout".into()),
        service: None,
        name: None,
        status: Some(2),
        attributes: Vec::new(),
        range: TimeRange::ALL,
        limit: 5,
        row_budget: usize::MAX,
    };
    let hits = store.search_traces(&filter).unwrap();
    let found: Vec<[u8; 16]> = hits.traces.iter().map(|(id, _)| *id).collect();
    let expected: Vec<[u8; 16]> = [350, 300, 250, 200, 150].map(trace_id).to_vec();
    assert_eq!(found, expected);
    assert!(!hits.partial, "every match was within reach");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn log_search_returns_the_newest_matches_a_scan_finds(
        // Batches of (offset in the hour in ms, word mask); each batch becomes a part and an
        // index segment of its own.
        batches in proptest::collection::vec(
            proptest::collection::vec((0u64..3_000_000, 0u8..8), 1..40),
            1..8,
        ),
        word in 0usize..WORDS.len(),
        limit in 1usize..30,
        window in proptest::option::of((0u64..3_000_000, 0u64..3_000_000)),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let mut all: Vec<(u64, String)> = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            let records = batch
                .iter()
                .map(|&(ms, mask)| {
                    let text_body = body(mask, all.len());
                    // Distinct times: ties at the limit would make more than one answer right.
                    let time = BASE + ms * 1_000_000 + all.len() as u64;
                    all.push((time, text_body.clone()));
                    LogRecord { time_unix_nano: time, severity_number: 9, body: text(&text_body), ..Default::default() }
                })
                .collect();
            store.append(i as u64 + 1, &[log_entry(records)]).unwrap();
            store.flush().unwrap();
            store.refresh().unwrap();
        }
        let range = match window {
            Some((a, b)) => TimeRange {
                start: Some(BASE + a.min(b) * 1_000_000),
                end: Some(BASE + a.max(b) * 1_000_000),
            },
            None => TimeRange::ALL,
        };
        let mut expected: Vec<u64> = all
            .iter()
            .filter(|(time, body)| range.contains(*time) && body.split(' ').any(|w| w == WORDS[word]))
            .map(|(time, _)| *time)
            .collect();
        expected.sort_unstable_by(|a, b| b.cmp(a));
        expected.truncate(limit);
        let found: Vec<u64> = store
            .search_logs(&LogSearch { query: WORDS[word].into(), range, limit, ..LogSearch::default() })
            .unwrap()
            .iter()
            .map(|row| row.log.time_unix_nano)
            .collect();
        prop_assert_eq!(found, expected);
    }
}
