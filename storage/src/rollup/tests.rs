use proptest::prelude::*;

use super::*;

#[test]
fn histogram_quantiles_interpolate_within_buckets() {
    // 100 observations: 50 in (0,10], 40 in (10,100], 10 in (100,+Inf).
    let bounds = [10.0, 100.0, f64::INFINITY];
    let counts = [50, 40, 10];
    assert_eq!(
        bucket_quantile(0.5, &bounds, &counts, Some(0.0), Some(500.0)),
        Some(10.0)
    );
    let p90 = bucket_quantile(0.9, &bounds, &counts, Some(0.0), Some(500.0)).unwrap();
    assert!((p90 - 100.0).abs() < 1e-9, "{p90}");
    let p70 = bucket_quantile(0.7, &bounds, &counts, Some(0.0), Some(500.0)).unwrap();
    assert!((p70 - 55.0).abs() < 1e-9, "{p70}");
    assert_eq!(
        bucket_quantile(0.99, &bounds, &counts, Some(0.0), Some(500.0)),
        Some(500.0)
    );
    assert_eq!(bucket_quantile(0.5, &bounds, &[0, 0, 0], None, None), None);
}

#[test]
fn rates_count_increases_and_survive_resets() {
    let s = |time: u64, value: f64| Sample {
        value: Some(value),
        cumulative: true,
        ..Sample::at(time)
    };
    let before = s(0, 100.0);
    let (a, b, c) = (s(1, 110.0), s(2, 130.0), s(3, 5.0));
    let rate = reduce(Agg::Rate, &[&a, &b, &c], Some(&before), 10.0).unwrap();
    assert!((rate - 3.5).abs() < 1e-9, "(10 + 20 + 5) / 10 s = {rate}");
}

/// Reduces one step of a series from all its samples (in time order); `before` is the series'
/// last sample before the step. The reference every way of adding up must agree with.
fn reduce(agg: Agg, samples: &[&Sample], before: Option<&Sample>, step_seconds: f64) -> Option<f64> {
    let values: Vec<f64> = samples.iter().filter_map(|s| s.value).collect();
    let histogram = samples.iter().any(|s| s.buckets.is_some() || !s.quantiles.is_empty());
    match agg {
        Agg::Sum if histogram => Some(samples.iter().map(|s| s.sum).sum()),
        Agg::Sum => (!values.is_empty()).then(|| values.iter().sum()),
        Agg::Avg if histogram => {
            let (count, sum) = samples.iter().fold((0u64, 0.0), |(c, s), x| (c + x.count, s + x.sum));
            (count > 0).then(|| sum / count as f64)
        }
        Agg::Avg => (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64),
        Agg::Min if histogram => samples.iter().filter_map(|s| s.min).reduce(f64::min),
        Agg::Min => values.iter().copied().reduce(f64::min),
        Agg::Max if histogram => samples.iter().filter_map(|s| s.max).reduce(f64::max),
        Agg::Max => values.iter().copied().reduce(f64::max),
        Agg::Rate => {
            let series: Vec<f64> = samples.iter().map(|s| s.counted()).collect();
            let cumulative = samples.first().is_some_and(|s| s.cumulative);
            let total = if cumulative {
                let mut previous = before.map(Sample::counted);
                let mut total = 0.0;
                for v in series {
                    if let Some(p) = previous {
                        total += increase(p, v);
                    }
                    previous = Some(v);
                }
                total
            } else {
                series.iter().sum()
            };
            Some(total / step_seconds)
        }
        Agg::Quantile(q) if histogram => {
            if samples.iter().any(|s| !s.quantiles.is_empty()) {
                let found: Vec<f64> = samples
                    .iter()
                    .filter_map(|s| {
                        s.quantiles
                            .iter()
                            .find(|(qq, _)| (qq - q).abs() < 1e-9)
                            .map(|(_, v)| *v)
                    })
                    .collect();
                return (!found.is_empty()).then(|| found.iter().sum::<f64>() / found.len() as f64);
            }
            let last = samples.iter().rev().find(|s| s.buckets.is_some())?;
            let (bounds, now) = last.buckets.as_ref()?;
            let mut counts = vec![0u64; bounds.len()];
            let width = counts.len();
            let same_bounds = |s: &Sample| s.buckets.as_ref().is_some_and(|(b, c)| b == bounds && c.len() == width);
            if last.cumulative {
                let base = before
                    .filter(|b| same_bounds(b))
                    .and_then(|b| b.buckets.as_ref())
                    .map(|(_, c)| c.clone());
                for (i, c) in now.iter().enumerate() {
                    let prev = base.as_ref().map_or(0, |b| b[i]);
                    counts[i] = if *c >= prev { c - prev } else { *c };
                }
                if counts.iter().all(|c| *c == 0) {
                    counts.clone_from(now);
                }
            } else {
                for s in samples.iter().filter(|s| same_bounds(s)) {
                    if let Some((_, c)) = &s.buckets {
                        for (i, n) in c.iter().enumerate() {
                            counts[i] += n;
                        }
                    }
                }
            }
            let min = samples.iter().filter_map(|s| s.min).reduce(f64::min);
            let max = samples.iter().filter_map(|s| s.max).reduce(f64::max);
            bucket_quantile(q, bounds, &counts, min, max)
                .map(|v| v.clamp(min.unwrap_or(f64::MIN), max.unwrap_or(f64::MAX)))
        }
        Agg::Quantile(q) => {
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            (!sorted.is_empty()).then(|| {
                let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
                sorted[rank - 1]
            })
        }
    }
}

