//! The rollups table: per metric, series (labels) and minute, what the points of one flush add up
//! to ([`crate::rollup::Rollup`], as CBOR), sorted by (name, labels, minute). Written with every
//! metrics part from the same rows, so a metric query over hours reads a row per series and
//! minute instead of every point.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, StringBuilder, UInt64Builder};
use arrow_array::{ArrayRef, BinaryArray, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

use super::column;
use crate::rollup::{Labels, Rollup};

pub(crate) const NAME: &str = "metric_name";
/// The series' labels as a JSON object (point attributes as text, and `service.name`).
pub(crate) const LABELS: &str = "labels";
/// The minute's start.
pub(crate) const TIME: &str = "time_unix_nano";
pub(crate) const ROLLUP: &str = "rollup";

pub(crate) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(NAME, DataType::Utf8, false),
        Field::new(LABELS, DataType::Utf8, false),
        Field::new(TIME, DataType::UInt64, false),
        Field::new(ROLLUP, DataType::Binary, false),
    ]))
}

/// The key of a stored rollup: metric name, labels, minute.
pub(crate) type Key = (String, Labels, u64);

/// A batch of rollups.
pub(crate) fn batch(rollups: &BTreeMap<Key, Rollup>) -> Result<RecordBatch, ArrowError> {
    let mut names = StringBuilder::new();
    let mut labels = StringBuilder::new();
    let mut times = UInt64Builder::new();
    let mut states = BinaryBuilder::new();
    for ((name, series, minute), rollup) in rollups {
        names.append_value(name);
        labels.append_value(serde_json::to_string(series).map_err(|e| ArrowError::ExternalError(Box::new(e)))?);
        times.append_value(*minute);
        states.append_value(rollup.encode());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(names.finish()),
        Arc::new(labels.finish()),
        Arc::new(times.finish()),
        Arc::new(states.finish()),
    ];
    RecordBatch::try_new(schema(), columns)
}

/// The rollups of a batch, with their key.
pub(crate) fn rows(batch: &RecordBatch) -> Result<Vec<(Key, Rollup)>, ArrowError> {
    let names: &StringArray = column(batch, NAME)?;
    let labels: &StringArray = column(batch, LABELS)?;
    let times: &UInt64Array = column(batch, TIME)?;
    let states: &BinaryArray = column(batch, ROLLUP)?;
    let bad = |what: String| ArrowError::ParseError(format!("rollups table: {what}"));
    (0..batch.num_rows())
        .map(|i| {
            let series = serde_json::from_str(labels.value(i)).map_err(|e| bad(format!("labels: {e}")))?;
            let rollup = Rollup::decode(states.value(i)).map_err(bad)?;
            Ok(((names.value(i).to_owned(), series, times.value(i)), rollup))
        })
        .collect()
}
