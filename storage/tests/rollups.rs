//! Metric queries from rollups answer what the same query over every stored point answers: for
//! random series of counters, histograms and gauges over two hour partitions, written in batches
//! with flushes between (so a minute's points are split across parts and the head), and random
//! queries (range, step in whole minutes, aggregation, label matchers) — with points in the head,
//! in parts, after a restart, after compaction, and for a store written before rollups existed
//! once its rollups are built. Steps rollups cannot answer exactly (points of a series that
//! arrived out of time order, quantiles of plain values, a last minute with points past the end)
//! are read from points, and no others.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{entry, text, BASE};
use proptest::prelude::*;
use prost::Message as _;
use sift_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sift_proto::otlp::common::v1::KeyValue;
use sift_proto::otlp::metrics::v1::{
    metric, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum,
};
use sift_proto::otlp::resource::v1::Resource;
use sift_proto::SignalKind;
use sift_storage::rollup::{Agg, Labels, MetricQuery, MINUTE};
use sift_storage::{LocalStore, Store, StoreOptions, TimeRange};
use sift_wal::WalEntry;

const SERVICES: [&str; 2] = ["shop", "cart"];
const ROUTES: [&str; 2] = ["/a", "/b"];
const SECOND: u64 = 1_000_000_000;
/// Points start ten minutes before `BASE` (an hour boundary): two partitions.
const FIRST: u64 = BASE - 600 * SECOND;