/// The series' steps from every sample at once (stably sorted by time): the reference.
fn reference(samples: &[Sample], step: u64, agg: Agg) -> Vec<(u64, f64)> {
    let mut samples = samples.to_vec();
    samples.sort_by_key(|s| s.time);
    let mut out = Vec::new();
    let mut before: Option<&Sample> = None;
    let mut i = 0;
    while i < samples.len() {
        let n = samples[i].time / step;
        let mut j = i;
        while j < samples.len() && samples[j].time / step == n {
            j += 1;
        }
        let in_step: Vec<&Sample> = samples[i..j].iter().collect();
        if let Some(v) = reduce(agg, &in_step, before, step as f64 / 1e9) {
            if v.is_finite() {
                out.push((n, v));
            }
        }
        before = samples[..j].last();
        i = j;
    }
    out
}

/// The same from samples added one at a time, in the order given (a query reading points).
fn streamed(samples: &[Sample], step: u64, agg: Agg) -> Vec<(u64, f64)> {
    let mut steps = Steps::new();
    for s in samples {
        steps.entry(s.time / step).or_default().add(s.clone(), Some(agg));
    }
    reduce_steps(steps, agg, step).expect("points always answer")
}

/// The same from stored rollups: `parts` (consecutive runs of the samples in the order given,
/// as flushes would write them) each rolled up per minute, encoded and decoded, then added by
/// step (`step` a multiple of a minute); if `compacted`, the parts' rollups of one minute are
/// first merged into one stored rollup, as compaction does.
fn from_rollups(
    samples: &[Sample],
    parts: &[usize],
    compacted: bool,
    step: u64,
    agg: Agg,
) -> Result<Vec<(u64, f64)>, Inexact> {
    let mut stored: Vec<(u64, Rollup)> = Vec::new();
    let mut rest = samples;
    for &len in parts.iter().chain(std::iter::once(&usize::MAX)) {
        let (part, next) = rest.split_at(len.min(rest.len()));
        rest = next;
        let mut minutes: BTreeMap<u64, Rollup> = BTreeMap::new();
        for s in part {
            minutes.entry(s.time / MINUTE).or_default().add(s.clone(), None);
        }
        for (minute, mut rollup) in minutes {
            rollup.collapse();
            stored.push((minute, Rollup::decode(&rollup.encode()).expect("decodes")));
        }
    }
    if compacted {
        let mut merged: BTreeMap<u64, Rollup> = BTreeMap::new();
        for (minute, rollup) in stored {
            match merged.get_mut(&minute) {
                Some(kept) => kept.merge_stored(rollup),
                None => {
                    merged.insert(minute, rollup);
                }
            }
        }
        stored = merged
            .into_iter()
            .map(|(minute, r)| (minute, Rollup::decode(&r.encode()).expect("decodes")))
            .collect();
    }
    let mut steps = Steps::new();
    for (minute, rollup) in stored {
        steps.entry(minute * MINUTE / step).or_default().merge(rollup);
    }
    reduce_steps(steps, agg, step)
}

fn close(a: &[(u64, f64)], b: &[(u64, f64)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ta, va), (tb, vb))| ta == tb && (va - vb).abs() <= 1e-9 * va.abs().max(vb.abs()).max(1.0))
}

/// Samples of one kind: 0 gauge, 1 cumulative sum, 2 delta histogram, 3 cumulative histogram,
/// 4 summary; `points` are (time in seconds, value, three bucket counts), in arrival order.
fn samples_of(kind: u8, points: &[(u64, u64, u64, u64, u64)]) -> Vec<Sample> {
    let bounds: Arc<[f64]> = vec![10.0, 100.0, f64::INFINITY].into();
    let mut running = [0u64; 3];
    let mut total = 0.0;
    points
        .iter()
        .map(|&(second, v, a, b, c)| {
            let time = second * 1_000_000_000;
            let value = v as f64 / 4.0;
            let mut s = Sample::at(time);
            match kind {
                0 => {
                    s.value = Some(value);
                    s.gauge = true;
                }
                1 => {
                    total += value;
                    s.value = Some(total);
                    s.cumulative = true;
                }
                2 | 3 => {
                    let counts = if kind == 3 {
                        running = [running[0] + a, running[1] + b, running[2] + c];
                        running.to_vec()
                    } else {
                        vec![a, b, c]
                    };
                    s.cumulative = kind == 3;
                    s.count = counts.iter().sum();
                    s.sum = value;
                    s.min = Some(value / 8.0);
                    s.max = Some(value * 3.0);
                    s.buckets = Some((bounds.clone(), counts));
                }
                _ => {
                    s.count = a;
                    s.sum = value;
                    s.cumulative = true;
                    s.quantiles = vec![(0.5, value), (0.99, value * 2.0)];
                }
            }
            s
        })
        .collect()
}

