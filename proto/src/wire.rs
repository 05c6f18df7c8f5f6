//! A scan of protobuf-encoded OTLP export requests that validates them and counts their items
//! without building a single message: the receive path's answer to "may these bytes go to the WAL
//! as they are?" when no processor needs the decoded fields.
//!
//! The scan accepts exactly what prost's decoding of the same message type accepts (wire types of
//! known fields, UTF-8 of strings, packed scalars, unknown fields and groups skipped, the recursion
//! limit of 100), and reports the items [`Signal::item_count`](crate::Signal::item_count) would
//! count and whether [`Signal::reject_invalid`](crate::Signal::reject_invalid) would remove
//! anything. Every message type is one table below, indexed by field number; a test compares the
//! scan with prost's decoder on mutated requests.

use crate::SignalKind;

/// What a scan of a well-formed request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Spans, log records or metric data points in the request.
    pub items: u64,
    /// False when some item is invalid (the request must be decoded to drop it).
    pub valid: bool,
}

/// The bytes are not a well-formed request; prost's decoder says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Scans a protobuf-encoded export request of `kind`.
pub fn scan(kind: SignalKind, body: &[u8]) -> Result<Scan, Malformed> {
    let schema = match kind {
        SignalKind::Traces => &EXPORT_TRACES,
        SignalKind::Logs => &EXPORT_LOGS,
        SignalKind::Metrics => &EXPORT_METRICS,
    };
    let mut scan = Scan { items: 0, valid: true };
    walk(body, schema, RECURSION_LIMIT, &mut scan)?;
    Ok(scan)
}

/// The length-delimited fields (strings, bytes, messages) of one message as (field number,
/// bytes), in order; fields of other wire types are skipped. For reading a few fields of a
/// message without decoding it. Stops with `Malformed` at the first malformed field.
pub fn delimited_fields(mut buf: &[u8]) -> impl Iterator<Item = Result<(u32, &[u8]), Malformed>> {
    std::iter::from_fn(move || {
        while !buf.is_empty() {
            let field = key(&mut buf).and_then(|(tag, wire)| match wire {
                LEN => delimited(&mut buf).map(|value| Some((tag, value))),
                _ => skip(&mut buf, tag, wire, RECURSION_LIMIT).map(|()| None),
            });
            match field {
                Ok(Some(field)) => return Some(Ok(field)),
                Ok(None) => {}
                Err(e) => {
                    buf = &[];
                    return Some(Err(e));
                }
            }
        }
        None
    })
}

/// prost's nesting limit: messages (and skipped groups) deeper than this are refused.
const RECURSION_LIMIT: u32 = 100;

/// How a known field is encoded. Numbers of every varint type (int, uint, sint, bool, enum)
/// decode without error whatever their value, so they are one kind here.
#[derive(Clone, Copy)]
enum Ty {
    /// No such field: skipped like any unknown field.
    Unknown,
    Varint,
    Fixed32,
    /// fixed64, sfixed64 and double.
    Fixed64,
    Bytes,
    Str,
    Message(&'static Schema),
    /// `repeated fixed64` / `repeated double`: packed or one value per occurrence.
    RepeatedFixed64,
    /// `repeated uint64`: packed or one value per occurrence.
    RepeatedVarint,
    /// A bytes field kept for the item check, in slot `n`.
    Id(usize),
    /// The metric name, kept for the item check.
    Name,
}

/// What a message is to the item count and check.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Item {
    None,
    Span,
    LogRecord,
    Metric,
    /// Gauge, sum, histogram, exponential histogram, summary: holds data points.
    Points,
    Point,
}

struct Schema {
    /// The message's full protobuf name (checked against the protocol's descriptors by a test).
    #[cfg_attr(not(test), allow(dead_code))]
    name: &'static str,
    /// Indexed by field number.
    fields: &'static [Ty],
    item: Item,
}

const NAME_SLOT: usize = 3;

