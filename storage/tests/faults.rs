//! Every write step of the WAL and the store failing on a real full filesystem (a tmpfs this test
//! mounts, limited in bytes or in inodes), and damaged files read back: nothing acknowledged or
//! published is ever passed over, and work resumes by itself once space returns.
//!
//! Mounting needs root (as CI and the developer machines run). Elsewhere set
//! `SIFT_SKIP_MOUNT_TESTS=1` to skip these tests; they then say so on stderr.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;

use bytes::Bytes;
use common::{logs, points, spans, trace_id};
use sift_storage::{LocalStore, LogSearch, StorageError, Store, StoreOptions, Table, TimeRange};
use sift_wal::{AppendError, Wal, WalOptions};

/// A tmpfs mounted for one test, with a filler to take its space (or inodes) away and give it back.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// Mounts a tmpfs of `size` (and at most `inodes` files), or `None` when mounting is skipped.
    fn mount(size: &str, inodes: Option<u64>) -> Option<SmallFs> {
        if std::env::var_os("SIFT_SKIP_MOUNT_TESTS").is_some() {
            eprintln!("SIFT_SKIP_MOUNT_TESTS is set: skipping a full-disk test");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut options = format!("size={size}");
        if let Some(n) = inodes {
            options.push_str(&format!(",nr_inodes={n}"));
        }
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "these tests need to mount a small tmpfs (run as root), or set SIFT_SKIP_MOUNT_TESTS=1"
        );
        Some(SmallFs { dir })
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn filler(&self) -> PathBuf {
        self.dir.path().join("filler")
    }

    /// Takes every free byte.
    fn fill(&self) {
        std::fs::create_dir_all(self.filler()).unwrap();
        let mut file = std::fs::File::create(self.filler().join("bytes")).unwrap();
        for chunk in [1 << 16, 4096, 1] {
            let buf = vec![0xA5u8; chunk];
            while file.write_all(&buf).is_ok() {}
        }
    }

    /// Takes every free inode but `leave`.
    fn fill_inodes(&self, leave: usize) {
        std::fs::create_dir_all(self.filler()).unwrap();
        let mut made = Vec::new();
        for i in 0.. {
            let path = self.filler().join(format!("f{i}"));
            if std::fs::File::create(&path).is_err() {
                break;
            }
            made.push(path);
        }
        for path in made.iter().rev().take(leave) {
            std::fs::remove_file(path).unwrap();
        }
    }

    /// Gives everything back.
    fn free(&self) {
        std::fs::remove_dir_all(self.filler()).unwrap();
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// How long a failed flush or index rebuild waits before the store tries it again.
const RETRY: Duration = Duration::from_millis(2100);

fn options() -> StoreOptions {
    StoreOptions {
        flush_interval: Duration::from_secs(3600),
        ..StoreOptions::default()
    }
}

/// Asserts every trace in `traces` has exactly one stored span.
fn assert_traces(store: &LocalStore, traces: std::ops::Range<u64>) {
    for n in traces {
        let found = store.trace(&trace_id(n), &TimeRange::ALL).unwrap();
        assert_eq!(found.len(), 1, "trace {n}: {} spans stored", found.len());
    }
}

fn search(store: &LocalStore, query: &str) -> usize {
    common::logs_matching(store, query, 1000)
}

/// Every record in the WAL at `dir`, in order (reopening it).
/// The names (first 13 bytes) of test WAL records, for comparing what was stored with what was
/// acknowledged.
fn record_names(records: &[Bytes]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r[..13]).into_owned())
        .collect()
}

async fn read_wal(dir: &Path) -> Vec<Bytes> {
    let mut wal = Wal::open(dir, WalOptions::default()).unwrap();
    let mut consumer = wal.consumer("check");
    wal.close();
    let mut out = Vec::new();
    while let Some(batch) = consumer.next_batch(1 << 20).await.unwrap() {
        out.extend(batch.into_iter().map(|r| r.payload));
    }
    out
}

