//! `composite`: sub-policies in `policy_order`, each with its share of
//! `max_total_spans_per_second` (`rate_allocation`; sub-policies without one share the rest
//! equally). The first sub-policy that keeps a trace and still has budget for its spans keeps it.

use std::time::Instant;

use sift_config::CompositeConfig;

use super::rate_limiting::Budget;
use super::{build, keeps, Evaluator, NamedPolicy, Verdict};
use crate::after_wal::tail_sampling::trace::Trace;

pub(super) struct Composite {
    ordered: Vec<(NamedPolicy, Budget)>,
}

impl Composite {
    pub(super) fn new(config: &CompositeConfig) -> Composite {
        let total = config.max_total_spans_per_second;
        let allocated: u64 = config.rate_allocation.iter().map(|a| a.percent).sum();
        let order: Vec<&str> = if config.policy_order.is_empty() {
            config.composite_sub_policy.iter().map(|p| p.name.as_str()).collect()
        } else {
            config.policy_order.iter().map(String::as_str).collect()
        };
        let unallocated = order
            .iter()
            .filter(|name| !config.rate_allocation.iter().any(|a| a.policy == **name))
            .count();
        let rest = total.saturating_sub(total * allocated / 100);
        let mut ordered = Vec::with_capacity(order.len());
        for name in order {
            let Some(sub) = config.composite_sub_policy.iter().find(|p| p.name == name) else {
                continue;
            };
            let share = match config.rate_allocation.iter().find(|a| a.policy == name) {
                Some(allocation) => total * allocation.percent / 100,
                None => rest / unallocated.max(1) as u64,
            };
            ordered.push((build(sub), Budget::new(share)));
        }
        Composite { ordered }
    }
}

impl Evaluator for Composite {
    fn evaluate(&self, trace: &Trace, now: Instant) -> Verdict {
        let spans = trace.spans.len() as u64;
        for (policy, budget) in &self.ordered {
            if keeps(policy.evaluate(trace, now)) && budget.try_spend(spans, now) {
                return Verdict::Sampled;
            }
        }
        Verdict::NotSampled
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::super::testing::{one, policy, SpanSpec, ERROR};
    use super::super::Verdict;

    #[test]
    fn sub_policies_keep_within_their_share_of_the_budget() {
        let p = policy(json!({"name": "c", "type": "composite", "composite": {
            "max_total_spans_per_second": 10,
            "policy_order": ["errors", "everything"],
            "composite_sub_policy": [
                {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
                {"name": "everything", "type": "always_sample"}
            ],
            "rate_allocation": [{"policy": "errors", "percent": 50}]
        }}));
        let now = Instant::now();
        let error = one(SpanSpec {
            status: ERROR,
            ..Default::default()
        });
        let ok = one(SpanSpec::default());
        // errors: 5 spans/s of their own, then they fall through to "everything" (the other 5).
        let errors: Vec<Verdict> = (0..7).map(|_| p.evaluate(&error, now)).collect();
        assert_eq!(
            errors.iter().filter(|v| **v == Verdict::Sampled).count(),
            7,
            "5 by errors, 2 by everything"
        );
        let oks: Vec<Verdict> = (0..5).map(|_| p.evaluate(&ok, now)).collect();
        assert_eq!(
            oks.iter().filter(|v| **v == Verdict::Sampled).count(),
            3,
            "what is left of everything's 5"
        );
        assert_eq!(
            p.evaluate(&error, now),
            Verdict::NotSampled,
            "budget spent for this second"
        );
    }
}
