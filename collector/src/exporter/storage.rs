//! The `storage` exporter: a thin adapter from the WAL to the store's write loop
//! ([`LocalStore::write`], [`LocalStore::tick`]), which owns the replay skip, flush, compaction and
//! retention timing. Retention and compaction run beside it ([`LocalStore::maintain_if_due`] on a
//! thread of their own), so a merge never holds up the write loop; both threads run below the
//! receivers' priority ([`Lane`]). The checkpoint follows [`LocalStore::durable_position`] (on the one consumer
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

type Job = Box<dyn FnOnce(&LocalStore) + Send>;

/// A thread of the store's own that runs its calls one at a time, off the async workers and at
/// [`sift_query::STORE_NICE`]: the receivers and a query in its first moments go first when both
/// want the CPU, and the index writers' threads started from it (which inherit its priority) run
/// as low. Bounded: each lane has one caller, which waits for each answer.
struct Lane {
    jobs: tokio::sync::mpsc::Sender<Job>,
}

impl Lane {
    fn start(name: &str, store: Arc<LocalStore>) -> std::io::Result<Lane> {
        let (jobs, mut receiver) = tokio::sync::mpsc::channel::<Job>(1);
        std::thread::Builder::new().name(name.into()).spawn(move || {
            sift_query::lower_this_thread(sift_query::STORE_NICE);
            while let Some(job) = receiver.blocking_recv() {
                // A panicking call answers its caller with an error (its sender is dropped) and
                // the lane goes on.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&store)));
            }
        })?;
        Ok(Lane { jobs })
    }

    /// Runs `work` on the lane's thread and waits for its answer.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&LocalStore) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StoreCallError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |store| {
            let _ = answer.send(work(store));
        });
        self.jobs.send(job).await.map_err(|_| StoreCallError::Gone)?;
        Ok(answered.await.map_err(|_| StoreCallError::Gone)??)
    }
}

/// A store call made off the async workers that failed.
#[derive(Debug, thiserror::Error)]
enum StoreCallError {
    /// The store said no.
    #[error(transparent)]
    Store(#[from] StorageError),
    /// The call panicked, or its thread is gone.
    #[error("storage call did not finish (it panicked, or the storage thread is gone)")]
    Gone,
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
    let lanes = Lane::start("sift-store", store.clone())
        .and_then(|lane| Ok((lane, Lane::start("sift-store-merge", store.clone())?)));
    let (lane, merge_lane) = match lanes {
        Ok(lanes) => lanes,
        Err(e) => {
            // Nothing is consumed: the records stay in the WAL (whose limit makes the receivers
            // refuse) for the next start.
            tracing::error!(exporter = %name, error = %e, "cannot start the storage threads; storage stopped");
            return;
        }
    };
    let maintenance = tokio::spawn(maintain(merge_lane, store.clone(), telemetry.clone(), stop.clone()));
    let stage = StorageStage {
        name,
        lane,
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
async fn maintain(lane: Lane, store: Arc<LocalStore>, telemetry: Arc<Telemetry>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => continue,
        }
        match lane.run(|s| Ok(s.maintain_if_due())).await {
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
    /// Where the store's calls run.
    lane: Lane,
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
        let report = self.lane.run(|s| Ok(s.tick())).await.unwrap_or_else(|e| {
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
            let (name, telemetry) = (&self.name, &self.telemetry);
            let attempt = batch.clone();
            match self.lane.run(move |s| s.write(end, attempt)).await {
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
            if let Err(e) = self.lane.run(LocalStore::flush).await {
                tracing::error!(exporter = %self.name, error = %e, "storage flush at shutdown failed; the rows stay in the WAL");
            }
        })
    }
}
