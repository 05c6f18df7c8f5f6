//! Metric rollups: what the points of one series (a metric's points with the same labels: point
//! attributes and service) contribute to a span of time, kept so that every aggregation of the
//! query API comes out of it as out of the points themselves.
//!
//! One type, [`Rollup`], serves both ends. The store writes one per series and minute with each
//! metrics part (the `rollups` table, [`crate::Table::Rollups`]); a query adds the rollups of a
//! step's minutes into one per series and step, or, where rollups cannot answer exactly, the raw
//! points ([`Series`] does both). Sums, counts, extremes, histogram bucket counts and summary
//! quantiles add up in any order. What depends on the order of the points — `rate` over
//! cumulative values, and quantiles of histograms (the last histogram of the step, less the one
//! before it) — is kept as *runs*: for the points of a rollup in time order, the first and last
//! value and the increase between them (resets counted as in Prometheus). Runs join exactly when
//! their times do not overlap; when they do (points of one series written out of order, or two
//! points of a series at one time), [`Rollup::reduce`] says [`Inexact`] and the query reads the
//! points. Quantiles of plain values (gauges, sums) need every value: rollups say `Inexact` for
//! them too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::types::{Float64Type, UInt64Type};
use arrow_array::{
    Array, ArrowPrimitiveType, Float64Array, Int32Array, Int64Array, ListArray, PrimitiveArray, RecordBatch,
    StringArray, UInt64Array,
};
use arrow_schema::ArrowError;

use sift_proto::otlp::common::v1::KeyValue;
use sift_proto::otlp::metrics::v1::{metric::Data, number_data_point};

use crate::columnar::column;
use crate::{point_time, MetricRow, StorageError, Store, TimeRange};

/// A series' labels: its point attributes (as text) and `service.name`.
pub type Labels = BTreeMap<String, String>;

/// The span of one stored rollup.
pub const MINUTE: u64 = 60_000_000_000;

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
    /// The names [`Agg::parse`] knows.
    pub const NAMES: [&'static str; 9] = ["sum", "avg", "min", "max", "rate", "p50", "p90", "p95", "p99"];

    /// The aggregation named `text` (one of [`Agg::NAMES`]).
    pub fn parse(text: &str) -> Option<Agg> {
        Some(match text {
            "sum" => Agg::Sum,
            "avg" => Agg::Avg,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "rate" => Agg::Rate,
            "p50" => Agg::Quantile(0.50),
            "p90" => Agg::Quantile(0.90),
            "p95" => Agg::Quantile(0.95),
            "p99" => Agg::Quantile(0.99),
            _ => return None,
        })
    }
}

