//! The metric points table: one row per data point of any OTLP metric type. The columns a type
//! does not use hold their defaults (or null where OTLP distinguishes "absent").

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    UInt32Array, UInt64Array,
};
use arrow_schema::{ArrowError, DataType, Field, SchemaRef};
use sift_proto::json::fragment;
use sift_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sift_proto::otlp::common::v1::KeyValue;
use sift_proto::otlp::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric, number_data_point, summary_data_point::ValueAtQuantile,
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, Sum, Summary, SummaryDataPoint,
};

use super::{
    attributes_json, column, json_error, read_attributes, schema_with_origin, EncodedOrigin, Origin, OriginBuilder,
    OriginReader, Repeated,
};

pub(crate) const NAME: &str = "metric_name";
pub(crate) const DESCRIPTION: &str = "metric_description";
pub(crate) const UNIT: &str = "metric_unit";
pub(crate) const METADATA: &str = "metric_metadata";
/// 1 gauge, 2 sum, 3 histogram, 4 exponential histogram, 5 summary.
pub(crate) const TYPE: &str = "metric_type";
pub(crate) const TEMPORALITY: &str = "aggregation_temporality";
pub(crate) const MONOTONIC: &str = "is_monotonic";
/// A hash of the name, resource attributes and point attributes: one value per time series.
pub(crate) const SERIES_ID: &str = "series_id";
pub(crate) const START: &str = "start_time_unix_nano";
pub(crate) const TIME: &str = "time_unix_nano";
pub(crate) const ATTRIBUTES: &str = "attributes";
pub(crate) const FLAGS: &str = "flags";
pub(crate) const VALUE_DOUBLE: &str = "value_double";
pub(crate) const VALUE_INT: &str = "value_int";
pub(crate) const COUNT: &str = "count";
pub(crate) const SUM: &str = "sum";
pub(crate) const MIN: &str = "min";
pub(crate) const MAX: &str = "max";
pub(crate) const BUCKET_COUNTS: &str = "bucket_counts";
pub(crate) const EXPLICIT_BOUNDS: &str = "explicit_bounds";
pub(crate) const SCALE: &str = "scale";
pub(crate) const ZERO_COUNT: &str = "zero_count";
pub(crate) const ZERO_THRESHOLD: &str = "zero_threshold";
pub(crate) const POSITIVE_OFFSET: &str = "positive_offset";
pub(crate) const POSITIVE_BUCKET_COUNTS: &str = "positive_bucket_counts";
pub(crate) const NEGATIVE_OFFSET: &str = "negative_offset";
pub(crate) const NEGATIVE_BUCKET_COUNTS: &str = "negative_bucket_counts";
pub(crate) const QUANTILES: &str = "quantiles";
pub(crate) const QUANTILE_VALUES: &str = "quantile_values";
pub(crate) const EXEMPLARS: &str = "exemplars";

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

pub(crate) fn schema() -> SchemaRef {
    schema_with_origin(vec![
        Field::new(NAME, DataType::Utf8, false),
        Field::new(DESCRIPTION, DataType::Utf8, false),
        Field::new(UNIT, DataType::Utf8, false),
        Field::new(METADATA, DataType::Utf8, false),
        Field::new(TYPE, DataType::Int32, false),
        Field::new(TEMPORALITY, DataType::Int32, false),
        Field::new(MONOTONIC, DataType::Boolean, false),
        Field::new(SERIES_ID, DataType::UInt64, false),
        Field::new(START, DataType::UInt64, false),
        Field::new(TIME, DataType::UInt64, false),
        Field::new(ATTRIBUTES, DataType::Utf8, false),
        Field::new(FLAGS, DataType::UInt32, false),
        Field::new(VALUE_DOUBLE, DataType::Float64, true),
        Field::new(VALUE_INT, DataType::Int64, true),
        Field::new(COUNT, DataType::UInt64, false),
        Field::new(SUM, DataType::Float64, true),
        Field::new(MIN, DataType::Float64, true),
        Field::new(MAX, DataType::Float64, true),
        Field::new(BUCKET_COUNTS, list_of(DataType::UInt64), false),
        Field::new(EXPLICIT_BOUNDS, list_of(DataType::Float64), false),
        Field::new(SCALE, DataType::Int32, false),
        Field::new(ZERO_COUNT, DataType::UInt64, false),
        Field::new(ZERO_THRESHOLD, DataType::Float64, false),
        Field::new(POSITIVE_OFFSET, DataType::Int32, true),
        Field::new(POSITIVE_BUCKET_COUNTS, list_of(DataType::UInt64), false),
        Field::new(NEGATIVE_OFFSET, DataType::Int32, true),
        Field::new(NEGATIVE_BUCKET_COUNTS, list_of(DataType::UInt64), false),
        Field::new(QUANTILES, list_of(DataType::Float64), false),
        Field::new(QUANTILE_VALUES, list_of(DataType::Float64), false),
        Field::new(EXEMPLARS, DataType::Utf8, false),
    ])
}

