//! The log records table.

use std::sync::Arc;

use arrow_array::builder::{FixedSizeBinaryBuilder, Int32Builder, StringBuilder, UInt32Builder, UInt64Builder};
use arrow_array::{
    Array, ArrayRef, FixedSizeBinaryArray, Int32Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow_schema::{ArrowError, DataType, Field, SchemaRef};
use sift_proto::json::fragment;
use sift_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sift_proto::otlp::logs::v1::LogRecord;

use super::{
    append_id, attributes_json, column, json_error, read_attributes, read_id, schema_with_origin, EncodedOrigin,
    Origin, OriginBuilder, OriginReader,
};

pub(crate) const TIME: &str = "time_unix_nano";
/// The observed time as its distance from `time_unix_nano` (observed − time, wrapping): nearly
/// always 0 or small, where the observed time itself costs as much as the time.
pub(crate) const OBSERVED_DELTA: &str = "observed_time_delta_ns";
/// The observed time, in parts written before [`OBSERVED_DELTA`] (see [`upgrade`]).
const OBSERVED_TIME: &str = "observed_time_unix_nano";
pub(crate) const SEVERITY_NUMBER: &str = "severity_number";
pub(crate) const SEVERITY_TEXT: &str = "severity_text";
/// The body as typed JSON (`{"stringValue": ...}`), null when the record has none.
pub(crate) const BODY: &str = "body";
pub(crate) const ATTRIBUTES: &str = "attributes";
pub(crate) const DROPPED_ATTRIBUTES: &str = "dropped_attributes_count";
pub(crate) const FLAGS: &str = "flags";
pub(crate) const TRACE_ID: &str = "trace_id";
pub(crate) const SPAN_ID: &str = "span_id";
pub(crate) const EVENT_NAME: &str = "event_name";

pub(crate) fn schema() -> SchemaRef {
    schema_with_origin(vec![
        Field::new(TIME, DataType::UInt64, false),
        Field::new(OBSERVED_DELTA, DataType::UInt64, false),
        Field::new(SEVERITY_NUMBER, DataType::Int32, false),
        Field::new(SEVERITY_TEXT, DataType::Utf8, false),
        Field::new(BODY, DataType::Utf8, true),
        Field::new(ATTRIBUTES, DataType::Utf8, false),
        Field::new(DROPPED_ATTRIBUTES, DataType::UInt32, false),
        Field::new(FLAGS, DataType::UInt32, false),
        Field::new(TRACE_ID, DataType::FixedSizeBinary(16), true),
        Field::new(SPAN_ID, DataType::FixedSizeBinary(8), true),
        Field::new(EVENT_NAME, DataType::Utf8, false),
    ])
}

/// A stored log record with its resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    /// Where the record came from.
    pub origin: Origin,
    /// The record.
    pub log: LogRecord,
}

impl LogRow {
    /// The time the record is filed under: its own time, else the time it was observed.
    pub fn time(&self) -> u64 {
        effective_time(&self.log)
    }
}

/// The record's time, else its observed time (0 if neither is set).
pub(crate) fn effective_time(log: &LogRecord) -> u64 {
    if log.time_unix_nano != 0 {
        log.time_unix_nano
    } else {
        log.observed_time_unix_nano
    }
}

/// Builds log batches.
pub(crate) struct LogBuilder {
    time: UInt64Builder,
    observed_delta: UInt64Builder,
    severity_number: Int32Builder,
    severity_text: StringBuilder,
    body: StringBuilder,
    attributes: StringBuilder,
    dropped_attributes: UInt32Builder,
    flags: UInt32Builder,
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    event_name: StringBuilder,
    origin: OriginBuilder,
    scratch: String,
}

impl Default for LogBuilder {
    fn default() -> Self {
        LogBuilder {
            time: UInt64Builder::new(),
            observed_delta: UInt64Builder::new(),
            severity_number: Int32Builder::new(),
            severity_text: StringBuilder::new(),
            body: StringBuilder::new(),
            attributes: StringBuilder::new(),
            dropped_attributes: UInt32Builder::new(),
            flags: UInt32Builder::new(),
            trace_id: FixedSizeBinaryBuilder::new(16),
            span_id: FixedSizeBinaryBuilder::new(8),
            event_name: StringBuilder::new(),
            origin: OriginBuilder::default(),
            scratch: String::new(),
        }
    }
}

