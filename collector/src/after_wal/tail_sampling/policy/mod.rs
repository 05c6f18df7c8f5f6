//! Tail-sampling policies with the OpenTelemetry Collector's names and semantics, one file each,
//! behind one [`Evaluator`] trait. [`decide`] combines the verdicts of a policy set: a trace is
//! kept if any policy samples it, unless a `drop` policy matches or an inverted attribute policy
//! says not to.

mod always_sample;
mod and;
mod attribute;
mod composite;
mod drop;
mod latency;
mod probabilistic;
mod rate_limiting;
mod span_count;
mod status_code;
mod trace_state;

use std::time::Instant;

use sift_config::{Policy, PolicyConfig};

use super::trace::Trace;

/// One policy's verdict on one trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep.
    Sampled,
    /// No opinion to keep.
    NotSampled,
    /// An inverted match that keeps (`invert_match` and the value did not match).
    InvertSampled,
    /// An inverted match that vetoes keeping (`invert_match` and the value matched).
    InvertNotSampled,
    /// A `drop` policy matched: never keep.
    Dropped,
}

impl Verdict {
    /// `Sampled` when `matched`, otherwise `NotSampled`: the verdict of a plain matching policy.
    pub fn sampled_if(matched: bool) -> Verdict {
        if matched {
            Verdict::Sampled
        } else {
            Verdict::NotSampled
        }
    }
}

/// A policy's evaluation. `now` is passed in so that rate-based policies are testable.
pub trait Evaluator: Send + Sync {
    /// The verdict on `trace`.
    fn evaluate(&self, trace: &Trace, now: Instant) -> Verdict;

    /// The probability with which a sample verdict of this policy keeps a trace of its kind: 1
    /// for rules that keep every match, the share for `probabilistic`.
    fn probability(&self) -> f64 {
        1.0
    }
}

/// A configured policy, ready to evaluate.
pub struct NamedPolicy {
    /// The configured name, reported with decisions.
    pub name: String,
    evaluator: Box<dyn Evaluator>,
}

impl NamedPolicy {
    /// The verdict on `trace`.
    pub fn evaluate(&self, trace: &Trace, now: Instant) -> Verdict {
        self.evaluator.evaluate(trace, now)
    }
}

/// The attribute kept spans carry when only a share of traces like theirs is kept: the number of
/// traces each one stands for (1 / probability), so counts can be scaled back up.
pub const ADJUSTED_COUNT: &str = "sampling.adjusted_count";

/// Builds the evaluator of a (validated) policy.
pub fn build(config: &PolicyConfig) -> NamedPolicy {
    let evaluator: Box<dyn Evaluator> = match &config.policy {
        Policy::AlwaysSample {} => Box::new(always_sample::AlwaysSample),
        Policy::Latency { latency } => Box::new(latency::Latency::new(latency)),
        Policy::StatusCode { status_code } => Box::new(status_code::StatusCode::new(status_code)),
        Policy::Probabilistic { probabilistic } => Box::new(probabilistic::Probabilistic::new(probabilistic)),
        Policy::StringAttribute { string_attribute } => Box::new(attribute::StringAttribute::new(string_attribute)),
        Policy::NumericAttribute { numeric_attribute } => Box::new(attribute::NumericAttribute::new(numeric_attribute)),
        Policy::BooleanAttribute { boolean_attribute } => Box::new(attribute::BooleanAttribute::new(boolean_attribute)),
        Policy::SpanCount { span_count } => Box::new(span_count::SpanCount::new(span_count)),
        Policy::RateLimiting { rate_limiting } => Box::new(rate_limiting::RateLimiting::new(rate_limiting)),
        Policy::TraceState { trace_state } => Box::new(trace_state::TraceState::new(trace_state)),
        Policy::And { and } => Box::new(and::And::new(and.and_sub_policy.iter().map(build).collect())),
        Policy::Drop { drop } => Box::new(drop::Drop::new(drop.drop_sub_policy.iter().map(build).collect())),
        Policy::Composite { composite } => Box::new(composite::Composite::new(composite)),
    };
    NamedPolicy {
        name: config.name.clone(),
        evaluator,
    }
}

/// The decision on a trace and the policy that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Keep the trace.
    pub sampled: bool,
    /// The deciding policy (empty when no policy sampled it).
    pub policy: String,
    /// The probability that a trace like this one is kept: 1 if a rule that keeps every match
    /// sampled it, else the largest share among the probabilistic policies that did.
    pub probability: f64,
}

/// Evaluates every policy: dropped if a `drop` policy matched, not sampled if an inverted
/// attribute policy vetoed, otherwise sampled if any policy sampled (the first such names it).
pub fn decide(policies: &[NamedPolicy], trace: &Trace, now: Instant) -> Decision {
    let mut sampled_by: Option<&str> = None;
    let mut vetoed_by: Option<&str> = None;
    let mut probability: f64 = 0.0;
    for policy in policies {
        match policy.evaluate(trace, now) {
            Verdict::Dropped => {
                return Decision {
                    sampled: false,
                    policy: policy.name.clone(),
                    probability: 1.0,
                }
            }
            Verdict::InvertNotSampled => vetoed_by = vetoed_by.or(Some(&policy.name)),
            Verdict::Sampled | Verdict::InvertSampled => {
                sampled_by = sampled_by.or(Some(&policy.name));
                probability = probability.max(policy.evaluator.probability());
            }
            Verdict::NotSampled => {}
        }
    }
    match (vetoed_by, sampled_by) {
        (Some(veto), _) => Decision {
            sampled: false,
            policy: veto.to_owned(),
            probability: 1.0,
        },
        (None, Some(by)) => Decision {
            sampled: true,
            policy: by.to_owned(),
            probability,
        },
        (None, None) => Decision {
            sampled: false,
            policy: String::new(),
            probability: 1.0,
        },
    }
}

/// Whether a verdict keeps the trace (for `and`, `drop` and `composite`, which combine verdicts).
fn keeps(verdict: Verdict) -> bool {
    matches!(verdict, Verdict::Sampled | Verdict::InvertSampled)
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
