//! The spans table.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, FixedSizeBinaryBuilder, Int32Builder, StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, FixedSizeBinaryArray, Int32Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use sift_proto::json::fragment;
use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sift_proto::otlp::common::v1::KeyValue;
use sift_proto::otlp::trace::v1::{Span, Status};

use super::{
    append_id, column, decode_attributes, decode_list, encode_attributes, encode_list, json_error, read_attributes,
    read_id, schema_with_origin, EncodedOrigin, Origin, OriginBuilder, OriginReader,
};

pub(crate) const TRACE_ID: &str = "trace_id";
pub(crate) const SPAN_ID: &str = "span_id";
pub(crate) const PARENT_SPAN_ID: &str = "parent_span_id";
pub(crate) const TRACE_STATE: &str = "trace_state";
pub(crate) const FLAGS: &str = "flags";
pub(crate) const NAME: &str = "name";
pub(crate) const KIND: &str = "kind";
pub(crate) const START: &str = "start_time_unix_nano";
pub(crate) const END: &str = "end_time_unix_nano";
pub(crate) const STATUS_CODE: &str = "status_code";
pub(crate) const STATUS_MESSAGE: &str = "status_message";
/// The column of attributes in earlier layouts (typed JSON, then protobuf); see [`upgrade`].
pub(crate) const ATTRIBUTES: &str = "attributes";
pub(crate) const ATTRIBUTE_KEYS: &str = "attribute_keys";
pub(crate) const ATTRIBUTE_VALUES: &str = "attribute_values";
pub(crate) const DROPPED_ATTRIBUTES: &str = "dropped_attributes_count";
pub(crate) const EVENTS: &str = "events";
pub(crate) const DROPPED_EVENTS: &str = "dropped_events_count";
pub(crate) const LINKS: &str = "links";
pub(crate) const DROPPED_LINKS: &str = "dropped_links_count";

pub(crate) fn schema() -> SchemaRef {
    schema_with_origin(vec![
        Field::new(TRACE_ID, DataType::FixedSizeBinary(16), false),
        Field::new(SPAN_ID, DataType::FixedSizeBinary(8), true),
        Field::new(PARENT_SPAN_ID, DataType::FixedSizeBinary(8), true),
        Field::new(TRACE_STATE, DataType::Utf8, false),
        Field::new(FLAGS, DataType::UInt32, false),
        Field::new(NAME, DataType::Utf8, false),
        Field::new(KIND, DataType::Int32, false),
        Field::new(START, DataType::UInt64, false),
        Field::new(END, DataType::UInt64, false),
        Field::new(STATUS_CODE, DataType::Int32, false),
        Field::new(STATUS_MESSAGE, DataType::Utf8, false),
        Field::new(ATTRIBUTE_KEYS, DataType::Binary, false),
        Field::new(ATTRIBUTE_VALUES, DataType::Binary, false),
        Field::new(DROPPED_ATTRIBUTES, DataType::UInt32, false),
        Field::new(EVENTS, DataType::Binary, false),
        Field::new(DROPPED_EVENTS, DataType::UInt32, false),
        Field::new(LINKS, DataType::Binary, false),
        Field::new(DROPPED_LINKS, DataType::UInt32, false),
    ])
}

/// A stored span with its resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRow {
    /// Where the span came from.
    pub origin: Origin,
    /// The span.
    pub span: Span,
}

/// Builds span batches.
pub(crate) struct SpanBuilder {
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    parent_span_id: FixedSizeBinaryBuilder,
    trace_state: StringBuilder,
    flags: UInt32Builder,
    name: StringBuilder,
    kind: Int32Builder,
    start: UInt64Builder,
    end: UInt64Builder,
    status_code: Int32Builder,
    status_message: StringBuilder,
    attribute_keys: BinaryBuilder,
    attribute_values: BinaryBuilder,
    dropped_attributes: UInt32Builder,
    events: BinaryBuilder,
    dropped_events: UInt32Builder,
    links: BinaryBuilder,
    dropped_links: UInt32Builder,
    origin: OriginBuilder,
    scratch: Vec<u8>,
    values: Vec<u8>,
}

