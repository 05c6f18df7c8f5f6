//! `probabilistic`: keeps a share of traces chosen by a salted hash of the trace id, so every
//! Sift instance (and every span of a trace) agrees without coordination.

use std::time::Instant;

use sift_config::ProbabilisticConfig;

use super::{Evaluator, Verdict};
use crate::after_wal::tail_sampling::trace::Trace;

pub(super) struct Probabilistic {
    salt: Vec<u8>,
    threshold: u64,
    share: f64,
}

/// FNV-1a, 64 bits.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

impl Probabilistic {
    pub(super) fn new(config: &ProbabilisticConfig) -> Probabilistic {
        let share = config.sampling_percentage / 100.0;
        let threshold = if share >= 1.0 {
            u64::MAX
        } else {
            (share * u64::MAX as f64) as u64
        };
        Probabilistic {
            salt: config.hash_salt.as_bytes().to_vec(),
            threshold,
            share: share.clamp(0.0, 1.0),
        }
    }

    /// Whether a trace id is in the kept share.
    pub(super) fn keeps(&self, trace_id: &[u8]) -> bool {
        self.threshold > 0 && fnv1a(&[&self.salt, trace_id]) <= self.threshold
    }
}

impl Evaluator for Probabilistic {
    fn evaluate(&self, trace: &Trace, _now: Instant) -> Verdict {
        Verdict::sampled_if(self.keeps(trace.trace_id()))
    }

    fn probability(&self) -> f64 {
        self.share
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{check, one, policy, SpanSpec};
    use super::super::Verdict;
    use super::*;

    #[test]
    fn keeps_the_configured_share_deterministically() {
        let p = Probabilistic::new(&ProbabilisticConfig {
            sampling_percentage: 10.0,
            hash_salt: String::new(),
        });
        let ids: Vec<[u8; 16]> = (0u64..20_000)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
                id[8..].copy_from_slice(&i.to_le_bytes());
                id
            })
            .collect();
        let kept = ids.iter().filter(|id| p.keeps(*id)).count();
        assert!((1_800..=2_200).contains(&kept), "10% of 20,000: {kept}");
        let again = Probabilistic::new(&ProbabilisticConfig {
            sampling_percentage: 10.0,
            hash_salt: String::new(),
        });
        assert!(
            ids.iter().all(|id| p.keeps(id) == again.keeps(id)),
            "every instance agrees"
        );
        let salted = Probabilistic::new(&ProbabilisticConfig {
            sampling_percentage: 10.0,
            hash_salt: "other".into(),
        });
        assert!(
            ids.iter().any(|id| p.keeps(id) != salted.keeps(id)),
            "the salt changes the choice"
        );
    }

    #[test]
    fn zero_and_hundred_percent() {
        let none =
            policy(json!({"name": "none", "type": "probabilistic", "probabilistic": {"sampling_percentage": 0}}));
        let all =
            policy(json!({"name": "all", "type": "probabilistic", "probabilistic": {"sampling_percentage": 100}}));
        for t in 1..=20u8 {
            check(
                &none,
                &[(
                    "0%",
                    one(SpanSpec {
                        trace: t,
                        ..Default::default()
                    }),
                    Verdict::NotSampled,
                )],
            );
            check(
                &all,
                &[(
                    "100%",
                    one(SpanSpec {
                        trace: t,
                        ..Default::default()
                    }),
                    Verdict::Sampled,
                )],
            );
        }
    }
}
