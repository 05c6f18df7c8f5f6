//! Sift's own metrics (SPEC §5), in one registry served as Prometheus text on `/metrics`.
//! Counters are incremented where things happen; gauges that mirror state (WAL bytes, exporter
//! lag, memory) are refreshed when the registry is scraped.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `{signal, protocol}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabels {
    /// traces, logs or metrics.
    pub signal: String,
    /// grpc or http.
    pub protocol: String,
}

/// `{signal, protocol, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// traces, logs or metrics.
    pub signal: String,
    /// grpc or http.
    pub protocol: String,
    /// invalid, malformed, too_large, unsupported, unavailable, ...
    pub reason: String,
}

/// `{exporter, signal}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExporterLabels {
    /// Component id of the exporter.
    pub exporter: String,
    /// traces, logs or metrics.
    pub signal: String,
}

/// `{signal, kind}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedactionLabels {
    /// traces, logs or metrics.
    pub signal: String,
    /// masked_key, masked_value or removed_key.
    pub kind: String,
}

/// `{exporter}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExporterOnly {
    /// Component id of the exporter.
    pub exporter: String,
}

/// Every metric Sift exports about itself.
pub struct Telemetry {
    registry: Mutex<Registry>,
    /// Items accepted by receivers (`sift_receiver_accepted_total`).
    pub receiver_accepted: Family<ReceiverLabels, Counter>,
    /// Items refused by receivers (`sift_receiver_refused_total`).
    pub receiver_refused: Family<RefusedLabels, Counter>,
    /// Requests refused by receivers (`sift_receiver_refused_requests_total`), including
    /// malformed ones whose items cannot be counted.
    pub receiver_refused_requests: Family<RefusedLabels, Counter>,
    /// Values masked or keys removed by redaction (`sift_redaction_applied_total`).
    pub redaction: Family<RedactionLabels, Counter>,
    /// Items exported (`sift_exporter_sent_total`).
    pub exporter_sent: Family<ExporterLabels, Counter>,
    /// Items an exporter failed to export for good (`sift_exporter_failed_total`).
    pub exporter_failed: Family<ExporterLabels, Counter>,
    /// Items sent again after a retryable failure (`sift_exporter_retried_total`).
    pub exporter_retried: Family<ExporterLabels, Counter>,
    /// Items skipped because an exporter's backlog exceeded its queue (`sift_exporter_dropped_total`).
    pub exporter_dropped: Family<ExporterLabels, Counter>,
    /// Items a downstream refused in a partial success (`sift_exporter_rejected_total`).
    pub exporter_rejected: Family<ExporterLabels, Counter>,
    /// Seconds an exporter has been behind the WAL head (`sift_exporter_lag_seconds`).
    pub exporter_lag_seconds: Family<ExporterOnly, Gauge>,
    /// WAL bytes an exporter has not handled yet (`sift_exporter_queue_bytes`).
    pub exporter_queue_bytes: Family<ExporterOnly, Gauge>,
    /// WAL size on disk (`sift_storage_wal_bytes`).
    pub wal_bytes: Gauge,
    /// Rows written to the store (`sift_storage_rows_total{signal}`).
    pub storage_rows: Family<SignalLabels, Counter>,
    /// Parts and indexes on disk (`sift_storage_disk_bytes{signal}`).
    pub storage_disk_bytes: Family<SignalLabels, Gauge>,
    /// Bytes deleted by retention (`sift_storage_retention_freed_bytes_total{signal}`).
    pub storage_retention_freed_bytes: Family<SignalLabels, Counter>,
    /// Stored files found damaged: quarantined parts and indexes being rebuilt
    /// (`sift_storage_damaged_files`).
    pub storage_damaged_files: Gauge,
    /// Full-text index merges running (`sift_storage_index_merges_running`).
    pub storage_index_merges: Gauge,
    /// The most parts in one partition (`sift_storage_partition_parts_max{signal}`).
    pub storage_partition_parts: Family<SignalLabels, Gauge>,
    /// The most segments in one full-text index being written
    /// (`sift_storage_index_segments_max{signal}`).
    pub storage_index_segments: Family<SignalLabels, Gauge>,
    /// Resident memory of the process (`sift_memory_bytes`).
    pub memory_bytes: Gauge,
    /// Tail-sampling decisions (`sift_sampling_decisions_total{decision,policy}`).
    pub sampling_decisions: Family<DecisionLabels, Counter>,
    /// Traces waiting for a decision (`sift_sampling_traces_pending`).
    pub sampling_pending: Gauge,
    /// Spans of already decided traces (`sift_sampling_late_spans_total`).
    pub sampling_late_spans: Counter,
    /// Traces decided before their wait was over because the buffer was full or the trace too
    /// large (`sift_sampling_early_decisions_total`).
    pub sampling_early: Counter,
    /// Log records dropped with their trace (`sift_sampling_logs_dropped_total`).
    pub sampling_logs_dropped: Counter,
    /// Seconds from a trace's due time (first span + `decision_wait`) to its decision
    /// (`sift_sampling_decision_latency_seconds`).
    pub sampling_decision_latency: Histogram,
    /// Latency of the query endpoint's requests (`sift_query_duration_seconds`).
    pub query_duration: Family<EndpointLabels, Histogram, fn() -> Histogram>,
}

