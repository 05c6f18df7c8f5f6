//! The live side of a pipeline's tail sampler, shared by its task, the query API and SIGHUP: the
//! policies (swapped atomically: a trace is decided by one set or the other, never a mix), the
//! decision cache and the buffer of pending traces.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::UNIX_EPOCH;

use serde_json::Value;
use sift_config::{PolicyConfig, TailSamplingConfig};
use sift_query::InvalidPolicies;

use super::buffer::{Buffer, TraceId};
use super::cache::{DecisionCache, Remembered};
use super::policy::{build, NamedPolicy};

/// What the sampler task owns, behind one lock.
pub(crate) struct State {
    pub buffer: Buffer,
    pub cache: DecisionCache,
}

impl State {
    pub(crate) fn remember(&mut self, id: TraceId, sampled: bool, probability: f64, policy: &str) {
        self.cache.insert(
            id,
            Remembered {
                sampled,
                probability,
                policy: policy.to_owned(),
                decided_at: std::time::SystemTime::now(),
            },
        );
    }
}

struct Live {
    built: Arc<Vec<NamedPolicy>>,
    source: Value,
}

/// One pipeline's sampler, as seen from outside its task.
pub struct SamplerControl {
    pipeline: String,
    live: RwLock<Live>,
    state: Mutex<State>,
}

impl SamplerControl {
    pub(crate) fn new(pipeline: &str, config: &TailSamplingConfig, buffer: Buffer, cache: DecisionCache) -> Arc<Self> {
        Arc::new(SamplerControl {
            pipeline: pipeline.to_owned(),
            live: RwLock::new(Live {
                built: Arc::new(config.policies.iter().map(build).collect()),
                source: config.policies_source.clone(),
            }),
            state: Mutex::new(State { buffer, cache }),
        })
    }

    /// The pipeline sampled.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    pub(crate) fn policies(&self) -> Arc<Vec<NamedPolicy>> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).built.clone()
    }

    /// The live policy list, as it was written.
    pub fn policies_source(&self) -> Value {
        self.live.read().unwrap_or_else(|e| e.into_inner()).source.clone()
    }

    /// Swaps in validated policies; traces decided from now on use them.
    pub fn replace(&self, policies: &[PolicyConfig], source: Value) {
        let built = Arc::new(policies.iter().map(build).collect());
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Live { built, source };
        tracing::info!(pipeline = %self.pipeline, policies = policies.len(), "tail-sampling policies replaced");
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a recent trace was kept, if it was decided.
    pub fn sampled(&self, id: &TraceId) -> Option<bool> {
        self.state().cache.get(id).map(|r| r.sampled)
    }

    /// The decision on a recent trace: decided (with policy and time) or pending.
    pub fn decision(&self, id: &TraceId) -> Option<sift_query::SamplingDecision> {
        let state = self.state();
        if let Some(r) = state.cache.get(id) {
            return Some(sift_query::SamplingDecision {
                decision: if r.sampled { "sampled" } else { "not_sampled" },
                policy: r.policy.clone(),
                decided_at: r
                    .decided_at
                    .duration_since(UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_nanos() as u64),
            });
        }
        state.buffer.contains(id).then(|| sift_query::SamplingDecision {
            decision: "pending",
            policy: String::new(),
            decided_at: None,
        })
    }
}

/// Every sampler of the running service, for the query API and SIGHUP.
#[derive(Clone, Default)]
pub struct Samplers(pub Vec<Arc<SamplerControl>>);

impl Samplers {
    /// Validates a policy list (YAML or JSON: a list, or `{policies: [...]}`) and swaps it into
    /// every sampler; nothing changes if it is invalid.
    pub fn replace_from_text(&self, text: &str) -> Result<Value, InvalidPolicies> {
        let value = sift_config::yaml_value(text).map_err(|e| InvalidPolicies(e.to_string()))?;
        let list = match value {
            Value::Object(mut map) if map.contains_key("policies") => map.remove("policies").unwrap_or(Value::Null),
            other => other,
        };
        if list.as_array().is_some_and(Vec::is_empty) {
            return Err(InvalidPolicies("policies: needs at least one policy".into()));
        }
        let policies = TailSamplingConfig::parse_policies(list.clone(), "policies")
            .map_err(|errors| InvalidPolicies(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))?;
        for sampler in &self.0 {
            sampler.replace(&policies, list.clone());
        }
        Ok(list)
    }
}

impl sift_query::Sampling for Samplers {
    fn decision(&self, trace_id: &[u8; 16]) -> Option<sift_query::SamplingDecision> {
        self.0.iter().find_map(|s| s.decision(trace_id))
    }

    fn policies(&self) -> Value {
        self.0.first().map_or(Value::Array(Vec::new()), |s| s.policies_source())
    }

    fn replace_policies(&self, body: &str) -> Result<Value, InvalidPolicies> {
        self.replace_from_text(body)
    }
}
