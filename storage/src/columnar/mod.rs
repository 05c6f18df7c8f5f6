//! The Arrow schemas of the five tables and the conversions OTLP ⇄ Arrow.
//!
//! Every column is named and typed once, in the module of its table (`spans`, `logs`, `metrics`,
//! `exemplars`); the resource and scope columns every table shares are defined here. Scalars get
//! typed columns (ids as fixed-size binary, times as `u64` nanoseconds, enums as `i32`); nested
//! fields whose shape varies (attributes, events, links, exemplars, structured log bodies) keep
//! their OTLP type losslessly in one of two encodings. A span's attributes, events and links, the
//! bulk of a span, are protobuf ([`encode_list`]: compressed, a third smaller than the JSON form
//! and faster both ways; attributes with keys and values in two columns, [`encode_attributes`]);
//! the other nested columns are typed JSON text — the OTLP/JSON encoding of the field — which
//! DuckDB or any Parquet reader can look inside. Span parts written in earlier layouts (JSON, then
//! attributes in one column) are read through [`spans::upgrade`].

pub(crate) mod exemplars;
pub(crate) mod logs;
pub(crate) mod metrics;
pub(crate) mod rollups;
pub(crate) mod spans;

use std::sync::Arc;

use arrow_array::builder::{FixedSizeBinaryBuilder, StringBuilder, UInt32Builder};
use arrow_array::{Array, ArrayRef, FixedSizeBinaryArray, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use sift_proto::json::fragment;
use sift_proto::otlp::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use sift_proto::otlp::resource::v1::Resource;

/// The tables of the store: one per signal, plus the exemplars of metric points (by trace id)
/// and the per-minute rollups of metric series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Spans, sorted by trace id within a part.
    Spans,
    /// Log records, in arrival order within a part (rows are addressed by the full-text index).
    Logs,
    /// Metric data points, sorted by (name, series, time).
    Metrics,
    /// Exemplars that carry a trace id, sorted by trace id.
    Exemplars,
    /// Metric rollups per series and minute, sorted by (name, labels, minute).
    Rollups,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 5] = [
        Table::Spans,
        Table::Logs,
        Table::Metrics,
        Table::Exemplars,
        Table::Rollups,
    ];

    /// The table's directory name under the data directory.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Spans => "spans",
            Table::Logs => "logs",
            Table::Metrics => "metrics",
            Table::Exemplars => "exemplars",
            Table::Rollups => "rollups",
        }
    }

    /// Whether the table's rows are made from another table's (exemplars and rollups, from
    /// metric points): they are not items received, and their bytes are the metrics signal's.
    pub fn is_derived(self) -> bool {
        matches!(self, Table::Exemplars | Table::Rollups)
    }

    /// The signal a table's rows count as (exemplars and rollups belong to metrics).
    pub fn signal(self) -> sift_proto::SignalKind {
        match self {
            Table::Spans => sift_proto::SignalKind::Traces,
            Table::Logs => sift_proto::SignalKind::Logs,
            Table::Metrics | Table::Exemplars | Table::Rollups => sift_proto::SignalKind::Metrics,
        }
    }

    /// The table's Arrow schema.
    pub fn schema(self) -> SchemaRef {
        match self {
            Table::Spans => spans::schema(),
            Table::Logs => logs::schema(),
            Table::Metrics => metrics::schema(),
            Table::Exemplars => exemplars::schema(),
            Table::Rollups => rollups::schema(),
        }
    }
}

/// The resource and instrumentation scope an item was sent with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origin {
    /// The resource (its attributes hold `service.name`).
    pub resource: Resource,
    /// The `schema_url` of the resource group.
    pub resource_schema_url: String,
    /// The instrumentation scope.
    pub scope: InstrumentationScope,
    /// The `schema_url` of the scope group.
    pub scope_schema_url: String,
}

impl Origin {
    /// The `service.name` resource attribute, or `""`.
    pub fn service_name(&self) -> &str {
        service_name(&self.resource.attributes)
    }
}

/// The `service.name` attribute among `attributes`, or `""`.
pub fn service_name(attributes: &[KeyValue]) -> &str {
    attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or("")
}

/// Attributes as typed JSON text (`[]` when empty).
pub(crate) fn attributes_json(attributes: &[KeyValue]) -> String {
    let mut out = String::new();
    fragment::write_attributes(attributes, &mut out);
    out
}

/// A resource and scope group, with its JSON columns encoded once for all of its items.
pub(crate) struct EncodedOrigin<'a> {
    resource: Option<&'a Resource>,
    resource_schema_url: &'a str,
    scope: Option<&'a InstrumentationScope>,
    scope_schema_url: &'a str,
    service: &'a str,
    resource_attributes: String,
    scope_attributes: String,
}

