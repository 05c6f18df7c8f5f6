//! `latency`: keeps traces whose duration (latest end − earliest start) is at least
//! `threshold_ms` and, when `upper_threshold_ms` is set, at most that.

use std::time::Instant;

use sift_config::LatencyConfig;

use super::{Evaluator, Verdict};
use crate::after_wal::tail_sampling::trace::Trace;

pub(super) struct Latency {
    lower_ns: u64,
    upper_ns: Option<u64>,
}

impl Latency {
    pub(super) fn new(config: &LatencyConfig) -> Latency {
        Latency {
            lower_ns: config.threshold_ms.saturating_mul(1_000_000),
            upper_ns: (config.upper_threshold_ms > 0).then(|| config.upper_threshold_ms.saturating_mul(1_000_000)),
        }
    }
}

impl Evaluator for Latency {
    fn evaluate(&self, trace: &Trace, _now: Instant) -> Verdict {
        let duration = trace.duration_ns();
        Verdict::sampled_if(duration >= self.lower_ns && self.upper_ns.is_none_or(|upper| duration <= upper))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{check, one, policy, trace, SpanSpec};
    use super::super::Verdict;

    #[test]
    fn keeps_slow_traces_within_bounds() {
        let span = |start_ms, duration_ms| SpanSpec {
            start_ms,
            duration_ms,
            ..Default::default()
        };
        let p = policy(json!({"name": "slow", "type": "latency", "latency": {"threshold_ms": 500}}));
        check(
            &p,
            &[
                ("fast", one(span(0, 100)), Verdict::NotSampled),
                ("exactly the threshold", one(span(0, 500)), Verdict::Sampled),
                ("slow", one(span(0, 5000)), Verdict::Sampled),
                (
                    "fast spans spread over a slow trace",
                    trace(&[span(0, 100), span(450, 100)]),
                    Verdict::Sampled,
                ),
            ],
        );
        let bounded = policy(
            json!({"name": "band", "type": "latency", "latency": {"threshold_ms": 500, "upper_threshold_ms": 1000}}),
        );
        check(
            &bounded,
            &[
                ("inside", one(span(0, 700)), Verdict::Sampled),
                ("above", one(span(0, 1500)), Verdict::NotSampled),
            ],
        );
    }
}
