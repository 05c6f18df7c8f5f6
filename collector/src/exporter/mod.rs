//! Exporters and the task that drives each one.
//!
//! Every exporter is a WAL consumer with its own checkpoint ([`run`]): it reads batches of entries
//! from the log at its own pace, keeps those of the pipelines that list it, hands them to the
//! [`Exporter`] and checkpoints once the exporter returns. A retryable failure is retried with
//! backoff (the batch stays in the log); a permanent one is counted and skipped. So a slow or dead
//! exporter never slows the receivers or the others until the WAL's size limit is reached.

mod debug;
mod file;
mod nop;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sift_config::{ComponentId, ExporterConfig};
use sift_proto::item_count_protobuf;
use sift_storage::wal::WalConsumer;
use sift_storage::WalEntry;
use tokio::sync::watch;

use crate::telemetry::{ExporterLabels, ExporterOnly, Telemetry};

/// The future an exporter returns.
pub type ExportFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ExportError>> + Send + 'a>>;

/// An export failure; the variant says whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Try again later (the destination is down, busy, ...).
    #[error("retryable export error: {0}")]
    Retryable(String),
    /// The batch will never be accepted; it is dropped and counted.
    #[error("permanent export error: {0}")]
    Permanent(String),
}

/// A destination for batches. After `export` returns `Ok`, the batch is no longer the
/// exporter's concern: it will not be offered again (unless Sift crashes before checkpointing).
pub trait Exporter: Send {
    /// Exports a batch of WAL entries (all of pipelines that list this exporter).
    fn export<'a>(&'a mut self, batch: &'a [WalEntry]) -> ExportFuture<'a>;
}

/// Builds the exporter for a config entry. `data_dir` anchors default file paths.
pub fn build(id: &ComponentId, config: &ExporterConfig, data_dir: &std::path::Path) -> Box<dyn Exporter> {
    match config {
        ExporterConfig::File(file) => Box::new(file::FileExporter::new(file, data_dir)),
        ExporterConfig::Debug(debug) => Box::new(debug::DebugExporter::new(id.to_string(), debug.verbosity)),
        ExporterConfig::Nop(_) => Box::new(nop::NopExporter),
    }
}

/// Bytes of WAL read per batch.
const BATCH_BYTES: usize = 4 << 20;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Drives one exporter from the WAL until the log is closed and drained, or `stop` is set.
pub async fn run(
    id: ComponentId,
    mut exporter: Box<dyn Exporter>,
    mut consumer: WalConsumer,
    pipelines: HashSet<String>,
    telemetry: Arc<Telemetry>,
    mut stop: watch::Receiver<bool>,
) {
    let name = id.to_string();
    let queue_gauge = telemetry
        .exporter_queue_bytes
        .get_or_create(&ExporterOnly { exporter: name.clone() })
        .clone();
    let mut handled = None;
    loop {
        queue_gauge.set(i64::try_from(consumer.lag_bytes()).unwrap_or(i64::MAX));
        let next = tokio::select! {
            next = consumer.next_batch(BATCH_BYTES) => next,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let records = match next {
            Ok(Some(records)) => records,
            Ok(None) => break,
            Err(e) => {
                tracing::error!(exporter = %name, error = %e, "cannot read the WAL");
                tokio::time::sleep(MAX_BACKOFF).await;
                continue;
            }
        };
        let Some(end) = records.last().map(|r| r.end) else {
            continue;
        };
        let mut batch = Vec::with_capacity(records.len());
        for record in &records {
            match WalEntry::decode(&record.payload) {
                Ok(entry) if pipelines.contains(&entry.pipeline) => batch.push(entry),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(exporter = %name, position = record.position, error = %e, "skipping WAL entry")
                }
            }
        }
        if !batch.is_empty() && !export_with_retry(&name, exporter.as_mut(), &batch, &telemetry, &mut stop).await {
            break;
        }
        handled = Some(end);
        if let Err(e) = consumer.commit(end, false) {
            tracing::error!(exporter = %name, error = %e, "cannot store WAL checkpoint");
        }
    }
    if let Some(end) = handled {
        if let Err(e) = consumer.commit(end, true) {
            tracing::error!(exporter = %name, error = %e, "cannot store WAL checkpoint");
        }
    }
    queue_gauge.set(i64::try_from(consumer.lag_bytes()).unwrap_or(i64::MAX));
    tracing::debug!(exporter = %name, "exporter stopped");
}

/// Exports `batch`, retrying retryable failures with backoff. Returns false if stopped first.
async fn export_with_retry(
    name: &str,
    exporter: &mut dyn Exporter,
    batch: &[WalEntry],
    telemetry: &Telemetry,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut backoff = MIN_BACKOFF;
    loop {
        let result = tokio::select! {
            result = exporter.export(batch) => result,
            _ = stop.wait_for(|stop| *stop) => return false,
        };
        match result {
            Ok(()) => {
                count(&telemetry.exporter_sent, name, batch);
                return true;
            }
            Err(ExportError::Permanent(message)) => {
                tracing::error!(exporter = name, error = %message, "dropping batch after a permanent error");
                count(&telemetry.exporter_failed, name, batch);
                return true;
            }
            Err(ExportError::Retryable(message)) => {
                tracing::warn!(exporter = name, error = %message, retry_in = ?backoff, "export failed, will retry");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|stop| *stop) => return false,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn count(
    family: &prometheus_client::metrics::family::Family<ExporterLabels, prometheus_client::metrics::counter::Counter>,
    name: &str,
    batch: &[WalEntry],
) {
    for entry in batch {
        let items = item_count_protobuf(entry.signal, &entry.body).unwrap_or(0);
        family
            .get_or_create(&ExporterLabels {
                exporter: name.to_owned(),
                signal: entry.signal.as_str().to_owned(),
            })
            .inc_by(items);
    }
}
