//! `processors.tail_sampling`: the OpenTelemetry Collector's `tailsamplingprocessor` settings and
//! policy vocabulary, validated once (regexes compile, percentages are percentages, composite
//! orders name their sub-policies).

use serde::Deserialize;
use serde_json::Value;

use crate::error::{join, typed, ConfigError};
use crate::types::Duration;

/// `processors.tail_sampling` as written; policies are typed by [`parse_policy`] with full paths.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTailSampling {
    #[serde(default = "default_decision_wait")]
    decision_wait: Duration,
    #[serde(default)]
    decision_wait_after_root_received: Option<Duration>,
    #[serde(default = "default_num_traces")]
    num_traces: u64,
    #[serde(default)]
    expected_new_traces_per_sec: u64,
    #[serde(default)]
    maximum_trace_size_bytes: u64,
    #[serde(default = "default_buffer_mib")]
    max_buffer_size_mib: u64,
    #[serde(default)]
    decision_cache: DecisionCache,
    #[serde(default)]
    policies: Vec<Value>,
}

/// `processors.tail_sampling`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TailSamplingConfig {
    /// How long a trace is buffered after its first span before it is decided.
    pub decision_wait: Duration,
    /// Decide earlier once the root span has arrived (optional).
    pub decision_wait_after_root_received: Option<Duration>,
    /// Traces buffered at most; beyond, the oldest are decided early.
    pub num_traces: u64,
    /// Accepted for Collector compatibility (Sift's buffer sizes itself).
    pub expected_new_traces_per_sec: u64,
    /// A trace larger than this is decided at once (0: no limit).
    pub maximum_trace_size_bytes: u64,
    /// Total size of buffered spans (encoded); beyond, the oldest traces are decided early
    /// (Sift's addition: the Collector bounds only the trace count).
    pub max_buffer_size_mib: u64,
    /// Sizes of the sampled / not-sampled decision caches.
    pub decision_cache: DecisionCache,
    /// The policies; a trace is kept if any says sample, unless a `drop` policy matches.
    pub policies: Vec<PolicyConfig>,
    /// The policy list as written (JSON), for showing the live rules.
    pub policies_source: Value,
}

fn default_decision_wait() -> Duration {
    Duration::from_secs(30)
}

fn default_buffer_mib() -> u64 {
    64
}

fn default_num_traces() -> u64 {
    50_000
}

/// `tail_sampling.decision_cache`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionCache {
    /// Sampled trace ids remembered (late spans follow).
    pub sampled_cache_size: u64,
    /// Not-sampled trace ids remembered.
    pub non_sampled_cache_size: u64,
}

impl Default for DecisionCache {
    fn default() -> Self {
        DecisionCache {
            sampled_cache_size: 100_000,
            non_sampled_cache_size: 100_000,
        }
    }
}

/// One policy: a name, a type and the settings of that type.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// Name reported with decisions.
    pub name: String,
    /// The policy type and its settings.
    pub policy: Policy,
}

/// A policy type with its settings, as the Collector spells them.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// Keep every trace.
    AlwaysSample {},
    /// Keep traces whose duration is within bounds.
    Latency {
        /// Settings.
        latency: LatencyConfig,
    },
    /// Keep traces with a span of one of these statuses.
    StatusCode {
        /// Settings.
        status_code: StatusCodeConfig,
    },
    /// Keep a deterministic share of traces, by trace id.
    Probabilistic {
        /// Settings.
        probabilistic: ProbabilisticConfig,
    },
    /// Keep traces with a span or resource attribute among these strings.
    StringAttribute {
        /// Settings.
        string_attribute: StringAttributeConfig,
    },
    /// Keep traces with a numeric attribute within bounds.
    NumericAttribute {
        /// Settings.
        numeric_attribute: NumericAttributeConfig,
    },
    /// Keep traces with a boolean attribute of this value.
    BooleanAttribute {
        /// Settings.
        boolean_attribute: BooleanAttributeConfig,
    },
    /// Keep traces with a span count within bounds.
    SpanCount {
        /// Settings.
        span_count: SpanCountConfig,
    },
    /// Keep traces while under a spans-per-second budget.
    RateLimiting {
        /// Settings.
        rate_limiting: RateLimitingConfig,
    },
    /// Keep traces whose trace state has one of these values for a key.
    TraceState {
        /// Settings.
        trace_state: TraceStateConfig,
    },
    /// Keep traces every sub-policy keeps.
    And {
        /// Settings.
        and: AndConfig,
    },
    /// Drop traces every sub-policy matches, whatever the other policies say.
    Drop {
        /// Settings.
        drop: DropConfig,
    },
    /// Sub-policies in order, each with a share of a total spans-per-second budget.
    Composite {
        /// Settings.
        composite: CompositeConfig,
    },
}

