//! A trace as the policies see it: its spans, each with its resource and scope (shared by the
//! spans that came with them), so that kept traces can be sent on as they arrived.

use std::sync::Arc;

use sift_proto::otlp::common::v1::AnyValue;
use sift_proto::otlp::trace::v1::Span;

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
