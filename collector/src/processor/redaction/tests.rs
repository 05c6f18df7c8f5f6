use proptest::prelude::*;
use sift_config::{ComponentId, Config, ProcessorConfig};
use sift_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sift_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sift_proto::otlp::common::v1::{any_value, AnyValue, ArrayValue, KeyValue, KeyValueList};
use sift_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sift_proto::{Logs, Metrics, Signal, Traces};

use super::*;

fn redactor(settings: &str) -> Redactor {
    let yaml = format!(
        "receivers: {{ otlp: {{ protocols: {{ http: }} }} }}\n\
         processors:\n  redaction:\n{settings}\n\
         exporters: {{ nop: {{}} }}\n\
         service: {{ pipelines: {{ logs: {{ receivers: [otlp], processors: [redaction], exporters: [nop] }} }} }}\n"
    );
    let config = Config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let ProcessorConfig::Redaction(redaction) = &config.processors[&ComponentId::parse("redaction").unwrap()] else {
        panic!("not a redaction processor")
    };
    Redactor::new(redaction)
}

fn s(text: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(text.to_owned())),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..Default::default()
    }
}

fn text_of(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    Some(super::render(value))
}

fn int_of(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value {
        Some(any_value::Value::IntValue(i)) => Some(i),
        _ => None,
    }
}

fn redact_list(redactor: &Redactor, mut attributes: Vec<KeyValue>) -> (Vec<KeyValue>, Counts) {
    let mut report = ListReport::default();
    redactor.redact_list(&mut attributes, &mut Memo::default(), &mut report);
    redactor.summarize(&mut attributes, &report);
    (attributes, report.counts)
}

#[test]
fn blocked_key_patterns_mask_the_whole_value_of_any_type() {
    let r = redactor("    blocked_key_patterns: [\"(?i)pass(word)?\", \"(?i)api[_-]?key\"]");
    let (out, counts) = redact_list(
        &r,
        vec![
            kv("db.password", s("hunter2")),
            kv(
                "X-API-KEY",
                AnyValue {
                    value: Some(any_value::Value::IntValue(12345)),
                },
            ),
            kv("user", s("alice")),
        ],
    );
    assert_eq!(text_of(&out, "db.password").unwrap(), "****");
    assert_eq!(text_of(&out, "X-API-KEY").unwrap(), "****");
    assert_eq!(text_of(&out, "user").unwrap(), "alice");
    assert_eq!(counts.masked_keys, 2);
}

#[test]
fn blocked_values_mask_only_the_match_and_luhn_spares_order_numbers() {
    let r = redactor("    blocked_values: [\"$credit_card\", \"sk_live_[0-9a-zA-Z]{24}\"]");
    let (out, counts) = redact_list(
        &r,
        vec![
            kv("note", s("paid with 4111 1111 1111 1111 today")),
            kv("order", s("order 4111 1111 1111 1112")),
            kv("key", s("use sk_live_abcdefghijklmnopqrstuvwx please")),
        ],
    );
    assert_eq!(text_of(&out, "note").unwrap(), "paid with **** today");
    assert_eq!(text_of(&out, "order").unwrap(), "order 4111 1111 1111 1112");
    assert_eq!(text_of(&out, "key").unwrap(), "use **** please");
    assert_eq!(counts.masked_values, 2);
}

#[test]
fn allowed_values_win_over_blocked_values() {
    let r = redactor("    blocked_values: [\"$email\"]\n    allowed_values: [\".*@example\\\\.com$\"]");
    let (out, _) = redact_list(&r, vec![kv("a", s("ops@example.com")), kv("b", s("alice@corp.io"))]);
    assert_eq!(text_of(&out, "a").unwrap(), "ops@example.com");
    assert_eq!(text_of(&out, "b").unwrap(), "****");
}

#[test]
fn an_allow_list_is_fail_closed_and_ignored_keys_are_untouched() {
    let r = redactor("    allowed_keys: [\"http.route\", \"comment\"]\n    ignored_keys: [\"trace.note\"]\n    blocked_values: [\"$email\"]");
    let (out, counts) = redact_list(
        &r,
        vec![
            kv("http.route", s("/pay")),
            kv("comment", s("mail bob@corp.io")),
            kv("user.email", s("x")),
            kv("trace.note", s("carol@corp.io")),
        ],
    );
    let keys: Vec<&str> = out.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["http.route", "comment", "trace.note"]);
    assert_eq!(text_of(&out, "comment").unwrap(), "mail ****");
    assert_eq!(
        text_of(&out, "trace.note").unwrap(),
        "carol@corp.io",
        "ignored keys are never checked"
    );
    assert_eq!(counts.removed_keys, 1);

    let keep_all = redactor("    allowed_keys: [\"a\"]\n    allow_all_keys: true");
    let (out, _) = redact_list(&keep_all, vec![kv("a", s("1")), kv("b", s("2"))]);
    assert_eq!(out.len(), 2);
    let patterns = redactor("    ignored_key_patterns: [\"^safe\\\\.\"]\n    blocked_values: [\"$email\"]");
    let (out, _) = redact_list(&patterns, vec![kv("safe.mail", s("d@corp.io"))]);
    assert_eq!(text_of(&out, "safe.mail").unwrap(), "d@corp.io");
}