/// `latency`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyConfig {
    /// Keep traces at least this long (ms).
    pub threshold_ms: u64,
    /// And at most this long (ms; 0 = no upper bound).
    #[serde(default)]
    pub upper_threshold_ms: u64,
}

/// `status_code`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusCodeConfig {
    /// `OK`, `ERROR`, `UNSET`.
    pub status_codes: Vec<StatusCodeName>,
}

/// A span status code name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StatusCodeName {
    /// `STATUS_CODE_OK`.
    Ok,
    /// `STATUS_CODE_ERROR`.
    Error,
    /// `STATUS_CODE_UNSET`.
    Unset,
}

/// `probabilistic`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticConfig {
    /// Share kept, 0–100.
    pub sampling_percentage: f64,
    /// Salt of the trace-id hash (instances with the same salt agree).
    #[serde(default)]
    pub hash_salt: String,
}

/// `string_attribute`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringAttributeConfig {
    /// Attribute key (span or resource).
    pub key: String,
    /// Values (regexes with `enabled_regex_matching`).
    pub values: Vec<String>,
    /// Treat `values` as regular expressions.
    #[serde(default)]
    pub enabled_regex_matching: bool,
    /// Accepted for Collector compatibility.
    #[serde(default)]
    pub cache_max_size: u64,
    /// Keep traces that do *not* match.
    #[serde(default)]
    pub invert_match: bool,
}

/// `numeric_attribute`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericAttributeConfig {
    /// Attribute key (span or resource).
    pub key: String,
    /// Inclusive lower bound.
    #[serde(default = "i64_min")]
    pub min_value: i64,
    /// Inclusive upper bound.
    #[serde(default = "i64_max")]
    pub max_value: i64,
    /// Keep traces that do *not* match.
    #[serde(default)]
    pub invert_match: bool,
}

fn i64_min() -> i64 {
    i64::MIN
}

fn i64_max() -> i64 {
    i64::MAX
}

/// `boolean_attribute`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BooleanAttributeConfig {
    /// Attribute key (span or resource).
    pub key: String,
    /// The value to match.
    pub value: bool,
    /// Keep traces that do *not* match.
    #[serde(default)]
    pub invert_match: bool,
}

/// `span_count`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanCountConfig {
    /// At least this many spans.
    pub min_spans: u64,
    /// At most this many (0 = no upper bound).
    #[serde(default)]
    pub max_spans: u64,
}

/// `rate_limiting`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitingConfig {
    /// Budget of sampled spans per second.
    pub spans_per_second: u64,
}

/// `trace_state`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceStateConfig {
    /// W3C trace-state key.
    pub key: String,
    /// Values to match.
    pub values: Vec<String>,
}

/// `and`.
#[derive(Debug, Clone, PartialEq)]
pub struct AndConfig {
    /// Sub-policies that must all sample.
    pub and_sub_policy: Vec<PolicyConfig>,
}

/// `drop`.
#[derive(Debug, Clone, PartialEq)]
pub struct DropConfig {
    /// Sub-policies that must all match for the trace to be dropped.
    pub drop_sub_policy: Vec<PolicyConfig>,
}