/// The OTLP metric types, as stored in `metric_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// A gauge.
    Gauge = 1,
    /// A sum (counter or up-down counter).
    Sum = 2,
    /// An explicit-bucket histogram.
    Histogram = 3,
    /// An exponential histogram.
    ExponentialHistogram = 4,
    /// A summary.
    Summary = 5,
}

/// A stored data point: its resource and scope, and its metric with exactly this one point.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// Where the point came from.
    pub origin: Origin,
    /// The metric (name, description, unit, type) holding just this point.
    pub metric: Metric,
}

/// Every field a data point of any type can have, borrowed from the point.
#[derive(Default)]
struct Point<'a> {
    temporality: i32,
    monotonic: bool,
    attributes: &'a [KeyValue],
    start: u64,
    time: u64,
    flags: u32,
    value_double: Option<f64>,
    value_int: Option<i64>,
    count: u64,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    bucket_counts: &'a [u64],
    explicit_bounds: &'a [f64],
    scale: i32,
    zero_count: u64,
    zero_threshold: f64,
    positive: Option<&'a Buckets>,
    negative: Option<&'a Buckets>,
    quantiles: &'a [ValueAtQuantile],
    exemplars: &'a [Exemplar],
}

impl<'a> Point<'a> {
    fn number(p: &'a NumberDataPoint, temporality: i32, monotonic: bool) -> Self {
        let (value_double, value_int) = match p.value {
            Some(number_data_point::Value::AsDouble(d)) => (Some(d), None),
            Some(number_data_point::Value::AsInt(i)) => (None, Some(i)),
            None => (None, None),
        };
        Point {
            temporality,
            monotonic,
            attributes: &p.attributes,
            start: p.start_time_unix_nano,
            time: p.time_unix_nano,
            flags: p.flags,
            value_double,
            value_int,
            exemplars: &p.exemplars,
            ..Point::default()
        }
    }

    fn histogram(p: &'a HistogramDataPoint, temporality: i32) -> Self {
        Point {
            temporality,
            attributes: &p.attributes,
            start: p.start_time_unix_nano,
            time: p.time_unix_nano,
            flags: p.flags,
            count: p.count,
            sum: p.sum,
            min: p.min,
            max: p.max,
            bucket_counts: &p.bucket_counts,
            explicit_bounds: &p.explicit_bounds,
            exemplars: &p.exemplars,
            ..Point::default()
        }
    }

    fn exponential(p: &'a ExponentialHistogramDataPoint, temporality: i32) -> Self {
        Point {
            temporality,
            attributes: &p.attributes,
            start: p.start_time_unix_nano,
            time: p.time_unix_nano,
            flags: p.flags,
            count: p.count,
            sum: p.sum,
            min: p.min,
            max: p.max,
            scale: p.scale,
            zero_count: p.zero_count,
            zero_threshold: p.zero_threshold,
            positive: p.positive.as_ref(),
            negative: p.negative.as_ref(),
            exemplars: &p.exemplars,
            ..Point::default()
        }
    }

