//! Sift's configuration: the YAML shape of SPEC §2, typed at deserialisation and validated once.
//!
//! Loading goes YAML text → JSON value → `${env:NAME}` expansion → typed components → cross-checks
//! (pipelines name defined components of the right kind). Every problem is reported with its path,
//! and all of them are reported at once ([`ConfigErrors`]). A [`Config`] that exists is valid.
#![warn(missing_docs)]

mod component;
mod env;
mod error;
mod redaction;
mod service;
mod tail_sampling;
mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

pub use component::{
    BatchConfig, ComponentId, Compression, DebugExporterConfig, ExporterConfig, FileExporterConfig, FullPolicy,
    GrpcServerConfig, HttpServerConfig, NopExporterConfig, OtlpExporterConfig, OtlpProtocol, OtlpProtocols,
    OtlpReceiverConfig, ReceiverConfig, RetryOnFailure, Rotation, SendingQueue, StorageExporterConfig, TlsClientConfig,
    Verbosity,
};
pub use error::{ConfigError, ConfigErrors};
pub use redaction::{BuiltinPattern, HashFunction, RedactionConfig, Summary, ValuePattern};
pub use service::{PipelineConfig, PipelineId, PipelineSignal};
pub use tail_sampling::{
    AndConfig, BooleanAttributeConfig, CompositeConfig, DecisionCache, DropConfig, LatencyConfig,
    NumericAttributeConfig, Policy, PolicyConfig, ProbabilisticConfig, RateAllocation, RateLimitingConfig,
    SpanCountConfig, StatusCodeConfig, StatusCodeName, StringAttributeConfig, TailSamplingConfig, TraceStateConfig,
};
pub use types::{Duration, Endpoint};

use error::{join, typed};

/// The configuration `sift serve` uses when given no `--config`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../examples/default.yaml");

/// A configured processor.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessorConfig {
    /// `redaction`: masks secrets and personal data before anything is written.
    Redaction(RedactionConfig),
    /// `tail_sampling`: keeps or drops whole traces once they are complete.
    TailSampling(Box<TailSamplingConfig>),
}

/// `storage`: where Sift keeps its data and for how long.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Data directory (default `./sift-data`); `--data-dir` overrides it.
    pub path: PathBuf,
    /// How long each signal is kept.
    pub retention: Retention,
    /// The write-ahead log.
    pub wal: WalConfig,
    /// When the in-memory head is written out as Parquet parts.
    pub flush: FlushConfig,
    /// The store's memory, in MiB (default 768): the head (flushed at a sixth of this, and
    /// holding at most a third while a failed flush is retried: writes then wait in the WAL),
    /// the full-text index writers (a quarter) and the rest for one index merge, one compaction
    /// and reads. Receivers refuse once the WAL backs up, so memory never grows past it.
    pub memory_limit_mib: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("./sift-data"),
            retention: Retention::default(),
            wal: WalConfig::default(),
            flush: FlushConfig::default(),
            memory_limit_mib: 768,
        }
    }
}

/// `storage.flush`: the head is written as parts when its oldest row is this old, or when it
/// holds its share of `storage.memory_limit_mib`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlushConfig {
    /// Age of the oldest unflushed row (default 10s: the WAL holds everything after it, so this
    /// bounds how much of the WAL the storage exporter keeps).
    pub interval: Duration,
}

impl Default for FlushConfig {
    fn default() -> Self {
        FlushConfig {
            interval: Duration::from_secs(10),
        }
    }
}

/// `storage.retention` (`0s`: keep forever).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Spans (default 7d).
    pub traces: Duration,
    /// Log records (default 7d).
    pub logs: Duration,
    /// Metric points (default 30d).
    pub metrics: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            traces: Duration::from_secs(7 * 86_400),
            logs: Duration::from_secs(7 * 86_400),
            metrics: Duration::from_secs(30 * 86_400),
        }
    }
}

/// `storage.wal`: bounds of the write-ahead log.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    /// Total size on disk; when reached, receivers refuse with a retryable status (default 2048 MiB:
    /// at 150k spans/s the tail-sampling wait plus the storage flush interval hold ~1 GiB).
    pub max_size_mib: u64,
    /// Size at which a segment file is closed and a new one started (default 64 MiB).
    pub segment_size_mib: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            max_size_mib: 2048,
            segment_size_mib: 64,
        }
    }
}

