//! `string_attribute`, `numeric_attribute`, `boolean_attribute`: keep traces with a span or
//! resource attribute whose value matches. With `invert_match`, a match vetoes keeping the trace
//! (`InvertNotSampled`) and no match keeps it (`InvertSampled`), as in the Collector.

use std::collections::HashSet;
use std::time::Instant;

use regex::RegexSet;
use sift_config::{BooleanAttributeConfig, NumericAttributeConfig, StringAttributeConfig};
use sift_proto::otlp::common::v1::{any_value, AnyValue};

use super::{Evaluator, Verdict};
use crate::after_wal::tail_sampling::trace::Trace;

fn verdict(matched: bool, invert: bool) -> Verdict {
    match (matched, invert) {
        (true, false) => Verdict::Sampled,
        (false, false) => Verdict::NotSampled,
        (true, true) => Verdict::InvertNotSampled,
        (false, true) => Verdict::InvertSampled,
    }
}

/// Whether any value of `key` in `trace` satisfies `test`.
fn any_value(trace: &Trace, key: &str, test: impl Fn(&AnyValue) -> bool) -> bool {
    trace.attribute_values(key).any(test)
}

pub(super) struct StringAttribute {
    key: String,
    exact: HashSet<String>,
    patterns: Option<RegexSet>,
    invert: bool,
}

impl StringAttribute {
    pub(super) fn new(config: &StringAttributeConfig) -> StringAttribute {
        let (exact, patterns) = if config.enabled_regex_matching {
            // Validated when the config was loaded.
            (HashSet::new(), RegexSet::new(&config.values).ok())
        } else {
            (config.values.iter().cloned().collect(), None)
        };
        StringAttribute {
            key: config.key.clone(),
            exact,
            patterns,
            invert: config.invert_match,
        }
    }
}

impl Evaluator for StringAttribute {
    fn evaluate(&self, trace: &Trace, _now: Instant) -> Verdict {
        let matched = any_value(trace, &self.key, |value| match &value.value {
            Some(any_value::Value::StringValue(text)) => match &self.patterns {
                Some(patterns) => patterns.is_match(text),
                None => self.exact.contains(text),
            },
            _ => false,
        });
        verdict(matched, self.invert)
    }
}

pub(super) struct NumericAttribute {
    key: String,
    min: i64,
    max: i64,
    invert: bool,
}

impl NumericAttribute {
    pub(super) fn new(config: &NumericAttributeConfig) -> NumericAttribute {
        NumericAttribute {
            key: config.key.clone(),
            min: config.min_value,
            max: config.max_value,
            invert: config.invert_match,
        }
    }
}

impl Evaluator for NumericAttribute {
    fn evaluate(&self, trace: &Trace, _now: Instant) -> Verdict {
        let matched = any_value(trace, &self.key, |value| match value.value {
            Some(any_value::Value::IntValue(n)) => (self.min..=self.max).contains(&n),
            Some(any_value::Value::DoubleValue(d)) => d >= self.min as f64 && d <= self.max as f64,
            _ => false,
        });
        verdict(matched, self.invert)
    }
}

pub(super) struct BooleanAttribute {
    key: String,
    value: bool,
    invert: bool,
}

impl BooleanAttribute {
    pub(super) fn new(config: &BooleanAttributeConfig) -> BooleanAttribute {
        BooleanAttribute {
            key: config.key.clone(),
            value: config.value,
            invert: config.invert_match,
        }
    }
}

