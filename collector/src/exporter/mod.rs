//! Exporters and the task that drives each one.
//!
//! Every exporter is a WAL consumer with its own checkpoint ([`run`], on the one consumer driver
//! in [`crate::after_wal`]): it reads batches of entries from the log at its own pace, keeps those
//! of its feeds (see [`crate::plan`]), hands them to the [`Exporter`] and checkpoints once the
//! exporter returns. A retryable failure is retried with
//! exponential backoff and jitter, never sooner than the destination asked (the batch stays in
//! the log meanwhile); a permanent one is counted and skipped. A slow or dead exporter therefore
//! slows nobody else until the WAL's size limit, or, with `drop_oldest`, its own queue size.

mod debug;
mod file;
mod nop;
pub mod otlp;
pub mod storage;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sift_config::{ComponentId, ExporterConfig, FullPolicy};
use sift_proto::SignalKind;
use sift_wal::{WalConsumer, WalEntry, WalRecord};
use tokio::sync::watch;

use crate::after_wal::{Event, Flow, Stage, StageFuture, BATCH_BYTES};
use crate::plan::Feeds;
use crate::telemetry::{ExporterLabels, ExporterOnly, Telemetry};

/// The future an exporter returns.
pub type ExportFuture<'a> = Pin<Box<dyn Future<Output = Result<Delivery, ExportError>> + Send + 'a>>;

/// What happened to a batch that was handled: items dropped for good (a permanent error on part of
/// it) and items the destination refused individually (partial success).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Items not delivered because of a permanent error, per signal.
    pub dropped: BTreeMap<SignalKind, u64>,
    /// Items the destination accepted the request of but refused (partial success), per signal.
    pub rejected: BTreeMap<SignalKind, u64>,
}

/// An export failure; the variant says whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Try again later (the destination is down, busy, ...), not before `after` if given.
    #[error("retryable export error: {message}")]
    Retryable {
        /// What went wrong.
        message: String,
        /// The destination's `Retry-After` / `RetryInfo`.
        after: Option<Duration>,
    },
    /// The batch will never be accepted; it is dropped and counted.
    #[error("permanent export error: {0}")]
    Permanent(String),
}

impl ExportError {
    /// A retryable error without retry advice.
    pub fn retryable(message: impl Into<String>) -> ExportError {
        ExportError::Retryable {
            message: message.into(),
            after: None,
        }
    }
}

/// How an exporter's retryable failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retry at all (otherwise a retryable failure drops the batch).
    pub enabled: bool,
    /// First wait.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Give up on a batch after this long (`None`: never).
    pub max_elapsed: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            enabled: true,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            max_elapsed: None,
        }
    }
}

/// A destination for batches. After `export` returns `Ok`, the batch is no longer the
/// exporter's concern: it will not be offered again (unless Sift crashes before checkpointing).
/// A batch that failed retryably is offered again, unchanged, until it succeeds.
pub trait Exporter: Send {
    /// Exports a batch of WAL entries (all of the feeds the plan gave this exporter).
    fn export<'a>(&'a mut self, batch: &'a [WalEntry]) -> ExportFuture<'a>;

    /// How retryable failures are retried.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::default()
    }

    /// The exporter's own backlog bound and what to do beyond it (`None`: only the WAL's bound).
    fn queue_limit(&self) -> Option<(u64, FullPolicy)> {
        None
    }

    /// Batching by age: a batch smaller than `.0` bytes waits up to `.1` for more (`None`: never).
    fn batching(&self) -> Option<(usize, Duration)> {
        None
    }
}

/// Builds the exporter for a config entry. `data_dir` anchors default file paths.
pub fn build(
    id: &ComponentId,
    config: &ExporterConfig,
    data_dir: &std::path::Path,
) -> anyhow::Result<Box<dyn Exporter>> {
    Ok(match config {
        ExporterConfig::File(file) => Box::new(file::FileExporter::new(file, data_dir)),
        ExporterConfig::Debug(debug) => Box::new(debug::DebugExporter::new(id.to_string(), debug.verbosity)),
        ExporterConfig::Nop(_) => Box::new(nop::NopExporter),
        ExporterConfig::Otlp(otlp) => Box::new(otlp::OtlpExporter::new(id.to_string(), otlp)?),
        ExporterConfig::Storage(_) => {
            anyhow::bail!("the storage exporter is run by storage::run, not as a plain exporter")
        }
    })
}

/// The per-exporter gauges, refreshed as the exporter moves.
struct Gauges {
    queue_bytes: prometheus_client::metrics::gauge::Gauge,
    lag_seconds: prometheus_client::metrics::gauge::Gauge,
    behind_since: Option<Instant>,
}

