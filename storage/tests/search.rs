//! Full-text log search returns exactly what a scan of the same records returns: the `limit`
//! newest matches in the range, newest first, whatever index segments the records were committed
//! in and in whatever order their times arrived (a segment's newest record decides whether it is
//! read at all, so late records and out-of-order batches are what this exercises). Full-text
//! trace search applies its other filters before the limit. Trace search by service, status and
//! name returns what a brute-force pass over every span returns, with spans in heads, in parts,
//! traces split across parts, and after a restart.

mod common;

use std::time::Duration;

use common::{log_entry, span_entry, span_entry_of, text, trace_id, BASE};
use proptest::prelude::*;
use sift_proto::otlp::logs::v1::LogRecord;
use sift_proto::otlp::trace::v1::{status, Span, Status};
use sift_storage::{LocalStore, LogSearch, Store, StoreOptions, TimeRange, TraceFilter};
use sift_wal::WalEntry;

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

const SERVICES: [&str; 2] = ["cart", "pay"];
/// Names whose words overlap: the index matches "GET /cart" in a trace that has only
/// "GET /cart/items", and the spans must decide.
const NAMES: [&str; 3] = ["GET /cart", "GET /cart/items", "SELECT orders"];

/// A span of a generated batch: (trace, service, name, status code, offset in the hour in ms).
type SpanSpec = (u64, usize, usize, i32, u64);

/// The `limit` traces with the newest span passing `filter`, newest first, by brute force.
fn scan(all: &[(SpanSpec, u64)], filter: &TraceFilter) -> Vec<([u8; 16], u64)> {
    let mut newest: std::collections::HashMap<[u8; 16], u64> = std::collections::HashMap::new();
    for &((trace, service, name, status, _), time) in all {
        let passes = filter.range.contains(time)
            && filter.service.as_deref().is_none_or(|s| s == SERVICES[service])
            && filter.name.as_deref().is_none_or(|n| n == NAMES[name])
            && filter.status.is_none_or(|s| s == status);
        if passes {
            let t = newest.entry(trace_id(trace)).or_insert(time);
            *t = (*t).max(time);
        }
    }
    let mut traces: Vec<([u8; 16], u64)> = newest.into_iter().collect();
    traces.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    traces.truncate(filter.limit);
    traces
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn trace_search_by_service_status_and_name_returns_what_a_scan_finds(
        // Batches of spans; a trace's spans may fall in several batches (late spans, a trace
        // split across parts). After a batch the head is flushed to a part, or the index
        // committed, or neither (the spans stay in the head, unindexed).
        batches in proptest::collection::vec(
            (
                proptest::collection::vec((0u64..12, 0usize..2, 0usize..3, 0i32..3, 0u64..3_000_000), 1..25),
                0u8..3,
            ),
            1..6,
        ),
        filters in proptest::collection::vec(
            (
                proptest::option::of(0usize..2),
                proptest::option::of(0i32..3),
                proptest::option::of(0usize..3),
                proptest::option::of((0u64..3_000_000, 0u64..3_000_000)),
                1usize..8,
            ),
            1..6,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store(dir.path());
        let mut all: Vec<(SpanSpec, u64)> = Vec::new();
        for (i, (batch, after)) in batches.iter().enumerate() {
            let mut by_service: [Vec<Span>; 2] = [Vec::new(), Vec::new()];
            for &spec in batch {
                let (trace, service, name, status, ms) = spec;
                // Distinct times: ties at the limit would make more than one answer right.
                let time = BASE + ms * 1_000_000 + all.len() as u64;
                all.push((spec, time));
                by_service[service].push(Span {
                    trace_id: trace_id(trace).to_vec(),
                    span_id: (all.len() as u64).to_be_bytes().to_vec(),
                    name: NAMES[name].into(),
                    start_time_unix_nano: time,
                    end_time_unix_nano: time + 1_000,
                    status: Some(Status { code: status, ..Default::default() }),
                    ..Default::default()
                });
            }
            let entries: Vec<WalEntry> = by_service
                .into_iter()
                .zip(SERVICES)
                .filter(|(spans, _)| !spans.is_empty())
                .map(|(spans, service)| span_entry_of(service, spans))
                .collect();
            store.append(i as u64 + 1, &entries).unwrap();
            match after {
                0 => {
                    store.flush().unwrap();
                }
                1 => {
                    store.refresh().unwrap();
                }
                _ => {}
            }
        }
        let filters: Vec<TraceFilter> = filters
            .iter()
            .map(|&(service, status, name, window, limit)| TraceFilter {
                query: None,
                service: service.map(|s| SERVICES[s].to_owned()),
                name: name.map(|n| NAMES[n].to_owned()),
                status,
                attributes: Vec::new(),
                range: match window {
                    Some((a, b)) => TimeRange {
                        start: Some(BASE + a.min(b) * 1_000_000),
                        end: Some(BASE + a.max(b) * 1_000_000),
                    },
                    None => TimeRange::ALL,
                },
                limit,
                row_budget: usize::MAX,
            })
            .collect();
        let check = |store: &LocalStore| -> Result<(), TestCaseError> {
            for filter in &filters {
                let hits = store.search_traces(filter).unwrap();
                let mut found = hits.traces.clone();
                found.truncate(filter.limit);
                prop_assert_eq!(found, scan(&all, filter), "{:?}", filter);
                prop_assert!(!hits.partial);
            }
            Ok(())
        };
        check(&store)?;
        // The same after everything is in parts, and after a restart.
        store.flush().unwrap();
        store.refresh().unwrap();
        check(&store)?;
        drop(store);
        store = self::store(dir.path());
        check(&store)?;
    }

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
