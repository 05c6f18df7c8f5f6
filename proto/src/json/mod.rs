//! Sift's own OTLP/JSON codec.
//!
//! Decoding is lenient exactly where the proto3 JSON mapping and the Collector are (enum names or
//! numbers, 64-bit integers as strings or numbers, `null` as the default, `"NaN"`/`"Infinity"`,
//! snake_case field names, unknown fields ignored) and strict everywhere else: a malformed value is a
//! [`JsonError`] naming its path, never a silently dropped field. Encoding writes what the mapping
//! requires, including non-finite doubles as strings.

mod decode;
mod encode;
mod equivalence;
mod path;
mod scalar;

use serde_json::Value;

use crate::otlp::collector::logs::v1::ExportLogsServiceRequest;
use crate::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::otlp::collector::trace::v1::ExportTraceServiceRequest;
use path::Path;

/// A request body that is not valid OTLP/JSON, with the path of the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct JsonError {
    /// Where the problem is, e.g. `resourceSpans[0].scopeSpans[1].spans[3].traceId` (empty: the document).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

fn parse(body: &[u8]) -> Result<Value, JsonError> {
    serde_json::from_slice(body).map_err(|e| JsonError {
        path: String::new(),
        message: format!("invalid JSON: {e}"),
    })
}

/// Decodes an OTLP/JSON traces request.
pub fn decode_traces(body: &[u8]) -> Result<ExportTraceServiceRequest, JsonError> {
    decode::traces_request(&parse(body)?, &Path::ROOT)
}

/// Decodes an OTLP/JSON logs request.
pub fn decode_logs(body: &[u8]) -> Result<ExportLogsServiceRequest, JsonError> {
    decode::logs_request(&parse(body)?, &Path::ROOT)
}

/// Decodes an OTLP/JSON metrics request.
pub fn decode_metrics(body: &[u8]) -> Result<ExportMetricsServiceRequest, JsonError> {
    decode::metrics_request(&parse(body)?, &Path::ROOT)
}

/// Writes a traces request as OTLP/JSON text.
pub fn write_traces(request: &ExportTraceServiceRequest, out: &mut String) {
    encode::traces_request(request, out)
}

/// Writes a logs request as OTLP/JSON text.
pub fn write_logs(request: &ExportLogsServiceRequest, out: &mut String) {
    encode::logs_request(request, out)
}

/// Writes a metrics request as OTLP/JSON text.
pub fn write_metrics(request: &ExportMetricsServiceRequest, out: &mut String) {
    encode::metrics_request(request, out)
}

/// Our own output parsed back into a value (for tests and inspection, not hot paths).
fn to_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| unreachable!("the OTLP/JSON writer produced invalid JSON: {e}"))
}

/// Encodes a traces request as an OTLP/JSON value.
pub fn encode_traces(request: &ExportTraceServiceRequest) -> Value {
    let mut out = String::new();
    write_traces(request, &mut out);
    to_value(&out)
}

/// Encodes a logs request as an OTLP/JSON value.
pub fn encode_logs(request: &ExportLogsServiceRequest) -> Value {
    let mut out = String::new();
    write_logs(request, &mut out);
    to_value(&out)
}

/// Encodes a metrics request as an OTLP/JSON value.
pub fn encode_metrics(request: &ExportMetricsServiceRequest) -> Value {
    let mut out = String::new();
    write_metrics(request, &mut out);
    to_value(&out)
}

/// Encodes an OTLP `AnyValue` as OTLP/JSON (`{"stringValue": ...}` and so on).
pub fn encode_any_value(value: &crate::otlp::common::v1::AnyValue) -> Value {
    let mut out = String::new();
    encode::any_value(value, &mut out);
    to_value(&out)
}

/// Typed-JSON fragments of OTLP messages (the OTLP/JSON encoding of one field), for stores that
/// keep nested fields as text columns: lossless, and readable by any tool that reads JSON.
pub mod fragment {
    use super::path::Path;
    use super::scalar::repeated;
    use super::{decode, encode, parse, JsonError};
    use crate::otlp::common::v1::{AnyValue, KeyValue};
    use crate::otlp::metrics::v1::Exemplar;
    use crate::otlp::trace::v1::span::{Event, Link};

    macro_rules! fragment_list {
        ($write:ident, $read:ident, $ty:ty, $enc:path, $dec:path, $what:literal) => {
            #[doc = concat!("Writes a list of ", $what, " as an OTLP/JSON array.")]
            pub fn $write(items: &[$ty], out: &mut String) {
                encode::array(items, $enc, out)
            }
            #[doc = concat!("Reads a list of ", $what, " written by [`", stringify!($write), "`].")]
            pub fn $read(text: &str) -> Result<Vec<$ty>, JsonError> {
                repeated(&parse(text.as_bytes())?, &Path::ROOT, $dec)
            }
        };
    }

    fragment_list!(
        write_attributes,
        read_attributes,
        KeyValue,
        encode::key_value,
        decode::key_value,
        "attributes"
    );
    fragment_list!(
        write_events,
        read_events,
        Event,
        encode::span_event,
        decode::span_event,
        "span events"
    );
    fragment_list!(
        write_links,
        read_links,
        Link,
        encode::span_link,
        decode::span_link,
        "span links"
    );
    fragment_list!(
        write_exemplars,
        read_exemplars,
        Exemplar,
        encode::exemplar,
        decode::exemplar,
        "exemplars"
    );

    /// Writes an `AnyValue` as OTLP/JSON (`{"stringValue": ...}`).
    pub fn write_any_value(value: &AnyValue, out: &mut String) {
        encode::any_value(value, out)
    }

    /// Reads an `AnyValue` written by [`write_any_value`].
    pub fn read_any_value(text: &str) -> Result<AnyValue, JsonError> {
        decode::any_value(&parse(text.as_bytes())?, &Path::ROOT)
    }
}

#[cfg(test)]
mod tests;

pub use equivalence::equivalent;