/// `composite`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeConfig {
    /// Total budget of sampled spans per second.
    pub max_total_spans_per_second: u64,
    /// Sub-policy names in evaluation order.
    pub policy_order: Vec<String>,
    /// The sub-policies.
    pub composite_sub_policy: Vec<PolicyConfig>,
    /// Share of the budget per sub-policy (the rest is shared).
    pub rate_allocation: Vec<RateAllocation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComposite {
    max_total_spans_per_second: u64,
    #[serde(default)]
    policy_order: Vec<String>,
    composite_sub_policy: Vec<Value>,
    #[serde(default)]
    rate_allocation: Vec<RateAllocation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnd {
    and_sub_policy: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrop {
    drop_sub_policy: Vec<Value>,
}

/// The types a policy may have.
const POLICY_TYPES: [&str; 13] = [
    "always_sample",
    "latency",
    "status_code",
    "probabilistic",
    "string_attribute",
    "numeric_attribute",
    "boolean_attribute",
    "span_count",
    "rate_limiting",
    "trace_state",
    "and",
    "drop",
    "composite",
];

/// Types every policy of a list, each checked at its own path; names must be unique.
fn parse_list(values: Vec<Value>, path: &str, errors: &mut Vec<ConfigError>) -> Vec<PolicyConfig> {
    let mut out: Vec<PolicyConfig> = Vec::with_capacity(values.len());
    for (i, value) in values.into_iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(policy) = parse_policy(value, &at, errors) else {
            continue;
        };
        if out.iter().any(|p| p.name == policy.name) {
            errors.push(ConfigError::new(
                format!("{at}.name"),
                format!("{:?} is used twice", policy.name),
            ));
        }
        check_policy(&policy.policy, &at, errors);
        out.push(policy);
    }
    out
}

/// Types `value` found at `path`, recording the problem in `errors` if it does not fit.
fn typed_into<T: serde::de::DeserializeOwned>(value: Value, path: &str, errors: &mut Vec<ConfigError>) -> Option<T> {
    typed(value, path).map_err(|e| errors.push(e)).ok()
}

/// Types one policy `{name, type, <type>: settings}` found at `path`, collecting problems.
fn parse_policy(value: Value, path: &str, errors: &mut Vec<ConfigError>) -> Option<PolicyConfig> {
    let Value::Object(mut map) = value else {
        errors.push(ConfigError::new(
            path,
            "a policy is a map with name, type and the type's settings",
        ));
        return None;
    };
    let name = match map.remove("name") {
        Some(Value::String(name)) if !name.is_empty() => name,
        Some(Value::String(_)) => {
            errors.push(ConfigError::new(format!("{path}.name"), "must not be empty"));
            String::new()
        }
        _ => {
            errors.push(ConfigError::new(format!("{path}.name"), "missing or not a string"));
            String::new()
        }
    };
    let kind = match map.remove("type") {
        Some(Value::String(kind)) if POLICY_TYPES.contains(&kind.as_str()) => kind,
        Some(Value::String(kind)) => {
            errors.push(ConfigError::new(
                format!("{path}.type"),
                format!("unknown policy type {kind:?} (known: {})", POLICY_TYPES.join(", ")),
            ));
            return None;
        }
        _ => {
            errors.push(ConfigError::new(format!("{path}.type"), "missing or not a string"));
            return None;
        }
    };
    let settings = map.remove(&kind).unwrap_or(Value::Object(Default::default()));
    if let Some(other) = map.keys().next() {
        errors.push(ConfigError::new(
            format!("{path}.{other}"),
            format!("unknown field for a {kind} policy"),
        ));
        return None;
    }
    let at = join(path, &kind);
    let policy = match kind.as_str() {
        "always_sample" => Policy::AlwaysSample {},
        "latency" => Policy::Latency {
            latency: typed_into(settings, &at, errors)?,
        },
        "status_code" => Policy::StatusCode {
            status_code: typed_into(settings, &at, errors)?,
        },
        "probabilistic" => Policy::Probabilistic {
            probabilistic: typed_into(settings, &at, errors)?,
        },
        "string_attribute" => Policy::StringAttribute {
            string_attribute: typed_into(settings, &at, errors)?,
        },
        "numeric_attribute" => Policy::NumericAttribute {
            numeric_attribute: typed_into(settings, &at, errors)?,
        },
        "boolean_attribute" => Policy::BooleanAttribute {
            boolean_attribute: typed_into(settings, &at, errors)?,
        },
        "span_count" => Policy::SpanCount {
            span_count: typed_into(settings, &at, errors)?,
        },
        "rate_limiting" => Policy::RateLimiting {
            rate_limiting: typed_into(settings, &at, errors)?,
        },
        "trace_state" => Policy::TraceState {
            trace_state: typed_into(settings, &at, errors)?,
        },
        "and" => {
            let raw: RawAnd = typed_into(settings, &at, errors)?;
            let and_sub_policy = parse_list(raw.and_sub_policy, &join(&at, "and_sub_policy"), errors);
            Policy::And {
                and: AndConfig { and_sub_policy },
            }
        }
        "drop" => {
            let raw: RawDrop = typed_into(settings, &at, errors)?;
            let drop_sub_policy = parse_list(raw.drop_sub_policy, &join(&at, "drop_sub_policy"), errors);
            Policy::Drop {
                drop: DropConfig { drop_sub_policy },
            }
        }
        _ => {
            let raw: RawComposite = typed_into(settings, &at, errors)?;
            let composite_sub_policy = parse_list(raw.composite_sub_policy, &join(&at, "composite_sub_policy"), errors);
            Policy::Composite {
                composite: CompositeConfig {
                    max_total_spans_per_second: raw.max_total_spans_per_second,
                    policy_order: raw.policy_order,
                    composite_sub_policy,
                    rate_allocation: raw.rate_allocation,
                },
            }
        }
    };
    Some(PolicyConfig { name, policy })
}

/// One entry of `composite.rate_allocation`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateAllocation {
    /// Sub-policy name.
    pub policy: String,
    /// Percent of `max_total_spans_per_second`.
    pub percent: u64,
}