fn store(dir: &std::path::Path) -> LocalStore {
    LocalStore::open(
        dir,
        StoreOptions {
            flush_interval: Duration::from_secs(3600),
            compact_parts: 2,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

/// The kinds of metric: 0 gauge, 1 cumulative counter, 2 cumulative histogram, 3 delta counter.
fn metric_name(kind: u8) -> &'static str {
    ["queue.depth", "requests", "latency", "bytes"][kind as usize]
}

/// One point: series (service, route), time, value.
#[derive(Debug, Clone, Copy)]
struct Point {
    series: usize,
    time: u64,
    value: u64,
}

/// A WAL entry with `points` of metric kind `kind`; counters and histograms carry running totals
/// per series (`totals`).
fn points_entry(kind: u8, points: &[Point], totals: &mut BTreeMap<usize, (u64, [u64; 3])>) -> WalEntry {
    let mut by_service: BTreeMap<usize, Vec<Point>> = BTreeMap::new();
    for p in points {
        by_service.entry(p.series / ROUTES.len()).or_default().push(*p);
    }
    let resource_metrics = by_service
        .into_iter()
        .map(|(service, points)| {
            let attributes = |p: &Point| {
                vec![KeyValue {
                    key: "http.route".into(),
                    value: text(ROUTES[p.series % ROUTES.len()]),
                    ..Default::default()
                }]
            };
            let data = match kind {
                0 | 1 | 3 => {
                    let data_points = points
                        .iter()
                        .map(|p| {
                            let total = &mut totals.entry(p.series).or_default().0;
                            *total += p.value;
                            let value = if kind == 1 { *total } else { p.value };
                            NumberDataPoint {
                                attributes: attributes(p),
                                time_unix_nano: p.time,
                                value: Some(number_data_point::Value::AsInt(value as i64)),
                                ..Default::default()
                            }
                        })
                        .collect();
                    if kind == 0 {
                        metric::Data::Gauge(Gauge { data_points })
                    } else {
                        metric::Data::Sum(Sum {
                            data_points,
                            aggregation_temporality: if kind == 1 { 2 } else { 1 },
                            is_monotonic: true,
                        })
                    }
                }
                _ => metric::Data::Histogram(Histogram {
                    data_points: points
                        .iter()
                        .map(|p| {
                            let (sum, buckets) = totals.entry(p.series).or_default();
                            *sum += p.value;
                            buckets[(p.value % 3) as usize] += 1 + p.value % 5;
                            HistogramDataPoint {
                                attributes: attributes(p),
                                time_unix_nano: p.time,
                                count: buckets.iter().sum(),
                                sum: Some(*sum as f64),
                                bucket_counts: buckets.to_vec(),
                                explicit_bounds: vec![10.0, 100.0],
                                min: Some(0.5),
                                max: Some(500.0),
                                ..Default::default()
                            }
                        })
                        .collect(),
                    aggregation_temporality: 2,
                }),
            };
            ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: text(SERVICES[service]),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: metric_name(kind).into(),
                        data: Some(data),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    let request = ExportMetricsServiceRequest { resource_metrics };
    entry(SignalKind::Metrics, request.encode_to_vec())
}

type Answer = BTreeMap<Labels, Vec<(u64, f64)>>;

fn close(a: &Answer, b: &Answer) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((la, pa), (lb, pb))| {
            la == lb
                && pa.len() == pb.len()
                && pa
                    .iter()
                    .zip(pb)
                    .all(|((ta, va), (tb, vb))| ta == tb && (va - vb).abs() <= 1e-9 * va.abs().max(vb.abs()).max(1.0))
        })
}

/// Checks every query: rollups (and the points of the steps they cannot answer) answer what the
/// points do; rollups leave steps to the points only where they may.
fn check(store: &LocalStore, kind: u8, in_order: bool, queries: &[MetricQuery]) -> Result<(), TestCaseError> {
    for q in queries {
        let (want, got) = match (q.run(store, usize::MAX, false), q.run(store, usize::MAX, true)) {
            (Ok(want), Ok(got)) => (want, got),
            // The rate of a gauge.
            (Err(want), Err(got)) => {
                prop_assert_eq!(want.to_string(), got.to_string());
                prop_assert!(kind == 0 && q.agg == Agg::Rate, "{}", want);
                continue;
            }
            (want, got) => return Err(TestCaseError::fail(format!("points {want:?}, rollups {got:?}"))),
        };
        prop_assert!(!want.from_rollups && !want.cut && !got.cut);
        prop_assert!(
            close(&want.series, &got.series),
            "{:?}: points {:?}, rollups {:?}",
            q,
            want.series,
            got.series
        );
        let plain_quantile = matches!(q.agg, Agg::Quantile(_)) && kind != 2;
        let ordered = q.agg == Agg::Rate || (matches!(q.agg, Agg::Quantile(_)) && kind == 2);
        let cut_minute = !q.end.is_multiple_of(MINUTE);
        prop_assert!(
            got.steps_from_points == 0 || plain_quantile || cut_minute || (ordered && !in_order),
            "{:?} of kind {} (points in order: {}): rollups must answer every step, {} left to points",
            q,
            kind,
            in_order,
            got.steps_from_points
        );
        prop_assert_eq!(got.from_rollups, got.steps_from_points == 0);
    }
    Ok(())
}

/// Rewrites the manifest as a store written before rollups existed would have it: no rollups
/// parts, no `metric_rollups`.
fn forget_rollups(dir: &std::path::Path) {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let json = text.lines().next().unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(json).unwrap();
    manifest["parts"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["table"] != "rollups");
    manifest.as_object_mut().unwrap().remove("metric_rollups");
    let json = serde_json::to_string(&manifest).unwrap();
    let crc = crc32fast::hash(json.as_bytes());
    std::fs::write(&path, format!("{json}\n#crc32:{crc:08x}\n")).unwrap();
    std::fs::remove_dir_all(dir.join("rollups")).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn metric_queries_from_rollups_answer_what_the_points_answer(
        kind in 0u8..4,
        gaps in proptest::collection::vec((0usize..4, 1u64..10, 0u64..50), 1..200),
        late in proptest::collection::vec(0usize..200, 0..4),
        batches in proptest::collection::vec((1usize..40, any::<bool>()), 1..12),
        queries in proptest::collection::vec(
            (0u64..20, 1u64..40, 0u64..60, 0usize..4, 0u8..9, 0u8..6), 1..8),
    ) {
        // Each series' points one after another in time (as an exporter sends them, every 3 to
        // 30 seconds), from ten minutes before an hour boundary on.
        let mut next = [FIRST; 4];
        let mut points: Vec<Point> = gaps
            .iter()
            .map(|&(series, gap, value)| {
                next[series] += gap * SECOND * 3;
                Point { series, time: next[series], value }
            })
            .collect();
        // Some points arrive late: after points of their series that are newer.
        let in_order = late.is_empty();
        for &i in &late {
            let p = points.remove(i % points.len());
            points.push(p);
        }
        let queries: Vec<MetricQuery> = queries
            .iter()
            .map(|&(start, minutes, seconds, step, aggregation, matcher)| {
                let start = FIRST + start * MINUTE;
                let step = [1, 2, 5, 60][step] * MINUTE;
                let start = start / step * step;
                MetricQuery {
                    name: metric_name(kind).into(),
                    matchers: match matcher {
                        1 => vec![("service.name".into(), "shop".into())],
                        2 => vec![("http.route".into(), "/b".into())],
                        3 => vec![("http.route".into(), "/nowhere".into())],
                        _ => Vec::new(),
                    },
                    start,
                    end: start + minutes * MINUTE + seconds * SECOND,
                    step,
                    agg: Agg::parse(Agg::NAMES[aggregation as usize]).expect("a name it knows"),
                }
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let mut store = store(dir.path());
        let mut totals = BTreeMap::new();
        let mut rest = points.as_slice();
        let mut position = 0;
        for &(len, flush) in batches.iter().chain(std::iter::once(&(usize::MAX, false))) {
            let (batch, next) = rest.split_at(len.min(rest.len()));
            rest = next;
            if batch.is_empty() {
                continue;
            }
            position += 1;
            store.append(position, &[points_entry(kind, batch, &mut totals)]).unwrap();
            if flush {
                store.flush().unwrap();
            }
        }
        // Points in the head and in parts.
        check(&store, kind, in_order, &queries)?;
        // In parts, after a restart, after compaction.
        store.flush().unwrap();
        drop(store);
        store = self::store(dir.path());
        check(&store, kind, in_order, &queries)?;
        store.compact().unwrap();
        check(&store, kind, in_order, &queries)?;
        // A store written before rollups: points answer until its rollups are built.
        drop(store);
        forget_rollups(dir.path());
        store = self::store(dir.path());
        let mut visited = false;
        let read = store
            .for_each_metric_rollup(metric_name(kind), &TimeRange::ALL, usize::MAX, &mut |_, _, _| visited = true)
            .unwrap();
        prop_assert!(read.is_none() && !visited, "no rollups before they are built");
        for q in &queries {
            prop_assert!(!q.run(&store, usize::MAX, true).is_ok_and(|found| found.from_rollups));
        }
        store.refresh().unwrap();
        check(&store, kind, in_order, &queries)?;
    }
}

#[test]
fn a_damaged_rollups_part_leaves_metric_queries_to_the_points() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let points: Vec<Point> = (0..120)
        .map(|n| Point {
            series: (n % 4) as usize,
            time: FIRST + n * 10 * SECOND,
            value: n,
        })
        .collect();
    let mut totals = BTreeMap::new();
    store.append(1, &[points_entry(1, &points, &mut totals)]).unwrap();
    store.flush().unwrap();
    let query = MetricQuery {
        name: metric_name(1).into(),
        matchers: Vec::new(),
        start: FIRST,
        end: FIRST + 30 * MINUTE,
        step: 5 * MINUTE,
        agg: Agg::Rate,
    };
    let want = query.run(&store, usize::MAX, false).unwrap();
    let got = query.run(&store, usize::MAX, true).unwrap();
    assert!(got.from_rollups && close(&want.series, &got.series));
    drop(store);
    // Flip bytes in the middle of the rollups part: its checksum fails when it is opened.
    let part = std::fs::read_dir(dir.path().join("rollups"))
        .unwrap()
        .flat_map(|hour| std::fs::read_dir(hour.unwrap().path()).unwrap())
        .map(|file| file.unwrap().path())
        .find(|path| path.extension().is_some_and(|e| e == "parquet"))
        .expect("a rollups part");
    let mut bytes = std::fs::read(&part).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 8].iter_mut().for_each(|b| *b ^= 0xFF);
    std::fs::write(&part, bytes).unwrap();
    let store = self::store(dir.path());
    let got = query.run(&store, usize::MAX, true).unwrap();
    assert!(!got.from_rollups, "damaged rollups are not trusted");
    assert!(
        close(&want.series, &got.series),
        "the points answer: {:?} vs {:?}",
        want.series,
        got.series
    );
    let range = TimeRange {
        start: Some(query.start),
        end: Some(query.end),
    };
    assert!(store.partial(sift_storage::Table::Rollups, &range, false));
    assert!(
        !store.partial(sift_storage::Table::Metrics, &range, false),
        "the points are whole"
    );
}

/// A step of several minutes whose rollups cannot answer one minute reads that minute's points
/// again, not the whole step's: with a budget of points above a minute's and below the step's,
/// the answer is whole (before, the step was read again and the budget cut it).
#[test]
fn a_step_reads_again_only_the_minute_its_rollups_cannot_answer() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    // A counter, a point every 2 s for 10 minutes; one point of the third minute arrives after a
    // flush that holds newer points of that minute (its runs overlap: order unknown).
    let points: Vec<Point> = (0..300)
        .map(|i| Point {
            series: 0,
            time: FIRST + i * 2 * SECOND,
            value: 1 + i % 7,
        })
        .collect();
    let late = FIRST + 2 * MINUTE + 10 * SECOND;
    let split = FIRST + 2 * MINUTE + 30 * SECOND;
    let first: Vec<Point> = points
        .iter()
        .copied()
        .filter(|p| p.time < split && p.time != late)
        .collect();
    let rest: Vec<Point> = points
        .iter()
        .copied()
        .filter(|p| p.time >= split || p.time == late)
        .collect();
    let mut totals = BTreeMap::new();
    store.append(1, &[points_entry(1, &first, &mut totals)]).unwrap();
    store.flush().unwrap();
    store.append(2, &[points_entry(1, &rest, &mut totals)]).unwrap();
    store.flush().unwrap();
    let query = MetricQuery {
        name: metric_name(1).into(),
        matchers: Vec::new(),
        start: FIRST,
        end: FIRST + 10 * MINUTE,
        step: 5 * MINUTE,
        agg: Agg::Rate,
    };
    let want = query.run(&store, usize::MAX, false).unwrap();
    let got = query.run(&store, 60, true).unwrap();
    assert!(!got.cut, "a minute's 30 points fit the budget of 60");
    assert_eq!(got.steps_from_points, 1);
    assert!(
        close(&want.series, &got.series),
        "points {:?}, rollups {:?}",
        want.series,
        got.series
    );
}