/// Every aggregation the API knows.
fn aggs() -> impl Iterator<Item = Agg> {
    Agg::NAMES.iter().filter_map(|name| Agg::parse(name))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Rollups fed one sample at a time answer exactly what all the samples would, for every
    /// aggregation and kind of point, whatever order the store hands the points in.
    #[test]
    fn streamed_rollups_agree_with_every_sample_at_once(
        kind in 0u8..5,
        points in proptest::collection::vec((0u64..40, 0u64..1000, 0u64..50, 0u64..50, 0u64..50), 1..60),
        order in proptest::collection::vec(any::<u32>(), 60),
    ) {
        let samples = samples_of(kind, &points);
        // The store hands points over in no particular order.
        let mut shuffled: Vec<(u32, Sample)> = order.iter().copied().zip(samples).collect();
        shuffled.sort_by_key(|(k, _)| *k);
        let shuffled: Vec<Sample> = shuffled.into_iter().map(|(_, s)| s).collect();
        for step in [1_000_000_000, 7_000_000_000, 60_000_000_000] {
            for agg in aggs() {
                let want = reference(&shuffled, step, agg);
                let got = streamed(&shuffled, step, agg);
                prop_assert!(close(&want, &got), "{agg:?} step {step}: want {want:?}, got {got:?}");
            }
        }
    }

    /// Stored rollups (per minute and flush, encoded and decoded) added by step answer what the
    /// points would, or say they cannot; they can whenever each series' points came in time
    /// order and at distinct times (as an SDK exports them), and for order-free aggregations
    /// always.
    #[test]
    fn stored_rollups_agree_with_the_points_or_say_they_cannot(
        kind in 0u8..5,
        points in proptest::collection::vec((0u64..600, 0u64..1000, 0u64..50, 0u64..50, 0u64..50), 1..80),
        parts in proptest::collection::vec(1usize..30, 0..5),
        in_order in any::<bool>(),
        compacted in any::<bool>(),
    ) {
        let mut points = points;
        if in_order {
            // One point a second at most, in time order, as an exporter sends them.
            points.sort_by_key(|p| p.0);
            points.dedup_by_key(|p| p.0);
        }
        let samples = samples_of(kind, &points);
        for step in [60_000_000_000, 120_000_000_000, 600_000_000_000] {
            for agg in aggs() {
                let want = reference(&samples, step, agg);
                match from_rollups(&samples, &parts, compacted, step, agg) {
                    Ok(got) => prop_assert!(close(&want, &got), "{agg:?} step {step}: want {want:?}, got {got:?}"),
                    Err(Inexact) => {
                        let plain_quantile = matches!(agg, Agg::Quantile(_)) && kind < 2;
                        let ordered = agg == Agg::Rate || (matches!(agg, Agg::Quantile(_)) && kind != 4);
                        prop_assert!(plain_quantile || (ordered && !in_order), "{agg:?} of kind {kind} in order: rollups must answer");
                    }
                }
            }
        }
    }
}

#[test]
fn stored_rollups_round_trip_and_damaged_ones_are_refused() {
    let mut rollup = Rollup::default();
    for s in samples_of(3, &[(1, 10, 1, 2, 3), (2, 20, 4, 5, 6)])
        .into_iter()
        .chain(samples_of(4, &[(3, 7, 1, 0, 0)]))
    {
        rollup.add(s, None);
    }
    rollup.collapse();
    let bytes = rollup.encode();
    let decoded = Rollup::decode(&bytes).unwrap();
    assert_eq!(decoded.encode(), bytes);
    for cut in 0..bytes.len() {
        assert!(
            Rollup::decode(&bytes[..cut]).is_err(),
            "cut at {cut} of {}",
            bytes.len()
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Rollup::decode(&longer).is_err());
    // A list length that claims more than is there (the runs' count of an empty rollup, after
    // 83 bytes of fixed fields) is refused before anything is allocated.
    let mut lying = Rollup::default().encode();
    lying[83..91].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(Rollup::decode(&lying).unwrap_err().contains("does not fit"));
}