impl Default for SpanBuilder {
    fn default() -> Self {
        SpanBuilder {
            trace_id: FixedSizeBinaryBuilder::new(16),
            span_id: FixedSizeBinaryBuilder::new(8),
            parent_span_id: FixedSizeBinaryBuilder::new(8),
            trace_state: StringBuilder::new(),
            flags: UInt32Builder::new(),
            name: StringBuilder::new(),
            kind: Int32Builder::new(),
            start: UInt64Builder::new(),
            end: UInt64Builder::new(),
            status_code: Int32Builder::new(),
            status_message: StringBuilder::new(),
            attribute_keys: BinaryBuilder::new(),
            attribute_values: BinaryBuilder::new(),
            dropped_attributes: UInt32Builder::new(),
            events: BinaryBuilder::new(),
            dropped_events: UInt32Builder::new(),
            links: BinaryBuilder::new(),
            dropped_links: UInt32Builder::new(),
            origin: OriginBuilder::default(),
            scratch: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl SpanBuilder {
    pub(crate) fn append(&mut self, origin: &EncodedOrigin<'_>, span: &Span) {
        // The receiver refuses spans without a 16-byte trace id; an odd one is stored as zeros.
        let trace_id: [u8; 16] = span.trace_id.as_slice().try_into().unwrap_or_default();
        append_id(&mut self.trace_id, &trace_id, 16);
        append_id(&mut self.span_id, &span.span_id, 8);
        append_id(&mut self.parent_span_id, &span.parent_span_id, 8);
        self.trace_state.append_value(&span.trace_state);
        self.flags.append_value(span.flags);
        self.name.append_value(&span.name);
        self.kind.append_value(span.kind);
        self.start.append_value(span.start_time_unix_nano);
        self.end.append_value(span.end_time_unix_nano);
        let status = span.status.clone().unwrap_or_default();
        self.status_code.append_value(status.code);
        self.status_message.append_value(&status.message);
        encode_attributes(&span.attributes, &mut self.scratch, &mut self.values);
        self.attribute_keys.append_value(&self.scratch);
        self.attribute_values.append_value(&self.values);
        self.dropped_attributes.append_value(span.dropped_attributes_count);
        encode_list(&span.events, &mut self.scratch);
        self.events.append_value(&self.scratch);
        self.dropped_events.append_value(span.dropped_events_count);
        encode_list(&span.links, &mut self.scratch);
        self.links.append_value(&self.scratch);
        self.dropped_links.append_value(span.dropped_links_count);
        self.origin.append(origin);
    }

    pub(crate) fn finish(&mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent_span_id.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.start.finish()),
            Arc::new(self.end.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.status_message.finish()),
            Arc::new(self.attribute_keys.finish()),
            Arc::new(self.attribute_values.finish()),
            Arc::new(self.dropped_attributes.finish()),
            Arc::new(self.events.finish()),
            Arc::new(self.dropped_events.finish()),
            Arc::new(self.links.finish()),
            Arc::new(self.dropped_links.finish()),
        ];
        self.origin.finish(&mut columns);
        RecordBatch::try_new(schema(), columns).unwrap_or_else(|e| unreachable!("span columns match the schema: {e}"))
    }
}

/// Calls `each(origin, span, time)` for every span of a request.
pub(crate) fn for_each(request: &ExportTraceServiceRequest, mut each: impl FnMut(&EncodedOrigin<'_>, &Span)) {
    for rs in &request.resource_spans {
        for ss in &rs.scope_spans {
            let origin = EncodedOrigin::new(rs.resource.as_ref(), &rs.schema_url, ss.scope.as_ref(), &ss.schema_url);
            for span in &ss.spans {
                each(&origin, span);
            }
        }
    }
}

/// The spans of a batch.
pub(crate) fn rows(batch: &RecordBatch) -> Result<Vec<SpanRow>, ArrowError> {
    let trace_id: &FixedSizeBinaryArray = column(batch, TRACE_ID)?;
    let span_id: &FixedSizeBinaryArray = column(batch, SPAN_ID)?;
    let parent: &FixedSizeBinaryArray = column(batch, PARENT_SPAN_ID)?;
    let trace_state: &StringArray = column(batch, TRACE_STATE)?;
    let flags: &UInt32Array = column(batch, FLAGS)?;
    let name: &StringArray = column(batch, NAME)?;
    let kind: &Int32Array = column(batch, KIND)?;
    let start: &UInt64Array = column(batch, START)?;
    let end: &UInt64Array = column(batch, END)?;
    let status_code: &Int32Array = column(batch, STATUS_CODE)?;
    let status_message: &StringArray = column(batch, STATUS_MESSAGE)?;
    let attribute_keys: &BinaryArray = column(batch, ATTRIBUTE_KEYS)?;
    let attribute_values: &BinaryArray = column(batch, ATTRIBUTE_VALUES)?;
    let dropped_attributes: &UInt32Array = column(batch, DROPPED_ATTRIBUTES)?;
    let events: &BinaryArray = column(batch, EVENTS)?;
    let dropped_events: &UInt32Array = column(batch, DROPPED_EVENTS)?;
    let links: &BinaryArray = column(batch, LINKS)?;
    let dropped_links: &UInt32Array = column(batch, DROPPED_LINKS)?;
    let origin = OriginReader::new(batch)?;
    (0..batch.num_rows())
        .map(|row| {
            let (code, message) = (status_code.value(row), status_message.value(row));
            Ok(SpanRow {
                origin: origin.get(row)?,
                span: Span {
                    trace_id: read_id(trace_id, row),
                    span_id: read_id(span_id, row),
                    trace_state: trace_state.value(row).to_owned(),
                    parent_span_id: read_id(parent, row),
                    flags: flags.value(row),
                    name: name.value(row).to_owned(),
                    kind: kind.value(row),
                    start_time_unix_nano: start.value(row),
                    end_time_unix_nano: end.value(row),
                    attributes: decode_attributes(attribute_keys.value(row), attribute_values.value(row))?,
                    dropped_attributes_count: dropped_attributes.value(row),
                    events: decode_list(events.value(row))?,
                    dropped_events_count: dropped_events.value(row),
                    links: decode_list(links.value(row))?,
                    dropped_links_count: dropped_links.value(row),
                    status: (code != 0 || !message.is_empty()).then(|| Status {
                        code,
                        message: message.to_owned(),
                    }),
                },
            })
        })
        .collect()
}

/// A batch of a span part written in an earlier layout, in today's (all or some of its columns:
/// a projection reads only some). Attributes were one column, first typed JSON text, then
/// protobuf ([`encode_list`]), now keys and values apart; events and links were JSON too; and a
/// `duration_ns` column (end − start, never read) was kept. Whatever reads span parts reads
/// through this, so old and new parts answer, merge and index alike.
pub(crate) fn upgrade(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let old = batch.schema();
    let unexpected = |name: &str| ArrowError::SchemaError(format!("column {name} has an unexpected type"));
    // Each row's attributes, from whichever encoding the part has.
    let attributes = || -> Result<Vec<Vec<KeyValue>>, ArrowError> {
        let array = batch
            .column_by_name(ATTRIBUTES)
            .ok_or_else(|| ArrowError::SchemaError(format!("column {ATTRIBUTES} missing")))?;
        let any = array.as_any();
        if let Some(text) = any.downcast_ref::<StringArray>() {
            (0..text.len()).map(|row| read_attributes(text.value(row))).collect()
        } else if let Some(binary) = any.downcast_ref::<BinaryArray>() {
            (0..binary.len()).map(|row| decode_list(binary.value(row))).collect()
        } else {
            Err(unexpected(ATTRIBUTES))
        }
    };
    let mut split: Option<(ArrayRef, ArrayRef)> = None;
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for now in schema().fields() {
        let name = now.name().as_str();
        let column = match (name, old.field_with_name(name)) {
            (_, Ok(field)) if field.data_type() == now.data_type() => batch.column_by_name(name).cloned(),
            (ATTRIBUTE_KEYS | ATTRIBUTE_VALUES, Err(_)) if old.field_with_name(ATTRIBUTES).is_ok() => {
                if split.is_none() {
                    let rows = attributes()?;
                    let mut keys = BinaryBuilder::with_capacity(rows.len(), rows.len() * 64);
                    let mut values = BinaryBuilder::with_capacity(rows.len(), rows.len() * 64);
                    let (mut k, mut v) = (Vec::new(), Vec::new());
                    for row in &rows {
                        encode_attributes(row, &mut k, &mut v);
                        keys.append_value(&k);
                        values.append_value(&v);
                    }
                    split = Some((Arc::new(keys.finish()), Arc::new(values.finish())));
                }
                split.as_ref().map(|(keys, values)| {
                    if name == ATTRIBUTE_KEYS {
                        keys.clone()
                    } else {
                        values.clone()
                    }
                })
            }
            (EVENTS | LINKS, Ok(_)) => {
                let text = batch
                    .column_by_name(name)
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                    .ok_or_else(|| unexpected(name))?;
                let mut out = BinaryBuilder::with_capacity(text.len(), text.len() * 64);
                let mut scratch = Vec::new();
                for row in 0..text.len() {
                    let value = text.value(row);
                    if name == EVENTS {
                        encode_list(&fragment::read_events(value).map_err(json_error)?, &mut scratch);
                    } else {
                        encode_list(&fragment::read_links(value).map_err(json_error)?, &mut scratch);
                    }
                    out.append_value(&scratch);
                }
                Some(Arc::new(out.finish()) as ArrayRef)
            }
            (_, Ok(_)) => return Err(unexpected(name)),
            // Not in this batch (a projection left it out).
            (_, Err(_)) => None,
        };
        if let Some(column) = column {
            fields.push(now.as_ref().clone());
            columns.push(column);
        }
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}
