use std::path::PathBuf;

use super::*;

/// A folder of this crate: where `cargo test` runs it from (the path compiled in may be another
/// checkout's, when checkouts share a target directory and this binary was not rebuilt).
fn dir(name: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join(name)
}

fn yaml_files(folder: &str, prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_loads() {
    let examples = yaml_files("examples", "");
    assert!(examples.len() >= 3, "{examples:?}");
    for path in examples {
        Config::load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
    }
}

#[test]
fn embedded_default_matches_the_spec_endpoints() {
    let config = Config::embedded_default();
    let ReceiverConfig::Otlp(otlp) = &config.receivers[&ComponentId::parse("otlp").unwrap()];
    assert_eq!(
        otlp.protocols.grpc.as_ref().unwrap().endpoint.to_string(),
        "127.0.0.1:4317"
    );
    assert_eq!(
        otlp.protocols.http.as_ref().unwrap().endpoint.to_string(),
        "127.0.0.1:4318"
    );
    assert_eq!(config.query.endpoint.to_string(), "127.0.0.1:3200");
    assert_eq!(config.storage.path, PathBuf::from("./sift-data"));
    assert_eq!(config.pipelines.len(), 3);
}

#[test]
fn every_bad_fixture_fails_with_its_expected_error() {
    let fixtures = yaml_files("testdata", "bad_");
    assert!(fixtures.len() >= 10);
    for path in fixtures {
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .expect("first line: # expect: ...");
        let errors = Config::from_yaml(&text).expect_err(&path.display().to_string());
        let rendered = errors.to_string();
        assert!(
            rendered.contains(expected),
            "{}: expected {expected:?}, got:\n{rendered}",
            path.display()
        );
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let text = r#"
receivers: { otlp: { protocols: { grpc: { endpoint: "nohost" } } } }
exporters: { nop: {}, zipkin: {} }
service: { pipelines: { traces: { receivers: [otlp, jaeger], exporters: [nop] } } }
"#;
    let errors = Config::from_yaml(text).unwrap_err();
    let rendered = errors.to_string();
    assert!(
        rendered.contains("receivers.otlp.protocols.grpc.endpoint"),
        "{rendered}"
    );
    assert!(rendered.contains("exporters.zipkin"), "{rendered}");
    assert!(rendered.contains("service.pipelines.traces.receivers[1]"), "{rendered}");
}

#[test]
fn env_values_are_expanded() {
    let text = "receivers: { otlp: { protocols: { http: { endpoint: \"127.0.0.1:${env:PORT}\" } } } }\n\
                exporters: { nop: {} }\n\
                service: { pipelines: { logs: { receivers: [otlp], exporters: [nop] } } }\n";
    let config = Config::from_yaml_with_env(text, &|name| (name == "PORT").then(|| "9999".to_owned())).unwrap();
    let ReceiverConfig::Otlp(otlp) = config.receivers.values().next().unwrap();
    assert_eq!(otlp.protocols.http.as_ref().unwrap().endpoint.port, 9999);
    assert!(otlp.protocols.grpc.is_none());
}