fn check_policy(policy: &Policy, at: &str, errors: &mut Vec<ConfigError>) {
    match policy {
        Policy::Latency { latency }
            if latency.upper_threshold_ms != 0 && latency.upper_threshold_ms < latency.threshold_ms =>
        {
            errors.push(ConfigError::new(
                format!("{at}.latency.upper_threshold_ms"),
                "must be 0 or at least threshold_ms",
            ));
        }
        Policy::StatusCode { status_code } if status_code.status_codes.is_empty() => {
            errors.push(ConfigError::new(
                format!("{at}.status_code.status_codes"),
                "must not be empty",
            ));
        }
        Policy::Probabilistic { probabilistic } if !(0.0..=100.0).contains(&probabilistic.sampling_percentage) => {
            errors.push(ConfigError::new(
                format!("{at}.probabilistic.sampling_percentage"),
                format!("{} is not between 0 and 100", probabilistic.sampling_percentage),
            ));
        }
        Policy::StringAttribute { string_attribute } if string_attribute.enabled_regex_matching => {
            for (j, value) in string_attribute.values.iter().enumerate() {
                if let Err(e) = regex::Regex::new(value) {
                    errors.push(ConfigError::new(
                        format!("{at}.string_attribute.values[{j}]"),
                        format!("invalid regex: {e}"),
                    ));
                }
            }
        }
        Policy::NumericAttribute { numeric_attribute } if numeric_attribute.max_value < numeric_attribute.min_value => {
            errors.push(ConfigError::new(
                format!("{at}.numeric_attribute"),
                "max_value is below min_value",
            ));
        }
        Policy::SpanCount { span_count }
            if span_count.max_spans != 0 && span_count.max_spans < span_count.min_spans =>
        {
            errors.push(ConfigError::new(
                format!("{at}.span_count.max_spans"),
                "must be 0 or at least min_spans",
            ));
        }
        Policy::And { and } => non_empty(&and.and_sub_policy, &format!("{at}.and.and_sub_policy"), errors),
        Policy::Drop { drop } => non_empty(&drop.drop_sub_policy, &format!("{at}.drop.drop_sub_policy"), errors),
        Policy::Composite { composite } => {
            non_empty(
                &composite.composite_sub_policy,
                &format!("{at}.composite.composite_sub_policy"),
                errors,
            );
            let names: Vec<&str> = composite.composite_sub_policy.iter().map(|p| p.name.as_str()).collect();
            for (j, name) in composite.policy_order.iter().enumerate() {
                if !names.contains(&name.as_str()) {
                    errors.push(ConfigError::new(
                        format!("{at}.composite.policy_order[{j}]"),
                        format!("{name:?} is not a composite_sub_policy"),
                    ));
                }
            }
            let mut total = 0;
            for (j, allocation) in composite.rate_allocation.iter().enumerate() {
                total += allocation.percent;
                if !names.contains(&allocation.policy.as_str()) {
                    errors.push(ConfigError::new(
                        format!("{at}.composite.rate_allocation[{j}].policy"),
                        format!("{:?} is not a composite_sub_policy", allocation.policy),
                    ));
                }
            }
            if total > 100 {
                errors.push(ConfigError::new(
                    format!("{at}.composite.rate_allocation"),
                    format!("shares add up to {total}%"),
                ));
            }
        }
        _ => {}
    }
}