/// What one stored point contributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    time: u64,
    /// Gauge or sum value.
    value: Option<f64>,
    /// Cumulative temporality (values are running totals).
    cumulative: bool,
    /// The point is a gauge's (`rate` refuses gauges).
    gauge: bool,
    /// Histogram: upper bounds (last is +Inf; shared by the samples of a series), counts.
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
            gauge: false,
            buckets: None,
            count: 0,
            sum: 0.0,
            min: None,
            max: None,
            quantiles: Vec::new(),
        }
    }

    /// The sample of a stored point (`None` for a metric without a point).
    pub(crate) fn of(row: &MetricRow) -> Option<Sample> {
        let mut s = Sample::at(point_time(row));
        let number = |v: &Option<number_data_point::Value>| match v {
            Some(number_data_point::Value::AsDouble(d)) => Some(*d),
            Some(number_data_point::Value::AsInt(i)) => Some(*i as f64),
            None => None,
        };
        match row.metric.data.as_ref()? {
            Data::Gauge(g) => {
                s.value = number(&g.data_points.first()?.value);
                s.gauge = true;
            }
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
                let positive = p.positive.as_ref().map(|b| (b.offset, &b.bucket_counts[..]));
                s.buckets = Some(exponential_buckets(p.scale, p.zero_count, positive));
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

    /// What `rate` counts of it: the value, or a histogram's count.
    fn counted(&self) -> f64 {
        self.value.unwrap_or(self.count as f64)
    }
}

/// An exponential histogram's buckets as explicit ones (upper bounds, last +Inf; counts): the
/// zero bucket, then the positive buckets `(offset, counts)` (negative ones are not counted).
fn exponential_buckets(scale: i32, zero_count: u64, positive: Option<(i32, &[u64])>) -> (Arc<[f64]>, Vec<u64>) {
    let base = 2f64.powf(2f64.powi(scale.saturating_neg()));
    let mut bounds = vec![0.0];
    let mut counts = vec![zero_count];
    if let Some((offset, positive)) = positive {
        for (i, c) in positive.iter().enumerate() {
            let index = i32::try_from(i).unwrap_or(i32::MAX);
            bounds.push(base.powi(offset.saturating_add(index).saturating_add(1)));
            counts.push(*c);
        }
    }
    bounds.push(f64::INFINITY);
    counts.push(0);
    (bounds.into(), counts)
}

/// The labels of a point: its attributes (as text) and its service.
pub(crate) fn labels(row: &MetricRow) -> Labels {
    labels_of(point_attributes(row), row.origin.service_name())
}

/// The labels of a point with these attributes, of this service.
fn labels_of(attributes: &[KeyValue], service: &str) -> Labels {
    let mut labels: BTreeMap<String, String> = crate::json_object(attributes)
        .into_iter()
        .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect();
    if !service.is_empty() {
        labels.insert("service.name".into(), service.to_owned());
    }
    labels
}

/// The columns of stored points that [`SampleColumns`] reads.
pub(crate) const SAMPLE_COLUMNS: [&str; 19] = {
    use crate::columnar::metrics::*;
    [
        TYPE,
        TEMPORALITY,
        TIME,
        ATTRIBUTES,
        VALUE_DOUBLE,
        VALUE_INT,
        COUNT,
        SUM,
        MIN,
        MAX,
        BUCKET_COUNTS,
        EXPLICIT_BOUNDS,
        SCALE,
        ZERO_COUNT,
        POSITIVE_OFFSET,
        POSITIVE_BUCKET_COUNTS,
        QUANTILES,
        QUANTILE_VALUES,
        crate::columnar::origin_col::RESOURCE_ATTRIBUTES,
    ]
};

/// The samples of a batch of stored points read straight from its columns ([`SAMPLE_COLUMNS`]),
/// as [`Sample::of`] makes them from whole points: a query reading a minute of points spent most
/// of its time making [`MetricRow`]s (names, scopes and attributes allocated and copied) to take
/// a few numbers out of each.
pub(crate) struct SampleColumns<'b> {
    kind: &'b Int32Array,
    temporality: &'b Int32Array,
    time: &'b UInt64Array,
    attributes: &'b StringArray,
    resource: &'b StringArray,
    value_double: &'b Float64Array,
    value_int: &'b Int64Array,
    count: &'b UInt64Array,
    sum: &'b Float64Array,
    min: &'b Float64Array,
    max: &'b Float64Array,
    bucket_counts: UInt64List<'b>,
    explicit_bounds: F64List<'b>,
    scale: &'b Int32Array,
    zero_count: &'b UInt64Array,
    positive_offset: &'b Int32Array,
    positive_counts: UInt64List<'b>,
    quantiles: F64List<'b>,
    quantile_values: F64List<'b>,
    /// The bounds (with +Inf) of the last histogram read: a series' points share them.
    bounds: std::cell::RefCell<Option<Arc<[f64]>>>,
}

/// A list column's offsets and values.
struct List<'b, P: ArrowPrimitiveType> {
    offsets: &'b [i32],
    values: &'b [P::Native],
}

type UInt64List<'b> = List<'b, UInt64Type>;
type F64List<'b> = List<'b, Float64Type>;

impl<'b, P: ArrowPrimitiveType> List<'b, P> {
    fn of(batch: &'b RecordBatch, name: &str) -> Result<List<'b, P>, ArrowError> {
        let list: &ListArray = column(batch, name)?;
        let values = list
            .values()
            .as_any()
            .downcast_ref::<PrimitiveArray<P>>()
            .ok_or_else(|| ArrowError::SchemaError(format!("column {name} holds lists of an unexpected type")))?;
        Ok(List {
            offsets: list.value_offsets(),
            values: values.values(),
        })
    }

    fn get(&self, row: usize) -> &'b [P::Native] {
        let (from, to) = (self.offsets[row] as usize, self.offsets[row + 1] as usize);
        self.values.get(from..to).unwrap_or(&[])
    }
}

fn opt<T: ArrowPrimitiveType>(array: &PrimitiveArray<T>, row: usize) -> Option<T::Native> {
    (!array.is_null(row)).then(|| array.value(row))
}

