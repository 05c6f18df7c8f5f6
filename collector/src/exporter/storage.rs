//! The `storage` exporter: a thin adapter from the WAL to the store's write loop
//! ([`LocalStore::write`], [`LocalStore::tick`]), which owns the replay skip, flush, compaction and
//! retention timing. Retention and compaction run beside it ([`LocalStore::maintain_if_due`] on a
//! task of their own), so a merge never holds up the write loop. The checkpoint follows [`LocalStore::durable_position`] (on the one consumer
//! driver, [`crate::after_wal`]): rows sit in the store's in-memory head until a flush publishes
//! them as Parquet parts. After a crash the WAL replays from there and records the manifest
//! already covers are skipped, so each row is stored exactly once. A failed flush (full disk)
//! leaves the checkpoint where it is and is retried by the store; one that still fails at shutdown
//! leaves its rows in the WAL for the next start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sift_config::ComponentId;
use sift_storage::{LocalStore, StorageError, Table, TickReport};
use sift_wal::{WalConsumer, WalEntry, WalRecord};
use tokio::sync::watch;

use super::{count, positioned_entries};
use crate::after_wal::{Event, Flow, Stage, StageFuture};
use crate::plan::Feeds;
use crate::telemetry::Telemetry;

/// How often the store's timed work runs ([`LocalStore::tick`]).
const TICK: Duration = Duration::from_secs(1);

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