impl Gauges {
    fn new(name: &str, telemetry: &Telemetry) -> Gauges {
        let labels = ExporterOnly {
            exporter: name.to_owned(),
        };
        Gauges {
            queue_bytes: telemetry.exporter_queue_bytes.get_or_create(&labels).clone(),
            lag_seconds: telemetry.exporter_lag_seconds.get_or_create(&labels).clone(),
            behind_since: None,
        }
    }

    /// `backlog`: WAL bytes after the batch being handled (`handling` says whether one is).
    fn update(&mut self, backlog: u64, handling: bool) {
        self.queue_bytes.set(i64::try_from(backlog).unwrap_or(i64::MAX));
        if backlog == 0 && !handling {
            self.behind_since = None;
        } else if self.behind_since.is_none() {
            self.behind_since = Some(Instant::now());
        }
        let behind = self.behind_since.map_or(0, |since| since.elapsed().as_secs());
        self.lag_seconds.set(i64::try_from(behind).unwrap_or(i64::MAX));
    }
}

/// Drives one exporter from the WAL until the log is closed and drained, or `stop` is set.
pub async fn run(
    id: ComponentId,
    exporter: Box<dyn Exporter>,
    consumer: WalConsumer,
    feeds: Feeds,
    telemetry: Arc<Telemetry>,
    stop: watch::Receiver<bool>,
) {
    let name = id.to_string();
    let stage = ExporterStage {
        gauges: Gauges::new(&name, &telemetry),
        queue_limit: exporter.queue_limit(),
        name,
        exporter,
        feeds,
        telemetry,
    };
    crate::after_wal::drive(stage, consumer, stop).await;
}

/// An exporter as a WAL consumer: batches of its feeds' entries, exported with retries; the
/// checkpoint follows what was handed over.
struct ExporterStage {
    name: String,
    exporter: Box<dyn Exporter>,
    feeds: Feeds,
    telemetry: Arc<Telemetry>,
    gauges: Gauges,
    queue_limit: Option<(u64, FullPolicy)>,
}

impl Stage for ExporterStage {
    fn name(&self) -> &str {
        &self.name
    }

    fn before_read(&mut self, consumer: &WalConsumer) {
        self.gauges.update(consumer.lag_bytes(), false);
    }

    fn handle<'a>(
        &'a mut self,
        event: Event,
        consumer: &'a mut WalConsumer,
        stop: &'a mut watch::Receiver<bool>,
    ) -> StageFuture<'a, Flow> {
        Box::pin(async move {
            let Event::Records(mut records) = event else {
                return Flow::Handled(None);
            };
            if let Some((min_bytes, flush_timeout)) = self.exporter.batching() {
                fill_batch(consumer, &mut records, min_bytes, flush_timeout).await;
            }
            let end = records.last().map(|r| r.end);
            let batch = entries(&self.name, &records, &self.feeds);
            let over_queue = self
                .queue_limit
                .filter(|(_, policy)| *policy == FullPolicy::DropOldest)
                .is_some_and(|(limit, _)| consumer.lag_bytes() > limit);
            if over_queue {
                count(&self.telemetry.exporter_dropped, &self.name, &batch, &BTreeMap::new());
                tracing::warn!(exporter = %self.name, entries = batch.len(), "backlog over the sending queue size: dropping the oldest");
            } else if !batch.is_empty() {
                self.gauges.update(consumer.lag_bytes(), true);
                let delivered = export_with_retry(
                    &self.name,
                    self.exporter.as_mut(),
                    &batch,
                    &self.telemetry,
                    &mut self.gauges,
                    consumer,
                    stop,
                )
                .await;
                if !delivered {
                    return Flow::Stopped;
                }
            }
            Flow::Handled(end)
        })
    }

    fn checkpoint(&self, handled_end: u64) -> Option<u64> {
        Some(handled_end)
    }
}

/// Waits up to `flush_timeout` for more records while the batch is under `min_bytes`.
async fn fill_batch(
    consumer: &mut WalConsumer,
    records: &mut Vec<WalRecord>,
    min_bytes: usize,
    flush_timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + flush_timeout;
    let mut bytes: usize = records.iter().map(|r| r.payload.len()).sum();
    while bytes < min_bytes {
        let more = tokio::time::timeout_at(deadline, consumer.next_batch(BATCH_BYTES.saturating_sub(bytes))).await;
        match more {
            Ok(Ok(Some(more))) => {
                bytes += more.iter().map(|r| r.payload.len()).sum::<usize>();
                records.extend(more);
            }
            // The deadline, the end of the log, or a read error (retried by the main loop).
            _ => break,
        }
    }
}

