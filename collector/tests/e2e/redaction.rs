//! Secrets planted by the OpenTelemetry Python SDK never reach disk, the exporters or Sift's log.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{count_items, each, eventually, Sift};

const CARD: &str = "4111 1111 1111 1111";
const PASSWORD: &str = "hunter2-very-secret";
const EMAIL: &str = "alice.liddell@example.com";
const STRIPE: &str = "sk_live_abcdefghijklmnopqrstuvwx";

fn redacting_config(rules: &str) -> String {
    redacting_config_forwarding_to(rules, None)
}

/// `rules` in front of `file` and `debug` exporters, and an `otlp/b` one when `downstream` is given.
fn redacting_config_forwarding_to(rules: &str, downstream: Option<&str>) -> String {
    let (forward, names) = match downstream {
        Some(endpoint) => (
            format!("  otlp/b: {{ endpoint: \"{endpoint}\" }}\n"),
            "file, debug, otlp/b",
        ),
        None => (String::new(), "file, debug"),
    };
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc: {{ endpoint: 127.0.0.1:0 }}\n      http: {{ endpoint: 127.0.0.1:0 }}\n\
         processors:\n  redaction:\n{rules}\n\
         exporters:\n  file: {{}}\n  debug: {{ verbosity: detailed }}\n{forward}\
         service:\n  pipelines:\n\
         \x20   traces: {{ receivers: [otlp], processors: [redaction], exporters: [{names}] }}\n\
         \x20   logs: {{ receivers: [otlp], processors: [redaction], exporters: [{names}] }}\n\
         \x20   metrics: {{ receivers: [otlp], processors: [redaction], exporters: [{names}] }}\n\
         query:\n  endpoint: 127.0.0.1:0\n"
    )
}

const RULES: &str = "    blocked_key_patterns: [\"(?i)password\"]\n\
    \x20   blocked_values: [\"$credit_card\", \"$email\", \"sk_live_[0-9a-zA-Z]{24}\"]\n\
    \x20   hash_function: hmac_sha256\n\
    \x20   hmac_key: \"${env:SIFT_TEST_HMAC_KEY:-test-key}\"\n\
    \x20   summary: info";

/// Every file below `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

fn string_attribute(attributes: &Value, key: &str) -> Option<String> {
    attributes.as_array()?.iter().find(|kv| kv["key"] == key)?["value"]["stringValue"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn planted_secrets_never_reach_disk_exports_or_the_log() {
    let downstream = Sift::start(&crate::common::file_config());
    let sift = Sift::start(&redacting_config_forwarding_to(RULES, Some(&downstream.grpc_url())));
    let mut expected = [0u64; 3];
    for protocol in ["grpc", "http"] {
        let args = [
            "--traces".to_owned(),
            "10".to_owned(),
            "--attr".to_owned(),
            format!("user.card={CARD}"),
            "--attr".to_owned(),
            format!("db.password={PASSWORD}"),
            "--attr".to_owned(),
            format!("contact=write to {EMAIL}"),
            "--attr".to_owned(),
            format!("billing.key={STRIPE}"),
            "--log-suffix".to_owned(),
            format!(" paid with {CARD} by {EMAIL}"),
        ];
        for (total, sent) in expected.iter_mut().zip(sift.send_with_sdk(protocol, &args)) {
            *total += sent;
        }
    }
    for (i, signal) in ["traces", "logs", "metrics"].iter().enumerate() {
        assert!(
            eventually(Duration::from_secs(20), || count_items(&sift.exported(signal), signal)
                as u64
                == expected[i]),
            "{signal} arrived"
        );
        assert!(
            eventually(
                Duration::from_secs(20),
                || count_items(&downstream.exported(signal), signal) as u64 == expected[i]
            ),
            "{signal} forwarded"
        );
    }
    let log = sift.log_text();
    assert!(
        log.contains("charged order"),
        "the debug exporter logged the data it exported"
    );
    for secret in [CARD, PASSWORD, EMAIL, STRIPE] {
        assert_eq!(
            files_containing(&sift.dir, secret),
            Vec::<String>::new(),
            "{secret} found on disk"
        );
        assert!(!log.contains(secret), "{secret} found in Sift's stderr");
    }

    // Hashes are joinable: the same card number gives the same hash on spans, logs and points.
    let mut hashes = std::collections::BTreeSet::new();
    for (signal, path) in [
        ("traces", &["resourceSpans", "scopeSpans", "spans"][..]),
        ("logs", &["resourceLogs", "scopeLogs", "logRecords"][..]),
    ] {
        for request in sift.exported(signal) {
            each(&request, path, &mut |item| {
                if let Some(value) = string_attribute(&item["attributes"], "user.card") {
                    hashes.insert(value);
                }
            });
        }
    }
    assert_eq!(hashes.len(), 1, "{hashes:?}");
    let hash = hashes.into_iter().next().unwrap();
    assert_eq!(hash.len(), 64);
    let logs = sift.exported("logs");
    let body = logs[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"]["stringValue"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(body.contains(&hash), "the body's card number hashes the same: {body}");
    let masked = sift.metric("sift_redaction_applied_total{signal=\"traces\",kind=\"masked_value\"}");
    assert!(masked >= 40.0, "{masked}");
    assert!(sift.metric("sift_redaction_applied_total{signal=\"metrics\",kind=\"masked_key\"}") > 0.0);
}

#[test]
fn sighup_swaps_redaction_rules_and_an_invalid_file_changes_nothing() {
    let mut sift = Sift::start(&redacting_config("    blocked_values: [\"alpha-[0-9]+\"]"));
    let send = |sift: &Sift, value: &str| {
        let body = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": value}}]}]}]});
        let response = reqwest::blocking::Client::new()
            .post(sift.http_url("/v1/logs"))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
    };
    let bodies = |sift: &Sift| -> Vec<String> {
        let mut out = Vec::new();
        for request in sift.exported("logs") {
            each(&request, &["resourceLogs", "scopeLogs", "logRecords"], &mut |log| {
                out.push(log["body"]["stringValue"].as_str().unwrap_or_default().to_owned());
            });
        }
        out
    };
    send(&sift, "alpha-1 beta-1");
    let config_path = sift.dir.join("sift-test.yaml");
    std::fs::write(&config_path, redacting_config("    blocked_values: [\"beta-[0-9]+\"]")).unwrap();
    unsafe { libc::kill(sift.pid(), libc::SIGHUP) };
    assert!(eventually(Duration::from_secs(5), || sift
        .log_text()
        .contains("processor rules reloaded")));
    send(&sift, "alpha-2 beta-2");
    std::fs::write(&config_path, redacting_config("    blocked_values: [\"(unclosed\"]")).unwrap();
    unsafe { libc::kill(sift.pid(), libc::SIGHUP) };
    assert!(eventually(Duration::from_secs(5), || sift
        .log_text()
        .contains("configuration rejected")));
    send(&sift, "alpha-3 beta-3");
    assert!(eventually(Duration::from_secs(10), || bodies(&sift).len() == 3));
    assert_eq!(bodies(&sift), ["**** beta-1", "alpha-2 ****", "alpha-3 ****"]);
    assert_eq!(sift.terminate().code(), Some(0));
}
