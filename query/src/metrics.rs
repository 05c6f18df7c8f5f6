//! Metric series: points grouped by series (service and point attributes), bucketed by `step`,
//! each bucket reduced by one aggregation. Hand-written over the stored rows — the whole engine is
//! this file — rather than DataFusion, which would add ~27 minutes to a release build for a
//! handful of reductions.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use sift_proto::otlp::common::v1::KeyValue;
use sift_proto::otlp::metrics::v1::{metric::Data, number_data_point};
use sift_storage::{point_time, MetricRow};

use crate::ApiError;

/// The aggregations of SPEC §4.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Agg {
    /// Sum of values (histograms: of their sums).
    Sum,
    /// Mean value (histograms: sum / count).
    Avg,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Per-second increase of a counter (or histogram count).
    Rate,
    /// A quantile (from histogram buckets; of raw values for gauges and sums).
    Quantile(f64),
}

impl Agg {
    /// Parses `agg`.
    pub fn parse(text: &str) -> Result<Agg, ApiError> {
        Ok(match text {
            "sum" => Agg::Sum,
            "avg" => Agg::Avg,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "rate" => Agg::Rate,
            "p50" => Agg::Quantile(0.50),
            "p90" => Agg::Quantile(0.90),
            "p95" => Agg::Quantile(0.95),
            "p99" => Agg::Quantile(0.99),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "agg: unknown aggregation {other:?} (sum, avg, min, max, rate, p50, p90, p95, p99)"
                )))
            }
        })
    }
}

/// What one stored point contributes.
#[derive(Debug, Clone)]
struct Sample {
    time: u64,
    /// Gauge or sum value.
    value: Option<f64>,
    /// Cumulative temporality (values are running totals).
    cumulative: bool,
    /// Histogram: upper bounds (last is +Inf; shared by the samples of a series), counts,
    /// count, sum, min, max.
    buckets: Option<(Arc<[f64]>, Vec<u64>)>,
    count: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    /// Summary quantiles.
    quantiles: Vec<(f64, f64)>,
}

impl Sample {
    /// A sample at `time` that contributes nothing yet.
    fn at(time: u64) -> Sample {
        Sample {
            time,
            value: None,
            cumulative: false,
            buckets: None,
            count: 0,
            sum: 0.0,
            min: None,
            max: None,
            quantiles: Vec::new(),
        }
    }
}

fn sample(row: &MetricRow) -> Option<Sample> {
    let mut s = Sample::at(point_time(row));
    let number = |v: &Option<number_data_point::Value>| match v {
        Some(number_data_point::Value::AsDouble(d)) => Some(*d),
        Some(number_data_point::Value::AsInt(i)) => Some(*i as f64),
        None => None,
    };
    match row.metric.data.as_ref()? {
        Data::Gauge(g) => s.value = number(&g.data_points.first()?.value),
        Data::Sum(sum) => {
            s.value = number(&sum.data_points.first()?.value);
            s.cumulative = sum.aggregation_temporality == 2;
        }
        Data::Histogram(h) => {
            let p = h.data_points.first()?;
            s.cumulative = h.aggregation_temporality == 2;
            let mut bounds = p.explicit_bounds.clone();
            bounds.push(f64::INFINITY);
            s.buckets = Some((bounds.into(), p.bucket_counts.clone()));
            (s.count, s.sum, s.min, s.max) = (p.count, p.sum.unwrap_or(0.0), p.min, p.max);
        }
        Data::ExponentialHistogram(h) => {
            let p = h.data_points.first()?;
            s.cumulative = h.aggregation_temporality == 2;
            let base = 2f64.powf(2f64.powi(-p.scale));
            let mut bounds = vec![0.0];
            let mut counts = vec![p.zero_count];
            if let Some(positive) = &p.positive {
                for (i, c) in positive.bucket_counts.iter().enumerate() {
                    bounds.push(base.powi(positive.offset + i as i32 + 1));
                    counts.push(*c);
                }
            }
            bounds.push(f64::INFINITY);
            counts.push(0);
            s.buckets = Some((bounds.into(), counts));
            (s.count, s.sum, s.min, s.max) = (p.count, p.sum.unwrap_or(0.0), p.min, p.max);
        }
        Data::Summary(sm) => {
            let p = sm.data_points.first()?;
            s.cumulative = true;
            (s.count, s.sum) = (p.count, p.sum);
            s.quantiles = p.quantile_values.iter().map(|q| (q.quantile, q.value)).collect();
        }
    }
    Some(s)
}

