//! The `storage` exporter: the WAL consumer that feeds Sift's own store.
//!
//! Unlike the other exporters it does not checkpoint as soon as a batch is handed over: rows sit in
//! the store's in-memory head until a flush publishes them as Parquet parts, so the checkpoint
//! follows [`LocalStore::durable_position`] (on the one consumer driver, [`crate::after_wal`]). After a crash the WAL replays from there, and records
//! the manifest already covers are skipped, so each row is stored exactly once. A failed flush
//! (full disk) leaves the checkpoint where it is and is retried by the store until it succeeds;
//! one that still fails at shutdown leaves its rows in the WAL for the next start.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sift_config::ComponentId;
use sift_storage::{LocalStore, StorageError, Table};
use sift_wal::{WalConsumer, WalRecord};
use tokio::sync::watch;

use super::{count, entries};
use crate::after_wal::{Event, Flow, Stage, StageFuture};
use crate::plan::Feeds;
use crate::telemetry::Telemetry;

/// How often head logs become searchable, and flush age is checked.
const TICK: Duration = Duration::from_secs(1);
/// How often retention and compaction run.
const MAINTENANCE: Duration = Duration::from_secs(60);

async fn blocking<T: Send + 'static>(
    store: &Arc<LocalStore>,
    work: impl FnOnce(&LocalStore) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StoreCallError> {
    let store = store.clone();
    Ok(tokio::task::spawn_blocking(move || work(&store)).await??)
}