impl<'a> EncodedOrigin<'a> {
    pub(crate) fn new(
        resource: Option<&'a Resource>,
        resource_schema_url: &'a str,
        scope: Option<&'a InstrumentationScope>,
        scope_schema_url: &'a str,
    ) -> Self {
        EncodedOrigin {
            resource,
            resource_schema_url,
            scope,
            scope_schema_url,
            service: resource.map_or("", |r| service_name(&r.attributes)),
            resource_attributes: attributes_json(resource.map_or(&[], |r| &r.attributes)),
            scope_attributes: attributes_json(scope.map_or(&[], |s| &s.attributes)),
        }
    }

    pub(crate) fn service(&self) -> &str {
        self.service
    }

    pub(crate) fn resource_attributes(&self) -> &[sift_proto::otlp::common::v1::KeyValue] {
        self.resource.map_or(&[], |r| &r.attributes)
    }
}

/// The columns every table shares: the service and the item's resource and scope.
pub(crate) mod origin_col {
    pub const SERVICE_NAME: &str = "service_name";
    pub const RESOURCE_ATTRIBUTES: &str = "resource_attributes";
    pub const RESOURCE_DROPPED: &str = "resource_dropped_attributes_count";
    pub const RESOURCE_SCHEMA_URL: &str = "resource_schema_url";
    pub const SCOPE_NAME: &str = "scope_name";
    pub const SCOPE_VERSION: &str = "scope_version";
    pub const SCOPE_ATTRIBUTES: &str = "scope_attributes";
    pub const SCOPE_DROPPED: &str = "scope_dropped_attributes_count";
    pub const SCOPE_SCHEMA_URL: &str = "scope_schema_url";
}

/// Builders of the shared origin columns.
#[derive(Default)]
pub(crate) struct OriginBuilder {
    service: StringBuilder,
    resource_attributes: StringBuilder,
    resource_dropped: UInt32Builder,
    resource_schema_url: StringBuilder,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    scope_attributes: StringBuilder,
    scope_dropped: UInt32Builder,
    scope_schema_url: StringBuilder,
}

impl OriginBuilder {
    pub(crate) fn fields() -> Vec<Field> {
        use origin_col::*;
        vec![
            Field::new(SERVICE_NAME, DataType::Utf8, false),
            Field::new(RESOURCE_ATTRIBUTES, DataType::Utf8, false),
            Field::new(RESOURCE_DROPPED, DataType::UInt32, false),
            Field::new(RESOURCE_SCHEMA_URL, DataType::Utf8, false),
            Field::new(SCOPE_NAME, DataType::Utf8, false),
            Field::new(SCOPE_VERSION, DataType::Utf8, false),
            Field::new(SCOPE_ATTRIBUTES, DataType::Utf8, false),
            Field::new(SCOPE_DROPPED, DataType::UInt32, false),
            Field::new(SCOPE_SCHEMA_URL, DataType::Utf8, false),
        ]
    }

    pub(crate) fn append(&mut self, origin: &EncodedOrigin<'_>) {
        self.service.append_value(origin.service);
        self.resource_attributes.append_value(&origin.resource_attributes);
        self.resource_dropped
            .append_value(origin.resource.map_or(0, |r| r.dropped_attributes_count));
        self.resource_schema_url.append_value(origin.resource_schema_url);
        self.scope_name
            .append_value(origin.scope.map_or("", |s| s.name.as_str()));
        self.scope_version
            .append_value(origin.scope.map_or("", |s| s.version.as_str()));
        self.scope_attributes.append_value(&origin.scope_attributes);
        self.scope_dropped
            .append_value(origin.scope.map_or(0, |s| s.dropped_attributes_count));
        self.scope_schema_url.append_value(origin.scope_schema_url);
    }

    pub(crate) fn finish(&mut self, columns: &mut Vec<ArrayRef>) {
        columns.push(Arc::new(self.service.finish()));
        columns.push(Arc::new(self.resource_attributes.finish()));
        columns.push(Arc::new(self.resource_dropped.finish()));
        columns.push(Arc::new(self.resource_schema_url.finish()));
        columns.push(Arc::new(self.scope_name.finish()));
        columns.push(Arc::new(self.scope_version.finish()));
        columns.push(Arc::new(self.scope_attributes.finish()));
        columns.push(Arc::new(self.scope_dropped.finish()));
        columns.push(Arc::new(self.scope_schema_url.finish()));
    }
}

/// The value parsed from a text, kept while the same text comes again: rows of one resource,
/// scope or metric series sit together in a batch, so most rows repeat the row before, and a
/// clone costs a fraction of parsing JSON again.
pub(crate) struct Repeated<'a, T> {
    last: std::cell::RefCell<Option<(&'a str, T)>>,
}