    fn summary(p: &'a SummaryDataPoint) -> Self {
        Point {
            attributes: &p.attributes,
            start: p.start_time_unix_nano,
            time: p.time_unix_nano,
            flags: p.flags,
            count: p.count,
            sum: Some(p.sum),
            quantiles: &p.quantile_values,
            ..Point::default()
        }
    }
}

/// Builds metric point batches.
pub(crate) struct MetricBuilder {
    name: StringBuilder,
    description: StringBuilder,
    unit: StringBuilder,
    metadata: StringBuilder,
    metric_type: Int32Builder,
    temporality: Int32Builder,
    monotonic: BooleanBuilder,
    series_id: UInt64Builder,
    start: UInt64Builder,
    time: UInt64Builder,
    attributes: StringBuilder,
    flags: UInt32Builder,
    value_double: Float64Builder,
    value_int: Int64Builder,
    count: UInt64Builder,
    sum: Float64Builder,
    min: Float64Builder,
    max: Float64Builder,
    bucket_counts: ListBuilder<UInt64Builder>,
    explicit_bounds: ListBuilder<Float64Builder>,
    scale: Int32Builder,
    zero_count: UInt64Builder,
    zero_threshold: Float64Builder,
    positive_offset: Int32Builder,
    positive_bucket_counts: ListBuilder<UInt64Builder>,
    negative_offset: Int32Builder,
    negative_bucket_counts: ListBuilder<UInt64Builder>,
    quantiles: ListBuilder<Float64Builder>,
    quantile_values: ListBuilder<Float64Builder>,
    exemplars: StringBuilder,
    origin: OriginBuilder,
}

impl Default for MetricBuilder {
    fn default() -> Self {
        MetricBuilder {
            name: StringBuilder::new(),
            description: StringBuilder::new(),
            unit: StringBuilder::new(),
            metadata: StringBuilder::new(),
            metric_type: Int32Builder::new(),
            temporality: Int32Builder::new(),
            monotonic: BooleanBuilder::new(),
            series_id: UInt64Builder::new(),
            start: UInt64Builder::new(),
            time: UInt64Builder::new(),
            attributes: StringBuilder::new(),
            flags: UInt32Builder::new(),
            value_double: Float64Builder::new(),
            value_int: Int64Builder::new(),
            count: UInt64Builder::new(),
            sum: Float64Builder::new(),
            min: Float64Builder::new(),
            max: Float64Builder::new(),
            bucket_counts: ListBuilder::new(UInt64Builder::new()),
            explicit_bounds: ListBuilder::new(Float64Builder::new()),
            scale: Int32Builder::new(),
            zero_count: UInt64Builder::new(),
            zero_threshold: Float64Builder::new(),
            positive_offset: Int32Builder::new(),
            positive_bucket_counts: ListBuilder::new(UInt64Builder::new()),
            negative_offset: Int32Builder::new(),
            negative_bucket_counts: ListBuilder::new(UInt64Builder::new()),
            quantiles: ListBuilder::new(Float64Builder::new()),
            quantile_values: ListBuilder::new(Float64Builder::new()),
            exemplars: StringBuilder::new(),
            origin: OriginBuilder::default(),
        }
    }
}

/// FNV-1a, 64 bits: a stable hash for series ids (the same on every machine and build).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