/// `query`: the HTTP query API (also serves `/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Listen address (default `127.0.0.1:3200`).
    pub endpoint: Endpoint,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            endpoint: Endpoint {
                host: "127.0.0.1".into(),
                port: 3200,
            },
        }
    }
}

/// Parses YAML (or JSON, which is YAML) into a JSON value, without environment expansion: for
/// rule documents sent at run time (the sampling policies `PUT`).
pub fn yaml_value(text: &str) -> Result<Value, ConfigError> {
    serde_saphyr::from_str(text).map_err(|e| ConfigError::new("", format!("invalid YAML or JSON: {e}")))
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Receivers by id.
    pub receivers: BTreeMap<ComponentId, ReceiverConfig>,
    /// Processors by id.
    pub processors: BTreeMap<ComponentId, ProcessorConfig>,
    /// Exporters by id.
    pub exporters: BTreeMap<ComponentId, ExporterConfig>,
    /// `service.pipelines`, each naming defined components.
    pub pipelines: BTreeMap<PipelineId, PipelineConfig>,
    /// `storage`.
    pub storage: StorageConfig,
    /// `query`.
    pub query: QueryConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    receivers: BTreeMap<String, Value>,
    #[serde(default)]
    processors: BTreeMap<String, Value>,
    #[serde(default)]
    exporters: BTreeMap<String, Value>,
    #[serde(default)]
    service: Value,
    #[serde(default)]
    storage: Value,
    #[serde(default)]
    query: Value,
}

/// Parses each `type[/name]: settings` entry of a component section with `build`.
fn components<T>(
    section: &str,
    raw: BTreeMap<String, Value>,
    errors: &mut Vec<ConfigError>,
    build: impl Fn(&str, Value, &str) -> Result<T, Vec<ConfigError>>,
) -> BTreeMap<ComponentId, T> {
    let mut out = BTreeMap::new();
    for (key, value) in raw {
        let path = join(section, &key);
        let id = match ComponentId::parse(&key) {
            Ok(id) => id,
            Err(message) => {
                errors.push(ConfigError::new(path, message));
                continue;
            }
        };
        // `otlp:` with no settings is a present component with defaults.
        let value = if value.is_null() {
            Value::Object(Default::default())
        } else {
            value
        };
        match build(&id.kind, value, &path) {
            Ok(component) => {
                out.insert(id, component);
            }
            Err(problems) => errors.extend(problems),
        }
    }
    out
}

fn receiver(kind: &str, value: Value, path: &str) -> Result<ReceiverConfig, Vec<ConfigError>> {
    let built = match kind {
        "otlp" => typed(value, path).map(ReceiverConfig::Otlp),
        other => Err(ConfigError::new(
            path,
            format!("unknown receiver type {other:?} (known: otlp)"),
        )),
    };
    built.map_err(|e| vec![e])
}

fn processor(kind: &str, value: Value, path: &str) -> Result<ProcessorConfig, Vec<ConfigError>> {
    match kind {
        "redaction" => {
            let raw = typed(value, path).map_err(|e| vec![e])?;
            RedactionConfig::validate(raw, path).map(ProcessorConfig::Redaction)
        }
        "tail_sampling" => TailSamplingConfig::parse(value, path).map(|c| ProcessorConfig::TailSampling(Box::new(c))),
        other => Err(vec![ConfigError::new(
            path,
            format!("unknown processor type {other:?} (known: redaction, tail_sampling)"),
        )]),
    }
}

fn exporter(kind: &str, value: Value, path: &str) -> Result<ExporterConfig, Vec<ConfigError>> {
    let built = match kind {
        "file" => typed(value, path).map(ExporterConfig::File),
        "debug" => typed(value, path).map(ExporterConfig::Debug),
        "nop" => typed(value, path).map(ExporterConfig::Nop),
        "storage" => typed(value, path).map(ExporterConfig::Storage),
        "otlp" => typed(value, path).map(|otlp| ExporterConfig::Otlp(Box::new(otlp))),
        other => Err(ConfigError::new(
            path,
            format!("unknown exporter type {other:?} (known: debug, file, nop, otlp, storage)"),
        )),
    };
    let built = built.map_err(|e| vec![e])?;
    if let ExporterConfig::Otlp(otlp) = &built {
        check_otlp(otlp, path)?;
    }
    Ok(built)
}