impl<'a, T: Clone> Repeated<'a, T> {
    pub(crate) fn new() -> Self {
        Repeated {
            last: std::cell::RefCell::new(None),
        }
    }

    /// `parse(text)`, or a copy of the last value when `text` is the last text.
    pub(crate) fn get(
        &self,
        text: &'a str,
        parse: impl FnOnce(&'a str) -> Result<T, ArrowError>,
    ) -> Result<T, ArrowError> {
        let mut last = self.last.borrow_mut();
        if let Some((seen, value)) = last.as_ref() {
            if *seen == text {
                return Ok(value.clone());
            }
        }
        let value = parse(text)?;
        *last = Some((text, value.clone()));
        Ok(value)
    }
}

/// Reads the origin columns of a batch back into [`Origin`]s.
pub(crate) struct OriginReader<'b> {
    resource_attributes: &'b StringArray,
    resource_dropped: &'b UInt32Array,
    resource_schema_url: &'b StringArray,
    scope_name: &'b StringArray,
    scope_version: &'b StringArray,
    scope_attributes: &'b StringArray,
    scope_dropped: &'b UInt32Array,
    scope_schema_url: &'b StringArray,
    resources: Repeated<'b, Vec<KeyValue>>,
    scopes: Repeated<'b, Vec<KeyValue>>,
}

impl<'b> OriginReader<'b> {
    pub(crate) fn new(batch: &'b RecordBatch) -> Result<Self, ArrowError> {
        use origin_col::*;
        Ok(OriginReader {
            resource_attributes: column(batch, RESOURCE_ATTRIBUTES)?,
            resource_dropped: column(batch, RESOURCE_DROPPED)?,
            resource_schema_url: column(batch, RESOURCE_SCHEMA_URL)?,
            scope_name: column(batch, SCOPE_NAME)?,
            scope_version: column(batch, SCOPE_VERSION)?,
            scope_attributes: column(batch, SCOPE_ATTRIBUTES)?,
            scope_dropped: column(batch, SCOPE_DROPPED)?,
            scope_schema_url: column(batch, SCOPE_SCHEMA_URL)?,
            resources: Repeated::new(),
            scopes: Repeated::new(),
        })
    }

    pub(crate) fn get(&self, row: usize) -> Result<Origin, ArrowError> {
        Ok(Origin {
            resource: Resource {
                attributes: self
                    .resources
                    .get(self.resource_attributes.value(row), read_attributes)?,
                dropped_attributes_count: self.resource_dropped.value(row),
                entity_refs: Vec::new(),
            },
            resource_schema_url: self.resource_schema_url.value(row).to_owned(),
            scope: InstrumentationScope {
                name: self.scope_name.value(row).to_owned(),
                version: self.scope_version.value(row).to_owned(),
                attributes: self.scopes.get(self.scope_attributes.value(row), read_attributes)?,
                dropped_attributes_count: self.scope_dropped.value(row),
            },
            scope_schema_url: self.scope_schema_url.value(row).to_owned(),
        })
    }
}

/// A column of `batch` by name, as its concrete array type.
pub(crate) fn column<'b, T: Array + 'static>(batch: &'b RecordBatch, name: &str) -> Result<&'b T, ArrowError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| ArrowError::SchemaError(format!("column {name} is missing")))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| ArrowError::SchemaError(format!("column {name} has an unexpected type")))
}

pub(crate) fn read_attributes(text: &str) -> Result<Vec<KeyValue>, ArrowError> {
    fragment::read_attributes(text).map_err(json_error)
}

/// Messages as one binary value: each length-delimited, one after another (the body of a
/// protobuf repeated field without its tags). Replaces `out`'s contents.
pub(crate) fn encode_list<M: prost::Message>(items: &[M], out: &mut Vec<u8>) {
    out.clear();
    for item in items {
        item.encode_length_delimited(out)
            .unwrap_or_else(|_| unreachable!("a Vec grows as needed"));
    }
}

/// The messages of a value written by [`encode_list`].
pub(crate) fn decode_list<M: prost::Message + Default>(mut bytes: &[u8]) -> Result<Vec<M>, ArrowError> {
    let mut items = Vec::new();
    while !bytes.is_empty() {
        let item = M::decode_length_delimited(&mut bytes)
            .map_err(|e| ArrowError::ParseError(format!("stored protobuf column: {e}")))?;
        items.push(item);
    }
    Ok(items)
}