impl Evaluator for BooleanAttribute {
    fn evaluate(&self, trace: &Trace, _now: Instant) -> Verdict {
        let matched = any_value(trace, &self.key, |value| {
            value.value == Some(any_value::Value::BoolValue(self.value))
        });
        verdict(matched, self.invert)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sift_proto::otlp::common::v1::any_value::Value;

    use super::super::testing::{attr, check, one, policy, SpanSpec};
    use super::super::Verdict;

    fn with(attributes: Vec<sift_proto::otlp::common::v1::KeyValue>) -> crate::after_wal::tail_sampling::trace::Trace {
        one(SpanSpec {
            attributes,
            ..Default::default()
        })
    }

    fn on_resource(
        attributes: Vec<sift_proto::otlp::common::v1::KeyValue>,
    ) -> crate::after_wal::tail_sampling::trace::Trace {
        one(SpanSpec {
            resource: attributes,
            ..Default::default()
        })
    }

    #[test]
    fn string_attribute_exact_regex_and_inverted() {
        let s = |v: &str| Value::StringValue(v.into());
        let exact = policy(
            json!({"name": "s", "type": "string_attribute", "string_attribute": {"key": "tenant", "values": ["acme", "globex"]}}),
        );
        check(
            &exact,
            &[
                (
                    "span attribute matches",
                    with(vec![attr("tenant", s("acme"))]),
                    Verdict::Sampled,
                ),
                (
                    "resource attribute matches",
                    on_resource(vec![attr("tenant", s("globex"))]),
                    Verdict::Sampled,
                ),
                (
                    "other value",
                    with(vec![attr("tenant", s("initech"))]),
                    Verdict::NotSampled,
                ),
                (
                    "prefix only",
                    with(vec![attr("tenant", s("acme-eu"))]),
                    Verdict::NotSampled,
                ),
                (
                    "other key",
                    with(vec![attr("customer", s("acme"))]),
                    Verdict::NotSampled,
                ),
                (
                    "not a string",
                    with(vec![attr("tenant", Value::IntValue(1))]),
                    Verdict::NotSampled,
                ),
            ],
        );
        let regex = policy(
            json!({"name": "r", "type": "string_attribute", "string_attribute": {"key": "http.route", "values": ["^/api/.*"], "enabled_regex_matching": true}}),
        );
        check(
            &regex,
            &[
                (
                    "matches",
                    with(vec![attr("http.route", s("/api/pay"))]),
                    Verdict::Sampled,
                ),
                (
                    "does not",
                    with(vec![attr("http.route", s("/health"))]),
                    Verdict::NotSampled,
                ),
            ],
        );
        let inverted = policy(
            json!({"name": "i", "type": "string_attribute", "string_attribute": {"key": "http.route", "values": ["/health"], "invert_match": true}}),
        );
        check(
            &inverted,
            &[
                (
                    "health checks are vetoed",
                    with(vec![attr("http.route", s("/health"))]),
                    Verdict::InvertNotSampled,
                ),
                (
                    "everything else is kept",
                    with(vec![attr("http.route", s("/pay"))]),
                    Verdict::InvertSampled,
                ),
            ],
        );
    }

    #[test]
    fn numeric_attribute_bounds() {
        let p = policy(
            json!({"name": "n", "type": "numeric_attribute", "numeric_attribute": {"key": "http.status_code", "min_value": 500, "max_value": 599}}),
        );
        check(
            &p,
            &[
                (
                    "500",
                    with(vec![attr("http.status_code", Value::IntValue(500))]),
                    Verdict::Sampled,
                ),
                (
                    "599",
                    with(vec![attr("http.status_code", Value::IntValue(599))]),
                    Verdict::Sampled,
                ),
                (
                    "404",
                    with(vec![attr("http.status_code", Value::IntValue(404))]),
                    Verdict::NotSampled,
                ),
                (
                    "double 503.0",
                    with(vec![attr("http.status_code", Value::DoubleValue(503.0))]),
                    Verdict::Sampled,
                ),
                (
                    "string",
                    with(vec![attr("http.status_code", Value::StringValue("500".into()))]),
                    Verdict::NotSampled,
                ),
            ],
        );
        let inverted = policy(
            json!({"name": "ni", "type": "numeric_attribute", "numeric_attribute": {"key": "k", "min_value": 1, "max_value": 1, "invert_match": true}}),
        );
        check(
            &inverted,
            &[(
                "match vetoes",
                with(vec![attr("k", Value::IntValue(1))]),
                Verdict::InvertNotSampled,
            )],
        );
    }

    #[test]
    fn boolean_attribute() {
        let p = policy(
            json!({"name": "b", "type": "boolean_attribute", "boolean_attribute": {"key": "debug", "value": true}}),
        );
        check(
            &p,
            &[
                (
                    "true",
                    with(vec![attr("debug", Value::BoolValue(true))]),
                    Verdict::Sampled,
                ),
                (
                    "false",
                    with(vec![attr("debug", Value::BoolValue(false))]),
                    Verdict::NotSampled,
                ),
                ("absent", with(vec![]), Verdict::NotSampled),
            ],
        );
        let inverted = policy(
            json!({"name": "bi", "type": "boolean_attribute", "boolean_attribute": {"key": "synthetic", "value": true, "invert_match": true}}),
        );
        check(
            &inverted,
            &[
                (
                    "synthetic vetoed",
                    with(vec![attr("synthetic", Value::BoolValue(true))]),
                    Verdict::InvertNotSampled,
                ),
                ("real kept", with(vec![]), Verdict::InvertSampled),
            ],
        );
    }
}
