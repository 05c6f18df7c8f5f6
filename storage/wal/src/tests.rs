use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};

use bytes::Bytes;

use super::*;

fn options(segment_bytes: u64, max_bytes: u64) -> WalOptions {
    WalOptions {
        max_bytes,
        segment_bytes,
        queue_depth: 1024,
    }
}

fn payload(i: usize) -> Bytes {
    Bytes::from(format!("record-{i:05}-{}", "x".repeat(i % 37)))
}

async fn read_all(consumer: &mut WalConsumer, expected: usize) -> Vec<WalRecord> {
    let mut out = Vec::new();
    while out.len() < expected {
        let batch = tokio::time::timeout(Duration::from_secs(5), consumer.next_batch(1000))
            .await
            .expect("records arrive")
            .unwrap()
            .expect("log open");
        out.extend(batch);
    }
    out
}

#[tokio::test]
async fn appends_are_read_back_in_order_across_segments_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), options(256, 1 << 20)).unwrap();
        let appender = wal.appender();
        let mut consumer = wal.consumer("file");
        let mut positions = Vec::new();
        for i in 0..50 {
            positions.push(appender.append(payload(i)).await.unwrap());
        }
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
        let records = read_all(&mut consumer, 50).await;
        let got: Vec<Bytes> = records.iter().map(|r| r.payload.clone()).collect();
        assert_eq!(got, (0..50).map(payload).collect::<Vec<_>>());
        // Handle the first 20 only, then "crash".
        consumer.commit(records[19].end, true).unwrap();
    }
    let wal = Wal::open(dir.path(), options(256, 1 << 20)).unwrap();
    let mut consumer = wal.consumer("file");
    let records = read_all(&mut consumer, 30).await;
    assert_eq!(records[0].payload, payload(20));
    assert_eq!(records.last().unwrap().payload, payload(49));
    // A consumer never seen before starts at the oldest retained record.
    let mut fresh = wal.consumer("new");
    let records = read_all(&mut fresh, 1).await;
    assert!(records[0].position <= 20 * 40);
}

#[tokio::test]
async fn records_of_an_earlier_process_are_told_apart_as_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), options(256, 1 << 20)).unwrap();
        assert_eq!(wal.consumer("c").replay_end(), 0);
        for i in 0..10 {
            wal.appender().append(payload(i)).await.unwrap();
        }
    }
    let wal = Wal::open(dir.path(), options(256, 1 << 20)).unwrap();
    let mut consumer = wal.consumer("c");
    let replay_end = consumer.replay_end();
    wal.appender().append(payload(10)).await.unwrap();
    let records = read_all(&mut consumer, 11).await;
    let replayed: Vec<bool> = records.iter().map(|r| r.end <= replay_end).collect();
    assert_eq!(replayed, [vec![true; 10], vec![false]].concat());
}

#[tokio::test]
async fn concurrent_appends_share_commits_and_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), options(64 << 10, 64 << 20)).unwrap();
    let mut tasks = Vec::new();
    for i in 0..400 {
        let appender = wal.appender();
        tasks.push(tokio::spawn(async move { appender.append(payload(i)).await }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let mut consumer = wal.consumer("c");
    assert_eq!(read_all(&mut consumer, 400).await.len(), 400);
}

#[tokio::test]
async fn a_full_log_refuses_until_consumers_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), options(1024, 4096)).unwrap();
    let appender = wal.appender();
    let mut consumer = wal.consumer("slow");
    let mut accepted = 0;
    let refusal = loop {
        match appender.append(Bytes::from(vec![7u8; 200])).await {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100, "never refused");
    };
    assert_eq!(refusal, AppendError::Full);
    assert!(refusal.is_retryable());
    assert!(wal.disk_bytes() <= 4096);
    // A draining stage may still write, into a reserve of a quarter of the limit, and no further.
    let mut reserved = 0;
    while appender.append_reserved(Bytes::from(vec![8u8; 200])).await.is_ok() {
        reserved += 1;
        assert!(reserved < 100, "the reserve has no end");
    }
    assert!(reserved >= 3, "{reserved} appends in the reserve");
    assert!(
        wal.disk_bytes() > 4096 && wal.disk_bytes() <= 5120,
        "{}",
        wal.disk_bytes()
    );
    assert_eq!(
        appender.append(Bytes::from(vec![7u8; 200])).await,
        Err(AppendError::Full)
    );
    accepted += reserved;
    let records = read_all(&mut consumer, accepted).await;
    consumer.commit(records.last().unwrap().end, true).unwrap();
    assert!(wal.disk_bytes() < 2048, "segments were collected: {}", wal.disk_bytes());
    appender.append(Bytes::from(vec![7u8; 200])).await.unwrap();
}

fn last_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files.pop().unwrap()
}

async fn write_records(dir: &std::path::Path, n: usize) {
    let wal = Wal::open(dir, options(1 << 20, 1 << 24)).unwrap();
    let appender = wal.appender();
    for i in 0..n {
        appender.append(payload(i)).await.unwrap();
    }
}

