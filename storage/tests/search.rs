//! Full-text log search returns exactly what a scan of the same records returns: the `limit`
//! newest matches in the range, newest first, whatever index segments the records were committed
//! in and in whatever order their times arrived (a segment's newest record decides whether it is
//! read at all, so late records and out-of-order batches are what this exercises). Full-text
//! trace search applies its other filters before the limit. Trace search by service, status,
//! name, attribute, duration and time range returns what a brute-force pass over every span
//! returns (the traces and their summaries), with spans in heads, in parts, traces split across
//! parts and index documents, after a restart and after the index is rebuilt.

mod common;

use std::time::Duration;

use common::{log_entry, span_entry, span_entry_of, text, trace_id, BASE};
use proptest::prelude::*;
use sift_proto::otlp::common::v1::KeyValue;
use sift_proto::otlp::logs::v1::LogRecord;
use sift_proto::otlp::trace::v1::{status, Span, Status};
use sift_storage::{LocalStore, LogSearch, Store, StoreOptions, TimeRange, TraceFilter, TraceSummary};
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

/// Log searches and what they mean for a body's words (bodies hold the words in `WORDS` order).
type LogQuery = (&'static str, fn(&[&str]) -> bool);
const LOG_QUERIES: [LogQuery; 7] = [
    ("alpha", |w| w.contains(&"alpha")),
    ("gamma", |w| w.contains(&"gamma")),
    ("\"alpha beta\"", |w| w.windows(2).any(|p| p == ["alpha", "beta"])),
    ("\"alpha gamma\"", |w| w.windows(2).any(|p| p == ["alpha", "gamma"])),
    ("\"beta alpha\"", |w| w.windows(2).any(|p| p == ["beta", "alpha"])),
    ("gamma NOT \"alpha beta\"", |w| {
        w.contains(&"gamma") && !w.windows(2).any(|p| p == ["alpha", "beta"])
    }),
    ("\"beta gamma\" OR alpha", |w| {
        w.contains(&"alpha") || w.windows(2).any(|p| p == ["beta", "gamma"])
    }),
];

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
        ..Default::default()
    };
    let hits = store.search_traces(&filter).unwrap();
    let found: Vec<[u8; 16]> = hits.traces.iter().map(|t| t.trace_id).collect();
    let expected: Vec<[u8; 16]> = [350, 300, 250, 200, 150].map(trace_id).to_vec();
    assert_eq!(found, expected);
    assert!(!hits.partial, "every match was within reach");
}

const SERVICES: [&str; 2] = ["cart", "pay"];
/// Names whose words overlap: the index matches "GET /cart" in a trace that has only
/// "GET /cart/items", and the spans must decide.
const NAMES: [&str; 3] = ["GET /cart", "GET /cart/items", "SELECT orders"];
/// A span's attribute (`None`: it has none): a key the index keeps whole values of
/// (`http.route`) and one whose values it keeps as words (`tier`).
const TIERS: [Option<(&str, &str)>; 5] = [
    None,
    Some(("tier", "gold")),
    Some(("tier", "gold plus")),
    Some(("http.route", "gold")),
    Some(("http.route", "/pay")),
];

/// A span of a generated batch: (trace, service, name, status code, offset in the hour in ms,
/// duration in ms, tier).
type SpanSpec = (u64, usize, usize, i32, u64, u64, usize);

