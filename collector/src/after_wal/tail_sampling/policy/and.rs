//! `and`: keeps traces that every sub-policy keeps.

use std::time::Instant;

use super::{keeps, Evaluator, NamedPolicy, Verdict};
use crate::after_wal::tail_sampling::trace::Trace;

pub(super) struct And {
    policies: Vec<NamedPolicy>,
}

impl And {
    pub(super) fn new(policies: Vec<NamedPolicy>) -> And {
        And { policies }
    }
}

impl Evaluator for And {
    fn evaluate(&self, trace: &Trace, now: Instant) -> Verdict {
        Verdict::sampled_if(self.policies.iter().all(|p| keeps(p.evaluate(trace, now))))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{check, one, policy, SpanSpec, ERROR};
    use super::super::Verdict;

    #[test]
    fn keeps_only_what_every_sub_policy_keeps() {
        let p = policy(json!({"name": "slow-errors", "type": "and", "and": {"and_sub_policy": [
            {"name": "slow", "type": "latency", "latency": {"threshold_ms": 500}},
            {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}}
        ]}}));
        let span = |duration_ms, status| {
            one(SpanSpec {
                duration_ms,
                status,
                ..Default::default()
            })
        };
        check(
            &p,
            &[
                ("slow error", span(900, ERROR), Verdict::Sampled),
                ("fast error", span(10, ERROR), Verdict::NotSampled),
                ("slow success", span(900, 0), Verdict::NotSampled),
            ],
        );
    }
}