fn check_otlp(otlp: &OtlpExporterConfig, path: &str) -> Result<(), Vec<ConfigError>> {
    let mut errors = Vec::new();
    let endpoint = &otlp.endpoint;
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    match rest {
        None => errors.push(ConfigError::new(
            join(path, "endpoint"),
            format!("{endpoint:?} must start with http:// or https://"),
        )),
        Some(rest) => {
            let authority = rest.split('/').next().unwrap_or_default();
            if let Err(message) = Endpoint::parse(authority) {
                errors.push(ConfigError::new(join(path, "endpoint"), message));
            }
        }
    }
    if otlp.timeout.0.is_zero() {
        errors.push(ConfigError::new(join(path, "timeout"), "must be more than 0"));
    }
    if otlp.max_request_size_mib == 0 {
        errors.push(ConfigError::new(
            join(path, "max_request_size_mib"),
            "must be at least 1",
        ));
    }
    if otlp.sending_queue.storage != "disk" {
        errors.push(ConfigError::new(
            join(path, "sending_queue.storage"),
            "only `disk` (the write-ahead log) is supported",
        ));
    }
    if otlp.tls.cert_file.is_some() != otlp.tls.key_file.is_some() {
        errors.push(ConfigError::new(
            join(path, "tls"),
            "cert_file and key_file go together",
        ));
    }
    let retry = &otlp.retry_on_failure;
    if retry.initial_interval.0.is_zero() || retry.max_interval < retry.initial_interval {
        errors.push(ConfigError::new(
            join(path, "retry_on_failure"),
            "initial_interval must be more than 0 and at most max_interval",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

impl Config {
    /// Parses and validates YAML text, expanding `${env:NAME}` from the process environment.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigErrors> {
        Config::from_yaml_with_env(text, &|name| std::env::var(name).ok())
    }

    /// As [`Config::from_yaml`], reading environment variables through `lookup`.
    pub fn from_yaml_with_env(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let mut document: Value =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::new("", format!("invalid YAML: {e}")))?;
        if document.is_null() {
            document = Value::Object(Default::default());
        }
        let mut errors = Vec::new();
        env::expand(&mut document, "", lookup, &mut errors);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let raw: RawConfig = typed(document, "")?;

        let receivers = components("receivers", raw.receivers, &mut errors, receiver);
        let processors = components("processors", raw.processors, &mut errors, processor);
        let exporters = components("exporters", raw.exporters, &mut errors, exporter);
        let storage: StorageConfig = non_null(raw.storage, "storage", &mut errors);
        let query: QueryConfig = non_null(raw.query, "query", &mut errors);
        let pipelines = service::pipelines(raw.service, &mut errors);

        let config = Config {
            receivers,
            processors,
            exporters,
            pipelines,
            storage,
            query,
        };
        config.check(&mut errors);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        Config::from_yaml(&text)
    }

    /// The embedded default configuration.
    pub fn embedded_default() -> Config {
        match Config::from_yaml(EMBEDDED_DEFAULT) {
            Ok(config) => config,
            Err(errors) => panic!("the embedded default configuration is invalid: {errors}"),
        }
    }

    /// Cross-component checks that no single component can make on its own.
    fn check(&self, errors: &mut Vec<ConfigError>) {
        if self.pipelines.is_empty() && errors.is_empty() {
            errors.push(ConfigError::new(
                "service.pipelines",
                "at least one pipeline is required",
            ));
        }
        for (id, pipeline) in &self.pipelines {
            let path = join("service.pipelines", &id.to_string());
            check_refs(
                &join(&path, "receivers"),
                &pipeline.receivers,
                |c| self.receivers.contains_key(c),
                "receiver",
                errors,
            );
            check_refs(
                &join(&path, "processors"),
                &pipeline.processors,
                |c| self.processors.contains_key(c),
                "processor",
                errors,
            );
            check_refs(
                &join(&path, "exporters"),
                &pipeline.exporters,
                |c| self.exporters.contains_key(c),
                "exporter",
                errors,
            );
        }
        let mut samplers: BTreeMap<&ComponentId, String> = BTreeMap::new();
        let mut followers: Vec<(String, &ComponentId)> = Vec::new();
        for (id, pipeline) in &self.pipelines {
            let path = join("service.pipelines", &id.to_string());
            for (i, processor) in pipeline.processors.iter().enumerate() {
                if !matches!(self.processors.get(processor), Some(ProcessorConfig::TailSampling(_))) {
                    continue;
                }
                let at = format!("{}[{i}]", join(&path, "processors"));
                if i + 1 != pipeline.processors.len() {
                    errors.push(ConfigError::new(
                        &at,
                        "tail_sampling must be the last processor of its pipeline",
                    ));
                }
                match id.signal {
                    PipelineSignal::Traces => {
                        if let Some(other) = samplers.insert(processor, id.to_string()) {
                            errors.push(ConfigError::new(&at, format!("{processor} is already used by pipeline {other}; give each pipeline its own tail_sampling/<name>")));
                        }
                    }
                    PipelineSignal::Logs => followers.push((at, processor)),
                    PipelineSignal::Metrics => errors.push(ConfigError::new(
                        &at,
                        "tail_sampling works on traces pipelines, and on logs pipelines whose logs follow a traces pipeline's decisions",
                    )),
                }
            }
        }
        for (at, processor) in followers {
            if !samplers.contains_key(processor) {
                errors.push(ConfigError::new(
                    &at,
                    format!("{processor} in a logs pipeline follows the decisions of a traces pipeline using the same processor, and no traces pipeline uses {processor}"),
                ));
            }
        }
        for (id, receiver) in &self.receivers {
            let ReceiverConfig::Otlp(otlp) = receiver;
            if otlp.protocols.grpc.is_none() && otlp.protocols.http.is_none() {
                errors.push(ConfigError::new(
                    join(&join("receivers", &id.to_string()), "protocols"),
                    "enable at least one of grpc, http",
                ));
            }
        }
        for (id, exporter) in &self.exporters {
            if let ExporterConfig::File(file) = exporter {
                if file.rotation.max_megabytes == 0 {
                    errors.push(ConfigError::new(
                        join(&join("exporters", &id.to_string()), "rotation.max_megabytes"),
                        "must be at least 1",
                    ));
                }
            }
        }
        if self.storage.wal.segment_size_mib == 0 || self.storage.wal.max_size_mib < self.storage.wal.segment_size_mib {
            errors.push(ConfigError::new(
                "storage.wal",
                "segment_size_mib must be at least 1 and at most max_size_mib",
            ));
        }
        if self.storage.flush.interval.0.is_zero() {
            errors.push(ConfigError::new("storage.flush.interval", "must be greater than zero"));
        }
        if self.storage.memory_limit_mib < 64 {
            errors.push(ConfigError::new(
                "storage.memory_limit_mib",
                "must be at least 64 (the head and one full-text index writer per table need it)",
            ));
        }
        let stores: Vec<String> = self
            .exporters
            .iter()
            .filter(|(_, e)| matches!(e, ExporterConfig::Storage(_)))
            .map(|(id, _)| id.to_string())
            .collect();
        if stores.len() > 1 {
            errors.push(ConfigError::new(
                format!("exporters.{}", stores[1]),
                format!("only one storage exporter may be defined (also defined: {})", stores[0]),
            ));
        }
    }
}

fn non_null<T: serde::de::DeserializeOwned + Default>(value: Value, path: &str, errors: &mut Vec<ConfigError>) -> T {
    if value.is_null() {
        return T::default();
    }
    typed(value, path).unwrap_or_else(|e| {
        errors.push(e);
        T::default()
    })
}

fn check_refs(
    path: &str,
    ids: &[ComponentId],
    defined: impl Fn(&ComponentId) -> bool,
    what: &str,
    errors: &mut Vec<ConfigError>,
) {
    for (i, id) in ids.iter().enumerate() {
        if !defined(id) {
            errors.push(ConfigError::new(
                format!("{path}[{i}]"),
                format!("{what} {id:?} is not defined", id = id.to_string()),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