/// The labels of a point: its attributes (as text) and its service.
fn labels(row: &MetricRow) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = sift_storage::json_object(point_attributes(row))
        .into_iter()
        .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect();
    let service = row.origin.service_name();
    if !service.is_empty() {
        labels.insert("service.name".into(), service.to_owned());
    }
    labels
}

fn point_attributes(row: &MetricRow) -> &[KeyValue] {
    match row.metric.data.as_ref() {
        Some(Data::Gauge(g)) => g.data_points.first().map_or(&[], |p| &p.attributes),
        Some(Data::Sum(s)) => s.data_points.first().map_or(&[], |p| &p.attributes),
        Some(Data::Histogram(h)) => h.data_points.first().map_or(&[], |p| &p.attributes),
        Some(Data::ExponentialHistogram(h)) => h.data_points.first().map_or(&[], |p| &p.attributes),
        Some(Data::Summary(s)) => s.data_points.first().map_or(&[], |p| &p.attributes),
        None => &[],
    }
}

fn kind(row: &MetricRow) -> &'static str {
    match row.metric.data.as_ref() {
        Some(Data::Gauge(_)) => "gauge",
        Some(Data::Sum(_)) => "sum",
        Some(Data::Histogram(_)) => "histogram",
        Some(Data::ExponentialHistogram(_)) => "exponential_histogram",
        Some(Data::Summary(_)) => "summary",
        None => "empty",
    }
}

/// The quantile `q` of bucketed counts (Prometheus `histogram_quantile`: linear within a bucket).
fn bucket_quantile(q: f64, bounds: &[f64], counts: &[u64], min: Option<f64>, max: Option<f64>) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        if (seen + c) as f64 >= rank {
            let lower = if i == 0 {
                min.unwrap_or(0.0).min(bounds[0])
            } else {
                bounds[i - 1]
            };
            let upper = bounds.get(i).copied().unwrap_or(f64::INFINITY);
            if upper.is_infinite() {
                return Some(max.unwrap_or(lower));
            }
            let within = (rank - seen as f64) / c as f64;
            return Some(lower + (upper - lower) * within);
        }
        seen += c;
    }
    max
}

