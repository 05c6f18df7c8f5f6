use std::time::Instant;

use serde_json::json;
use sift_config::TailSamplingConfig;
use sift_proto::otlp::common::v1::any_value::Value;

use super::testing::{attr, one, SpanSpec, ERROR};
use super::{build, decide, Decision};

fn policies(json: serde_json::Value) -> Vec<super::NamedPolicy> {
    TailSamplingConfig::parse_policies(json, "policies")
        .unwrap()
        .iter()
        .map(build)
        .collect()
}

#[test]
fn any_sample_keeps_drop_and_inverted_vetoes_win() {
    let set = policies(json!([
        {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"name": "slow", "type": "latency", "latency": {"threshold_ms": 500}},
        {"name": "no-synthetic", "type": "boolean_attribute", "boolean_attribute": {"key": "synthetic", "value": true, "invert_match": true}},
        {"name": "no-health", "type": "drop", "drop": {"drop_sub_policy": [
            {"name": "health", "type": "string_attribute", "string_attribute": {"key": "http.route", "values": ["/health"]}}]}}
    ]));
    let now = Instant::now();
    let route = |r: &str| attr("http.route", Value::StringValue(r.into()));
    let error = one(SpanSpec {
        status: ERROR,
        attributes: vec![route("/pay")],
        ..Default::default()
    });
    assert_eq!(
        decide(&set, &error, now),
        Decision {
            sampled: true,
            policy: "errors".into(),
            probability: 1.0
        }
    );
    let plain = one(SpanSpec {
        attributes: vec![route("/pay")],
        ..Default::default()
    });
    assert_eq!(
        decide(&set, &plain, now),
        Decision {
            sampled: true,
            policy: "no-synthetic".into(),
            probability: 1.0
        },
        "inverted no-match keeps"
    );
    let health_error = one(SpanSpec {
        status: ERROR,
        duration_ms: 900,
        attributes: vec![route("/health")],
        ..Default::default()
    });
    assert_eq!(
        decide(&set, &health_error, now),
        Decision {
            sampled: false,
            policy: "no-health".into(),
            probability: 1.0
        }
    );
    let synthetic_error = one(SpanSpec {
        status: ERROR,
        attributes: vec![route("/pay"), attr("synthetic", Value::BoolValue(true))],
        ..Default::default()
    });
    assert_eq!(
        decide(&set, &synthetic_error, now),
        Decision {
            sampled: false,
            policy: "no-synthetic".into(),
            probability: 1.0
        }
    );
    let only_fast = policies(json!([{"name": "slow", "type": "latency", "latency": {"threshold_ms": 500}}]));
    assert_eq!(
        decide(&only_fast, &plain, now),
        Decision {
            sampled: false,
            policy: String::new(),
            probability: 1.0
        }
    );
}

#[test]
fn kept_traces_carry_the_probability_that_kept_them() {
    let set = policies(json!([
        {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"name": "rest", "type": "probabilistic", "probabilistic": {"sampling_percentage": 100}},
        {"name": "tenth", "type": "probabilistic", "probabilistic": {"sampling_percentage": 10}}
    ]));
    let now = Instant::now();
    let error = one(SpanSpec {
        status: ERROR,
        ..Default::default()
    });
    assert_eq!(decide(&set, &error, now).probability, 1.0, "errors are all kept");
    let only_tenth = policies(json!([
        {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"name": "tenth", "type": "probabilistic", "probabilistic": {"sampling_percentage": 10}}
    ]));
    // Find a plain trace the 10% share keeps: it stands for 10 traces.
    let kept = (1..=255u8)
        .map(|i| {
            one(SpanSpec {
                trace: i,
                ..Default::default()
            })
        })
        .map(|t| decide(&only_tenth, &t, now))
        .find(|d| d.sampled)
        .expect("some trace in 255 is in the 10% share");
    assert_eq!(kept.policy, "tenth");
    assert!((kept.probability - 0.1).abs() < 1e-12, "{}", kept.probability);
}