/// What one message's fields showed (the last occurrence of each kept field wins, as in prost).
#[derive(Default)]
struct Seen<'a> {
    kept: [&'a [u8]; 4],
    /// Data points among its fields (a points container).
    points: u64,
    /// The metric's data: field number of the last variant and its points (the same variant
    /// twice merges, another replaces, as prost does with a oneof).
    data: Option<(u32, u64)>,
}

fn walk<'a>(mut buf: &'a [u8], schema: &Schema, depth: u32, scan: &mut Scan) -> Result<Seen<'a>, Malformed> {
    let mut seen = Seen::default();
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        let ty = usize::try_from(tag)
            .ok()
            .and_then(|i| schema.fields.get(i))
            .copied()
            .unwrap_or(Ty::Unknown);
        match (ty, wire) {
            (Ty::Unknown, _) => skip(&mut buf, tag, wire, depth)?,
            (Ty::Varint | Ty::RepeatedVarint, VARINT) => {
                varint(&mut buf)?;
            }
            (Ty::Fixed32, FIXED32) => {
                take(&mut buf, 4)?;
            }
            (Ty::Fixed64 | Ty::RepeatedFixed64, FIXED64) => {
                take(&mut buf, 8)?;
            }
            (Ty::Bytes, LEN) => {
                delimited(&mut buf)?;
            }
            (Ty::Str, LEN) => utf8(delimited(&mut buf)?)?,
            (Ty::Id(slot), LEN) => seen.kept[slot] = delimited(&mut buf)?,
            (Ty::Name, LEN) => {
                let name = delimited(&mut buf)?;
                utf8(name)?;
                seen.kept[NAME_SLOT] = name;
            }
            (Ty::RepeatedFixed64, LEN) => {
                if delimited(&mut buf)?.len() % 8 != 0 {
                    return Err(Malformed);
                }
            }
            (Ty::RepeatedVarint, LEN) => {
                let mut packed = delimited(&mut buf)?;
                while !packed.is_empty() {
                    varint(&mut packed)?;
                }
            }
            (Ty::Message(child), LEN) => {
                if depth == 0 {
                    return Err(Malformed);
                }
                let inner = walk(delimited(&mut buf)?, child, depth - 1, scan)?;
                tally(child.item, tag, &inner, &mut seen, scan);
            }
            _ => return Err(Malformed),
        }
    }
    Ok(seen)
}

/// Counts a finished child message of kind `item` (field `tag` of its parent, whose facts are
/// `parent`) and checks it as `reject_invalid` would.
fn tally(item: Item, tag: u32, child: &Seen<'_>, parent: &mut Seen<'_>, scan: &mut Scan) {
    let [trace_id, span_id, parent_id, name] = child.kept;
    match item {
        Item::None => {}
        Item::Point => parent.points += 1,
        Item::Points => {
            parent.data = Some(match parent.data {
                Some((same, points)) if same == tag => (same, points + child.points),
                _ => (tag, child.points),
            });
        }
        Item::Span => {
            scan.items += 1;
            scan.valid &= id(trace_id, 16) && id(span_id, 8) && (parent_id.is_empty() || parent_id.len() == 8);
        }
        Item::LogRecord => {
            scan.items += 1;
            scan.valid &= (trace_id.is_empty() || trace_id.len() == 16) && (span_id.is_empty() || span_id.len() == 8);
        }
        Item::Metric => {
            scan.items += child.data.map_or(0, |(_, points)| points);
            scan.valid &= !name.is_empty();
        }
    }
}