/// Reduces one bucket of a series from all its samples (in time order); `before` is the series'
/// last sample before the bucket. The reference [`Bucket::reduce`] must agree with.
#[cfg(test)]
fn reduce(agg: Agg, samples: &[&Sample], before: Option<&Sample>, step_seconds: f64) -> Result<Option<f64>, ApiError> {
    let values: Vec<f64> = samples.iter().filter_map(|s| s.value).collect();
    let histogram = samples.iter().any(|s| s.buckets.is_some() || !s.quantiles.is_empty());
    Ok(match agg {
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
            let series: Vec<f64> = samples.iter().map(|s| s.value.unwrap_or(s.count as f64)).collect();
            let cumulative = samples.first().is_some_and(|s| s.cumulative);
            let increase = if cumulative {
                let mut previous = before.map(|s| s.value.unwrap_or(s.count as f64));
                let mut increase = 0.0;
                for v in series {
                    increase += match previous {
                        Some(p) if v >= p => v - p,
                        Some(_) => v, // a reset
                        None => 0.0,
                    };
                    previous = Some(v);
                }
                increase
            } else {
                series.iter().sum()
            };
            Some(increase / step_seconds)
        }
        Agg::Quantile(q) if histogram => {
            if let Some(first) = samples.iter().find(|s| !s.quantiles.is_empty()) {
                let _ = first;
                let found: Vec<f64> = samples
                    .iter()
                    .filter_map(|s| {
                        s.quantiles
                            .iter()
                            .find(|(qq, _)| (qq - q).abs() < 1e-9)
                            .map(|(_, v)| *v)
                    })
                    .collect();
                return Ok((!found.is_empty()).then(|| found.iter().sum::<f64>() / found.len() as f64));
            }
            let Some(last) = samples.iter().rev().find(|s| s.buckets.is_some()) else {
                return Ok(None);
            };
            let (bounds, _) = last.buckets.as_ref().unwrap_or_else(|| unreachable!("found above"));
            let mut counts = vec![0u64; bounds.len()];
            let width = counts.len();
            let same_bounds = |s: &Sample| s.buckets.as_ref().is_some_and(|(b, c)| b == bounds && c.len() == width);
            if last.cumulative {
                // Observations in the bucket: the last running total minus the one before.
                let (_, now) = last.buckets.as_ref().unwrap_or_else(|| unreachable!("found above"));
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
            // Interpolation can overshoot the observed extremes; they bound the answer.
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
    })
}

/// What one bucket of one series keeps of its samples: enough to reduce it exactly as if every
/// sample were at hand, in memory that does not grow with them, but for the per-sample numbers
/// that `rate` (16 bytes a sample) and quantiles of plain values (8 bytes) need.
#[derive(Debug, Default)]
struct Bucket {
    /// The earliest sample's time and temporality (`rate` reads it).
    first: Option<(u64, bool)>,
    /// The latest sample (the next bucket's `before`).
    last: Option<Sample>,
    /// The latest sample with histogram buckets.
    last_histogram: Option<Sample>,
    /// Some sample has histogram buckets or summary quantiles.
    histogram: bool,
    /// Gauge and sum values: how many, their sum, min and max.
    values: u64,
    values_sum: f64,
    values_min: Option<f64>,
    values_max: Option<f64>,
    /// Every value, for quantiles of plain values.
    raw_values: Vec<f64>,
    /// Histogram sums and counts, and the extremes they report.
    sum: f64,
    count: u64,
    min: Option<f64>,
    max: Option<f64>,
    /// (time, value or count) of every sample, for `rate`.
    rate: Vec<(u64, f64)>,
    /// Bucket counts summed per distinct bounds (delta histograms' quantiles).
    counts: Vec<(Arc<[f64]>, Vec<u64>)>,
    /// Summaries: some sample has quantiles; the sum and number of those matching `q`.
    summary: bool,
    summary_sum: f64,
    summary_n: u64,
}

fn min_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl Bucket {
    /// Takes a sample (in any order: ties in time go to the later one, as a stable sort would).
    fn add(&mut self, s: Sample, agg: Agg) {
        if self.first.is_none_or(|(time, _)| s.time < time) {
            self.first = Some((s.time, s.cumulative));
        }
        self.histogram |= s.buckets.is_some() || !s.quantiles.is_empty();
        if let Some(v) = s.value {
            self.values += 1;
            self.values_sum += v;
            self.values_min = min_of(self.values_min, Some(v));
            self.values_max = max_of(self.values_max, Some(v));
            if matches!(agg, Agg::Quantile(_)) {
                self.raw_values.push(v);
            }
        }
        self.sum += s.sum;
        self.count += s.count;
        self.min = min_of(self.min, s.min);
        self.max = max_of(self.max, s.max);
        if agg == Agg::Rate {
            self.rate.push((s.time, s.value.unwrap_or(s.count as f64)));
        }
        if let Agg::Quantile(q) = agg {
            if !s.quantiles.is_empty() {
                self.summary = true;
                if let Some((_, v)) = s.quantiles.iter().find(|(qq, _)| (qq - q).abs() < 1e-9) {
                    self.summary_sum += v;
                    self.summary_n += 1;
                }
            }
            if let Some((bounds, counts)) = &s.buckets {
                if counts.len() == bounds.len() {
                    match self.counts.iter_mut().find(|(b, _)| b == bounds) {
                        Some((_, sum)) => sum.iter_mut().zip(counts).for_each(|(a, b)| *a += b),
                        None => self.counts.push((bounds.clone(), counts.clone())),
                    }
                }
                if self.last_histogram.as_ref().is_none_or(|l| s.time >= l.time) {
                    self.last_histogram = Some(s.clone());
                }
            }
        }
        if self.last.as_ref().is_none_or(|l| s.time >= l.time) {
            self.last = Some(s);
        }
    }

    /// The bucket's value; `before` is the series' last sample before it.
    fn reduce(mut self, agg: Agg, before: Option<&Sample>, step_seconds: f64) -> Option<f64> {
        let histogram = self.histogram;
        let values = (self.values > 0).then_some(());
        match agg {
            Agg::Sum if histogram => Some(self.sum),
            Agg::Sum => values.map(|()| self.values_sum),
            Agg::Avg if histogram => (self.count > 0).then(|| self.sum / self.count as f64),
            Agg::Avg => values.map(|()| self.values_sum / self.values as f64),
            Agg::Min if histogram => self.min,
            Agg::Min => self.values_min,
            Agg::Max if histogram => self.max,
            Agg::Max => self.values_max,
            Agg::Rate => {
                self.rate.sort_by_key(|(time, _)| *time);
                let increase = if self.first.is_some_and(|(_, cumulative)| cumulative) {
                    let mut previous = before.map(|s| s.value.unwrap_or(s.count as f64));
                    let mut increase = 0.0;
                    for (_, v) in self.rate {
                        increase += match previous {
                            Some(p) if v >= p => v - p,
                            Some(_) => v, // a reset
                            None => 0.0,
                        };
                        previous = Some(v);
                    }
                    increase
                } else {
                    self.rate.iter().map(|(_, v)| v).sum()
                };
                Some(increase / step_seconds)
            }
            Agg::Quantile(_) if histogram && self.summary => {
                (self.summary_n > 0).then(|| self.summary_sum / self.summary_n as f64)
            }
            Agg::Quantile(q) if histogram => {
                let last = self.last_histogram?;
                let (bounds, now) = last.buckets.as_ref()?;
                let width = bounds.len();
                let mut counts = vec![0u64; width];
                if last.cumulative {
                    // Observations in the bucket: the last running total minus the one before.
                    let base = before
                        .and_then(|b| b.buckets.as_ref())
                        .filter(|(b, c)| b == bounds && c.len() == width)
                        .map(|(_, c)| c);
                    for (i, c) in now.iter().enumerate().take(width) {
                        let prev = base.map_or(0, |b| b[i]);
                        counts[i] = if *c >= prev { c - prev } else { *c };
                    }
                    if counts.iter().all(|c| *c == 0) {
                        counts.clone_from(now);
                    }
                } else if let Some((_, sum)) = self.counts.iter().find(|(b, _)| b == bounds) {
                    counts.clone_from(sum);
                }
                // Interpolation can overshoot the observed extremes; they bound the answer.
                bucket_quantile(q, bounds, &counts, self.min, self.max)
                    .map(|v| v.clamp(self.min.unwrap_or(f64::MIN), self.max.unwrap_or(f64::MAX)))
            }
            Agg::Quantile(q) => {
                let mut sorted = self.raw_values;
                sorted.sort_by(f64::total_cmp);
                (!sorted.is_empty()).then(|| {
                    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
                    sorted[rank - 1]
                })
            }
        }
    }
}

/// The series of one metric over `[start, end)`, built from its points handed in one at a time
/// (as the store reads them): each point goes straight into its series' bucket of `step`, so a
/// query holds buckets, not points.
pub struct SeriesBuilder<'m> {
    matchers: &'m [(String, String)],
    start: u64,
    end: u64,
    step: u64,
    agg: Agg,
    by_series: BTreeMap<BTreeMap<String, String>, BTreeMap<u64, Bucket>>,
    gauge: bool,
    /// The last point's attributes and service, and the labels made of them (a series' points
    /// come one after another).
    last: Option<(Vec<KeyValue>, String, BTreeMap<String, String>)>,
}

