//! Compaction under real crashes: a child process (this test binary, run again) compacts a store
//! of many small parts and is killed with SIGKILL at moments spread over the run; after each kill
//! the store reopens with every span, log record and point exactly once, and full-text searches
//! (whose documents name parts that were merged away) find each record once.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{logs, points, spans, trace_id, BASE};
use sift_storage::{LocalStore, LogSearch, Store, StoreOptions, Table, TimeRange};
use sift_wal::WalEntry;

/// Flushes (parts per table) written before compaction starts.
const PARTS: u64 = 48;
/// Rows per part and table.
const ROWS: u64 = 40;
const CHILD: &str = "SIFT_COMPACTION_CHILD";

/// One span, one log record (`order shipped word<n>`) and one point for each n in `rows`.
fn entries(rows: std::ops::Range<u64>) -> Vec<WalEntry> {
    vec![spans(rows.clone()), logs(rows.clone()), points(rows)]
}

fn options() -> StoreOptions {
    StoreOptions {
        flush_interval: Duration::from_secs(3600),
        compact_parts: 2,
        // Copy row groups, as merges of production-sized parts do.
        compact_rewrite_rows: 0,
        ..StoreOptions::default()
    }
}

fn parts(store: &LocalStore, table: Table) -> usize {
    store
        .layout()
        .parts
        .iter()
        .filter(|((t, _), _)| *t == table)
        .map(|(_, n)| n)
        .sum()
}

fn log_hits(store: &LocalStore, query: &str, limit: usize) -> Vec<u64> {
    let mut times: Vec<u64> = store
        .search_logs(&LogSearch {
            query: query.into(),
            limit,
            ..LogSearch::default()
        })
        .unwrap()
        .iter()
        .map(|r| r.log.time_unix_nano)
        .collect();
    times.sort_unstable();
    times
}

/// Every row is stored exactly once and found by every way of reading it.
fn assert_exact(store: &LocalStore) {
    let total = PARTS * ROWS;
    // Lookups by trace id over a sample (the searches below cover every record).
    for n in (0..total).step_by(7).chain([ROWS - 1, ROWS, total - 1]) {
        let spans = store.trace(&trace_id(n), &TimeRange::ALL).unwrap();
        assert_eq!(spans.len(), 1, "trace {n}: {} spans", spans.len());
        assert_eq!(spans[0].span.name, format!("GET /item/{n}"));
        let logs = store.logs_by_trace(&trace_id(n), &TimeRange::ALL).unwrap();
        assert_eq!(logs.len(), 1, "trace {n}: {} log records", logs.len());
    }
    // Full text: every record once, each at its own place (documents resolved through merges).
    let all = log_hits(store, "shipped", 10_000);
    let expected: Vec<u64> = (0..total).map(|n| BASE + n * 1000).collect();
    assert_eq!(all, expected, "a search for every record");
    for n in [0, ROWS - 1, ROWS, total / 2 + 3, total - 1] {
        assert_eq!(
            log_hits(store, &format!("word{n}"), 10),
            vec![BASE + n * 1000],
            "word{n}"
        );
    }
    let hits = store
        .search_traces(&sift_storage::TraceFilter {
            query: Some(format!("\"/item/{}\"", total - 2)),
            service: None,
            name: None,
            status: None,
            attributes: Vec::new(),
            range: TimeRange::ALL,
            limit: 5,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(hits.traces.len(), 1, "span full-text search");
    let (points, _) = store.metric_points("queue.depth", &TimeRange::ALL, 100_000).unwrap();
    let mut times: Vec<u64> = points.iter().map(sift_storage::point_time).collect();
    times.sort_unstable();
    assert_eq!(times, expected, "every point once");
}

/// The child: opens the store, says so, and compacts it.
fn child(dir: &Path) {
    let store = LocalStore::open(dir, options()).unwrap();
    println!("compacting");
    store.compact().unwrap();
    println!("done");
}

#[test]
fn a_sigkill_during_compaction_loses_and_duplicates_nothing() {
    if let Ok(dir) = std::env::var(CHILD) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let store = LocalStore::open(dir.path(), options()).unwrap();
        for i in 0..PARTS {
            store.append(i + 1, &entries(i * ROWS..(i + 1) * ROWS)).unwrap();
            store.flush().unwrap();
        }
        store.refresh().unwrap();
        assert_eq!(parts(&store, Table::Spans), PARTS as usize);
        assert_exact(&store);
    }
    let mut partly = 0;
    // Kills spread from the start of compaction to (most likely) past its end.
    for delay_ms in [0, 2, 5, 10, 20, 40, 80, 160, 320] {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_sigkill_during_compaction_loses_and_duplicates_nothing",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let started = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("compacting"));
        assert!(started, "the child did not start compacting");
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store = LocalStore::open(dir.path(), options()).unwrap();
        let spans = parts(&store, Table::Spans);
        if spans > 1 && spans < PARTS as usize {
            partly += 1;
        }
        assert_exact(&store);
        for entry in std::fs::read_dir(dir.path().join("spans")).unwrap().flatten() {
            for file in std::fs::read_dir(entry.path()).unwrap().flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                assert!(!name.ends_with(".tmp"), "a half-written part was left: {name}");
            }
        }
    }
    assert!(partly > 0, "no kill landed while compaction was under way");

    let store = LocalStore::open(dir.path(), options()).unwrap();
    store.compact().unwrap();
    for table in [Table::Spans, Table::Logs, Table::Metrics] {
        assert_eq!(parts(&store, table), 1, "{table:?} compacted into one part");
    }
    assert_exact(&store);
    drop(store);
    let store = LocalStore::open(dir.path(), options()).unwrap();
    assert_exact(&store);
}

fn span_part_files(dir: &Path) -> usize {
    let mut n = 0;
    for partition in std::fs::read_dir(dir.join("spans")).unwrap().flatten() {
        for file in std::fs::read_dir(partition.path()).unwrap().flatten() {
            n += usize::from(file.file_name().to_string_lossy().ends_with(".parquet"));
        }
    }
    n
}

#[test]
fn merged_away_parts_stay_for_older_reads_and_go_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), options()).unwrap();
    for i in 0..4 {
        store.append(i + 1, &entries(i * ROWS..(i + 1) * ROWS)).unwrap();
        store.flush().unwrap();
    }
    assert!(store.compact().unwrap() > 0);
    assert_eq!(parts(&store, Table::Spans), 1);
    // A read that took its snapshot before the merge may still open the sources.
    assert!(span_part_files(dir.path()) >= 5, "the sources are still on disk");
    drop(store);
    let store = LocalStore::open(dir.path(), options()).unwrap();
    assert_eq!(
        span_part_files(dir.path()),
        1,
        "the sources are removed at the next start"
    );
    assert_eq!(log_hits(&store, "shipped", 1000).len(), 4 * ROWS as usize);
}