/// The entries of `records` that `feeds` select.
fn entries(name: &str, records: &[WalRecord], feeds: &Feeds) -> Vec<WalEntry> {
    positioned_entries(name, records, feeds)
        .into_iter()
        .map(|(_, entry)| entry)
        .collect()
}

/// The entries of `records` that `feeds` select, each with the end position of its record.
pub(crate) fn positioned_entries(name: &str, records: &[WalRecord], feeds: &Feeds) -> Vec<(u64, WalEntry)> {
    let mut batch = Vec::with_capacity(records.len());
    for record in records {
        match WalEntry::decode(&record.payload) {
            Ok(entry) if feeds.wants(&entry) => batch.push((record.end, entry)),
            Ok(_) => {}
            Err(e) => tracing::error!(exporter = name, position = record.position, error = %e, "skipping WAL entry"),
        }
    }
    batch
}

/// A factor in [0.5, 1.5) for jitter, from the clock (no shared RNG needed).
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mixed = (u64::from(nanos)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    0.5 + (mixed as f64 / (1u64 << 53) as f64)
}

/// Exports `batch`, retrying retryable failures per the exporter's policy. Returns false if
/// stopped before the batch was handled (it stays in the WAL).
async fn export_with_retry(
    name: &str,
    exporter: &mut dyn Exporter,
    batch: &[WalEntry],
    telemetry: &Telemetry,
    gauges: &mut Gauges,
    consumer: &WalConsumer,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let policy = exporter.retry_policy();
    let mut backoff = policy.initial;
    let started = Instant::now();
    loop {
        let result = tokio::select! {
            result = exporter.export(batch) => result,
            _ = stop.wait_for(|stop| *stop) => return false,
        };
        let (message, after) = match result {
            Ok(delivery) => {
                count(&telemetry.exporter_sent, name, batch, &delivery.dropped);
                for (signal, items) in &delivery.dropped {
                    family_get(&telemetry.exporter_failed, name, *signal).inc_by(*items);
                }
                for (signal, items) in &delivery.rejected {
                    family_get(&telemetry.exporter_rejected, name, *signal).inc_by(*items);
                }
                return true;
            }
            Err(ExportError::Permanent(message)) => {
                tracing::error!(exporter = name, error = %message, "dropping batch after a permanent error");
                count(&telemetry.exporter_failed, name, batch, &BTreeMap::new());
                return true;
            }
            Err(ExportError::Retryable { message, after }) => (message, after),
        };
        let over_queue = exporter
            .queue_limit()
            .filter(|(_, policy)| *policy == FullPolicy::DropOldest)
            .is_some_and(|(limit, _)| consumer.lag_bytes() > limit);
        if over_queue {
            tracing::warn!(exporter = name, error = %message, "backlog over the sending queue size: dropping the oldest");
            count(&telemetry.exporter_dropped, name, batch, &BTreeMap::new());
            return true;
        }
        let expired = policy.max_elapsed.is_some_and(|limit| started.elapsed() >= limit);
        if !policy.enabled || expired {
            tracing::error!(exporter = name, error = %message, "giving up on batch after retrying");
            count(&telemetry.exporter_failed, name, batch, &BTreeMap::new());
            return true;
        }
        let wait = backoff.mul_f64(jitter()).max(after.unwrap_or_default());
        tracing::warn!(exporter = name, error = %message, retry_in = ?wait, "export failed, will retry");
        count(&telemetry.exporter_retried, name, batch, &BTreeMap::new());
        gauges.update(consumer.lag_bytes(), true);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stop| *stop) => return false,
        }
        backoff = (backoff * 2).min(policy.max);
    }
}

fn family_get(family: &Family<ExporterLabels, Counter>, name: &str, signal: SignalKind) -> Counter {
    family
        .get_or_create(&ExporterLabels {
            exporter: name.to_owned(),
            signal: signal.as_str().to_owned(),
        })
        .clone()
}

/// Adds the items of `batch`, less `minus`, to `family` per signal.
pub(crate) fn count(
    family: &Family<ExporterLabels, Counter>,
    name: &str,
    batch: &[WalEntry],
    minus: &BTreeMap<SignalKind, u64>,
) {
    let mut items: BTreeMap<SignalKind, u64> = BTreeMap::new();
    for entry in batch {
        *items.entry(entry.signal).or_default() += entry.items;
    }
    for (signal, n) in items {
        let n = n.saturating_sub(minus.get(&signal).copied().unwrap_or(0));
        if n > 0 {
            family_get(family, name, signal).inc_by(n);
        }
    }
}
