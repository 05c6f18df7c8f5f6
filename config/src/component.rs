//! Component ids (`type` or `type/name`, as in the Collector) and the typed settings of each
//! receiver and exporter type.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::types::{Duration, Endpoint};

/// `type` or `type/name`, e.g. `otlp`, `otlp/downstream`, `file/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    /// The component type (`otlp`, `file`, ...).
    pub kind: String,
    /// The optional instance name after the slash.
    pub name: Option<String>,
}

impl ComponentId {
    /// Parses `type` or `type/name`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (kind, name) = match text.split_once('/') {
            Some((kind, name)) => (kind, Some(name)),
            None => (text, None),
        };
        let valid_kind = !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_kind {
            return Err(format!(
                "invalid component id {text:?}: the type must be letters, digits or _"
            ));
        }
        if name.is_some_and(|n| n.is_empty() || n.contains('/')) {
            return Err(format!("invalid component id {text:?}: expected type or type/name"));
        }
        Ok(ComponentId {
            kind: kind.to_owned(),
            name: name.map(str::to_owned),
        })
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{}/{name}", self.kind),
            None => f.write_str(&self.kind),
        }
    }
}

/// Deserializes a present-but-empty YAML key (`grpc:`) as the default settings.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

// ---- receivers --------------------------------------------------------------------------------

/// `receivers.otlp`: OTLP over gRPC and/or HTTP.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    /// Which protocols to serve; a protocol is on when its key is present.
    #[serde(default)]
    pub protocols: OtlpProtocols,
}

/// `receivers.otlp.protocols`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpProtocols {
    /// OTLP/gRPC.
    #[serde(default, deserialize_with = "present")]
    pub grpc: Option<GrpcServerConfig>,
    /// OTLP/HTTP (protobuf and JSON).
    #[serde(default, deserialize_with = "present")]
    pub http: Option<HttpServerConfig>,
}

/// `receivers.otlp.protocols.grpc`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcServerConfig {
    /// Listen address (default `127.0.0.1:4317`).
    pub endpoint: Endpoint,
    /// Largest accepted message after decompression, in MiB (default 16).
    pub max_recv_msg_size_mib: u64,
}

impl Default for GrpcServerConfig {
    fn default() -> Self {
        GrpcServerConfig {
            endpoint: Endpoint {
                host: "127.0.0.1".into(),
                port: 4317,
            },
            max_recv_msg_size_mib: 16,
        }
    }
}

/// `receivers.otlp.protocols.http`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpServerConfig {
    /// Listen address (default `127.0.0.1:4318`).
    pub endpoint: Endpoint,
    /// Largest accepted body after decompression, in MiB (default 16).
    pub max_request_body_size_mib: u64,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            endpoint: Endpoint {
                host: "127.0.0.1".into(),
                port: 4318,
            },
            max_request_body_size_mib: 16,
        }
    }
}

/// A configured receiver.
#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverConfig {
    /// `otlp`.
    Otlp(OtlpReceiverConfig),
}

// ---- exporters --------------------------------------------------------------------------------

/// `exporters.file`: OTLP/JSON lines, one export request per line.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileExporterConfig {
    /// Output file. Default: `<storage.path>/export/<signal>.jsonl`, one file per signal.
    pub path: Option<PathBuf>,
    /// Size-based rotation.
    #[serde(default)]
    pub rotation: Rotation,
}

/// `exporters.file.rotation`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rotation {
    /// Rotate when the file reaches this size (default 100 MiB).
    pub max_megabytes: u64,
    /// Keep at most this many rotated files (default 10; 0 keeps none).
    pub max_backups: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_megabytes: 100,
            max_backups: 10,
        }
    }
}

/// `exporters.debug.verbosity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One line per batch with counts.
    #[default]
    Basic,
    /// One line per batch plus one per resource.
    Normal,
    /// Every item.
    Detailed,
}

/// `exporters.debug`: counts and one-line summaries to Sift's log.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugExporterConfig {
    /// How much to log.
    #[serde(default)]
    pub verbosity: Verbosity,
}

/// `exporters.storage`: Sift's embedded store (settings are in the top-level `storage` section).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageExporterConfig {}

/// `exporters.nop`: discards everything.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NopExporterConfig {}

/// `exporters.otlp/<name>.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    /// OTLP/gRPC.
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    HttpJson,
}