impl MetricBuilder {
    fn append(&mut self, origin: &EncodedOrigin<'_>, metric: &Metric, metadata: &str, kind: MetricType, p: &Point<'_>) {
        let attributes = attributes_json(p.attributes);
        self.name.append_value(&metric.name);
        self.description.append_value(&metric.description);
        self.unit.append_value(&metric.unit);
        self.metadata.append_value(metadata);
        self.metric_type.append_value(kind as i32);
        self.temporality.append_value(p.temporality);
        self.monotonic.append_value(p.monotonic);
        self.series_id
            .append_value(fnv1a(&[&metric.name, origin.resource_attributes.as_str(), &attributes]));
        self.start.append_value(p.start);
        self.time.append_value(p.time);
        self.attributes.append_value(&attributes);
        self.flags.append_value(p.flags);
        self.value_double.append_option(p.value_double);
        self.value_int.append_option(p.value_int);
        self.count.append_value(p.count);
        self.sum.append_option(p.sum);
        self.min.append_option(p.min);
        self.max.append_option(p.max);
        self.bucket_counts.values().append_slice(p.bucket_counts);
        self.bucket_counts.append(true);
        self.explicit_bounds.values().append_slice(p.explicit_bounds);
        self.explicit_bounds.append(true);
        self.scale.append_value(p.scale);
        self.zero_count.append_value(p.zero_count);
        self.zero_threshold.append_value(p.zero_threshold);
        for (buckets, offset, counts) in [
            (p.positive, &mut self.positive_offset, &mut self.positive_bucket_counts),
            (p.negative, &mut self.negative_offset, &mut self.negative_bucket_counts),
        ] {
            offset.append_option(buckets.map(|b| b.offset));
            counts.values().append_slice(buckets.map_or(&[], |b| &b.bucket_counts));
            counts.append(true);
        }
        for q in p.quantiles {
            self.quantiles.values().append_value(q.quantile);
            self.quantile_values.values().append_value(q.value);
        }
        self.quantiles.append(true);
        self.quantile_values.append(true);
        let mut exemplars = String::new();
        fragment::write_exemplars(p.exemplars, &mut exemplars);
        self.exemplars.append_value(&exemplars);
        self.origin.append(origin);
    }

    pub(crate) fn finish(&mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.name.finish()),
            Arc::new(self.description.finish()),
            Arc::new(self.unit.finish()),
            Arc::new(self.metadata.finish()),
            Arc::new(self.metric_type.finish()),
            Arc::new(self.temporality.finish()),
            Arc::new(self.monotonic.finish()),
            Arc::new(self.series_id.finish()),
            Arc::new(self.start.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.value_double.finish()),
            Arc::new(self.value_int.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.sum.finish()),
            Arc::new(self.min.finish()),
            Arc::new(self.max.finish()),
            Arc::new(self.bucket_counts.finish()),
            Arc::new(self.explicit_bounds.finish()),
            Arc::new(self.scale.finish()),
            Arc::new(self.zero_count.finish()),
            Arc::new(self.zero_threshold.finish()),
            Arc::new(self.positive_offset.finish()),
            Arc::new(self.positive_bucket_counts.finish()),
            Arc::new(self.negative_offset.finish()),
            Arc::new(self.negative_bucket_counts.finish()),
            Arc::new(self.quantiles.finish()),
            Arc::new(self.quantile_values.finish()),
            Arc::new(self.exemplars.finish()),
        ];
        self.origin.finish(&mut columns);
        RecordBatch::try_new(schema(), columns).unwrap_or_else(|e| unreachable!("metric columns match the schema: {e}"))
    }
}

/// A data point as the store sees it while ingesting: for partitioning, exemplars and appending.
pub(crate) struct PointRef<'a> {
    origin: &'a EncodedOrigin<'a>,
    metric: &'a Metric,
    metadata: &'a str,
    kind: MetricType,
    point: Point<'a>,
}

impl PointRef<'_> {
    pub(crate) fn time(&self) -> u64 {
        self.point.time
    }
    pub(crate) fn name(&self) -> &str {
        &self.metric.name
    }
    pub(crate) fn service(&self) -> &str {
        self.origin.service()
    }
    pub(crate) fn attributes(&self) -> &[KeyValue] {
        self.point.attributes
    }
    pub(crate) fn exemplars(&self) -> &[Exemplar] {
        self.point.exemplars
    }
    pub(crate) fn append_to(&self, builder: &mut MetricBuilder) {
        builder.append(self.origin, self.metric, self.metadata, self.kind, &self.point)
    }
}

