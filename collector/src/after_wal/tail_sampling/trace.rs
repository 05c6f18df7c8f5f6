//! Traces in tail sampling: as the buffer holds them ([`EncodedSpan`]: the bytes each span arrived
//! as, sliced out of the WAL record, with its resource and scope) and as the policies see them
//! ([`Trace`]: decoded when the decision is due). Kept spans are written on as they arrived
//! ([`encode_request`]).

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use sift_proto::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use sift_proto::otlp::resource::v1::Resource;
use sift_proto::otlp::trace::v1::Span;
use sift_proto::wire::{self, Malformed};

/// Where a span came from: its resource and instrumentation scope, with their schema URLs (the
/// same type the store reads rows back with).
pub use sift_storage::Origin;

/// Items grouped under their origins, in first-seen order (origins equal by value share a group):
/// how kept spans or log records are put back into one request.
pub fn group_by_origin<T>(items: impl IntoIterator<Item = (Arc<Origin>, T)>) -> Vec<(Arc<Origin>, Vec<T>)> {
    let mut groups: Vec<(Arc<Origin>, Vec<T>)> = Vec::new();
    for (origin, item) in items {
        match groups
            .iter_mut()
            .find(|(o, _)| Arc::ptr_eq(o, &origin) || **o == *origin)
        {
            Some((_, group)) => group.push(item),
            None => groups.push((origin, vec![item])),
        }
    }
    groups
}

/// One buffered span with its origin.
#[derive(Debug, Clone)]
pub struct TraceSpan {
    /// The span.
    pub span: Span,
    /// Its resource and scope.
    pub origin: Arc<Origin>,
}

/// The spans of one trace received so far.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The spans.
    pub spans: Vec<TraceSpan>,
}

impl Trace {
    /// The trace id (of its first span; all spans share it).
    pub fn trace_id(&self) -> &[u8] {
        self.spans.first().map_or(&[], |s| s.span.trace_id.as_slice())
    }

    /// Latest end minus earliest start, in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        let start = self
            .spans
            .iter()
            .map(|s| s.span.start_time_unix_nano)
            .min()
            .unwrap_or(0);
        let end = self.spans.iter().map(|s| s.span.end_time_unix_nano).max().unwrap_or(0);
        end.saturating_sub(start)
    }

    /// Every value of attribute `key` on a span or on a span's resource.
    pub fn attribute_values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a AnyValue> + 'a {
        self.spans.iter().flat_map(move |s| {
            s.span
                .attributes
                .iter()
                .chain(s.origin.resource.attributes.iter())
                .filter(move |kv| kv.key == key)
                .filter_map(|kv| kv.value.as_ref())
        })
    }
}

/// One buffered span as it arrived: its protobuf bytes (a slice of the WAL record, not a copy)
/// and its origin. Pending traces are held this way — about a third of the memory of decoded
/// spans — and decoded only when their decision is due; kept spans are written on as they are.
#[derive(Debug, Clone)]
pub struct EncodedSpan {
    /// The `Span` message.
    pub bytes: Bytes,
    /// Its resource and scope.
    pub origin: Arc<Origin>,
    /// Read once, when the span is sliced out: the buffer and the sampler both need them.
    trace_id: Option<[u8; 16]>,
    root: bool,
}

impl EncodedSpan {
    /// A span from its `Span` message bytes (one pass over its fields for the trace id and parent).
    pub fn new(bytes: Bytes, origin: Arc<Origin>) -> EncodedSpan {
        let (mut trace_id, mut parent): (&[u8], &[u8]) = (&[], &[]);
        for (field, value) in wire::delimited_fields(&bytes).map_while(Result::ok) {
            match field {
                1 => trace_id = value,
                4 => parent = value,
                _ => {}
            }
        }
        EncodedSpan {
            trace_id: trace_id.try_into().ok(),
            root: parent.is_empty(),
            bytes,
            origin,
        }
    }

    /// The span's trace id, if it has a valid one.
    pub fn trace_id(&self) -> Option<[u8; 16]> {
        self.trace_id
    }

    /// Whether the span has no parent.
    pub fn is_root(&self) -> bool {
        self.root
    }

    /// The decoded span, for the policies.
    pub fn decode(&self) -> Option<TraceSpan> {
        Some(TraceSpan {
            span: Span::decode(self.bytes.clone()).ok()?,
            origin: self.origin.clone(),
        })
    }

    /// A span of `span` (for tests and benches).
    pub fn of(span: &Span, origin: Arc<Origin>) -> EncodedSpan {
        EncodedSpan::new(span.encode_to_vec().into(), origin)
    }

    /// Adds an attribute: a repeated field may be appended to an encoded message.
    pub fn push_attribute(&mut self, attribute: &KeyValue) {
        let mut bytes = Vec::with_capacity(self.bytes.len() + 64);
        bytes.extend_from_slice(&self.bytes);
        prost::encoding::message::encode(9, attribute, &mut bytes);
        self.bytes = bytes.into();
    }
}