impl<'b> SampleColumns<'b> {
    pub(crate) fn new(batch: &'b RecordBatch) -> Result<SampleColumns<'b>, ArrowError> {
        use crate::columnar::metrics::*;
        Ok(SampleColumns {
            kind: column(batch, TYPE)?,
            temporality: column(batch, TEMPORALITY)?,
            time: column(batch, TIME)?,
            attributes: column(batch, ATTRIBUTES)?,
            resource: column(batch, crate::columnar::origin_col::RESOURCE_ATTRIBUTES)?,
            value_double: column(batch, VALUE_DOUBLE)?,
            value_int: column(batch, VALUE_INT)?,
            count: column(batch, COUNT)?,
            sum: column(batch, SUM)?,
            min: column(batch, MIN)?,
            max: column(batch, MAX)?,
            bucket_counts: List::of(batch, BUCKET_COUNTS)?,
            explicit_bounds: List::of(batch, EXPLICIT_BOUNDS)?,
            scale: column(batch, SCALE)?,
            zero_count: column(batch, ZERO_COUNT)?,
            positive_offset: column(batch, POSITIVE_OFFSET)?,
            positive_counts: List::of(batch, POSITIVE_BUCKET_COUNTS)?,
            quantiles: List::of(batch, QUANTILES)?,
            quantile_values: List::of(batch, QUANTILE_VALUES)?,
            bounds: std::cell::RefCell::new(None),
        })
    }

    /// The sample of point `row` (as [`Sample::of`] the point).
    pub(crate) fn sample(&self, row: usize) -> Result<Sample, ArrowError> {
        let mut s = Sample::at(self.time.value(row));
        let cumulative = self.temporality.value(row) == 2;
        let stats = |s: &mut Sample| {
            (s.count, s.sum, s.min, s.max) = (
                self.count.value(row),
                opt(self.sum, row).unwrap_or(0.0),
                opt(self.min, row),
                opt(self.max, row),
            )
        };
        match self.kind.value(row) {
            kind @ (1 | 2) => {
                s.value = opt(self.value_double, row).or_else(|| opt(self.value_int, row).map(|i| i as f64));
                s.gauge = kind == 1;
                s.cumulative = kind == 2 && cumulative;
            }
            3 => {
                s.cumulative = cumulative;
                let bounds = self.explicit_bounds.get(row);
                let mut last = self.bounds.borrow_mut();
                let shared = match last.as_ref() {
                    Some(b) if b.len() == bounds.len() + 1 && b[..bounds.len()] == *bounds => b.clone(),
                    _ => {
                        let made: Arc<[f64]> = bounds.iter().copied().chain([f64::INFINITY]).collect();
                        *last = Some(made.clone());
                        made
                    }
                };
                s.buckets = Some((shared, self.bucket_counts.get(row).to_vec()));
                stats(&mut s);
            }
            4 => {
                s.cumulative = cumulative;
                let positive = opt(self.positive_offset, row).map(|offset| (offset, self.positive_counts.get(row)));
                s.buckets = Some(exponential_buckets(
                    self.scale.value(row),
                    self.zero_count.value(row),
                    positive,
                ));
                stats(&mut s);
            }
            5 => {
                s.cumulative = true;
                (s.count, s.sum) = (self.count.value(row), opt(self.sum, row).unwrap_or_default());
                s.quantiles = self
                    .quantiles
                    .get(row)
                    .iter()
                    .copied()
                    .zip(self.quantile_values.get(row).iter().copied())
                    .collect();
            }
            other => return Err(ArrowError::ParseError(format!("unknown stored metric type {other}"))),
        }
        Ok(s)
    }
}

/// The labels of the last point read from columns, kept while the points that follow have the
/// same attributes and resource (as text: a series' points come one after another).
#[derive(Default)]
pub(crate) struct RawLabels(Option<(String, String, Labels)>);

impl RawLabels {
    /// The labels of point `row` of `columns`.
    pub(crate) fn of(&mut self, columns: &SampleColumns<'_>, row: usize) -> Result<&Labels, ArrowError> {
        let (attributes, resource) = (columns.attributes.value(row), columns.resource.value(row));
        let same = self
            .0
            .as_ref()
            .is_some_and(|(a, r, _)| a == attributes && r == resource);
        if !same {
            let resource_attributes = crate::columnar::read_attributes(resource)?;
            let labels = labels_of(
                &crate::columnar::read_attributes(attributes)?,
                crate::columnar::service_name(&resource_attributes),
            );
            self.0 = Some((attributes.to_owned(), resource.to_owned(), labels));
        }
        match &self.0 {
            Some((_, _, labels)) => Ok(labels),
            None => unreachable!("set above"),
        }
    }
}

/// The labels of the last point seen, kept while the points that follow have the same attributes
/// and service (a series' points come one after another): [`labels`] parses attributes as JSON.
#[derive(Default)]
struct LastLabels(Option<(Vec<KeyValue>, String, Labels)>);

impl LastLabels {
    fn of(&mut self, row: &MetricRow) -> &Labels {
        let (attributes, service) = (point_attributes(row), row.origin.service_name());
        let same = self.0.as_ref().is_some_and(|(a, s, _)| a == attributes && s == service);
        if !same {
            self.0 = Some((attributes.to_vec(), service.to_owned(), labels(row)));
        }
        match &self.0 {
            Some((_, _, labels)) => labels,
            None => unreachable!("set above"),
        }
    }
}

/// The attributes of a stored point.
pub(crate) fn point_attributes(row: &MetricRow) -> &[KeyValue] {
    match row.metric.data.as_ref() {
        Some(Data::Gauge(g)) => g.data_points.first().map_or(&[], |p| &p.attributes),
        Some(Data::Sum(s)) => s.data_points.first().map_or(&[], |p| &p.attributes),
        Some(Data::Histogram(h)) => h.data_points.first().map_or(&[], |p| &p.attributes),
        Some(Data::ExponentialHistogram(h)) => h.data_points.first().map_or(&[], |p| &p.attributes),
        Some(Data::Summary(s)) => s.data_points.first().map_or(&[], |p| &p.attributes),
        None => &[],
    }
}

/// The quantile `q` of bucketed counts (Prometheus `histogram_quantile`: linear within a bucket).
pub(crate) fn bucket_quantile(
    q: f64,
    bounds: &[f64],
    counts: &[u64],
    min: Option<f64>,
    max: Option<f64>,
) -> Option<f64> {
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

/// The increase from a running total `previous` to `next` (a drop is a reset: all of `next`).
fn increase(previous: f64, next: f64) -> f64 {
    if next >= previous {
        next - previous
    } else {
        next
    }
}

/// Points of one series in time order, as `rate` reads them: the first and last value or count,
/// the increase between them (as running totals), and their sum (as deltas).
#[derive(Debug, Clone)]
struct Run {
    first_time: u64,
    last_time: u64,
    first: f64,
    last: f64,
    increase: f64,
    total: f64,
}

impl Run {
    fn of(s: &Sample) -> Run {
        let v = s.counted();
        Run {
            first_time: s.time,
            last_time: s.time,
            first: v,
            last: v,
            increase: 0.0,
            total: v,
        }
    }
}

/// The rollup could not answer exactly: ask the points (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inexact;

/// What a series' points over a span of time add up to (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct Rollup {
    /// The earliest sample's time and temporality (`rate` reads it).
    first: Option<(u64, bool)>,
    /// The latest sample (the next step's `before`).
    last: Option<Sample>,
    /// The latest sample with histogram buckets.
    last_histogram: Option<Sample>,
    /// Some sample has histogram buckets or summary quantiles.
    histogram: bool,
    /// Some sample is a gauge's.
    gauge: bool,
    /// Gauge and sum values: how many, their sum, min and max.
    values: u64,
    values_sum: f64,
    values_min: Option<f64>,
    values_max: Option<f64>,
    /// Every value, for quantiles of plain values (only while a query adds points).
    raw_values: Vec<f64>,
    /// Histogram sums and counts, and the extremes they report.
    sum: f64,
    count: u64,
    min: Option<f64>,
    max: Option<f64>,
    /// The samples as runs (one per sample while a query adds points; one per stored rollup).
    runs: Vec<Run>,
    /// Bucket counts summed per distinct bounds (delta histograms' quantiles).
    counts: Vec<(Arc<[f64]>, Vec<u64>)>,
    /// Some sample has summary quantiles; per quantile, the sum and number of their values.
    summary: bool,
    quantiles: Vec<(f64, f64, u64)>,
    /// Made of stored rollups: the order of samples is known only as far as runs' times tell.
    collapsed: bool,
    /// Two samples of a stored rollup had one time (their order is unknown).
    ties: bool,
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

/// `candidate` replaces `kept` if it is at least as late (ties go to the later one, as a stable
/// sort would).
fn later(kept: &mut Option<Sample>, candidate: Option<Sample>) {
    if let Some(c) = candidate {
        if kept.as_ref().is_none_or(|k| c.time >= k.time) {
            *kept = Some(c);
        }
    }
}

const QUANTILE_EPSILON: f64 = 1e-9;

impl Rollup {
    /// Takes a sample (in any order). `agg`: what the query needs (`None`: everything a stored
    /// rollup keeps — all but the raw values).
    pub(crate) fn add(&mut self, s: Sample, agg: Option<Agg>) {
        let rate = agg.is_none_or(|a| a == Agg::Rate);
        let quantile = agg.is_none_or(|a| matches!(a, Agg::Quantile(_)));
        if self.first.is_none_or(|(time, _)| s.time < time) {
            self.first = Some((s.time, s.cumulative));
        }
        self.histogram |= s.buckets.is_some() || !s.quantiles.is_empty();
        self.gauge |= s.gauge;
        if let Some(v) = s.value {
            self.values += 1;
            self.values_sum += v;
            self.values_min = min_of(self.values_min, Some(v));
            self.values_max = max_of(self.values_max, Some(v));
            if matches!(agg, Some(Agg::Quantile(_))) {
                self.raw_values.push(v);
            }
        }
        self.sum += s.sum;
        self.count += s.count;
        self.min = min_of(self.min, s.min);
        self.max = max_of(self.max, s.max);
        if rate {
            self.runs.push(Run::of(&s));
        }
        if quantile {
            if !s.quantiles.is_empty() {
                self.summary = true;
                for (i, &(q, v)) in s.quantiles.iter().enumerate() {
                    // A sample's first value of a quantile counts, as a lookup would find it.
                    if s.quantiles[..i].iter().any(|(qq, _)| (qq - q).abs() < QUANTILE_EPSILON) {
                        continue;
                    }
                    self.add_quantile(q, v, 1);
                }
            }
            if let Some((bounds, counts)) = &s.buckets {
                if counts.len() == bounds.len() {
                    self.add_counts(bounds, counts);
                }
                if self.last_histogram.as_ref().is_none_or(|l| s.time >= l.time) {
                    self.last_histogram = Some(s.clone());
                }
            }
        }
        later(&mut self.last, Some(s));
    }

    fn add_quantile(&mut self, q: f64, sum: f64, n: u64) {
        match self
            .quantiles
            .iter_mut()
            .find(|(qq, _, _)| (qq - q).abs() < QUANTILE_EPSILON)
        {
            Some((_, s, k)) => {
                *s += sum;
                *k += n;
            }
            None => self.quantiles.push((q, sum, n)),
        }
    }

    fn add_counts(&mut self, bounds: &Arc<[f64]>, counts: &[u64]) {
        match self.counts.iter_mut().find(|(b, _)| b == bounds) {
            Some((_, sum)) => sum.iter_mut().zip(counts).for_each(|(a, b)| *a += b),
            None => self.counts.push((bounds.clone(), counts.to_vec())),
        }
    }

    /// Adds another rollup of the same series (a stored one, or one a query built).
    pub fn merge(&mut self, other: Rollup) {
        if let Some((time, cumulative)) = other.first {
            if self.first.is_none_or(|(mine, _)| time < mine) {
                self.first = Some((time, cumulative));
            }
        }
        self.histogram |= other.histogram;
        self.gauge |= other.gauge;
        self.values += other.values;
        self.values_sum += other.values_sum;
        self.values_min = min_of(self.values_min, other.values_min);
        self.values_max = max_of(self.values_max, other.values_max);
        self.raw_values.extend(other.raw_values);
        self.sum += other.sum;
        self.count += other.count;
        self.min = min_of(self.min, other.min);
        self.max = max_of(self.max, other.max);
        self.runs.extend(other.runs);
        for (bounds, counts) in &other.counts {
            self.add_counts(bounds, counts);
        }
        self.summary |= other.summary;
        for (q, sum, n) in other.quantiles {
            self.add_quantile(q, sum, n);
        }
        later(&mut self.last_histogram, other.last_histogram);
        later(&mut self.last, other.last);
        self.collapsed |= other.collapsed;
        self.ties |= other.ties;
    }

    /// Adds another stored rollup of the same series and minute, as a stored rollup: runs whose
    /// times do not overlap are joined (their order is known), the others kept apart (a query
    /// then reads the points of that step).
    pub(crate) fn merge_stored(&mut self, other: Rollup) {
        self.merge(other);
        self.runs.sort_by_key(|r| r.first_time);
        let mut joined: Vec<Run> = Vec::with_capacity(self.runs.len());
        for r in std::mem::take(&mut self.runs) {
            match joined.last_mut() {
                Some(last) if r.first_time > last.last_time => {
                    last.increase += increase(last.last, r.first) + r.increase;
                    last.total += r.total;
                    last.last = r.last;
                    last.last_time = r.last_time;
                }
                _ => joined.push(r),
            }
        }
        self.runs = joined;
    }

    /// Joins the runs into one, as a stored rollup keeps them (in time order; samples at one
    /// time keep the order they were added in, but mark the rollup as having ties).
    fn collapse(&mut self) {
        self.runs.sort_by_key(|r| r.first_time);
        let mut runs = std::mem::take(&mut self.runs).into_iter();
        if let Some(mut joined) = runs.next() {
            for r in runs {
                self.ties |= r.first_time <= joined.last_time;
                joined.increase += increase(joined.last, r.first) + r.increase;
                joined.total += r.total;
                joined.last = r.last;
                joined.last_time = joined.last_time.max(r.last_time);
            }
            self.runs.push(joined);
        }
        self.collapsed = true;
    }

    /// The time of the latest sample added.
    pub(crate) fn last_time(&self) -> Option<u64> {
        self.last.as_ref().map(|s| s.time)
    }

    /// Some sample is a gauge's.
    pub(crate) fn has_gauge(&self) -> bool {
        self.gauge
    }

    /// Whether [`Self::reduce`] would say [`Inexact`] for `agg`.
    fn cannot_answer(&mut self, agg: Agg) -> bool {
        let plain_quantile =
            matches!(agg, Agg::Quantile(_)) && !self.histogram && self.raw_values.len() as u64 != self.values;
        plain_quantile || self.order_unknown(agg)
    }

    /// Whether `agg` depends on the order of the samples, and stored rollups cannot tell it.
    fn order_unknown(&mut self, agg: Agg) -> bool {
        let ordered = match agg {
            Agg::Rate => true,
            Agg::Quantile(_) => self.histogram && !self.summary,
            _ => false,
        };
        if !ordered || !self.collapsed {
            return false;
        }
        self.runs.sort_by_key(|r| r.first_time);
        self.ties || self.runs.windows(2).any(|w| w[1].first_time <= w[0].last_time)
    }

    /// The value of `agg` over what was added; `before` is the series' last sample before it
    /// (the previous step's [`Self::last`]); `step_seconds` divides `rate`'s increase.
    pub fn reduce(mut self, agg: Agg, before: Option<&Sample>, step_seconds: f64) -> Result<Option<f64>, Inexact> {
        if self.order_unknown(agg) {
            return Err(Inexact);
        }
        let histogram = self.histogram;
        let values = (self.values > 0).then_some(());
        Ok(match agg {
            Agg::Sum if histogram => Some(self.sum),
            Agg::Sum => values.map(|()| self.values_sum),
            Agg::Avg if histogram => (self.count > 0).then(|| self.sum / self.count as f64),
            Agg::Avg => values.map(|()| self.values_sum / self.values as f64),
            Agg::Min if histogram => self.min,
            Agg::Min => self.values_min,
            Agg::Max if histogram => self.max,
            Agg::Max => self.values_max,
            Agg::Rate => {
                // Stable: samples at one time keep the order they came in.
                self.runs.sort_by_key(|r| r.first_time);
                let total = if self.first.is_some_and(|(_, cumulative)| cumulative) {
                    let mut previous = before.map(Sample::counted);
                    let mut total = 0.0;
                    for r in &self.runs {
                        if let Some(p) = previous {
                            total += increase(p, r.first);
                        }
                        total += r.increase;
                        previous = Some(r.last);
                    }
                    total
                } else {
                    self.runs.iter().map(|r| r.total).sum()
                };
                Some(total / step_seconds)
            }
            Agg::Quantile(q) if histogram && self.summary => self
                .quantiles
                .iter()
                .find(|(qq, _, _)| (qq - q).abs() < QUANTILE_EPSILON)
                .filter(|(_, _, n)| *n > 0)
                .map(|(_, sum, n)| sum / *n as f64),
            Agg::Quantile(q) if histogram => {
                let Some(last) = self.last_histogram else {
                    return Ok(None);
                };
                let Some((bounds, now)) = last.buckets.as_ref() else {
                    return Ok(None);
                };
                let width = bounds.len();
                let mut counts = vec![0u64; width];
                if last.cumulative {
                    // Observations in the step: the last running total minus the one before.
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
                if self.raw_values.len() as u64 != self.values {
                    return Err(Inexact);
                }
                let mut sorted = self.raw_values;
                sorted.sort_by(f64::total_cmp);
                (!sorted.is_empty()).then(|| {
                    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
                    sorted[rank - 1]
                })
            }
        })
    }

    /// The rollup as stored.
    pub(crate) fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// A stored rollup.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Rollup, String> {
        codec::decode(bytes)
    }
}

/// One series' rollups, by step number.
pub(crate) type Steps = BTreeMap<u64, Rollup>;

/// The series of one metric over `[start, end)` in steps of `step` from `start`: points or
/// stored rollups go straight into their series' step, so a query holds rollups, not points.
pub(crate) struct Series<'m> {
    matchers: &'m [(String, String)],
    start: u64,
    end: u64,
    step: u64,
    agg: Option<Agg>,
    by_series: BTreeMap<Labels, Steps>,
    /// Steps where a stored rollup reached past `end`.
    past_end: BTreeSet<u64>,
}

impl<'m> Series<'m> {
    /// Series of the points whose labels match every `matchers` pair; `agg`: see [`Rollup::add`].
    pub(crate) fn new(
        matchers: &'m [(String, String)],
        start: u64,
        end: u64,
        step: u64,
        agg: Option<Agg>,
    ) -> Series<'m> {
        Series {
            matchers,
            start,
            end,
            step: step.max(1),
            agg,
            by_series: BTreeMap::new(),
            past_end: BTreeSet::new(),
        }
    }