#[test]
fn redact_all_types_checks_non_string_values() {
    let card = AnyValue {
        value: Some(any_value::Value::IntValue(4_111_111_111_111_111)),
    };
    let off = redactor("    blocked_values: [\"$credit_card\"]");
    let (out, _) = redact_list(&off, vec![kv("card", card.clone())]);
    assert_eq!(int_of(&out, "card"), Some(4_111_111_111_111_111));
    let on = redactor("    blocked_values: [\"$credit_card\"]\n    redact_all_types: true");
    let (out, _) = redact_list(&on, vec![kv("card", card)]);
    assert_eq!(text_of(&out, "card").unwrap(), "****");
}

#[test]
fn hashes_keep_equal_values_equal_and_depend_on_the_key() {
    let sha = redactor("    blocked_values: [\"$email\"]\n    hash_function: sha256");
    let hmac_a = redactor("    blocked_values: [\"$email\"]\n    hash_function: hmac_sha256\n    hmac_key: alpha");
    let hmac_b = redactor("    blocked_values: [\"$email\"]\n    hash_function: hmac_sha256\n    hmac_key: beta");
    let input = || {
        vec![
            kv("a", s("eve@corp.io")),
            kv("b", s("eve@corp.io")),
            kv("c", s("mallory@corp.io")),
        ]
    };
    for r in [&sha, &hmac_a] {
        let (out, _) = redact_list(r, input());
        let (a, b, c) = (
            text_of(&out, "a").unwrap(),
            text_of(&out, "b").unwrap(),
            text_of(&out, "c").unwrap(),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 64);
        assert!(!a.contains("eve"));
    }
    let (sha_out, _) = redact_list(&sha, input());
    let (a_out, _) = redact_list(&hmac_a, input());
    let (b_out, _) = redact_list(&hmac_b, input());
    assert_ne!(text_of(&sha_out, "a"), text_of(&a_out, "a"));
    assert_ne!(text_of(&a_out, "a"), text_of(&b_out, "a"));
}

#[test]
fn summary_attributes() {
    let info = redactor("    blocked_values: [\"$email\"]\n    blocked_key_patterns: [\"token\"]\n    summary: info");
    let (out, _) = redact_list(&info, vec![kv("token", s("t")), kv("m", s("x@corp.io and y@corp.io"))]);
    assert_eq!(int_of(&out, "redaction.masked.count"), Some(3));
    assert!(text_of(&out, "redaction.masked.keys").is_none());
    let debug = redactor("    blocked_values: [\"$email\"]\n    allowed_keys: [m]\n    summary: debug");
    let (out, _) = redact_list(&debug, vec![kv("gone", s("1")), kv("m", s("x@corp.io"))]);
    assert_eq!(text_of(&out, "redaction.masked.keys").unwrap(), "m");
    assert_eq!(text_of(&out, "redaction.redacted.keys").unwrap(), "gone");
    assert_eq!(int_of(&out, "redaction.redacted.count"), Some(1));
    let silent = redactor("    blocked_values: [\"$email\"]");
    let (out, _) = redact_list(&silent, vec![kv("m", s("x@corp.io"))]);
    assert_eq!(out.len(), 1);
}

#[test]
fn nested_values_and_log_bodies_are_redacted() {
    let r = redactor("    blocked_values: [\"$email\"]\n    blocked_key_patterns: [secret]\n    summary: info");
    let structured = AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: vec![
                kv("secret", s("s3")),
                kv(
                    "list",
                    AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![s("a@corp.io")],
                        })),
                    },
                ),
            ],
        })),
    };
    let mut request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        body: Some(s("login from z@corp.io")),
                        ..Default::default()
                    },
                    LogRecord {
                        body: Some(structured),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let counts = r.redact::<Logs>(&mut request);
    assert_eq!(counts.masked_values + counts.masked_keys, 3);
    let json = Logs::encode_json(&request).to_string();
    assert!(!json.contains("corp.io") && !json.contains("s3"), "{json}");
    let records = &request.resource_logs[0].scope_logs[0].log_records;
    assert_eq!(int_of(&records[0].attributes, "redaction.masked.count"), Some(1));
}

fn every_site_traces() -> ExportTraceServiceRequest {
    let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"r","value":{"stringValue":"SECRET"}}]},
      "scopeSpans":[{"scope":{"name":"s","attributes":[{"key":"sc","value":{"stringValue":"SECRET"}}]},
      "spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
        "attributes":[{"key":"a","value":{"stringValue":"x SECRET y"}}],
        "events":[{"name":"e","attributes":[{"key":"ea","value":{"stringValue":"SECRET"}}]}],
        "links":[{"traceId":"5b8efff798038103d269b633813fc60d","spanId":"eee19b7ec3c1b175",
                  "attributes":[{"key":"la","value":{"arrayValue":{"values":[{"stringValue":"SECRET"}]}}}]}]}]}]}]}"#;
    Traces::decode_json(json.as_bytes()).unwrap()
}