impl<'m> SeriesBuilder<'m> {
    /// Series of the points whose labels match every `matchers` pair, bucketed by `step` from
    /// `start`, each bucket reduced by `agg`.
    pub fn new(matchers: &'m [(String, String)], start: u64, end: u64, step: u64, agg: Agg) -> SeriesBuilder<'m> {
        SeriesBuilder {
            matchers,
            start,
            end,
            step: step.max(1),
            agg,
            by_series: BTreeMap::new(),
            gauge: false,
            last: None,
        }
    }

    /// Adds a point (of the metric the builder is for).
    pub fn add(&mut self, row: &MetricRow) {
        let (attributes, service) = (point_attributes(row), row.origin.service_name());
        let repeated = self
            .last
            .as_ref()
            .is_some_and(|(a, s, _)| a.as_slice() == attributes && s == service);
        if !repeated {
            self.last = Some((attributes.to_vec(), service.to_owned(), labels(row)));
        }
        let Some((_, _, labels)) = self.last.as_ref() else {
            return;
        };
        if !self.matchers.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return;
        }
        self.gauge |= kind(row) == "gauge";
        let Some(sample) = sample(row) else { return };
        if sample.time < self.start || sample.time >= self.end {
            return;
        }
        let bucket = (sample.time - self.start) / self.step;
        let series = match self.by_series.get_mut(labels) {
            Some(series) => series,
            None => self.by_series.entry(labels.clone()).or_default(),
        };
        series.entry(bucket).or_default().add(sample, self.agg);
    }