/// `{signal}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalLabels {
    /// traces, logs or metrics.
    pub signal: String,
}

impl SignalLabels {
    /// The labels of `signal`.
    pub fn new(signal: sift_proto::SignalKind) -> SignalLabels {
        SignalLabels {
            signal: signal.as_str().to_owned(),
        }
    }
}

/// `{decision, policy}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// sampled or not_sampled.
    pub decision: String,
    /// The deciding policy (empty when none sampled).
    pub policy: String,
}

/// `{endpoint}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// The route, e.g. `/metrics`, `/api/v1/traces/{trace_id}`.
    pub endpoint: String,
}

fn query_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ])
}

impl Telemetry {
    /// Creates and registers every metric.
    pub fn new() -> Telemetry {
        let mut registry = Registry::default();
        let r = &mut registry;
        let telemetry = Telemetry {
            receiver_accepted: registered(
                r,
                "sift_receiver_accepted",
                "Items (spans, log records, data points) accepted and written ahead",
            ),
            receiver_refused: registered(r, "sift_receiver_refused", "Items refused by receivers, by reason"),
            receiver_refused_requests: registered(
                r,
                "sift_receiver_refused_requests",
                "Requests refused by receivers, by reason",
            ),
            redaction: registered(
                r,
                "sift_redaction_applied",
                "Values masked and keys removed by redaction, by kind",
            ),
            exporter_sent: registered(r, "sift_exporter_sent", "Items exported"),
            exporter_failed: registered(
                r,
                "sift_exporter_failed",
                "Items an exporter dropped after a permanent error",
            ),
            exporter_retried: registered(r, "sift_exporter_retried", "Items sent again after a retryable failure"),
            exporter_dropped: registered(
                r,
                "sift_exporter_dropped",
                "Items skipped because the exporter's backlog exceeded its sending queue (drop_oldest)",
            ),
            exporter_rejected: registered(
                r,
                "sift_exporter_rejected",
                "Items a downstream refused in a partial success response",
            ),
            exporter_lag_seconds: registered(
                r,
                "sift_exporter_lag_seconds",
                "Seconds the exporter has been behind the write-ahead log head",
            ),
            exporter_queue_bytes: registered(
                r,
                "sift_exporter_queue_bytes",
                "Write-ahead log bytes an exporter has not handled yet",
            ),
            wal_bytes: registered(r, "sift_storage_wal_bytes", "Write-ahead log size on disk"),
            storage_rows: registered(r, "sift_storage_rows", "Rows written to the embedded store"),
            storage_disk_bytes: registered(
                r,
                "sift_storage_disk_bytes",
                "Bytes of Parquet parts and full-text indexes on disk",
            ),
            storage_damaged_files: registered(
                r,
                "sift_storage_damaged_files",
                "Stored files found damaged: quarantined parts and full-text indexes being rebuilt",
            ),
            storage_index_merges: registered(
                r,
                "sift_storage_index_merges_running",
                "Full-text index merges running (bounded store-wide)",
            ),
            storage_partition_parts: registered(
                r,
                "sift_storage_partition_parts_max",
                "The most Parquet parts in one hour partition",
            ),
            storage_index_segments: registered(
                r,
                "sift_storage_index_segments_max",
                "The most segments in one full-text index being written",
            ),
            storage_retention_freed_bytes: registered(
                r,
                "sift_storage_retention_freed_bytes",
                "Bytes deleted by retention",
            ),
            memory_bytes: registered(r, "sift_memory_bytes", "Resident memory of the Sift process"),
            sampling_decisions: registered(
                r,
                "sift_sampling_decisions",
                "Tail-sampling decisions by outcome and policy",
            ),
            sampling_pending: registered(
                r,
                "sift_sampling_traces_pending",
                "Traces waiting for a tail-sampling decision",
            ),
            sampling_late_spans: registered(
                r,
                "sift_sampling_late_spans",
                "Spans that arrived after their trace was decided",
            ),
            sampling_logs_dropped: registered(
                r,
                "sift_sampling_logs_dropped",
                "Log records dropped because their trace was not sampled",
            ),
            sampling_early: registered(
                r,
                "sift_sampling_early_decisions",
                "Traces decided early because the buffer was full or the trace too large",
            ),
            sampling_decision_latency: {
                let histogram = query_histogram();
                r.register(
                    "sift_sampling_decision_latency_seconds",
                    "Time from a trace's due time (first span + decision_wait) to its decision",
                    histogram.clone(),
                );
                histogram
            },
            query_duration: {
                let family =
                    Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(query_histogram);
                r.register(
                    "sift_query_duration_seconds",
                    "Latency of query endpoint requests",
                    family.clone(),
                );
                family
            },
            registry: Mutex::new(Registry::default()),
        };
        *telemetry.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        telemetry
    }