/// Attributes as two values, kept in two columns: their keys (each `KeyValue` without its value,
/// as [`encode_list`] writes them) and their values, one after another. A span's set of keys
/// repeats from span to span, so the keys column is a dictionary of a few entries, and zstd sees
/// the values alone instead of a key between every two (measured on a part of the load
/// generator's spans: 28.9 → 0.9 + 19.8 B a span). Each value is its `AnyValue`'s single protobuf field, or one
/// byte: 0 for a missing value, 1 for an empty one (field tags are 8 or more). Replaces the
/// contents of `keys` and `values`.
pub(crate) fn encode_attributes(attributes: &[KeyValue], keys: &mut Vec<u8>, values: &mut Vec<u8>) {
    use prost::encoding::{encode_varint, int32, string};
    use prost::Message as _;
    keys.clear();
    values.clear();
    for kv in attributes {
        // The `KeyValue` without its value, length-delimited, as prost writes it (empty fields
        // left out), without cloning it: this runs for every attribute of every span.
        let key_len = if kv.key.is_empty() {
            0
        } else {
            string::encoded_len(1, &kv.key)
        };
        let index_len = if kv.key_strindex == 0 {
            0
        } else {
            int32::encoded_len(3, &kv.key_strindex)
        };
        encode_varint((key_len + index_len) as u64, keys);
        if !kv.key.is_empty() {
            string::encode(1, &kv.key, keys);
        }
        if kv.key_strindex != 0 {
            int32::encode(3, &kv.key_strindex, keys);
        }
        match &kv.value {
            None => values.push(0),
            Some(AnyValue { value: None }) => values.push(1),
            Some(value) => value
                .encode(values)
                .unwrap_or_else(|_| unreachable!("a Vec grows as needed")),
        }
    }
}

/// The attributes written by [`encode_attributes`].
pub(crate) fn decode_attributes(keys: &[u8], mut values: &[u8]) -> Result<Vec<KeyValue>, ArrowError> {
    use prost::encoding::{decode_key, decode_varint, WireType};
    use prost::Message as _;
    let corrupt = |what: &str| ArrowError::ParseError(format!("stored attribute values: {what}"));
    let mut attributes: Vec<KeyValue> = decode_list(keys)?;
    for kv in &mut attributes {
        kv.value = match values.first() {
            None => return Err(corrupt("fewer values than keys")),
            Some(0) => {
                values = &values[1..];
                None
            }
            Some(1) => {
                values = &values[1..];
                Some(AnyValue::default())
            }
            Some(_) => {
                let mut rest = values;
                let (_, wire_type) = decode_key(&mut rest).map_err(|e| corrupt(&e.to_string()))?;
                let body = match wire_type {
                    WireType::Varint => {
                        decode_varint(&mut rest).map_err(|e| corrupt(&e.to_string()))?;
                        0
                    }
                    WireType::SixtyFourBit => 8,
                    WireType::ThirtyTwoBit => 4,
                    WireType::LengthDelimited => {
                        usize::try_from(decode_varint(&mut rest).map_err(|e| corrupt(&e.to_string()))?)
                            .map_err(|_| corrupt("length out of range"))?
                    }
                    _ => return Err(corrupt("unexpected wire type")),
                };
                let end = values.len() - rest.len() + body;
                let field = values.get(..end).ok_or_else(|| corrupt("value cut short"))?;
                values = &values[end..];
                Some(AnyValue::decode(field).map_err(|e| corrupt(&e.to_string()))?)
            }
        };
    }
    if !values.is_empty() {
        return Err(corrupt("more values than keys"));
    }
    Ok(attributes)
}

pub(crate) fn json_error(e: sift_proto::json::JsonError) -> ArrowError {
    ArrowError::ParseError(format!("stored JSON column: {e}"))
}

/// Appends an id of `width` bytes, or null if it is empty or of another length.
pub(crate) fn append_id(builder: &mut FixedSizeBinaryBuilder, id: &[u8], width: usize) {
    if id.len() == width {
        builder
            .append_value(id)
            .unwrap_or_else(|_| unreachable!("id width checked"));
    } else {
        builder.append_null();
    }
}

/// The id at `row`, or an empty vector for null.
pub(crate) fn read_id(array: &FixedSizeBinaryArray, row: usize) -> Vec<u8> {
    if array.is_null(row) {
        Vec::new()
    } else {
        array.value(row).to_vec()
    }
}

/// A schema from fields, with the origin columns appended.
pub(crate) fn schema_with_origin(mut fields: Vec<Field>) -> SchemaRef {
    fields.extend(OriginBuilder::fields());
    Arc::new(Schema::new(fields))
}

/// Nanoseconds per hour: tables are partitioned by the hour of each row's time.
pub const HOUR_NANOS: u64 = 3_600_000_000_000;

#[cfg(test)]
mod tests;