fn non_empty(policies: &[PolicyConfig], path: &str, errors: &mut Vec<ConfigError>) {
    if policies.is_empty() {
        errors.push(ConfigError::new(path, "needs at least one sub-policy"));
    }
}

impl TailSamplingConfig {
    /// Types the policies and checks what typing cannot.
    pub(crate) fn validate(raw: RawTailSampling, path: &str) -> Result<TailSamplingConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let policies_path = join(path, "policies");
        if raw.policies.is_empty() {
            errors.push(ConfigError::new(&policies_path, "needs at least one policy"));
        }
        if raw.max_buffer_size_mib == 0 {
            errors.push(ConfigError::new(
                join(path, "max_buffer_size_mib"),
                "must be at least 1",
            ));
        }
        if raw.num_traces == 0 {
            errors.push(ConfigError::new(join(path, "num_traces"), "must be at least 1"));
        }
        let policies_source = Value::Array(raw.policies.clone());
        let policies = parse_list(raw.policies, &policies_path, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(TailSamplingConfig {
            decision_wait: raw.decision_wait,
            decision_wait_after_root_received: raw.decision_wait_after_root_received,
            num_traces: raw.num_traces,
            expected_new_traces_per_sec: raw.expected_new_traces_per_sec,
            maximum_trace_size_bytes: raw.maximum_trace_size_bytes,
            max_buffer_size_mib: raw.max_buffer_size_mib,
            decision_cache: raw.decision_cache,
            policies,
            policies_source,
        })
    }

    /// Types and validates a whole `tail_sampling` section given as a JSON value.
    pub fn parse(value: Value, path: &str) -> Result<TailSamplingConfig, Vec<ConfigError>> {
        let raw: RawTailSampling = typed(value, path).map_err(|e| vec![e])?;
        TailSamplingConfig::validate(raw, path)
    }

