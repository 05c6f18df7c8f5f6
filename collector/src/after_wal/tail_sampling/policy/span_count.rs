//! `span_count`: keeps traces with at least `min_spans` and, when `max_spans` is set, at most
//! `max_spans` spans.

use std::time::Instant;

use sift_config::SpanCountConfig;

use super::{Evaluator, Verdict};
use crate::after_wal::tail_sampling::trace::Trace;

pub(super) struct SpanCount {
    min: u64,
    max: Option<u64>,
}

impl SpanCount {
    pub(super) fn new(config: &SpanCountConfig) -> SpanCount {
        SpanCount {
            min: config.min_spans,
            max: (config.max_spans > 0).then_some(config.max_spans),
        }
    }
}

impl Evaluator for SpanCount {
    fn evaluate(&self, trace: &Trace, _now: Instant) -> Verdict {
        let count = trace.spans.len() as u64;
        Verdict::sampled_if(count >= self.min && self.max.is_none_or(|max| count <= max))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{check, policy, trace, SpanSpec};
    use super::super::Verdict;

    #[test]
    fn keeps_traces_within_the_span_count_bounds() {
        let p = policy(json!({"name": "c", "type": "span_count", "span_count": {"min_spans": 2, "max_spans": 3}}));
        let n = |count: usize| trace(&vec![SpanSpec::default(); count]);
        check(
            &p,
            &[
                ("1", n(1), Verdict::NotSampled),
                ("2", n(2), Verdict::Sampled),
                ("3", n(3), Verdict::Sampled),
                ("4", n(4), Verdict::NotSampled),
            ],
        );
    }
}