impl LogBuilder {
    pub(crate) fn append(&mut self, origin: &EncodedOrigin<'_>, log: &LogRecord) {
        self.time.append_value(log.time_unix_nano);
        self.observed_delta
            .append_value(log.observed_time_unix_nano.wrapping_sub(log.time_unix_nano));
        self.severity_number.append_value(log.severity_number);
        self.severity_text.append_value(&log.severity_text);
        match &log.body {
            Some(body) => {
                self.scratch.clear();
                fragment::write_any_value(body, &mut self.scratch);
                self.body.append_value(&self.scratch);
            }
            None => self.body.append_null(),
        }
        self.attributes.append_value(attributes_json(&log.attributes));
        self.dropped_attributes.append_value(log.dropped_attributes_count);
        self.flags.append_value(log.flags);
        append_id(&mut self.trace_id, &log.trace_id, 16);
        append_id(&mut self.span_id, &log.span_id, 8);
        self.event_name.append_value(&log.event_name);
        self.origin.append(origin);
    }

    pub(crate) fn finish(&mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.observed_delta.finish()),
            Arc::new(self.severity_number.finish()),
            Arc::new(self.severity_text.finish()),
            Arc::new(self.body.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.dropped_attributes.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.event_name.finish()),
        ];
        self.origin.finish(&mut columns);
        RecordBatch::try_new(schema(), columns).unwrap_or_else(|e| unreachable!("log columns match the schema: {e}"))
    }
}

/// Calls `each(origin, record)` for every log record of a request.
pub(crate) fn for_each(request: &ExportLogsServiceRequest, mut each: impl FnMut(&EncodedOrigin<'_>, &LogRecord)) {
    for rl in &request.resource_logs {
        for sl in &rl.scope_logs {
            let origin = EncodedOrigin::new(rl.resource.as_ref(), &rl.schema_url, sl.scope.as_ref(), &sl.schema_url);
            for log in &sl.log_records {
                each(&origin, log);
            }
        }
    }
}

/// The log records of a batch.
pub(crate) fn rows(batch: &RecordBatch) -> Result<Vec<LogRow>, ArrowError> {
    let time: &UInt64Array = column(batch, TIME)?;
    let observed_delta: &UInt64Array = column(batch, OBSERVED_DELTA)?;
    let severity_number: &Int32Array = column(batch, SEVERITY_NUMBER)?;
    let severity_text: &StringArray = column(batch, SEVERITY_TEXT)?;
    let body: &StringArray = column(batch, BODY)?;
    let attributes: &StringArray = column(batch, ATTRIBUTES)?;
    let dropped_attributes: &UInt32Array = column(batch, DROPPED_ATTRIBUTES)?;
    let flags: &UInt32Array = column(batch, FLAGS)?;
    let trace_id: &FixedSizeBinaryArray = column(batch, TRACE_ID)?;
    let span_id: &FixedSizeBinaryArray = column(batch, SPAN_ID)?;
    let event_name: &StringArray = column(batch, EVENT_NAME)?;
    let origin = OriginReader::new(batch)?;
    (0..batch.num_rows())
        .map(|row| {
            Ok(LogRow {
                origin: origin.get(row)?,
                log: LogRecord {
                    time_unix_nano: time.value(row),
                    observed_time_unix_nano: time.value(row).wrapping_add(observed_delta.value(row)),
                    severity_number: severity_number.value(row),
                    severity_text: severity_text.value(row).to_owned(),
                    body: if body.is_null(row) {
                        None
                    } else {
                        Some(fragment::read_any_value(body.value(row)).map_err(json_error)?)
                    },
                    attributes: read_attributes(attributes.value(row))?,
                    dropped_attributes_count: dropped_attributes.value(row),
                    flags: flags.value(row),
                    trace_id: read_id(trace_id, row),
                    span_id: read_id(span_id, row),
                    event_name: event_name.value(row).to_owned(),
                },
            })
        })
        .collect()
}

/// A batch of a log part written before the observed time was kept as a delta, in today's
/// layout (the observed time becomes its distance from the time; without the time column, in a
/// projection that did not ask for it, it is left out). Today's batches are returned as they are.
pub(crate) fn upgrade(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    let Ok(at) = schema.index_of(OBSERVED_TIME) else {
        return Ok(batch);
    };
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns = batch.columns().to_vec();
    match batch.column_by_name(TIME) {
        Some(_) => {
            let time: &UInt64Array = column(&batch, TIME)?;
            let observed: &UInt64Array = column(&batch, OBSERVED_TIME)?;
            let delta: UInt64Array = time
                .iter()
                .zip(observed.iter())
                .map(|(t, o)| Some(o.unwrap_or(0).wrapping_sub(t.unwrap_or(0))))
                .collect();
            fields[at] = Field::new(OBSERVED_DELTA, DataType::UInt64, false);
            columns[at] = Arc::new(delta);
        }
        None => {
            fields.remove(at);
            columns.remove(at);
        }
    }
    RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns)
}