#[test]
fn every_attribute_site_of_every_signal_is_covered() {
    let r = redactor("    blocked_values: [SECRET]");
    let mut traces = every_site_traces();
    assert_eq!(r.redact::<Traces>(&mut traces).masked_values, 5);
    assert!(!Traces::encode_json(&traces).to_string().contains("SECRET"));
    let metrics_json = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"r","value":{"stringValue":"SECRET"}}]},
      "scopeMetrics":[{"metrics":[
        {"name":"g","gauge":{"dataPoints":[{"asInt":"1","attributes":[{"key":"p","value":{"stringValue":"SECRET"}}],
           "exemplars":[{"asInt":"1","filteredAttributes":[{"key":"x","value":{"stringValue":"SECRET"}}]}]}]}},
        {"name":"h","histogram":{"dataPoints":[{"count":"1","attributes":[{"key":"p","value":{"stringValue":"SECRET"}}]}]}},
        {"name":"s","summary":{"dataPoints":[{"count":"1","attributes":[{"key":"p","value":{"stringValue":"SECRET"}}]}]}}
      ]}]}]}"#;
    let mut metrics: ExportMetricsServiceRequest = Metrics::decode_json(metrics_json.as_bytes()).unwrap();
    assert_eq!(r.redact::<Metrics>(&mut metrics).masked_values, 5);
    assert!(!Metrics::encode_json(&metrics).to_string().contains("SECRET"));
}

#[test]
fn builtin_patterns_positive_and_negative() {
    let cases: [(&str, &[&str], &[&str]); 7] = [
        (
            "$credit_card",
            &["4111111111111111", "5500-0000-0000-0004", "3782 822463 10005"],
            &["4111111111111112", "order 12345", "2024-01-15"],
        ),
        (
            "$email",
            &["alice@example.com", "first.last+tag@mail.corp.io"],
            &["alice@", "not an email", "a@b"],
        ),
        (
            "$jwt",
            &["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_-abc"],
            &["eyJ.only", "header.payload.sig"],
        ),
        (
            "$bearer_token",
            &["Authorization: Bearer abcdef123456", "bearer Zm9vYmFyYmF6"],
            &["bearer", "Bearer x"],
        ),
        (
            "$aws_access_key",
            &["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"],
            &["AKIA123", "akiaiosfodnn7example"],
        ),
        (
            "$ipv4",
            &["10.0.0.1", "client 192.168.1.254 connected"],
            &["256.1.1.1", "1.2.3", "v1.2.3.4.5x"],
        ),
        (
            "$us_ssn",
            &["123-45-6789"],
            &["000-12-3456", "666-12-3456", "123-00-4567", "12-345-6789"],
        ),
    ];
    for (name, positives, negatives) in cases {
        let r = redactor(&format!("    blocked_values: [\"{name}\"]"));
        for text in positives {
            assert!(r.mask_matches(text).is_some(), "{name} should match {text:?}");
        }
        for text in negatives {
            assert!(r.mask_matches(text).is_none(), "{name} should not match {text:?}");
        }
    }
}

fn planted_logs(words: Vec<String>, secret_at: Option<usize>) -> ExportLogsServiceRequest {
    let secret = "4111 1111 1111 1111";
    let mut attributes = Vec::new();
    let mut body = String::new();
    for (i, word) in words.iter().enumerate() {
        let value = if secret_at == Some(i) {
            format!("{word} {secret} {word}")
        } else {
            word.clone()
        };
        if i % 2 == 0 {
            attributes.push(kv(&format!("k{i}"), s(&value)));
        } else {
            body.push_str(&value);
            body.push(' ');
        }
    }
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(s(&body)),
                    attributes,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

proptest! {
    #[test]
    fn a_planted_secret_is_gone_and_clean_data_is_untouched(
        words in proptest::collection::vec("[a-z ]{0,12}", 1..12),
        at in any::<prop::sample::Index>(),
    ) {
        let r = redactor("    blocked_values: [\"$credit_card\", \"$email\", \"$jwt\"]\n    blocked_key_patterns: [\"(?i)password\"]");
        let index = at.index(words.len());
        let mut planted = planted_logs(words.clone(), Some(index));
        r.redact::<Logs>(&mut planted);
        let text = Logs::encode_json(&planted).to_string();
        prop_assert!(!text.contains("4111 1111 1111 1111"), "{}", text);

        let clean = planted_logs(words, None);
        let mut copy = clean.clone();
        let counts = r.redact::<Logs>(&mut copy);
        prop_assert!(!counts.changed());
        prop_assert_eq!(prost::Message::encode_to_vec(&copy), prost::Message::encode_to_vec(&clean));
    }
}