async fn reopen_and_read(dir: &std::path::Path, expected: usize) -> (Vec<Bytes>, RecoveryReport) {
    let wal = Wal::open(dir, options(1 << 20, 1 << 24)).unwrap();
    let report = wal.recovery().clone();
    let mut consumer = wal.consumer("reader");
    let records = read_all(&mut consumer, expected).await;
    // Nothing more is there, and appending still works.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), consumer.next_batch(1000))
            .await
            .is_err()
    );
    wal.appender().append(Bytes::from_static(b"after")).await.unwrap();
    (records.into_iter().map(|r| r.payload).collect(), report)
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_every_intact_record_kept() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 10).await;
    let file = last_segment(dir.path());
    let len = std::fs::metadata(&file).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let (records, report) = reopen_and_read(dir.path(), 9).await;
    assert_eq!(records, (0..9).map(payload).collect::<Vec<_>>());
    assert!(report.truncated_bytes > 0);
    assert_eq!(
        report.kept_aside, None,
        "a torn last write is explained: nothing kept aside"
    );
}

#[tokio::test]
async fn a_tail_of_zeros_is_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 4).await;
    let file = last_segment(dir.path());
    let mut f = OpenOptions::new().append(true).open(&file).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    drop(f);
    let (records, report) = reopen_and_read(dir.path(), 4).await;
    assert_eq!(records.len(), 4);
    assert_eq!(report.truncated_bytes, 4096);
    assert_eq!(report.kept_aside, None);
}

#[tokio::test]
async fn a_bit_flip_loses_only_the_damaged_record() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 10).await;
    let file = last_segment(dir.path());
    let len = std::fs::metadata(&file).unwrap().len();
    // Damage the last record, then one in the middle.
    let mut f = OpenOptions::new().read(true).write(true).open(&file).unwrap();
    for at in [len - 3, 8 + 100] {
        f.seek(SeekFrom::Start(at)).unwrap();
        let mut byte = [0u8];
        std::io::Read::read_exact(&mut f, &mut byte).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&[byte[0] ^ 0x10]).unwrap();
    }
    drop(f);
    let (records, report) = reopen_and_read(dir.path(), 8).await;
    assert_eq!(records.len(), 8);
    assert_eq!(records[0], payload(0));
    assert!(!records.contains(&payload(9)));
    assert_eq!(records.last().unwrap(), &payload(8));
    assert!(report.corrupt_bytes > 0 && report.truncated_bytes > 0, "{report:?}");
    // A damaged last record is not a torn write (it is whole, its checksum is wrong): its bytes
    // are kept aside for inspection, not deleted.
    let aside = report
        .kept_aside
        .clone()
        .expect("damage a crash does not explain is kept");
    assert!(aside.starts_with(dir.path().join("damaged")), "{aside:?}");
    assert_eq!(std::fs::metadata(&aside).unwrap().len(), report.truncated_bytes);
}

#[tokio::test]
async fn an_empty_segment_inside_the_one_before_it_is_removed_and_positions_never_overlap() {
    // What a rotation that failed part-way left behind in builds that kept writing to the full
    // segment: an empty file whose base lies inside the segment before it, as the newest file.
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 10).await;
    let segment = last_segment(dir.path());
    let end = std::fs::metadata(&segment).unwrap().len() - 8;
    std::fs::write(dir.path().join(format!("{:020}.wal", end - 100)), b"").unwrap();
    {
        let wal = Wal::open(dir.path(), options(1 << 20, 1 << 24)).unwrap();
        assert_eq!(
            wal.committed(),
            end,
            "the writer resumes at the end of the last whole segment"
        );
        let appender = wal.appender();
        for i in 10..15 {
            appender.append(payload(i)).await.unwrap();
        }
    }
    let (records, _) = reopen_and_read(dir.path(), 15).await;
    assert_eq!(records, (0..15).map(payload).collect::<Vec<_>>());
}

#[tokio::test]
async fn garbage_instead_of_a_segment_header_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 3).await;
    std::fs::write(dir.path().join(format!("{:020}.wal", 1_000_000)), b"SIF").unwrap();
    let (records, _) = reopen_and_read(dir.path(), 3).await;
    assert_eq!(records.len(), 3);
}

#[tokio::test]
async fn a_cancelled_read_loses_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), options(1 << 20, 1 << 24)).unwrap();
    let appender = wal.appender();
    for i in 0..200 {
        appender.append(payload(i)).await.unwrap();
    }
    let mut consumer = wal.consumer("c");
    // Reads dropped mid-flight (the ones that finish count).
    let mut got: Vec<Bytes> = Vec::new();
    let mut cancelled = 0;
    for i in 0..50 {
        if i % 5 == 0 {
            // Let some detached reads finish while nobody waits for them.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::select! {
            biased;
            batch = consumer.next_batch(64) => got.extend(batch.unwrap().unwrap().into_iter().map(|r| r.payload)),
            // Polled right after the read started: drops it mid-flight.
            () = std::future::ready(()) => cancelled += 1,
        }
    }
    assert!(cancelled > 0, "some reads were cancelled");
    let rest = read_all(&mut consumer, 200 - got.len()).await;
    got.extend(rest.into_iter().map(|r| r.payload));
    assert_eq!(
        got,
        (0..200).map(payload).collect::<Vec<_>>(),
        "nothing skipped, nothing repeated"
    );
}
