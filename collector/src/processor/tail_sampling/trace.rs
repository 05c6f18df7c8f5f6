//! A trace as the policies see it: its spans, each with the attributes of its resource.

use std::sync::Arc;

use sift_proto::otlp::common::v1::{AnyValue, KeyValue};
use sift_proto::otlp::trace::v1::Span;

/// One buffered span with its resource's attributes (shared by the spans of one resource).
#[derive(Debug, Clone)]
pub struct TraceSpan {
    /// The span.
    pub span: Span,
    /// Its resource's attributes.
    pub resource: Arc<Vec<KeyValue>>,
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
                .chain(s.resource.iter())
                .filter(move |kv| kv.key == key)
                .filter_map(|kv| kv.value.as_ref())
        })
    }
}
