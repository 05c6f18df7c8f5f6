//! `drop`: a trace every sub-policy matches is dropped, whatever the other policies say.

use std::time::Instant;

use super::{keeps, Evaluator, NamedPolicy, Verdict};
use crate::after_wal::tail_sampling::trace::Trace;

pub(super) struct Drop {
    policies: Vec<NamedPolicy>,
}

impl Drop {
    pub(super) fn new(policies: Vec<NamedPolicy>) -> Drop {
        Drop { policies }
    }
}

impl Evaluator for Drop {
    fn evaluate(&self, trace: &Trace, now: Instant) -> Verdict {
        if self.policies.iter().all(|p| keeps(p.evaluate(trace, now))) {
            Verdict::Dropped
        } else {
            Verdict::NotSampled
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sift_proto::otlp::common::v1::any_value::Value;

    use super::super::testing::{attr, check, one, policy, SpanSpec};
    use super::super::Verdict;

    #[test]
    fn drops_what_all_sub_policies_match() {
        let p = policy(
            json!({"name": "no-health", "type": "drop", "drop": {"drop_sub_policy": [
                {"name": "health", "type": "string_attribute", "string_attribute": {"key": "http.route", "values": ["/health"]}}
            ]}}),
        );
        let route = |r: &str| {
            one(SpanSpec {
                attributes: vec![attr("http.route", Value::StringValue(r.into()))],
                ..Default::default()
            })
        };
        check(
            &p,
            &[
                ("health check", route("/health"), Verdict::Dropped),
                ("real request", route("/pay"), Verdict::NotSampled),
            ],
        );
    }
}
