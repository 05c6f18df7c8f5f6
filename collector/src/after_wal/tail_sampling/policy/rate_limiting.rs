//! `rate_limiting`: keeps traces while the spans kept in the current second stay within
//! `spans_per_second`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sift_config::RateLimitingConfig;

use super::{Evaluator, Verdict};
use crate::after_wal::tail_sampling::trace::Trace;

/// A per-second span budget.
pub(super) struct Budget {
    per_second: u64,
    window: Mutex<(Option<Instant>, u64)>,
}

impl Budget {
    pub(super) fn new(per_second: u64) -> Budget {
        Budget {
            per_second,
            window: Mutex::new((None, 0)),
        }
    }

    /// Spends `spans` from the current second's budget if they fit.
    pub(super) fn try_spend(&self, spans: u64, now: Instant) -> bool {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let (started, spent) = &mut *window;
        if started.is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1)) {
            *started = Some(now);
            *spent = 0;
        }
        if *spent + spans <= self.per_second {
            *spent += spans;
            true
        } else {
            false
        }
    }
}

pub(super) struct RateLimiting {
    budget: Budget,
}

impl RateLimiting {
    pub(super) fn new(config: &RateLimitingConfig) -> RateLimiting {
        RateLimiting {
            budget: Budget::new(config.spans_per_second),
        }
    }
}

impl Evaluator for RateLimiting {
    fn evaluate(&self, trace: &Trace, now: Instant) -> Verdict {
        Verdict::sampled_if(self.budget.try_spend(trace.spans.len() as u64, now))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::super::testing::{policy, trace, SpanSpec};
    use super::super::Verdict;

    #[test]
    fn keeps_traces_within_the_budget_of_each_second() {
        let p = policy(json!({"name": "r", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 35}}));
        let ten = trace(&vec![SpanSpec::default(); 10]);
        let start = Instant::now();
        let verdicts: Vec<Verdict> = (0..4).map(|_| p.evaluate(&ten, start)).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Sampled,
                Verdict::Sampled,
                Verdict::Sampled,
                Verdict::NotSampled
            ]
        );
        assert_eq!(
            p.evaluate(&ten, start + Duration::from_millis(999)),
            Verdict::NotSampled,
            "same second"
        );
        assert_eq!(
            p.evaluate(&ten, start + Duration::from_secs(1)),
            Verdict::Sampled,
            "a new second"
        );
    }
}