    /// Adds a point (of the metric the series are for) of series `labels`.
    pub(crate) fn add(&mut self, labels: &Labels, sample: Sample) {
        if !self.matchers.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return;
        }
        if sample.time < self.start || sample.time >= self.end {
            return;
        }
        let step = (sample.time - self.start) / self.step;
        let series = match self.by_series.get_mut(labels) {
            Some(series) => series,
            None => self.by_series.entry(labels.clone()).or_default(),
        };
        series.entry(step).or_default().add(sample, self.agg);
    }

    /// Adds a stored rollup of `labels` for the minute from `minute` (a multiple of a minute at
    /// or after `start`; the step must be a multiple of a minute).
    pub(crate) fn add_rollup(&mut self, labels: Labels, minute: u64, rollup: Rollup) {
        if minute < self.start || minute >= self.end {
            return;
        }
        if !self.matchers.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return;
        }
        let step = (minute - self.start) / self.step;
        if rollup.last_time().is_some_and(|t| t >= self.end) {
            self.past_end.insert(step);
        }
        self.by_series
            .entry(labels)
            .or_default()
            .entry(step)
            .or_default()
            .merge(rollup);
    }

    /// The steps whose stored rollups cannot answer exactly: a rollup reached past `end`, or
    /// one of a series' says [`Inexact`] for the aggregation.
    fn inexact_steps(&mut self) -> BTreeSet<u64> {
        let mut out = self.past_end.clone();
        let Some(agg) = self.agg else { return out };
        for steps in self.by_series.values_mut() {
            for (n, rollup) in steps.iter_mut() {
                if rollup.cannot_answer(agg) {
                    out.insert(*n);
                }
            }
        }
        out
    }

    /// Replaces steps `first..=last` of every series by those of `points` (series of the points
    /// of those steps' time).
    fn replace_steps(&mut self, first: u64, last: u64, points: Series) {
        for steps in self.by_series.values_mut() {
            steps.retain(|n, _| !(first..=last).contains(n));
        }
        for (labels, steps) in points.by_series {
            let to = self.by_series.entry(labels).or_default();
            to.extend(steps.into_iter().filter(|(n, _)| (first..=last).contains(n)));
        }
        self.past_end.retain(|n| !(first..=last).contains(n));
    }

    /// The same series in steps of `factor` of these (each step's rollups merged).
    fn into_steps(self, factor: u64) -> Series<'m> {
        if factor <= 1 {
            return self;
        }
        let mut by_series: BTreeMap<Labels, Steps> = BTreeMap::new();
        for (labels, steps) in self.by_series {
            let to = by_series.entry(labels).or_default();
            for (n, rollup) in steps {
                to.entry(n / factor).or_default().merge(rollup);
            }
        }
        Series {
            step: self.step * factor,
            by_series,
            past_end: self.past_end.iter().map(|n| n / factor).collect(),
            ..self
        }
    }

    /// The series, by labels ([`Inexact`] if a stored rollup held points past `end`).
    pub(crate) fn finish(self) -> Result<BTreeMap<Labels, Steps>, Inexact> {
        if !self.past_end.is_empty() {
            return Err(Inexact);
        }
        Ok(self.by_series)
    }
}

