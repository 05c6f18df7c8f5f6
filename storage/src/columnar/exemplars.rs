//! The exemplars table: every exemplar that points at a trace, with its metric and series labels,
//! sorted by trace id so that "the metric points of this trace" is a lookup, like spans and logs.

use std::sync::Arc;

use arrow_array::builder::{FixedSizeBinaryBuilder, Float64Builder, StringBuilder, UInt64Builder};
use arrow_array::{ArrayRef, FixedSizeBinaryArray, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use sift_proto::otlp::common::v1::KeyValue;
use sift_proto::otlp::metrics::v1::{exemplar, Exemplar};

use super::{append_id, attributes_json, column, read_attributes, read_id};

pub(crate) const TRACE_ID: &str = "trace_id";
pub(crate) const SPAN_ID: &str = "span_id";
pub(crate) const TIME: &str = "time_unix_nano";
pub(crate) const VALUE: &str = "value";
pub(crate) const METRIC: &str = "metric_name";
pub(crate) const SERVICE_NAME: &str = "service_name";
/// The exemplar's own (filtered) attributes.
pub(crate) const ATTRIBUTES: &str = "attributes";
/// The attributes of the data point the exemplar belongs to: the series labels.
pub(crate) const LABELS: &str = "labels";

pub(crate) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(TRACE_ID, DataType::FixedSizeBinary(16), false),
        Field::new(SPAN_ID, DataType::FixedSizeBinary(8), true),
        Field::new(TIME, DataType::UInt64, false),
        Field::new(VALUE, DataType::Float64, false),
        Field::new(METRIC, DataType::Utf8, false),
        Field::new(SERVICE_NAME, DataType::Utf8, false),
        Field::new(ATTRIBUTES, DataType::Utf8, false),
        Field::new(LABELS, DataType::Utf8, false),
    ]))
}

/// An exemplar that points at a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarRow {
    /// The trace.
    pub trace_id: Vec<u8>,
    /// The span (empty if unknown).
    pub span_id: Vec<u8>,
    /// When it was recorded.
    pub time_unix_nano: u64,
    /// The measurement (integers as doubles).
    pub value: f64,
    /// The metric's name.
    pub metric: String,
    /// The `service.name` of the point's resource.
    pub service_name: String,
    /// The exemplar's filtered attributes.
    pub attributes: Vec<KeyValue>,
    /// The data point's attributes.
    pub labels: Vec<KeyValue>,
}

/// Builds exemplar batches.
pub(crate) struct ExemplarBuilder {
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    time: UInt64Builder,
    value: Float64Builder,
    metric: StringBuilder,
    service: StringBuilder,
    attributes: StringBuilder,
    labels: StringBuilder,
}

impl Default for ExemplarBuilder {
    fn default() -> Self {
        ExemplarBuilder {
            trace_id: FixedSizeBinaryBuilder::new(16),
            span_id: FixedSizeBinaryBuilder::new(8),
            time: UInt64Builder::new(),
            value: Float64Builder::new(),
            metric: StringBuilder::new(),
            service: StringBuilder::new(),
            attributes: StringBuilder::new(),
            labels: StringBuilder::new(),
        }
    }
}

impl ExemplarBuilder {
    /// Appends `e` if it carries a trace id; returns whether it did.
    pub(crate) fn append(&mut self, e: &Exemplar, metric: &str, service: &str, labels: &[KeyValue]) -> bool {
        if e.trace_id.len() != 16 || e.trace_id.iter().all(|b| *b == 0) {
            return false;
        }
        append_id(&mut self.trace_id, &e.trace_id, 16);
        append_id(&mut self.span_id, &e.span_id, 8);
        self.time.append_value(e.time_unix_nano);
        self.value.append_value(match e.value {
            Some(exemplar::Value::AsDouble(d)) => d,
            Some(exemplar::Value::AsInt(i)) => i as f64,
            None => 0.0,
        });
        self.metric.append_value(metric);
        self.service.append_value(service);
        self.attributes.append_value(attributes_json(&e.filtered_attributes));
        self.labels.append_value(attributes_json(labels));
        true
    }

    pub(crate) fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.metric.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.labels.finish()),
        ];
        RecordBatch::try_new(schema(), columns)
            .unwrap_or_else(|e| unreachable!("exemplar columns match the schema: {e}"))
    }
}

/// The exemplars of a batch.
pub(crate) fn rows(batch: &RecordBatch) -> Result<Vec<ExemplarRow>, ArrowError> {
    let trace_id: &FixedSizeBinaryArray = column(batch, TRACE_ID)?;
    let span_id: &FixedSizeBinaryArray = column(batch, SPAN_ID)?;
    let time: &UInt64Array = column(batch, TIME)?;
    let value: &Float64Array = column(batch, VALUE)?;
    let metric: &StringArray = column(batch, METRIC)?;
    let service: &StringArray = column(batch, SERVICE_NAME)?;
    let attributes: &StringArray = column(batch, ATTRIBUTES)?;
    let labels: &StringArray = column(batch, LABELS)?;
    (0..batch.num_rows())
        .map(|row| {
            Ok(ExemplarRow {
                trace_id: read_id(trace_id, row),
                span_id: read_id(span_id, row),
                time_unix_nano: time.value(row),
                value: value.value(row),
                metric: metric.value(row).to_owned(),
                service_name: service.value(row).to_owned(),
                attributes: read_attributes(attributes.value(row))?,
                labels: read_attributes(labels.value(row))?,
            })
        })
        .collect()
}
