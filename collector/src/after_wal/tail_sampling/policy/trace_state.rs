//! `trace_state`: keeps traces with a span whose W3C trace state has `key` set to one of `values`.

use std::collections::HashSet;
use std::time::Instant;

use sift_config::TraceStateConfig;

use super::{Evaluator, Verdict};
use crate::after_wal::tail_sampling::trace::Trace;

pub(super) struct TraceState {
    key: String,
    values: HashSet<String>,
}

impl TraceState {
    pub(super) fn new(config: &TraceStateConfig) -> TraceState {
        TraceState {
            key: config.key.clone(),
            values: config.values.iter().cloned().collect(),
        }
    }
}

impl Evaluator for TraceState {
    fn evaluate(&self, trace: &Trace, _now: Instant) -> Verdict {
        let matched = trace.spans.iter().any(|s| {
            s.span
                .trace_state
                .split(',')
                .filter_map(|member| member.trim().split_once('='))
                .any(|(key, value)| key == self.key && self.values.contains(value))
        });
        Verdict::sampled_if(matched)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{check, one, policy, SpanSpec};
    use super::super::Verdict;

    #[test]
    fn keeps_traces_with_a_matching_trace_state_member() {
        let p = policy(
            json!({"name": "t", "type": "trace_state", "trace_state": {"key": "vendor", "values": ["keep", "yes"]}}),
        );
        let state = |s: &str| {
            one(SpanSpec {
                trace_state: s.into(),
                ..Default::default()
            })
        };
        check(
            &p,
            &[
                (
                    "matching member",
                    state("congo=t61rcWkgMzE,vendor=keep"),
                    Verdict::Sampled,
                ),
                ("other value", state("vendor=no"), Verdict::NotSampled),
                ("other key", state("other=keep"), Verdict::NotSampled),
                ("empty", state(""), Verdict::NotSampled),
            ],
        );
    }
}