/// A metric query: one metric's series whose labels hold every `matchers` pair, over
/// `[start, end)` in steps of `step` (nanoseconds) from `start`, each step reduced by `agg`.
#[derive(Debug, Clone)]
pub struct MetricQuery {
    /// The metric's name.
    pub name: String,
    /// `(key, value)` pairs a series' labels must hold.
    pub matchers: Vec<(String, String)>,
    /// Nanoseconds.
    pub start: u64,
    /// Nanoseconds.
    pub end: u64,
    /// Nanoseconds.
    pub step: u64,
    /// The reduction.
    pub agg: Agg,
}

/// What [`MetricQuery::run`] found.
#[derive(Debug, Clone, Default)]
pub struct MetricSeries {
    /// Per series, (step number, value) for each step with a finite value.
    pub series: BTreeMap<Labels, Vec<(u64, f64)>>,
    /// The budget cut a read short.
    pub cut: bool,
    /// Stored rollups answered (else every step came from points).
    pub from_rollups: bool,
    /// Minutes (and steps) read again from points because their rollups could not answer
    /// exactly.
    pub steps_from_points: usize,
}

/// Contiguous ranges of points a query reads at most to mend inexact steps (more are read as one).
const MENDING_READS: usize = 8;

impl MetricQuery {
    /// Runs the query on `store`, reading at most `budget` rollups and points: from rollups if
    /// `rollups`, the step and start are whole minutes and no rollups part in range is damaged
    /// (steps they cannot answer exactly are read again from the points of their time), else
    /// from points.
    pub fn run(&self, store: &dyn Store, budget: usize, rollups: bool) -> Result<MetricSeries, StorageError> {
        let range = TimeRange {
            start: Some(self.start),
            end: Some(self.end),
        };
        let points_of = |range: &TimeRange, step: u64, found: &mut bool| -> Result<Series<'_>, StorageError> {
            let mut series = Series::new(&self.matchers, self.start, self.end, step, Some(self.agg));
            *found |= store.for_each_metric_sample(&self.name, range, budget, &mut |labels, sample| {
                series.add(labels, sample)
            })?;
            Ok(series)
        };
        // Reads again from points the steps of `series` that its rollups cannot answer exactly:
        // how many.
        let mend = |series: &mut Series<'_>, cut: &mut bool| -> Result<usize, StorageError> {
            let inexact = series.inexact_steps();
            let mut ranges: Vec<(u64, u64)> = Vec::new();
            for &n in &inexact {
                match ranges.last_mut() {
                    Some((_, last)) if *last + 1 == n => *last = n,
                    _ => ranges.push((n, n)),
                }
            }
            if ranges.len() > MENDING_READS {
                ranges = vec![(ranges[0].0, ranges[ranges.len() - 1].1)];
            }
            for (first, last) in ranges {
                let steps = TimeRange {
                    start: Some(self.start + first * series.step),
                    end: Some((self.start + (last + 1) * series.step).min(self.end)),
                };
                let points = points_of(&steps, series.step, cut)?;
                series.replace_steps(first, last, points);
            }
            Ok(inexact.len())
        };
        let mut cut = false;
        let whole_minutes = self.step.is_multiple_of(MINUTE) && self.start.is_multiple_of(MINUTE);
        let mut from_rollups = None;
        // Damaged rollups are not trusted: the points answer (they may be whole).
        if rollups && whole_minutes && !store.partial(crate::Table::Rollups, &range, false) {
            // Minute by minute first: a minute the rollups cannot answer is read again from its
            // points alone, not the whole step it is in.
            let mut minutes = Series::new(&self.matchers, self.start, self.end, MINUTE, Some(self.agg));
            let read = store.for_each_metric_rollup(&self.name, &range, budget, &mut |labels, minute, rollup| {
                minutes.add_rollup(labels, minute, rollup)
            })?;
            // A rollups part found damaged while reading was skipped: the points answer.
            let damaged = store.partial(crate::Table::Rollups, &range, false);
            if let Some(rollups_cut) = read.filter(|_| !damaged) {
                cut |= rollups_cut;
                let mut mended = mend(&mut minutes, &mut cut)?;
                // Then the steps: minutes from points added to stored ones can still leave a
                // step's order unknown (two points of a series at one time); such a step is
                // read again whole.
                let mut series = minutes.into_steps(self.step / MINUTE);
                mended += mend(&mut series, &mut cut)?;
                from_rollups = Some((series, mended));
            }
        }
        let rollups_answered = from_rollups.as_ref().is_some_and(|(_, inexact)| *inexact == 0);
        let (series, steps_from_points) = match from_rollups {
            Some(found) => found,
            None => (points_of(&range, self.step, &mut cut)?, 0),
        };
        let by_series = series
            .finish()
            .map_err(|Inexact| StorageError::Corrupt("metric query: a step past the end was not read again".into()))?;
        if self.agg == Agg::Rate && by_series.values().flat_map(|s| s.values()).any(Rollup::has_gauge) {
            return Err(StorageError::BadQuery(
                "agg: rate needs a counter (sum) or histogram; this metric is a gauge".into(),
            ));
        }
        let mut out = MetricSeries {
            cut,
            from_rollups: rollups_answered,
            steps_from_points,
            ..MetricSeries::default()
        };
        for (labels, steps) in by_series {
            let points = reduce_steps(steps, self.agg, self.step)
                .map_err(|Inexact| StorageError::Corrupt("metric query: a step was not read again".into()))?;
            if !points.is_empty() {
                out.series.insert(labels, points);
            }
        }
        Ok(out)
    }
}

