//! `always_sample`: keeps every trace.

use std::time::Instant;

use super::{Evaluator, Verdict};
use crate::after_wal::tail_sampling::trace::Trace;

pub(super) struct AlwaysSample;

impl Evaluator for AlwaysSample {
    fn evaluate(&self, _trace: &Trace, _now: Instant) -> Verdict {
        Verdict::Sampled
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{check, one, policy, SpanSpec};
    use super::super::Verdict;

    #[test]
    fn keeps_everything() {
        let p = policy(json!({"name": "all", "type": "always_sample"}));
        check(&p, &[("any trace", one(SpanSpec::default()), Verdict::Sampled)]);
    }
}