fn payload(i: usize) -> Bytes {
    let mut bytes = format!("record-{i:06}-").into_bytes();
    bytes.resize(20_000, b'x');
    Bytes::from(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_appends_on_a_full_disk_are_refused_then_resume_without_losing_or_duplicating() {
    let Some(fs) = SmallFs::mount("8m", None) else { return };
    let dir = fs.data().join("wal");
    let options = WalOptions {
        // A rotation every dozen records: some of the failures happen while starting a segment.
        segment_bytes: 256 << 10,
        ..WalOptions::default()
    };
    let wal = Wal::open(&dir, options).unwrap();
    let appender = wal.appender();
    let mut acked = Vec::new();
    for i in 0..30 {
        appender.append(payload(i)).await.unwrap();
        acked.push(payload(i));
    }
    fs.fill();
    let mut refused = 0;
    for i in 30..90 {
        match appender.append(payload(i)).await {
            Ok(_) => acked.push(payload(i)),
            Err(AppendError::Io(_)) => refused += 1,
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert!(refused >= 55, "only {refused} appends were refused on a full disk");
    let failure = wal.stats().write_failure().expect("the failure is reported");
    assert!(failure.disk_full, "{failure:?}");

    fs.free();
    // No restart: the next appends succeed by themselves, across rotations.
    for i in 90..130 {
        appender.append(payload(i)).await.unwrap();
        acked.push(payload(i));
    }
    assert!(wal.stats().write_failure().is_none());
    drop(appender);
    drop(wal);

    let stored = read_wal(&dir).await;
    assert_eq!(
        record_names(&stored),
        record_names(&acked),
        "exactly the acknowledged records, in order"
    );
}

/// A record of `size` bytes named by `i`.
fn sized(i: usize, size: usize) -> Bytes {
    let mut bytes = format!("record-{i:06}-").into_bytes();
    bytes.resize(size, b'y');
    Bytes::from(bytes)
}

fn newest_segment_len(dir: &Path) -> u64 {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "wal"));
    files.sort();
    std::fs::metadata(files.last().unwrap()).unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_that_fails_never_lets_positions_overlap_across_a_restart() {
    let Some(fs) = SmallFs::mount("8m", None) else { return };
    let dir = fs.data().join("wal");
    let segment_bytes = 128 << 10;
    let options = WalOptions {
        segment_bytes,
        ..WalOptions::default()
    };
    let (large, small) = (60_000, 300);
    let mut acked = Vec::new();
    let mut i = 0;
    {
        let wal = Wal::open(&dir, options.clone()).unwrap();
        let appender = wal.appender();
        // The active segment too full for a large record, with room for small ones in the last
        // page it already has (which a full disk still lets them use).
        loop {
            let len = newest_segment_len(&dir);
            if len + (large as u64) > segment_bytes && len % 4096 < 1024 {
                break;
            }
            appender.append(sized(i, small)).await.unwrap();
            acked.push(sized(i, small));
            i += 1;
        }
        fs.fill();
        // The large record needs a new segment, whose file cannot get its header: the rotation
        // fails and leaves an empty file at the full segment's end. The small records that follow
        // would still fit in the full segment's last page: they must not go there.
        for size in [large, small, small, small, small, small] {
            match appender.append(sized(i, size)).await {
                Ok(_) => acked.push(sized(i, size)),
                Err(AppendError::Io(_)) => {}
                Err(other) => panic!("unexpected refusal {other:?}"),
            }
            i += 1;
        }
    }
    // Stopped while full; the restart finds the file of the failed rotation as the newest one.
    fs.free();
    {
        let wal = Wal::open(&dir, options).unwrap();
        let appender = wal.appender();
        for _ in 0..60 {
            appender.append(sized(i, small)).await.unwrap();
            acked.push(sized(i, small));
            i += 1;
        }
    }
    let stored = read_wal(&dir).await;
    assert_eq!(
        record_names(&stored),
        record_names(&acked),
        "exactly the acknowledged records, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_that_cannot_be_written_never_lets_a_restart_skip_records() {
    let Some(fs) = SmallFs::mount("16m", Some(64)) else {
        return;
    };
    let dir = fs.data().join("wal");
    let options = WalOptions {
        segment_bytes: 256 << 10,
        ..WalOptions::default()
    };
    let wal = Wal::open(&dir, options.clone()).unwrap();
    let appender = wal.appender();
    for i in 0..40 {
        appender.append(payload(i)).await.unwrap();
    }
    let mut consumer = wal.consumer("exporter");
    let first = consumer.next_batch(100_000).await.unwrap().unwrap();
    let handled = first.last().unwrap().end;
    consumer.commit(handled, true).unwrap();

    // No inode left for the checkpoint's temporary file.
    fs.fill_inodes(0);
    let more = consumer.next_batch(300_000).await.unwrap().unwrap();
    let later = more.last().unwrap().end;
    let error = consumer
        .commit(later, true)
        .expect_err("the checkpoint cannot be stored");
    assert!(error.to_string().contains("checkpoint"), "{error}");
    fs.free();
    drop(consumer);
    drop(appender);
    drop(wal);

    // After a restart the consumer resumes at or before what it had handled, and every record
    // from there on is still in the log.
    let mut wal = Wal::open(&dir, options).unwrap();
    let mut consumer = wal.consumer("exporter");
    wal.close();
    let mut rest = Vec::new();
    while let Some(batch) = consumer.next_batch(1 << 20).await.unwrap() {
        rest.extend(batch);
    }
    let resumed = rest.first().unwrap().position;
    assert!(
        resumed <= later,
        "resumed at {resumed}, past the last handled record {later}"
    );
    assert_eq!(
        String::from_utf8_lossy(&rest.last().unwrap().payload[..13]),
        "record-000039"
    );
    let first_name = String::from_utf8_lossy(&rest[0].payload[..13]).into_owned();
    let index: usize = first_name[7..13].parse().unwrap();
    assert_eq!(
        rest.len(),
        40 - index,
        "every record after the resume point is readable"
    );
}

#[test]
fn a_flush_that_fails_on_a_full_disk_keeps_its_rows_until_one_succeeds() {
    let Some(fs) = SmallFs::mount("32m", None) else { return };
    let store = LocalStore::open(&fs.data(), options()).unwrap();
    store.append(1, &[spans(0..200), logs(0..200)]).unwrap();
    assert_eq!(store.flush().unwrap(), 1);
    store.append(2, &[spans(200..400), logs(200..400)]).unwrap();

    fs.fill();
    assert!(store.flush().is_err(), "a part cannot be written on a full disk");
    assert_eq!(
        store.durable_position(),
        1,
        "the checkpoint may not pass unwritten rows"
    );
    // Nothing new arrived: the next flush must retry the frozen rows, not report them durable.
    assert!(store.flush().is_err());
    assert_eq!(store.durable_position(), 1);
    assert!(!store.flush_due(), "a failed flush waits before it is retried");
    std::thread::sleep(RETRY);
    assert!(store.flush_due(), "a failed flush is retried");
    store.append(3, &[spans(400..500), logs(400..500)]).unwrap();
    assert!(store.flush().is_err());
    assert_eq!(store.durable_position(), 1);
    // Everything is still readable from memory meanwhile.
    assert_traces(&store, 0..500);

    fs.free();
    assert_eq!(store.flush().unwrap(), 3);
    assert_eq!(store.durable_position(), 3);
    store.refresh().unwrap();
    assert_eq!(search(&store, "shipped"), 500);
    assert!(!store.partial(Table::Logs, &TimeRange::ALL, true));
    drop(store);

    let store = LocalStore::open(&fs.data(), options()).unwrap();
    assert_eq!(store.published_position(), 3);
    assert_traces(&store, 0..500);
    store.refresh().unwrap();
    assert_eq!(search(&store, "shipped"), 500);
    assert_eq!(store.damaged_files(), 0);
}

#[test]
fn while_flushes_fail_the_head_stops_at_its_share_of_the_memory_limit_and_nothing_is_lost() {
    let Some(fs) = SmallFs::mount("32m", None) else { return };
    let options = StoreOptions {
        // Flush at ~170 KiB of Arrow data, hold at most ~340 KiB.
        memory_limit: 1 << 20,
        ..options()
    };
    let budget = options.memory();
    let store = LocalStore::open(&fs.data(), options.clone()).unwrap();
    let record = |n: u64| {
        let traces = n * 100..(n + 1) * 100;
        vec![(n + 1, spans(traces.clone())), (n + 1, logs(traces))]
    };
    fs.fill();
    // Writes flush when the head is due; every flush fails, and their heads are kept.
    let (mut written, mut largest, mut step) = (0, 0, 0);
    let behind = loop {
        assert!(written < 200, "the store never said it was behind");
        let before = store.memory_use().head_bytes;
        match store.write(written + 1, record(written)) {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        let after = store.memory_use().head_bytes;
        largest = largest.max(after);
        step = step.max(after - before);
    };
    assert!(matches!(behind, StorageError::Behind(_)), "{behind}");
    assert!(written >= 2, "the head took rows before it was full: {written}");
    let head = store.memory_use().head_bytes;
    assert!(head >= budget.head_bytes, "{head} < {}", budget.head_bytes);
    assert!(
        largest < budget.head_bytes + step,
        "{largest}: more than one write ({step} bytes) past the cap"
    );
    // It stays behind, taking nothing, while the disk is full.
    std::thread::sleep(RETRY);
    assert!(matches!(
        store.write(written + 1, record(written)),
        Err(StorageError::Behind(_))
    ));
    assert_eq!(store.memory_use().head_bytes, head, "a refused write adds nothing");
    assert_eq!(store.durable_position(), 0);

    fs.free();
    std::thread::sleep(RETRY);
    // The same records offered again: the retried flush makes room and they are taken.
    store.write(written + 1, record(written)).unwrap();
    written += 1;
    assert!(store.memory_use().head_bytes < budget.head_bytes);
    store.flush().unwrap();
    assert_eq!(store.durable_position(), written);
    drop(store);
    let store = LocalStore::open(&fs.data(), options).unwrap();
    assert_traces(&store, 0..written * 100);
    store.refresh().unwrap();
    eprintln!("helper: {}", search(&store, "shipped"));
    let logs = store
        .search_logs(&LogSearch {
            query: "shipped".into(),
            limit: 100_000,
            ..LogSearch::default()
        })
        .unwrap();
    assert_eq!(
        logs.len(),
        written as usize * 100,
        "every log record once (partial: {})",
        store.partial(Table::Logs, &TimeRange::ALL, true)
    );
}

#[test]
fn an_index_commit_that_fails_leaves_the_rows_and_the_index_is_rebuilt() {
    let Some(fs) = SmallFs::mount("32m", None) else { return };
    let store = LocalStore::open(&fs.data(), options()).unwrap();
    store.append(1, &[logs(0..300)]).unwrap();
    store.refresh().unwrap();
    assert_eq!(search(&store, "shipped"), 300);
    store.append(2, &[logs(300..600)]).unwrap();

    fs.fill();
    // The index cannot be committed: it is stale and searches say they are partial; the rows
    // themselves are untouched.
    let _ = store.refresh();
    assert!(store.partial(Table::Logs, &TimeRange::ALL, true));
    assert_eq!(store.damaged_files(), 1);
    assert_eq!(store.logs_by_trace(&trace_id(450), &TimeRange::ALL).unwrap().len(), 1);
    assert_eq!(store.durable_position(), 0);

    fs.free();
    // The rebuild tried while the disk was full waits a little before it is tried again.
    std::thread::sleep(RETRY);
    store.refresh().unwrap();
    assert!(!store.partial(Table::Logs, &TimeRange::ALL, true));
    assert_eq!(store.damaged_files(), 0);
    assert_eq!(search(&store, "shipped"), 600);
    assert_eq!(search(&store, "word450"), 1);
    assert_eq!(store.flush().unwrap(), 2);
    store.refresh().unwrap();
    assert_eq!(search(&store, "shipped"), 600);
    drop(store);

    let store = LocalStore::open(&fs.data(), options()).unwrap();
    assert_eq!(search(&store, "shipped"), 600);
    assert_eq!(search(&store, "word599"), 1);
}

#[test]
fn an_index_that_missed_documents_is_rebuilt_after_a_restart_too() {
    let Some(fs) = SmallFs::mount("32m", None) else { return };
    let store = LocalStore::open(&fs.data(), options()).unwrap();
    store.append(1, &[logs(0..300)]).unwrap();
    store.refresh().unwrap();
    store.append(2, &[logs(300..600)]).unwrap();
    fs.fill();
    let _ = store.refresh();
    assert!(store.partial(Table::Logs, &TimeRange::ALL, true));
    fs.free();
    // The parts are published before any refresh rebuilds the index, then the process stops:
    // the index on disk misses the documents of 300..600.
    assert_eq!(store.flush().unwrap(), 2);
    drop(store);

    let store = LocalStore::open(&fs.data(), options()).unwrap();
    assert!(
        store.partial(Table::Logs, &TimeRange::ALL, true),
        "the manifest says the index is stale"
    );
    store.refresh().unwrap();
    assert!(!store.partial(Table::Logs, &TimeRange::ALL, true));
    assert_eq!(search(&store, "shipped"), 600);
    assert_eq!(search(&store, "word450"), 1);
    drop(store);
    // Rebuilt: the next start trusts the index again.
    let store = LocalStore::open(&fs.data(), options()).unwrap();
    assert!(!store.partial(Table::Logs, &TimeRange::ALL, true));
    assert_eq!(store.damaged_files(), 0);
    assert_eq!(search(&store, "shipped"), 600);
}

#[test]
fn a_manifest_that_cannot_be_written_publishes_nothing_and_is_retried() {
    // Inodes, not bytes, run out: the part files (the points' and their rollups') are created,
    // the manifest's temporary file is not.
    let Some(fs) = SmallFs::mount("64m", Some(256)) else {
        return;
    };
    let store = LocalStore::open(&fs.data(), options()).unwrap();
    store.append(1, &[points(0..100)]).unwrap();
    assert_eq!(store.flush().unwrap(), 1);
    store.append(2, &[points(100..250)]).unwrap();

    fs.fill_inodes(2);
    let error = store.flush().expect_err("the manifest cannot be written");
    assert!(error.to_string().contains("manifest"), "{error}");
    assert_eq!(store.durable_position(), 1);
    assert_eq!(store.published_position(), 1);

    fs.free();
    assert_eq!(store.flush().unwrap(), 2);
    drop(store);
    let store = LocalStore::open(&fs.data(), options()).unwrap();
    assert_eq!(store.published_position(), 2);
    let (rows, partial) = store.metric_points("queue.depth", &TimeRange::ALL, 10_000).unwrap();
    assert!(!partial);
    let mut values: Vec<u64> = rows.iter().map(sift_storage::point_time).collect();
    values.sort_unstable();
    values.dedup();
    assert_eq!(rows.len(), 250, "each point exactly once");
    assert_eq!(values.len(), 250);
    // And once in the rollups: values 0..250, so their sum is 31125 and their mean 124.5.
    let mut all = sift_storage::rollup::Rollup::default();
    let mut rollups = 0;
    store
        .for_each_metric_rollup("queue.depth", &TimeRange::ALL, 10_000, &mut |_, _, rollup| {
            rollups += 1;
            all.merge(rollup);
        })
        .unwrap()
        .expect("the store has rollups");
    assert!(rollups >= 2, "a rollup per flush");
    use sift_storage::rollup::Agg;
    assert_eq!(all.clone().reduce(Agg::Sum, None, 1.0), Ok(Some(31125.0)));
    assert_eq!(all.reduce(Agg::Avg, None, 1.0), Ok(Some(124.5)));
}

/// Flips `count` bytes in the middle of a file.
fn flip(path: &Path, count: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + count] {
        *b ^= 0xFF;
    }
    std::fs::write(path, bytes).unwrap();
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        if entry.to_string_lossy().ends_with(suffix) {
            out.push(entry);
        }
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Stores traces 0..100 (spans and logs) in one part per table and 100..200 in a second, then
/// damages the first part of each table.
fn damage_older_parts(root: &Path) {
    {
        let store = LocalStore::open(root, options()).unwrap();
        store.append(1, &[spans(0..100), logs(0..100)]).unwrap();
        store.flush().unwrap();
        store.append(2, &[spans(100..200), logs(100..200)]).unwrap();
        store.flush().unwrap();
        store.refresh().unwrap();
    }
    let span_parts = files(&root.join("spans"), ".parquet");
    let log_parts = files(&root.join("logs"), ".parquet");
    assert_eq!((span_parts.len(), log_parts.len()), (2, 2));
    flip(&span_parts[0], 20);
    flip(&log_parts[0], 20);
}

#[test]
fn damaged_parts_are_quarantined_and_a_damaged_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The older spans part, the older logs part and one file of the log index.
    damage_older_parts(root);
    let index_files: Vec<PathBuf> = files(&root.join("logs"), ".idx")
        .into_iter()
        .chain(files(&root.join("logs"), ".term"))
        .collect();
    flip(&index_files[0], 1);

    let store = LocalStore::open(root, options()).unwrap();
    // The damaged index was found on open; it is rebuilt from the parts at the next refresh.
    assert!(store.partial(Table::Logs, &TimeRange::ALL, true));
    // Traces in the intact part are all found; those in the damaged one are missing, and the
    // answer says it is partial instead of failing.
    assert_traces(&store, 100..200);
    for n in 0..100 {
        assert!(store.trace(&trace_id(n), &TimeRange::ALL).unwrap().is_empty());
    }
    assert!(store.partial(Table::Spans, &TimeRange::ALL, false));
    assert_eq!(store.logs_by_trace(&trace_id(150), &TimeRange::ALL).unwrap().len(), 1);
    assert!(store.logs_by_trace(&trace_id(50), &TimeRange::ALL).unwrap().is_empty());
    assert!(
        store.damaged_files() >= 3,
        "2 parts and an index: {}",
        store.damaged_files()
    );

    store.refresh().unwrap();
    // Quarantined: moved aside, listed in the manifest, still reported.
    assert_eq!(files(&root.join("quarantine"), ".parquet").len(), 2);
    assert_eq!(files(&root.join("spans"), ".parquet").len(), 1);
    assert_eq!(store.damaged_files(), 2, "the index was rebuilt");
    assert_eq!(
        search(&store, "shipped"),
        100,
        "the rebuilt index holds the intact part's logs"
    );
    assert_eq!(search(&store, "word150"), 1);
    assert!(
        store.partial(Table::Logs, &TimeRange::ALL, true),
        "a logs part is quarantined"
    );
    drop(store);

    // A restart keeps the quarantine and serves the rest without errors.
    let store = LocalStore::open(root, options()).unwrap();
    assert_eq!(store.damaged_files(), 2);
    assert_traces(&store, 100..200);
    assert_eq!(search(&store, "shipped"), 100);
    let services = store.services().unwrap();
    assert_eq!(services[0].span_count, 100);
}

#[test]
fn maintenance_checksums_the_parts_no_query_opened() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    damage_older_parts(root);
    let store = LocalStore::open(
        root,
        StoreOptions {
            maintenance_interval: Duration::ZERO,
            ..options()
        },
    )
    .unwrap();
    assert_eq!(store.damaged_files(), 0, "nothing read yet");
    store.maintain_if_due();
    // Found without a query, and quarantined by the next refresh; the rest is served whole.
    assert_eq!(store.damaged_files(), 2);
    store.refresh().unwrap();
    assert_eq!(files(&root.join("quarantine"), ".parquet").len(), 2);
    assert_traces(&store, 100..200);
}

#[test]
fn lookups_by_trace_id_open_only_the_parts_the_index_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    damage_older_parts(root);

    let store = LocalStore::open(root, options()).unwrap();
    // The traces of the intact parts are found without opening the damaged ones.
    assert_traces(&store, 100..200);
    for n in 100..200 {
        assert_eq!(store.logs_by_trace(&trace_id(n), &TimeRange::ALL).unwrap().len(), 1);
    }
    assert!(store.trace(&trace_id(1_000), &TimeRange::ALL).unwrap().is_empty());
    assert_eq!(store.damaged_files(), 0, "a part without the trace was opened");
    // A trace of a damaged part is looked up there, and the damage found.
    assert!(store.trace(&trace_id(50), &TimeRange::ALL).unwrap().is_empty());
    assert!(store.logs_by_trace(&trace_id(50), &TimeRange::ALL).unwrap().is_empty());
    assert_eq!(store.damaged_files(), 2);
}