/// One series' steps reduced by `agg` (each step's `before` is the previous step's last sample):
/// (step number, value) for each step with a finite value; `step` in nanoseconds.
pub(crate) fn reduce_steps(steps: Steps, agg: Agg, step: u64) -> Result<Vec<(u64, f64)>, Inexact> {
    let mut out = Vec::new();
    let mut before: Option<Sample> = None;
    for (n, rollup) in steps {
        let last = rollup.last.clone();
        if let Some(v) = rollup.reduce(agg, before.as_ref(), step as f64 / 1e9)? {
            if v.is_finite() {
                out.push((n, v));
            }
        }
        before = last;
    }
    Ok(out)
}

/// Adds stored points to rollups by (name, labels, minute), as a stored rollup keeps them but
/// not collapsed (see [`collapsed`]).
pub(crate) fn add_points(
    into: &mut BTreeMap<(String, Labels, u64), Rollup>,
    rows: impl IntoIterator<Item = MetricRow>,
) {
    let mut last = LastLabels::default();
    for row in rows {
        let Some(sample) = Sample::of(&row) else { continue };
        let minute = sample.time / MINUTE * MINUTE;
        into.entry((row.metric.name.clone(), last.of(&row).clone(), minute))
            .or_default()
            .add(sample, None);
    }
}

/// A copy of `rollup` as stored: its runs joined.
pub(crate) fn collapsed(rollup: &Rollup) -> Rollup {
    let mut rollup = rollup.clone();
    rollup.collapse();
    rollup
}

mod codec;
#[cfg(test)]
mod tests;