/// Sets the layout gauges: merges running, the most parts per partition and the most segments
/// per index being written.
fn refresh_layout(store: &LocalStore, telemetry: &Telemetry) {
    telemetry
        .storage_index_merges
        .set(i64::try_from(store.merge_stats().running).unwrap_or(i64::MAX));
    let layout = store.layout();
    for (counts, family) in [
        (&layout.parts, &telemetry.storage_partition_parts),
        (&layout.index_segments, &telemetry.storage_index_segments),
    ] {
        let mut most: BTreeMap<sift_proto::SignalKind, usize> = BTreeMap::new();
        for ((table, _), n) in counts {
            if !table.is_derived() {
                let entry = most.entry(table.signal()).or_default();
                *entry = (*entry).max(*n);
            }
        }
        for (signal, n) in most {
            family
                .get_or_create(&crate::telemetry::SignalLabels::new(signal))
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

fn refresh_disk(store: &LocalStore, telemetry: &Telemetry) {
    let disk = store.disk_bytes();
    for (&table, &bytes) in &disk {
        if table.is_derived() {
            continue;
        }
        let mut bytes = bytes;
        if table == Table::Metrics {
            // A metric's storage: its points and the tables made from them.
            bytes += disk
                .iter()
                .filter(|(t, _)| t.is_derived())
                .map(|(_, b)| *b)
                .sum::<u64>();
        }
        telemetry
            .storage_disk_bytes
            .get_or_create(&crate::telemetry::SignalLabels::new(table.signal()))
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
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
    let maintenance = tokio::spawn(maintain(store.clone(), telemetry.clone(), stop.clone()));
    let stage = StorageStage {
        name,
        store,
        feeds,
        telemetry,
        queue_bytes,
        published: 0,
    };
    crate::after_wal::drive(stage, consumer, stop).await;
    // A merge under way finishes (it is crash-safe either way); no new one starts.
    maintenance.abort();
}

/// Runs the store's retention and compaction when due, until `stop`.
async fn maintain(store: Arc<LocalStore>, telemetry: Arc<Telemetry>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => continue,
        }
        match blocking(&store, |s| Ok(s.maintain_if_due())).await {
            Ok(None) => {}
            Ok(Some(retention)) => {
                for (table, bytes) in &retention.bytes {
                    telemetry
                        .storage_retention_freed_bytes
                        .get_or_create(&crate::telemetry::SignalLabels::new(table.signal()))
                        .inc_by(*bytes);
                }
                refresh_disk(&store, &telemetry);
            }
            Err(e) => tracing::error!(error = %e, "storage maintenance failed"),
        }
    }
}

/// The storage exporter as a WAL consumer: records go to [`LocalStore::write`], ticks to
/// [`LocalStore::tick`]; the checkpoint follows the store's durable position.
struct StorageStage {
    name: String,
    store: Arc<LocalStore>,
    feeds: Feeds,
    telemetry: Arc<Telemetry>,
    queue_bytes: prometheus_client::metrics::gauge::Gauge,
    /// The published position when the disk gauges were last set.
    published: u64,
}

impl StorageStage {
    async fn on_tick(&mut self) {
        let (store, telemetry) = (&self.store, &self.telemetry);
        let report = blocking(store, |s| Ok(s.tick())).await.unwrap_or_else(|e| {
            tracing::error!(exporter = %self.name, error = %e, "storage tick failed");
            TickReport::default()
        });
        telemetry
            .storage_damaged_files
            .set(i64::try_from(store.damaged_files()).unwrap_or(i64::MAX));
        refresh_layout(store, telemetry);
        // Flushes also happen in `write`: the disk changed whenever the published position did.
        let published = store.published_position();
        if report.flushed || published != self.published {
            refresh_disk(store, telemetry);
            self.published = published;
        }
    }

    /// Stores a batch of records. While the store is behind (its head full until a failed flush
    /// succeeds) the same records are offered again every tick, with the store's timed work
    /// (which retries the flush) in between; they wait in the WAL, so its limit makes the
    /// receivers refuse instead of memory growing.
    async fn on_records(&mut self, records: Vec<WalRecord>, stop: &mut watch::Receiver<bool>) -> Flow {
        let Some(end) = records.last().map(|r| r.end) else {
            return Flow::Handled(None);
        };
        let batch = positioned_entries(&self.name, &records, &self.feeds);
        let counted: Vec<WalEntry> = batch.iter().map(|(_, entry)| entry.clone()).collect();
        let mut behind_since = None;
        loop {
            let (name, store, telemetry) = (&self.name, &self.store, &self.telemetry);
            let attempt = batch.clone();
            match blocking(store, move |s| s.write(end, attempt)).await {
                Ok(rows) => {
                    if let Some(since) = behind_since {
                        tracing::info!(exporter = %name, waited = ?Instant::elapsed(&since), "store caught up");
                    }
                    count(&telemetry.exporter_sent, name, &counted, &Default::default());
                    for (table, n) in rows {
                        if !table.is_derived() {
                            telemetry
                                .storage_rows
                                .get_or_create(&crate::telemetry::SignalLabels::new(table.signal()))
                                .inc_by(n);
                        }
                    }
                    return Flow::Handled(Some(end));
                }
                Err(StoreCallError::Store(StorageError::Behind(why))) => {
                    if behind_since.is_none() {
                        tracing::warn!(exporter = %name, reason = %why, "store behind; records wait in the WAL");
                        behind_since = Some(Instant::now());
                    }
                    tokio::select! {
                        () = tokio::time::sleep(TICK) => {}
                        () = crate::after_wal::stopped(stop) => return Flow::Stopped,
                    }
                    self.on_tick().await;
                }
                Err(e) => {
                    tracing::error!(exporter = %name, error = %e, "cannot store batch");
                    count(&telemetry.exporter_failed, name, &counted, &Default::default());
                    return Flow::Handled(Some(end));
                }
            }
        }
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
        stop: &'a mut watch::Receiver<bool>,
    ) -> StageFuture<'a, Flow> {
        Box::pin(async move {
            match event {
                Event::Records(records) => self.on_records(records, stop).await,
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
        Box::pin(async {
            if let Err(e) = blocking(&self.store, LocalStore::flush).await {
                tracing::error!(exporter = %self.name, error = %e, "storage flush at shutdown failed; the rows stay in the WAL");
            }
        })
    }
}
