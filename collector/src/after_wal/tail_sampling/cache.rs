//! The decision cache of tail sampling (not wired into pipelines yet): recent decisions, sampled
//! and not sampled kept apart with their own bounds (oldest forgotten first), each with the policy
//! that decided and when. Late spans and logs follow it; the decisions endpoint reads it.

use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

use super::buffer::TraceId;

/// A remembered decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Remembered {
    /// Kept or not.
    pub sampled: bool,
    /// The probability that kept it (1 unless a probabilistic share did; see `Decision`).
    pub probability: f64,
    /// The deciding policy.
    pub policy: String,
    /// When.
    pub decided_at: SystemTime,
}

#[derive(Default)]
struct Bounded {
    capacity: usize,
    entries: HashMap<TraceId, Remembered>,
    order: VecDeque<TraceId>,
}

impl Bounded {
    fn insert(&mut self, id: TraceId, decision: Remembered) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.insert(id, decision).is_none() {
            self.order.push_back(id);
        }
        while self.entries.len() > self.capacity {
            let Some(oldest) = self.order.pop_front() else { break };
            self.entries.remove(&oldest);
        }
    }
}

/// Sampled and not-sampled decisions, bounded separately.
pub struct DecisionCache {
    sampled: Bounded,
    not_sampled: Bounded,
}

impl DecisionCache {
    /// A cache holding at most `sampled` kept and `not_sampled` dropped decisions.
    pub fn new(sampled: usize, not_sampled: usize) -> DecisionCache {
        DecisionCache {
            sampled: Bounded {
                capacity: sampled,
                ..Default::default()
            },
            not_sampled: Bounded {
                capacity: not_sampled,
                ..Default::default()
            },
        }
    }

    /// Remembers a decision (a trace decided again replaces its old entry).
    pub fn insert(&mut self, id: TraceId, decision: Remembered) {
        if decision.sampled {
            self.not_sampled.entries.remove(&id);
            self.sampled.insert(id, decision);
        } else {
            self.sampled.entries.remove(&id);
            self.not_sampled.insert(id, decision);
        }
    }

    /// The decision on a trace, if still remembered.
    pub fn get(&self, id: &TraceId) -> Option<&Remembered> {
        self.sampled
            .entries
            .get(id)
            .or_else(|| self.not_sampled.entries.get(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(sampled: bool, policy: &str) -> Remembered {
        Remembered {
            sampled,
            probability: 1.0,
            policy: policy.to_owned(),
            decided_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn each_outcome_has_its_own_bound_and_forgets_the_oldest() {
        let mut cache = DecisionCache::new(2, 1);
        cache.insert([1; 16], decision(true, "errors"));
        cache.insert([2; 16], decision(true, "slow"));
        cache.insert([3; 16], decision(false, ""));
        cache.insert([4; 16], decision(true, "errors"));
        assert_eq!(cache.get(&[1; 16]), None, "oldest sampled forgotten");
        assert_eq!(cache.get(&[2; 16]).unwrap().policy, "slow");
        assert!(!cache.get(&[3; 16]).unwrap().sampled, "not-sampled bound is separate");
        cache.insert([5; 16], decision(false, ""));
        assert_eq!(cache.get(&[3; 16]), None);
        assert_eq!(cache.get(&[4; 16]).unwrap().policy, "errors");
    }
}