    /// Types and validates a policy list on its own (the runtime `PUT` of the policies).
    pub fn parse_policies(value: Value, path: &str) -> Result<Vec<PolicyConfig>, Vec<ConfigError>> {
        let Value::Array(values) = value else {
            return Err(vec![ConfigError::new(path, "expected a list of policies")]);
        };
        let mut errors = Vec::new();
        let policies = parse_list(values, path, &mut errors);
        if errors.is_empty() {
            Ok(policies)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: Value) -> Result<TailSamplingConfig, Vec<ConfigError>> {
        TailSamplingConfig::parse(value, "processors.tail_sampling")
    }

    #[test]
    fn every_collector_policy_type_parses() {
        let config = parse(json!({
            "decision_wait": "10s",
            "num_traces": 100,
            "decision_cache": {"sampled_cache_size": 10, "non_sampled_cache_size": 10},
            "policies": [
                {"name": "all", "type": "always_sample"},
                {"name": "slow", "type": "latency", "latency": {"threshold_ms": 500, "upper_threshold_ms": 10000}},
                {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR", "UNSET"]}},
                {"name": "rest", "type": "probabilistic", "probabilistic": {"sampling_percentage": 10, "hash_salt": "s"}},
                {"name": "s", "type": "string_attribute", "string_attribute": {"key": "k", "values": ["a.*"], "enabled_regex_matching": true, "invert_match": true}},
                {"name": "n", "type": "numeric_attribute", "numeric_attribute": {"key": "k", "min_value": 1, "max_value": 5}},
                {"name": "b", "type": "boolean_attribute", "boolean_attribute": {"key": "k", "value": true}},
                {"name": "c", "type": "span_count", "span_count": {"min_spans": 2, "max_spans": 20}},
                {"name": "r", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 35}},
                {"name": "t", "type": "trace_state", "trace_state": {"key": "k", "values": ["v"]}},
                {"name": "and", "type": "and", "and": {"and_sub_policy": [
                    {"name": "a1", "type": "latency", "latency": {"threshold_ms": 1}},
                    {"name": "a2", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}}]}},
                {"name": "drop", "type": "drop", "drop": {"drop_sub_policy": [
                    {"name": "health", "type": "string_attribute", "string_attribute": {"key": "http.route", "values": ["/health"]}}]}},
                {"name": "comp", "type": "composite", "composite": {"max_total_spans_per_second": 1000,
                    "policy_order": ["x", "y"],
                    "composite_sub_policy": [{"name": "x", "type": "always_sample"}, {"name": "y", "type": "latency", "latency": {"threshold_ms": 5}}],
                    "rate_allocation": [{"policy": "x", "percent": 50}, {"policy": "y", "percent": 25}]}}
            ]
        }))
        .unwrap();
        assert_eq!(config.policies.len(), 13);
        assert_eq!(config.decision_wait, Duration::from_secs(10));
        assert!(matches!(config.policies[12].policy, Policy::Composite { .. }));
    }

    #[test]
    fn problems_name_their_path() {
        let errors = parse(json!({"policies": [
            {"name": "p", "type": "probabilistic", "probabilistic": {"sampling_percentage": 150}},
            {"name": "p", "type": "sometimes"},
            {"name": "x", "type": "latency", "latency": {"threshold_ms": 5, "bogus": 1}},
            {"name": "y", "type": "latency", "status_code": {}},
            {"name": "z", "type": "composite", "composite": {"max_total_spans_per_second": 1, "policy_order": ["nope"],
                "composite_sub_policy": [{"name": "a", "type": "string_attribute", "string_attribute": {"key": "k", "values": ["("], "enabled_regex_matching": true}}]}}
        ]}))
        .unwrap_err();
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let all = rendered.join("\n");
        for expected in [
            "processors.tail_sampling.policies[0].probabilistic.sampling_percentage: 150 is not between 0 and 100",
            "processors.tail_sampling.policies[1].type: unknown policy type \"sometimes\"",
            "processors.tail_sampling.policies[2].latency.bogus: unknown field",
            "processors.tail_sampling.policies[3].status_code: unknown field for a latency policy",
            "processors.tail_sampling.policies[4].composite.composite_sub_policy[0].string_attribute.values[0]: invalid regex",
            "processors.tail_sampling.policies[4].composite.policy_order[0]: \"nope\" is not a composite_sub_policy",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }
}