/// `exporters.otlp/<name>.compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// gzip (the Collector's default).
    #[default]
    Gzip,
    /// zstd.
    Zstd,
    /// None.
    None,
}

/// `exporters.otlp/<name>.tls`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsClientConfig {
    /// PEM file of the CA to trust (default: the system roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for mutual TLS (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// `exporters.otlp/<name>.sending_queue.full_policy`: what happens when an exporter's backlog
/// exceeds `queue_size_mib`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Keep everything: the WAL fills and receivers refuse with a retryable status.
    #[default]
    Block,
    /// Skip the oldest backlog of this exporter (counted as dropped); others are unaffected.
    DropOldest,
}

/// `exporters.otlp/<name>.sending_queue`. The queue is the WAL itself: persistent by design.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendingQueue {
    /// Accepted for Collector compatibility; the WAL-backed queue cannot be turned off.
    pub enabled: bool,
    /// Accepted for Collector compatibility: only `disk` exists.
    pub storage: String,
    /// Backlog (WAL bytes not yet sent) at which `full_policy` applies.
    pub queue_size_mib: u64,
    /// `block` or `drop_oldest`.
    pub full_policy: FullPolicy,
}

impl Default for SendingQueue {
    fn default() -> Self {
        SendingQueue {
            enabled: true,
            storage: "disk".into(),
            queue_size_mib: 256,
            full_policy: FullPolicy::Block,
        }
    }
}

/// `exporters.otlp/<name>.retry_on_failure`: exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryOnFailure {
    /// Retry retryable failures at all.
    pub enabled: bool,
    /// First wait.
    pub initial_interval: Duration,
    /// Longest wait.
    pub max_interval: Duration,
    /// Give up on a batch (drop and count it) after retrying this long; 0 retries forever.
    pub max_elapsed_time: Duration,
}

impl Default for RetryOnFailure {
    fn default() -> Self {
        RetryOnFailure {
            enabled: true,
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

/// `exporters.otlp/<name>.batch`: batching by size and age. WAL entries already available are
/// always sent together; with a `flush_timeout`, a request smaller than `min_size_kib` also waits
/// up to that long for more.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Longest wait for more data when a request is small (0: send at once).
    pub flush_timeout: Duration,
    /// Requests at least this large go out without waiting.
    pub min_size_kib: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            flush_timeout: Duration::from_millis(200),
            min_size_kib: 512,
        }
    }
}

/// `exporters.otlp/<name>`: forwarding to a downstream OTLP backend.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpExporterConfig {
    /// `http://host:port` or `https://host:port` (for HTTP, a base URL; `/v1/<signal>` is appended).
    pub endpoint: String,
    /// Transport and encoding.
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// Request compression.
    #[serde(default)]
    pub compression: Compression,
    /// Extra request headers (gRPC metadata), e.g. an API key from `${env:...}`.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Per-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// TLS settings for `https://` endpoints.
    #[serde(default)]
    pub tls: TlsClientConfig,
    /// Largest request sent downstream, in MiB; larger WAL batches are split.
    #[serde(default = "default_max_request_mib")]
    pub max_request_size_mib: u64,
    /// Batching by age.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Backlog bound and policy.
    #[serde(default)]
    pub sending_queue: SendingQueue,
    /// Retry policy.
    #[serde(default)]
    pub retry_on_failure: RetryOnFailure,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_request_mib() -> u64 {
    4
}

/// A configured exporter.
#[derive(Debug, Clone, PartialEq)]
pub enum ExporterConfig {
    /// `otlp`: forwards to a downstream OTLP backend.
    Otlp(Box<OtlpExporterConfig>),
    /// `file`.
    File(FileExporterConfig),
    /// `debug`.
    Debug(DebugExporterConfig),
    /// `nop`.
    Nop(NopExporterConfig),
    /// `storage`: the embedded store.
    Storage(StorageExporterConfig),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids() {
        assert_eq!(
            ComponentId::parse("otlp/downstream").unwrap().to_string(),
            "otlp/downstream"
        );
        assert_eq!(ComponentId::parse("file").unwrap().name, None);
        assert!(ComponentId::parse("otlp/").is_err());
        assert!(ComponentId::parse("/x").is_err());
        assert!(ComponentId::parse("a/b/c").is_err());
    }
}