fn id(bytes: &[u8], len: usize) -> bool {
    bytes.len() == len && bytes.iter().any(|b| *b != 0)
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

#[inline]
fn key(buf: &mut &[u8]) -> Result<(u32, u8), Malformed> {
    let key = u32::try_from(varint(buf)?).map_err(|_| Malformed)?;
    let wire = (key & 7) as u8;
    let tag = key >> 3;
    if wire > FIXED32 || tag == 0 {
        return Err(Malformed);
    }
    Ok((tag, wire))
}

/// Skips an unknown field as prost does (which counts it against the recursion limit).
fn skip(buf: &mut &[u8], tag: u32, wire: u8, depth: u32) -> Result<(), Malformed> {
    if depth == 0 {
        return Err(Malformed);
    }
    match wire {
        VARINT => {
            varint(buf)?;
        }
        FIXED64 => {
            take(buf, 8)?;
        }
        LEN => {
            delimited(buf)?;
        }
        FIXED32 => {
            take(buf, 4)?;
        }
        START_GROUP => loop {
            let (inner_tag, inner_wire) = key(buf)?;
            if inner_wire == END_GROUP {
                if inner_tag != tag {
                    return Err(Malformed);
                }
                break;
            }
            skip(buf, inner_tag, inner_wire, depth - 1)?;
        },
        _ => return Err(Malformed),
    }
    Ok(())
}

/// A LEB128 varint of at most 10 bytes whose tenth byte carries at most one bit, as prost reads it.
#[inline(always)]
fn varint(buf: &mut &[u8]) -> Result<u64, Malformed> {
    match buf.first() {
        Some(&byte) if byte < 0x80 => {
            *buf = &buf[1..];
            Ok(u64::from(byte))
        }
        _ => long_varint(buf),
    }
}

#[inline(never)]
fn long_varint(buf: &mut &[u8]) -> Result<u64, Malformed> {
    let mut value = 0u64;
    for (i, byte) in buf.iter().take(10).enumerate() {
        if i == 9 && *byte > 1 {
            return Err(Malformed);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Ok(value);
        }
    }
    Err(Malformed)
}

#[inline]
fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], Malformed> {
    if buf.len() < len {
        return Err(Malformed);
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

#[inline]
fn delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], Malformed> {
    let len = usize::try_from(varint(buf)?).map_err(|_| Malformed)?;
    take(buf, len)
}

#[inline]
fn utf8(bytes: &[u8]) -> Result<(), Malformed> {
    if bytes.is_ascii() {
        return Ok(());
    }
    std::str::from_utf8(bytes).map(|_| ()).map_err(|_| Malformed)
}

// The message types, one table each, indexed by field number (opentelemetry-proto 1.x as
// generated by `opentelemetry-proto`; `Unknown` fills the gaps of reserved numbers).

use Ty::{Bytes, Fixed32, Fixed64, Id, Message, Name, RepeatedFixed64, RepeatedVarint, Str, Unknown as X, Varint};

const fn plain(name: &'static str, fields: &'static [Ty]) -> Schema {
    Schema {
        name,
        fields,
        item: Item::None,
    }
}

// common.v1
static ANY_VALUE: Schema = plain(
    "opentelemetry.proto.common.v1.AnyValue",
    &[
        X,
        Str,                   // string_value
        Varint,                // bool_value
        Varint,                // int_value
        Fixed64,               // double_value
        Message(&ARRAY_VALUE), // array_value
        Message(&KEY_VALUE_LIST),
        Bytes,  // bytes_value
        Varint, // string_value_strindex
    ],
);
static ARRAY_VALUE: Schema = plain("opentelemetry.proto.common.v1.ArrayValue", &[X, Message(&ANY_VALUE)]);
static KEY_VALUE_LIST: Schema = plain("opentelemetry.proto.common.v1.KeyValueList", &[X, Message(&KEY_VALUE)]);
static KEY_VALUE: Schema = plain(
    "opentelemetry.proto.common.v1.KeyValue",
    &[X, Str, Message(&ANY_VALUE), Varint],
);
static SCOPE: Schema = plain(
    "opentelemetry.proto.common.v1.InstrumentationScope",
    &[X, Str, Str, Message(&KEY_VALUE), Varint],
);
static ENTITY_REF: Schema = plain("opentelemetry.proto.common.v1.EntityRef", &[X, Str, Str, Str, Str]);
// resource.v1
static RESOURCE: Schema = plain(
    "opentelemetry.proto.resource.v1.Resource",
    &[X, Message(&KEY_VALUE), Varint, Message(&ENTITY_REF)],
);

// trace.v1
static EXPORT_TRACES: Schema = plain(
    "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
    &[X, Message(&RESOURCE_SPANS)],
);
static RESOURCE_SPANS: Schema = plain(
    "opentelemetry.proto.trace.v1.ResourceSpans",
    &[X, Message(&RESOURCE), Message(&SCOPE_SPANS), Str],
);
static SCOPE_SPANS: Schema = plain(
    "opentelemetry.proto.trace.v1.ScopeSpans",
    &[X, Message(&SCOPE), Message(&SPAN), Str],
);
static SPAN: Schema = Schema {
    name: "opentelemetry.proto.trace.v1.Span",
    fields: &[
        X,
        Id(0), // trace_id
        Id(1), // span_id
        Str,   // trace_state
        Id(2), // parent_span_id
        Str,   // name
        Varint,
        Fixed64,
        Fixed64,
        Message(&KEY_VALUE),
        Varint,
        Message(&EVENT),
        Varint,
        Message(&LINK),
        Varint,
        Message(&STATUS),
        Fixed32, // flags
    ],
    item: Item::Span,
};
static EVENT: Schema = plain(
    "opentelemetry.proto.trace.v1.Span.Event",
    &[X, Fixed64, Str, Message(&KEY_VALUE), Varint],
);
static LINK: Schema = plain(
    "opentelemetry.proto.trace.v1.Span.Link",
    &[X, Bytes, Bytes, Str, Message(&KEY_VALUE), Varint, Fixed32],
);
static STATUS: Schema = plain("opentelemetry.proto.trace.v1.Status", &[X, X, Str, Varint]);

// logs.v1
static EXPORT_LOGS: Schema = plain(
    "opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest",
    &[X, Message(&RESOURCE_LOGS)],
);
static RESOURCE_LOGS: Schema = plain(
    "opentelemetry.proto.logs.v1.ResourceLogs",
    &[X, Message(&RESOURCE), Message(&SCOPE_LOGS), Str],
);
static SCOPE_LOGS: Schema = plain(
    "opentelemetry.proto.logs.v1.ScopeLogs",
    &[X, Message(&SCOPE), Message(&LOG_RECORD), Str],
);
static LOG_RECORD: Schema = Schema {
    name: "opentelemetry.proto.logs.v1.LogRecord",
    fields: &[
        X,
        Fixed64, // time_unix_nano
        Varint,  // severity_number
        Str,     // severity_text
        X,
        Message(&ANY_VALUE), // body
        Message(&KEY_VALUE), // attributes
        Varint,              // dropped_attributes_count
        Fixed32,             // flags
        Id(0),               // trace_id
        Id(1),               // span_id
        Fixed64,             // observed_time_unix_nano
        Str,                 // event_name
    ],
    item: Item::LogRecord,
};

// metrics.v1
static EXPORT_METRICS: Schema = plain(
    "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest",
    &[X, Message(&RESOURCE_METRICS)],
);
static RESOURCE_METRICS: Schema = plain(
    "opentelemetry.proto.metrics.v1.ResourceMetrics",
    &[X, Message(&RESOURCE), Message(&SCOPE_METRICS), Str],
);
static SCOPE_METRICS: Schema = plain(
    "opentelemetry.proto.metrics.v1.ScopeMetrics",
    &[X, Message(&SCOPE), Message(&METRIC), Str],
);
static METRIC: Schema = Schema {
    name: "opentelemetry.proto.metrics.v1.Metric",
    fields: &[
        X,
        Name,
        Str, // description
        Str, // unit
        X,
        Message(&GAUGE),
        X,
        Message(&SUM),
        X,
        Message(&HISTOGRAM),
        Message(&EXPONENTIAL_HISTOGRAM),
        Message(&SUMMARY),
        Message(&KEY_VALUE), // metadata
    ],
    item: Item::Metric,
};
const fn points(name: &'static str, fields: &'static [Ty]) -> Schema {
    Schema {
        name,
        fields,
        item: Item::Points,
    }
}
const fn point(name: &'static str, fields: &'static [Ty]) -> Schema {
    Schema {
        name,
        fields,
        item: Item::Point,
    }
}
static GAUGE: Schema = points("opentelemetry.proto.metrics.v1.Gauge", &[X, Message(&NUMBER_POINT)]);
static SUM: Schema = points(
    "opentelemetry.proto.metrics.v1.Sum",
    &[X, Message(&NUMBER_POINT), Varint, Varint],
);
static HISTOGRAM: Schema = points(
    "opentelemetry.proto.metrics.v1.Histogram",
    &[X, Message(&HISTOGRAM_POINT), Varint],
);
static EXPONENTIAL_HISTOGRAM: Schema = points(
    "opentelemetry.proto.metrics.v1.ExponentialHistogram",
    &[X, Message(&EXPONENTIAL_POINT), Varint],
);
static SUMMARY: Schema = points("opentelemetry.proto.metrics.v1.Summary", &[X, Message(&SUMMARY_POINT)]);
static NUMBER_POINT: Schema = point(
    "opentelemetry.proto.metrics.v1.NumberDataPoint",
    &[
        X,
        X,
        Fixed64,             // start_time_unix_nano
        Fixed64,             // time_unix_nano
        Fixed64,             // as_double
        Message(&EXEMPLAR),  // exemplars
        Fixed64,             // as_int (sfixed64)
        Message(&KEY_VALUE), // attributes
        Varint,              // flags
    ],
);
static HISTOGRAM_POINT: Schema = point(
    "opentelemetry.proto.metrics.v1.HistogramDataPoint",
    &[
        X,
        X,
        Fixed64,             // start_time_unix_nano
        Fixed64,             // time_unix_nano
        Fixed64,             // count
        Fixed64,             // sum
        RepeatedFixed64,     // bucket_counts
        RepeatedFixed64,     // explicit_bounds
        Message(&EXEMPLAR),  // exemplars
        Message(&KEY_VALUE), // attributes
        Varint,              // flags
        Fixed64,             // min
        Fixed64,             // max
    ],
);
static EXPONENTIAL_POINT: Schema = point(
    "opentelemetry.proto.metrics.v1.ExponentialHistogramDataPoint",
    &[
        X,
        Message(&KEY_VALUE), // attributes
        Fixed64,             // start_time_unix_nano
        Fixed64,             // time_unix_nano
        Fixed64,             // count
        Fixed64,             // sum
        Varint,              // scale
        Fixed64,             // zero_count
        Message(&BUCKETS),   // positive
        Message(&BUCKETS),   // negative
        Varint,              // flags
        Message(&EXEMPLAR),  // exemplars
        Fixed64,             // min
        Fixed64,             // max
        Fixed64,             // zero_threshold
    ],
);
static BUCKETS: Schema = plain(
    "opentelemetry.proto.metrics.v1.ExponentialHistogramDataPoint.Buckets",
    &[X, Varint, RepeatedVarint],
);
static SUMMARY_POINT: Schema = point(
    "opentelemetry.proto.metrics.v1.SummaryDataPoint",
    &[
        X,
        X,
        Fixed64,                     // start_time_unix_nano
        Fixed64,                     // time_unix_nano
        Fixed64,                     // count
        Fixed64,                     // sum
        Message(&VALUE_AT_QUANTILE), // quantile_values
        Message(&KEY_VALUE),         // attributes
        Varint,                      // flags
    ],
);
static VALUE_AT_QUANTILE: Schema = plain(
    "opentelemetry.proto.metrics.v1.SummaryDataPoint.ValueAtQuantile",
    &[X, Fixed64, Fixed64],
);
static EXEMPLAR: Schema = plain(
    "opentelemetry.proto.metrics.v1.Exemplar",
    &[
        X,
        X,
        Fixed64,             // time_unix_nano
        Fixed64,             // as_double
        Bytes,               // span_id
        Bytes,               // trace_id
        Fixed64,             // as_int (sfixed64)
        Message(&KEY_VALUE), // filtered_attributes
    ],
);

#[cfg(test)]
mod tests;
