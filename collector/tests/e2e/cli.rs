//! `sift validate` and `sift version`.

use std::process::Command;

use crate::common::SIFT;

#[test]
fn validate_accepts_the_examples_and_lists_every_error_with_its_path() {
    let examples = format!("{}/../config/examples/default.yaml", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(SIFT)
        .args(["validate", "--config", &examples])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "receivers: { otlp: { protocols: { grpc: { endpoint: \"127.0.0.1:99999\" } } } }\n\
         exporters: { nop: {}, kafka: {} }\n\
         service: { pipelines: { traces: { receivers: [otlp], exporters: [nop, file] } } }\n",
    )
    .unwrap();
    let output = Command::new(SIFT)
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for path in [
        "receivers.otlp.protocols.grpc.endpoint",
        "exporters.kafka",
        "service.pipelines.traces.exporters[1]",
    ] {
        assert!(stderr.contains(path), "{path} missing from:\n{stderr}");
    }
}

#[test]
fn version_prints_the_version() {
    let output = Command::new(SIFT).arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("sift "));
}