/// What a search over `all` (spans with their start times) must answer, by brute force: the
/// traces that start in the range, last as long as the duration filters say and have one span
/// meeting every span-level filter, newest (by start) first, at most `limit`.
fn scan(all: &[(SpanSpec, u64)], filter: &TraceFilter) -> Vec<TraceSummary> {
    let mut traces: std::collections::BTreeMap<u64, Vec<&(SpanSpec, u64)>> = Default::default();
    for span in all {
        traces.entry(span.0 .0).or_default().push(span);
    }
    let mut out: Vec<TraceSummary> = traces
        .iter()
        .filter_map(|(&trace, spans)| {
            let start = spans.iter().map(|(_, t)| *t).min()?;
            let end = spans.iter().map(|((.., ms, _), t)| t + ms * 1_000_000).max()?;
            let one_span = spans.iter().any(|&&((_, service, name, status, _, _, tier), _)| {
                filter.service.as_deref().is_none_or(|s| s == SERVICES[service])
                    && filter.name.as_deref().is_none_or(|n| n == NAMES[name])
                    && filter.status.is_none_or(|s| s == status)
                    && filter
                        .attributes
                        .iter()
                        .all(|(k, v)| TIERS[tier] == Some((k.as_str(), v.as_str())))
            });
            let duration = end - start;
            let passes = one_span
                && filter.range.contains(start)
                && filter.min_duration.is_none_or(|m| duration >= m)
                && filter.max_duration.is_none_or(|m| duration <= m);
            let root = spans.iter().min_by_key(|(_, t)| *t)?;
            let services: std::collections::BTreeSet<String> =
                spans.iter().map(|((_, s, ..), _)| SERVICES[*s].to_owned()).collect();
            passes.then(|| TraceSummary {
                trace_id: trace_id(trace),
                root_service: SERVICES[root.0 .1].into(),
                root_name: NAMES[root.0 .2].into(),
                start,
                duration,
                span_count: spans.len() as u64,
                error_count: spans.iter().filter(|((_, _, _, status, ..), _)| *status == 2).count() as u64,
                services: services.into_iter().collect(),
            })
        })
        .collect();
    out.sort_by_key(|t| std::cmp::Reverse(t.start));
    out.truncate(filter.limit);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn trace_search_returns_what_a_scan_of_every_span_finds(
        // Batches of spans; a trace's spans may fall in several batches (late spans, a trace
        // split across parts and index documents). After a batch the head is flushed to a part,
        // or the index committed, or neither.
        batches in proptest::collection::vec(
            (
                proptest::collection::vec(
                    (0u64..12, 0usize..2, 0usize..3, 0i32..3, 0u64..7_000_000, 0u64..2_000, 0usize..5),
                    1..25,
                ),
                0u8..3,
            ),
            1..6,
        ),
        filters in proptest::collection::vec(
            (
                (
                    proptest::option::of(0usize..2),
                    proptest::option::of(0i32..3),
                    proptest::option::of(0usize..3),
                    proptest::option::of(1usize..5),
                ),
                proptest::option::of((0u64..7_000_000, 0u64..7_000_000)),
                (proptest::option::of(0u64..2_500), proptest::option::of(0u64..2_500)),
                1usize..8,
            ),
            1..8,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store(dir.path());
        // Distinct times: ties at the limit would make more than one answer right.
        let all: Vec<(SpanSpec, u64)> = batches
            .iter()
            .flat_map(|(batch, _)| batch)
            .enumerate()
            .map(|(n, &spec)| (spec, BASE + spec.4 * 1_000_000 + n as u64))
            .collect();
        // A trace's root is its earliest span, whichever batch brings it; the others are its
        // children.
        let mut roots: std::collections::HashMap<u64, (u64, usize)> = Default::default();
        for (n, ((trace, ..), time)) in all.iter().enumerate() {
            let root = roots.entry(*trace).or_insert((*time, n));
            if *time < root.0 {
                *root = (*time, n);
            }
        }
        let mut n = 0;
        for (i, (batch, after)) in batches.iter().enumerate() {
            let mut by_service: [Vec<Span>; 2] = [Vec::new(), Vec::new()];
            for &spec in batch {
                let (trace, service, name, status, _, duration_ms, tier) = spec;
                let time = all[n].1;
                n += 1;
                let root = roots[&trace].1 + 1;
                by_service[service].push(Span {
                    trace_id: trace_id(trace).to_vec(),
                    span_id: (n as u64).to_be_bytes().to_vec(),
                    parent_span_id: if root == n { Vec::new() } else { (root as u64).to_be_bytes().to_vec() },
                    name: NAMES[name].into(),
                    start_time_unix_nano: time,
                    end_time_unix_nano: time + duration_ms * 1_000_000,
                    status: Some(Status { code: status, ..Default::default() }),
                    attributes: TIERS[tier]
                        .map(|(k, v)| KeyValue { key: k.into(), value: text(v), ..Default::default() })
                        .into_iter()
                        .collect(),
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
            .map(|&((service, status, name, tier), window, (min, max), limit)| TraceFilter {
                service: service.map(|s| SERVICES[s].to_owned()),
                name: name.map(|n| NAMES[n].to_owned()),
                status,
                attributes: tier
                    .and_then(|t| TIERS[t])
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .into_iter()
                    .collect(),
                min_duration: min.map(|ms| ms * 1_000_000),
                max_duration: max.map(|ms| ms * 1_000_000),
                range: match window {
                    Some((a, b)) => TimeRange {
                        start: Some(BASE + a.min(b) * 1_000_000),
                        end: Some(BASE + a.max(b) * 1_000_000),
                    },
                    None => TimeRange::ALL,
                },
                limit,
                ..TraceFilter::default()
            })
            .collect();
        let check = |store: &LocalStore| -> Result<(), TestCaseError> {
            for filter in &filters {
                let hits = store.search_traces(filter).unwrap();
                prop_assert_eq!(&hits.traces, &scan(&all, filter), "{:?}", filter);
                prop_assert!(!hits.partial);
            }
            Ok(())
        };
        // Spans are searchable once their index documents are committed.
        store.refresh().unwrap();
        check(&store)?;
        // The same after everything is in parts, after a restart (the documents as written), and
        // after the index is rebuilt from the parts.
        store.flush().unwrap();
        store.refresh().unwrap();
        check(&store)?;
        drop(store);
        store = self::store(dir.path());
        check(&store)?;
        drop(store);
        for partition in dir.path().join("spans").read_dir().unwrap() {
            // Without its meta.json an index is missing: rebuilt from the parts.
            let meta = partition.unwrap().path().join("index").join("meta.json");
            if meta.exists() {
                std::fs::remove_file(meta).unwrap();
            }
        }
        store = self::store(dir.path());
        store.refresh().unwrap();
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
        asked in 0usize..LOG_QUERIES.len(),
        limit in 1usize..30,
        window in proptest::option::of((0u64..3_000_000, 0u64..3_000_000)),
    ) {
        let (query, means) = LOG_QUERIES[asked];
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
            .filter(|(time, body)| range.contains(*time) && means(&body.split(' ').collect::<Vec<_>>()))
            .map(|(time, _)| *time)
            .collect();
        expected.sort_unstable_by(|a, b| b.cmp(a));
        expected.truncate(limit);
        let found: Vec<u64> = store
            .search_logs(&LogSearch { query: query.into(), range, limit, ..LogSearch::default() })
            .unwrap()
            .iter()
            .map(|row| row.log.time_unix_nano)
            .collect();
        prop_assert_eq!(found, expected);
    }
}