/// Calls `each` for every data point of a request.
pub(crate) fn for_each(request: &ExportMetricsServiceRequest, mut each: impl FnMut(&PointRef<'_>)) {
    for rm in &request.resource_metrics {
        for sm in &rm.scope_metrics {
            let origin = EncodedOrigin::new(rm.resource.as_ref(), &rm.schema_url, sm.scope.as_ref(), &sm.schema_url);
            for m in &sm.metrics {
                let metadata = attributes_json(&m.metadata);
                let mut emit = |kind, point| {
                    each(&PointRef {
                        origin: &origin,
                        metric: m,
                        metadata: &metadata,
                        kind,
                        point,
                    })
                };
                match &m.data {
                    Some(metric::Data::Gauge(g)) => {
                        for p in &g.data_points {
                            emit(MetricType::Gauge, Point::number(p, 0, false));
                        }
                    }
                    Some(metric::Data::Sum(s)) => {
                        for p in &s.data_points {
                            emit(
                                MetricType::Sum,
                                Point::number(p, s.aggregation_temporality, s.is_monotonic),
                            );
                        }
                    }
                    Some(metric::Data::Histogram(h)) => {
                        for p in &h.data_points {
                            emit(MetricType::Histogram, Point::histogram(p, h.aggregation_temporality));
                        }
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        for p in &h.data_points {
                            emit(
                                MetricType::ExponentialHistogram,
                                Point::exponential(p, h.aggregation_temporality),
                            );
                        }
                    }
                    Some(metric::Data::Summary(s)) => {
                        for p in &s.data_points {
                            emit(MetricType::Summary, Point::summary(p));
                        }
                    }
                    None => {}
                }
            }
        }
    }
}

fn list_u64(list: &ListArray, row: usize) -> Vec<u64> {
    let values = list.value(row);
    values
        .as_any()
        .downcast_ref::<UInt64Array>()
        .map(|a| a.values().to_vec())
        .unwrap_or_default()
}

fn list_f64(list: &ListArray, row: usize) -> Vec<f64> {
    let values = list.value(row);
    values
        .as_any()
        .downcast_ref::<Float64Array>()
        .map(|a| a.values().to_vec())
        .unwrap_or_default()
}

fn opt<T: arrow_array::ArrowPrimitiveType>(array: &arrow_array::PrimitiveArray<T>, row: usize) -> Option<T::Native> {
    (!array.is_null(row)).then(|| array.value(row))
}

/// The points of a batch (without exemplars if it has no exemplars column).
pub(crate) fn rows(batch: &RecordBatch) -> Result<Vec<MetricRow>, ArrowError> {
    let name: &StringArray = column(batch, NAME)?;
    let description: &StringArray = column(batch, DESCRIPTION)?;
    let unit: &StringArray = column(batch, UNIT)?;
    let metadata: &StringArray = column(batch, METADATA)?;
    let metric_type: &Int32Array = column(batch, TYPE)?;
    let temporality: &Int32Array = column(batch, TEMPORALITY)?;
    let monotonic: &BooleanArray = column(batch, MONOTONIC)?;
    let start: &UInt64Array = column(batch, START)?;
    let time: &UInt64Array = column(batch, TIME)?;
    let attributes: &StringArray = column(batch, ATTRIBUTES)?;
    let flags: &UInt32Array = column(batch, FLAGS)?;
    let value_double: &Float64Array = column(batch, VALUE_DOUBLE)?;
    let value_int: &Int64Array = column(batch, VALUE_INT)?;
    let count: &UInt64Array = column(batch, COUNT)?;
    let sum: &Float64Array = column(batch, SUM)?;
    let min: &Float64Array = column(batch, MIN)?;
    let max: &Float64Array = column(batch, MAX)?;
    let bucket_counts: &ListArray = column(batch, BUCKET_COUNTS)?;
    let explicit_bounds: &ListArray = column(batch, EXPLICIT_BOUNDS)?;
    let scale: &Int32Array = column(batch, SCALE)?;
    let zero_count: &UInt64Array = column(batch, ZERO_COUNT)?;
    let zero_threshold: &Float64Array = column(batch, ZERO_THRESHOLD)?;
    let positive_offset: &Int32Array = column(batch, POSITIVE_OFFSET)?;
    let positive_counts: &ListArray = column(batch, POSITIVE_BUCKET_COUNTS)?;
    let negative_offset: &Int32Array = column(batch, NEGATIVE_OFFSET)?;
    let negative_counts: &ListArray = column(batch, NEGATIVE_BUCKET_COUNTS)?;
    let quantiles: &ListArray = column(batch, QUANTILES)?;
    let quantile_values: &ListArray = column(batch, QUANTILE_VALUES)?;
    let exemplars: Option<&StringArray> = match batch.schema().column_with_name(EXEMPLARS) {
        Some(_) => Some(column(batch, EXEMPLARS)?),
        None => None,
    };
    let origin = OriginReader::new(batch)?;
    // A series' points sit together: their attributes (and mostly empty exemplars) repeat.
    let (series, examples, metadatas) = (Repeated::new(), Repeated::new(), Repeated::new());
    (0..batch.num_rows())
        .map(|row| {
            let attributes = series.get(attributes.value(row), read_attributes)?;
            let exemplars = match exemplars {
                Some(exemplars) => examples.get(exemplars.value(row), |text| {
                    fragment::read_exemplars(text).map_err(json_error)
                })?,
                None => Vec::new(),
            };
            let (start, time, flags) = (start.value(row), time.value(row), flags.value(row));
            let temporality = temporality.value(row);
            let number = || NumberDataPoint {
                attributes: attributes.clone(),
                start_time_unix_nano: start,
                time_unix_nano: time,
                exemplars: exemplars.clone(),
                flags,
                value: match (opt(value_double, row), opt(value_int, row)) {
                    (Some(d), _) => Some(number_data_point::Value::AsDouble(d)),
                    (None, Some(i)) => Some(number_data_point::Value::AsInt(i)),
                    (None, None) => None,
                },
            };
            let data = match metric_type.value(row) {
                1 => metric::Data::Gauge(Gauge {
                    data_points: vec![number()],
                }),
                2 => metric::Data::Sum(Sum {
                    data_points: vec![number()],
                    aggregation_temporality: temporality,
                    is_monotonic: monotonic.value(row),
                }),
                3 => metric::Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        count: count.value(row),
                        sum: opt(sum, row),
                        bucket_counts: list_u64(bucket_counts, row),
                        explicit_bounds: list_f64(explicit_bounds, row),
                        exemplars,
                        flags,
                        min: opt(min, row),
                        max: opt(max, row),
                    }],
                    aggregation_temporality: temporality,
                }),
                4 => metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        count: count.value(row),
                        sum: opt(sum, row),
                        scale: scale.value(row),
                        zero_count: zero_count.value(row),
                        positive: opt(positive_offset, row).map(|offset| Buckets {
                            offset,
                            bucket_counts: list_u64(positive_counts, row),
                        }),
                        negative: opt(negative_offset, row).map(|offset| Buckets {
                            offset,
                            bucket_counts: list_u64(negative_counts, row),
                        }),
                        flags,
                        exemplars,
                        min: opt(min, row),
                        max: opt(max, row),
                        zero_threshold: zero_threshold.value(row),
                    }],
                    aggregation_temporality: temporality,
                }),
                5 => metric::Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint {
                        attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        count: count.value(row),
                        sum: opt(sum, row).unwrap_or_default(),
                        quantile_values: list_f64(quantiles, row)
                            .into_iter()
                            .zip(list_f64(quantile_values, row))
                            .map(|(quantile, value)| ValueAtQuantile { quantile, value })
                            .collect(),
                        flags,
                    }],
                }),
                other => return Err(ArrowError::ParseError(format!("unknown stored metric type {other}"))),
            };
            Ok(MetricRow {
                origin: origin.get(row)?,
                metric: Metric {
                    name: name.value(row).to_owned(),
                    description: description.value(row).to_owned(),
                    unit: unit.value(row).to_owned(),
                    metadata: metadatas.get(metadata.value(row), read_attributes)?,
                    data: Some(data),
                },
            })
        })
        .collect()
}