/// A store call made off the async workers that failed.
#[derive(Debug, thiserror::Error)]
enum StoreCallError {
    /// The store said no.
    #[error(transparent)]
    Store(#[from] StorageError),
    /// The blocking task panicked or was cancelled (at shutdown).
    #[error("storage task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Flushes the head (the driver then moves the checkpoint to what is now durable).
async fn flush(name: &str, store: &Arc<LocalStore>, telemetry: &Telemetry) {
    let started = Instant::now();
    match blocking(store, LocalStore::flush).await {
        Ok(_) => tracing::debug!(exporter = name, elapsed = ?started.elapsed(), "storage head flushed"),
        Err(e) => tracing::error!(exporter = name, error = %e, "storage flush failed; will retry"),
    }
    refresh_disk(store, telemetry);
}

fn refresh_disk(store: &LocalStore, telemetry: &Telemetry) {
    for (table, bytes) in store.disk_bytes() {
        if table == Table::Exemplars {
            continue;
        }
        let mut bytes = bytes;
        if table == Table::Metrics {
            bytes += store.disk_bytes().get(&Table::Exemplars).copied().unwrap_or(0);
        }
        telemetry
            .storage_disk_bytes
            .get_or_create(&crate::telemetry::SignalLabels::new(table.signal()))
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

async fn maintain(name: &str, store: &Arc<LocalStore>, telemetry: &Telemetry) {
    match blocking(store, |s| s.enforce_retention(SystemTime::now())).await {
        Ok(report) => {
            for (table, bytes) in &report.bytes {
                telemetry
                    .storage_retention_freed_bytes
                    .get_or_create(&crate::telemetry::SignalLabels::new(table.signal()))
                    .inc_by(*bytes);
            }
            if !report.partitions.is_empty() {
                tracing::info!(exporter = name, partitions = ?report.partitions, rows = ?report.rows, bytes = ?report.bytes, "retention deleted expired partitions");
            }
        }
        Err(e) => tracing::error!(exporter = name, error = %e, "retention failed"),
    }
    match blocking(store, LocalStore::compact).await {
        Ok(0) => {}
        Ok(parts) => tracing::info!(exporter = name, parts, "compacted small parts"),
        Err(e) => tracing::error!(exporter = name, error = %e, "compaction failed"),
    }
    refresh_disk(store, telemetry);
}

/// Feeds the store from the WAL until the log is closed and drained, or `stop` is set; then
/// flushes, so a clean shutdown leaves nothing to replay.
pub async fn run(
    id: ComponentId,
    store: Arc<LocalStore>,
    consumer: WalConsumer,
    feeds: Feeds,
    telemetry: Arc<Telemetry>,
    stop: watch::Receiver<bool>,
) {
    let name = id.to_string();
    refresh_disk(&store, &telemetry);
    let queue_bytes = telemetry
        .exporter_queue_bytes
        .get_or_create(&crate::telemetry::ExporterOnly { exporter: name.clone() })
        .clone();
    let stage = StorageStage {
        name,
        store,
        feeds,
        telemetry,
        queue_bytes,
        last_maintenance: None,
    };
    crate::after_wal::drive(stage, consumer, stop).await;
}

/// The storage exporter as a WAL consumer: records go into the store's head, a tick refreshes,
/// repairs, flushes when due and maintains; the checkpoint follows the store's durable position.
struct StorageStage {
    name: String,
    store: Arc<LocalStore>,
    feeds: Feeds,
    telemetry: Arc<Telemetry>,
    queue_bytes: prometheus_client::metrics::gauge::Gauge,
    last_maintenance: Option<Instant>,
}

impl StorageStage {
    async fn on_tick(&mut self) {
        let (name, store, telemetry) = (&self.name, &self.store, &self.telemetry);
        if let Err(e) = blocking(store, LocalStore::refresh).await {
            tracing::warn!(exporter = %name, error = %e, "cannot repair the store yet (full-text rebuild or quarantine); will retry");
        }
        telemetry
            .storage_damaged_files
            .set(i64::try_from(store.damaged_files()).unwrap_or(i64::MAX));
        if store.flush_due() {
            flush(name, store, telemetry).await;
        }
        if self.last_maintenance.is_none_or(|at| at.elapsed() >= MAINTENANCE) {
            maintain(name, store, telemetry).await;
            self.last_maintenance = Some(Instant::now());
        }
    }

    async fn on_records(&mut self, records: Vec<WalRecord>) -> Option<u64> {
        let (name, store, telemetry) = (&self.name, &self.store, &self.telemetry);
        let end = records.last().map(|r| r.end)?;
        // Records the published parts already hold (a replay after a crash) are skipped.
        let published = store.published_position();
        let fresh: Vec<_> = records.into_iter().filter(|r| r.end > published).collect();
        let batch = entries(name, &fresh, &self.feeds);
        if !batch.is_empty() {
            let counted = batch.clone();
            match blocking(store, move |s| s.append(end, &batch)).await {
                Ok(rows) => {
                    count(&telemetry.exporter_sent, name, &counted, &Default::default());
                    for (table, n) in rows {
                        if table != Table::Exemplars {
                            telemetry
                                .storage_rows
                                .get_or_create(&crate::telemetry::SignalLabels::new(table.signal()))
                                .inc_by(n);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(exporter = %name, error = %e, "cannot store batch");
                    count(&telemetry.exporter_failed, name, &counted, &Default::default());
                }
            }
        } else if end > published {
            // Nothing for this store: only the position moves.
            let _ = blocking(store, move |s| s.append(end, &[])).await;
        }
        if store.flush_due() {
            flush(name, store, telemetry).await;
        }
        Some(end)
    }
}

impl Stage for StorageStage {
    fn name(&self) -> &str {
        &self.name
    }

    fn tick(&self) -> Option<Duration> {
        Some(TICK)
    }

    fn before_read(&mut self, consumer: &WalConsumer) {
        self.queue_bytes
            .set(i64::try_from(consumer.lag_bytes()).unwrap_or(i64::MAX));
    }

    fn handle<'a>(
        &'a mut self,
        event: Event,
        _consumer: &'a mut WalConsumer,
        _stop: &'a mut watch::Receiver<bool>,
    ) -> StageFuture<'a, Flow> {
        Box::pin(async move {
            match event {
                Event::Records(records) => Flow::Handled(self.on_records(records).await),
                Event::Tick => {
                    self.on_tick().await;
                    Flow::Handled(None)
                }
            }
        })
    }

    fn checkpoint(&self, _handled_end: u64) -> Option<u64> {
        Some(self.store.durable_position())
    }

    fn finish(&mut self) -> StageFuture<'_, ()> {
        Box::pin(flush(&self.name, &self.store, &self.telemetry))
    }
}