    /// The series, as the API shows them.
    pub fn finish(self) -> Result<Vec<Value>, ApiError> {
        if self.agg == Agg::Rate && self.gauge {
            return Err(ApiError::BadRequest(
                "agg: rate needs a counter (sum) or histogram; this metric is a gauge".into(),
            ));
        }
        let step_seconds = self.step as f64 / 1e9;
        let mut out = Vec::new();
        for (labels, buckets) in self.by_series {
            let mut points = Vec::new();
            let mut before: Option<Sample> = None;
            for (bucket, state) in buckets {
                let last = state.last.clone();
                if let Some(v) = state.reduce(self.agg, before.as_ref(), step_seconds) {
                    if v.is_finite() {
                        points.push(json!([(self.start + bucket * self.step) / 1_000_000_000, v]));
                    }
                }
                before = last;
            }
            if !points.is_empty() {
                out.push(json!({ "labels": labels, "points": points }));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
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
        let rate = reduce(Agg::Rate, &[&a, &b, &c], Some(&before), 10.0).unwrap().unwrap();
        assert!((rate - 3.5).abs() < 1e-9, "(10 + 20 + 5) / 10 s = {rate}");
    }

    /// The series' points, bucket by bucket, from every sample at once: the reference.
    fn reference(samples: &[Sample], step: u64, agg: Agg) -> Vec<(u64, f64)> {
        let mut samples = samples.to_vec();
        samples.sort_by_key(|s| s.time);
        let mut out = Vec::new();
        let mut before: Option<&Sample> = None;
        let mut i = 0;
        while i < samples.len() {
            let bucket = samples[i].time / step;
            let mut j = i;
            while j < samples.len() && samples[j].time / step == bucket {
                j += 1;
            }
            let in_bucket: Vec<&Sample> = samples[i..j].iter().collect();
            if let Some(v) = reduce(agg, &in_bucket, before, step as f64 / 1e9).unwrap() {
                if v.is_finite() {
                    out.push((bucket, v));
                }
            }
            before = samples[..j].last();
            i = j;
        }
        out
    }

    /// The same from buckets fed one sample at a time, in the order given.
    fn streamed(samples: &[Sample], step: u64, agg: Agg) -> Vec<(u64, f64)> {
        let mut buckets: BTreeMap<u64, Bucket> = BTreeMap::new();
        for s in samples {
            buckets.entry(s.time / step).or_default().add(s.clone(), agg);
        }
        let mut out = Vec::new();
        let mut before: Option<Sample> = None;
        for (bucket, state) in buckets {
            let last = state.last.clone();
            if let Some(v) = state.reduce(agg, before.as_ref(), step as f64 / 1e9) {
                if v.is_finite() {
                    out.push((bucket, v));
                }
            }
            before = last;
        }
        out
    }

    fn close(a: &[(u64, f64)], b: &[(u64, f64)]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|((ta, va), (tb, vb))| ta == tb && (va - vb).abs() <= 1e-9 * va.abs().max(vb.abs()).max(1.0))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Buckets kept as running state answer exactly what all the samples would, for every
        /// aggregation and kind of point, whatever order the store hands the points in.
        #[test]
        fn streamed_buckets_agree_with_every_sample_at_once(
            kind in 0u8..5,
            points in proptest::collection::vec((0u64..40, 0u64..1000, 0u64..50, 0u64..50, 0u64..50), 1..60),
            order in proptest::collection::vec(proptest::prelude::any::<u32>(), 60),
        ) {
            let bounds: Arc<[f64]> = vec![10.0, 100.0, f64::INFINITY].into();
            let mut running = [0u64; 3];
            let mut total = 0.0;
            let samples: Vec<Sample> = points
                .iter()
                .map(|&(second, v, a, b, c)| {
                    let time = second * 1_000_000_000;
                    let value = v as f64 / 4.0;
                    let mut s = Sample::at(time);
                    match kind {
                        0 => s.value = Some(value),
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
                .collect();
            // The store hands points over in no particular order.
            let mut shuffled: Vec<(u32, Sample)> = samples.iter().cloned().zip(order.iter().copied()).map(|(s, k)| (k, s)).collect();
            shuffled.sort_by_key(|(k, _)| *k);
            let shuffled: Vec<Sample> = shuffled.into_iter().map(|(_, s)| s).collect();
            // Equal times keep their order in both (a stable sort, later wins).
            let mut in_order = shuffled.clone();
            in_order.sort_by_key(|s| s.time);
            for step in [1_000_000_000, 7_000_000_000, 60_000_000_000] {
                for agg in [Agg::Sum, Agg::Avg, Agg::Min, Agg::Max, Agg::Rate, Agg::Quantile(0.5), Agg::Quantile(0.99)] {
                    let want = reference(&in_order, step, agg);
                    let got = streamed(&shuffled, step, agg);
                    proptest::prop_assert!(close(&want, &got), "{agg:?} step {step}: want {want:?}, got {got:?}");
                }
            }
        }
    }
}