/// The spans of a protobuf `ExportTraceServiceRequest`, each a slice of `body`, with their origins
/// (decoded once per scope).
pub fn encoded_spans(body: &Bytes) -> Result<Vec<EncodedSpan>, Malformed> {
    let mut out = Vec::new();
    for_each_field(body, &mut |field, resource_spans| {
        if field != 1 {
            return Ok(());
        }
        let (mut resource, mut resource_schema_url, mut scopes) = (Resource::default(), String::new(), Vec::new());
        for_each_field(resource_spans, &mut |field, value| {
            match field {
                1 => resource.merge(value).map_err(|_| Malformed)?,
                2 => scopes.push(value),
                3 => resource_schema_url = String::from_utf8_lossy(value).into_owned(),
                _ => {}
            }
            Ok(())
        })?;
        for scope_spans in scopes {
            let (mut scope, mut scope_schema_url, mut spans) =
                (InstrumentationScope::default(), String::new(), Vec::new());
            for_each_field(scope_spans, &mut |field, value| {
                match field {
                    1 => scope.merge(value).map_err(|_| Malformed)?,
                    2 => spans.push(body.slice_ref(value)),
                    3 => scope_schema_url = String::from_utf8_lossy(value).into_owned(),
                    _ => {}
                }
                Ok(())
            })?;
            let origin = Arc::new(Origin {
                resource: resource.clone(),
                resource_schema_url: resource_schema_url.clone(),
                scope,
                scope_schema_url,
            });
            out.extend(spans.into_iter().map(|bytes| EncodedSpan::new(bytes, origin.clone())));
        }
        Ok(())
    })?;
    Ok(out)
}

/// Calls `f` with each length-delimited field of a message (other wire types are skipped).
fn for_each_field<'a>(
    buf: &'a [u8],
    f: &mut dyn FnMut(u32, &'a [u8]) -> Result<(), Malformed>,
) -> Result<(), Malformed> {
    for field in wire::delimited_fields(buf) {
        let (tag, value) = field?;
        f(tag, value)?;
    }
    Ok(())
}

/// A protobuf `ExportTraceServiceRequest` of `spans`, grouped back under their resources and
/// scopes; the spans' bytes are copied as they are.
pub fn encode_request(spans: Vec<EncodedSpan>) -> Vec<u8> {
    use prost::encoding::{bytes, message, string};
    let groups = group_by_origin(spans.into_iter().map(|s| (s.origin, s.bytes)));
    let mut out = Vec::new();
    for (origin, spans) in groups {
        let mut scope_spans = Vec::new();
        message::encode(1, &origin.scope, &mut scope_spans);
        for span in &spans {
            bytes::encode(2, span, &mut scope_spans);
        }
        if !origin.scope_schema_url.is_empty() {
            string::encode(3, &origin.scope_schema_url, &mut scope_spans);
        }
        let mut resource_spans = Vec::new();
        message::encode(1, &origin.resource, &mut resource_spans);
        bytes::encode(2, &scope_spans, &mut resource_spans);
        if !origin.resource_schema_url.is_empty() {
            string::encode(3, &origin.resource_schema_url, &mut resource_spans);
        }
        bytes::encode(1, &resource_spans, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
    use sift_proto::otlp::common::v1::any_value;
    use sift_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans};

    use super::*;

    fn span(trace: u8, root: bool) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![trace + 1; 8],
            parent_span_id: if root { Vec::new() } else { vec![9; 8] },
            name: format!("span {trace}"),
            ..Default::default()
        }
    }

    fn request() -> ExportTraceServiceRequest {
        let resource = |service: &str| Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(service.into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let scope = |name: &str, spans: Vec<Span>| ScopeSpans {
            scope: Some(InstrumentationScope {
                name: name.into(),
                ..Default::default()
            }),
            spans,
            schema_url: format!("https://{name}"),
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(resource("a")),
                    scope_spans: vec![
                        scope("x", vec![span(1, true), span(2, false)]),
                        scope("y", vec![span(3, false)]),
                    ],
                    schema_url: "https://a".into(),
                },
                ResourceSpans {
                    resource: Some(resource("b")),
                    scope_spans: vec![scope("x", vec![span(4, true)])],
                    schema_url: String::new(),
                },
            ],
        }
    }

    #[test]
    fn spans_are_sliced_out_with_their_origins_and_put_back_as_they_were() {
        let original = request();
        let body = Bytes::from(original.encode_to_vec());
        let spans = encoded_spans(&body).unwrap();
        assert_eq!(spans.len(), 4);
        assert_eq!(spans[1].trace_id(), Some([2; 16]));
        assert!(spans[0].is_root() && !spans[1].is_root());
        assert_eq!(spans[2].origin.scope.name, "y");
        assert_eq!(spans[3].origin.resource_schema_url, "");
        assert_eq!(spans[0].decode().unwrap().span, span(1, true));
        // Each origin becomes one resource with one scope: the same spans under the same origins.
        let flat = |request: &ExportTraceServiceRequest| {
            let mut out = Vec::new();
            for rs in &request.resource_spans {
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push((
                            rs.resource.clone(),
                            rs.schema_url.clone(),
                            ss.scope.clone(),
                            ss.schema_url.clone(),
                            span.clone(),
                        ));
                    }
                }
            }
            out
        };
        let again = ExportTraceServiceRequest::decode(encode_request(spans).as_slice()).unwrap();
        assert_eq!(again.resource_spans.len(), 3);
        assert_eq!(flat(&again), flat(&original));
        assert!(encoded_spans(&body.slice(..body.len() - 3)).is_err());
    }

    #[test]
    fn an_attribute_appended_to_the_encoded_span_is_decoded_with_it() {
        let mut encoded = EncodedSpan::of(&span(1, true), Arc::new(Origin::default()));
        let extra = KeyValue {
            key: "sampling.adjusted_count".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::DoubleValue(10.0)),
            }),
            ..Default::default()
        };
        encoded.push_attribute(&extra);
        let decoded = encoded.decode().unwrap().span;
        assert_eq!(decoded.attributes, vec![extra]);
        assert_eq!(decoded.name, "span 1");
    }
}