    /// Counts accepted items.
    pub fn accepted(&self, signal: &str, protocol: &str, items: u64) {
        self.receiver_accepted
            .get_or_create(&ReceiverLabels {
                signal: signal.to_owned(),
                protocol: protocol.to_owned(),
            })
            .inc_by(items);
    }

    /// Counts refused items (`items` is 0 when they could not be counted, e.g. a malformed body)
    /// and, when `whole_request`, the refused request.
    pub fn refused(&self, signal: &str, protocol: &str, reason: &str, items: u64, whole_request: bool) {
        let labels = RefusedLabels {
            signal: signal.to_owned(),
            protocol: protocol.to_owned(),
            reason: reason.to_owned(),
        };
        if items > 0 {
            self.receiver_refused.get_or_create(&labels).inc_by(items);
        }
        if whole_request {
            self.receiver_refused_requests.get_or_create(&labels).inc();
        }
    }

    /// Counts redactions.
    pub fn redaction_applied(&self, signal: &str, kind: &str, n: u64) {
        self.redaction
            .get_or_create(&RedactionLabels {
                signal: signal.to_owned(),
                kind: kind.to_owned(),
            })
            .inc_by(n);
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        self.memory_bytes.set(resident_memory_bytes().unwrap_or(0) as i64);
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

/// A new metric, registered under `name`: creating and registering are one step, so no metric
/// can exist without being exported.
fn registered<M: prometheus_client::registry::Metric + Clone + Default>(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

/// Resident set size from `/proc/self/statm` (Linux); `None` elsewhere.
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
