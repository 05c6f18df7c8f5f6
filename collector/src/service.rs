//! Runs Sift: opens the WAL, runs the configuration's [`Plan`] (a task per stage after the WAL:
//! samplers, followers, exporters, each a WAL consumer), the query server and the receivers, then
//! waits for a signal. Shutdown order keeps every acknowledged record:
//! stop accepting → finish in-flight requests → close the WAL (synced) → let exporters drain what
//! is committed (bounded wait; the rest stays in the WAL for the next start) → checkpoint → exit.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sift_config::{Config, ProcessorConfig, ReceiverConfig};
use sift_query::NotReady;
use sift_storage::{LocalStore, StoreOptions};
use sift_wal::{Wal, WalOptions, WalStats};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::after_wal::tail_sampling::control::Samplers;
use crate::after_wal::tail_sampling::{follower, sampler};
use crate::exporter;
use crate::pipeline::Ingest;
use crate::plan::Plan;
use crate::receiver;
use crate::telemetry::Telemetry;

/// How long shutdown waits for in-flight requests, then for exporters to drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Free space the WAL's filesystem needs, after a write failed for lack of it, before Sift says
/// it is ready again (two full write groups).
const DISK_HEADROOM: u64 = 32 << 20;
/// How long Sift says it is not ready after a WAL write failed with an I/O error other than a
/// full disk (the next write shows whether it persists).
const IO_ERROR_HOLD: Duration = Duration::from_secs(5);

/// A WAL consumer task, built before any of them is started.
type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// What `sift serve` was asked to run.
pub struct ServeOptions {
    /// The validated configuration.
    pub config: Config,
    /// The file it came from (re-read on SIGHUP), if any.
    pub config_path: Option<PathBuf>,
    /// Overrides `storage.path`.
    pub data_dir: Option<PathBuf>,
}

struct Health {
    telemetry: Arc<Telemetry>,
    wal: WalStats,
    ingest: Arc<Ingest>,
    ready: AtomicBool,
}

impl sift_query::Health for Health {
    fn metrics_text(&self) -> String {
        self.telemetry
            .wal_bytes
            .set(i64::try_from(self.wal.disk_bytes()).unwrap_or(i64::MAX));
        self.telemetry.render()
    }

    fn readiness(&self) -> Result<(), NotReady> {
        if !self.ready.load(Ordering::Relaxed) {
            return Err(NotReady::NotRunning);
        }
        // Refusing, and still nearly full: ready again as soon as exporters make room, even
        // before the next request proves it.
        let nearly_full = self.wal.disk_bytes() >= self.wal.max_bytes() / 10 * 9;
        if self.ingest.is_refusing() && nearly_full {
            return Err(NotReady::WalFull);
        }
        // The disk refused the last write: not ready while it is still full (or, for other I/O
        // errors, for a few seconds), so that traffic comes back once a write can succeed.
        if let Some(failure) = self.wal.write_failure() {
            let still_failing = if failure.disk_full {
                self.wal.free_disk_bytes().is_none_or(|free| free < DISK_HEADROOM)
            } else {
                failure.at.elapsed() < IO_ERROR_HOLD
            };
            if still_failing {
                return Err(NotReady::WalCannotWrite(failure.message));
            }
        }
        Ok(())
    }
}

/// Records every query-port request in `sift_query_duration_seconds{endpoint}` (the matched route,
/// so ids in paths do not explode the label set).
fn timed(router: axum::Router, telemetry: Arc<Telemetry>) -> axum::Router {
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let telemetry = telemetry.clone();
            async move {
                let endpoint = request
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
                let started = std::time::Instant::now();
                let response = next.run(request).await;
                telemetry
                    .query_duration
                    .get_or_create(&crate::telemetry::EndpointLabels { endpoint })
                    .observe(started.elapsed().as_secs_f64());
                response
            }
        },
    ))
}

/// Opens the embedded store under the data directory with the `storage` section's settings.
fn open_store(data_dir: &std::path::Path, config: &Config) -> anyhow::Result<Arc<LocalStore>> {
    let options = StoreOptions::from_config(&config.storage);
    let store =
        LocalStore::open(data_dir, options).with_context(|| format!("opening the store in {}", data_dir.display()))?;
    tracing::info!(data_dir = %data_dir.display(), position = store.published_position(), "store open");
    Ok(Arc::new(store))
}

/// Resolves when `flag` becomes true.
async fn when_set(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

/// Runs until SIGINT or SIGTERM, then shuts down cleanly.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let config = options.config;
    let data_dir = options.data_dir.unwrap_or_else(|| config.storage.path.clone());
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let lock = File::create(data_dir.join(".lock")).context("creating the data directory lock")?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "data directory {} is in use by another sift process",
            data_dir.display()
        )
    })?;

    let mut wal = Wal::open(&data_dir.join("wal"), WalOptions::from_config(&config.storage.wal))?;
    let recovery = wal.recovery().clone();
    if let Some(aside) = &recovery.kept_aside {
        tracing::error!(
            truncated_bytes = recovery.truncated_bytes,
            kept_at = %aside.display(),
            "write-ahead log had a damaged tail that a crash does not explain: its bytes were cut from the log and kept for inspection"
        );
    } else if recovery.truncated_bytes > 0 || recovery.corrupt_bytes > 0 {
        tracing::warn!(
            truncated_bytes = recovery.truncated_bytes,
            corrupt_bytes = recovery.corrupt_bytes,
            records_kept = recovery.tail_records,
            "write-ahead log had a damaged tail; intact records were kept"
        );
    }
    tracing::info!(data_dir = %data_dir.display(), wal_bytes = wal.disk_bytes(), "write-ahead log open");

    let plan = Plan::new(&config)?;
    tracing::debug!("pipeline plan:\n{plan}");
    for unused in &plan.unused_exporters {
        tracing::warn!(exporter = %unused, "exporter is not used by any pipeline");
    }
    let telemetry = Arc::new(Telemetry::new());
    let ingest = Arc::new(Ingest::new(&plan, &config, wal.appender(), telemetry.clone()));

    // Every WAL consumer is registered before any task starts: a consumer that committed first
    // could otherwise let the WAL delete segments a consumer registered later still needs.
    let (stop_exporters, exporters_stop) = watch::channel(false);
    let mut sampler_tasks: Vec<Task> = Vec::new();
    let mut exporter_tasks: Vec<Task> = Vec::new();
    let mut controls = Samplers::default();
    for planned in &plan.samplers {
        let control = sampler::control(&planned.pipeline, &planned.config);
        controls.0.push(control.clone());
        sampler_tasks.push(Box::pin(sampler::run(
            planned.pipeline.clone(),
            control,
            wal.consumer(&format!("sampler.{}", planned.pipeline)),
            wal.appender(),
            telemetry.clone(),
            exporters_stop.clone(),
        )));
    }
    for planned in &plan.followers {
        let control = controls
            .0
            .iter()
            .find(|c| c.pipeline() == planned.follows)
            .cloned()
            .with_context(|| format!("{} follows {}, which has no sampler", planned.pipeline, planned.follows))?;
        sampler_tasks.push(Box::pin(follower::run(
            planned.pipeline.clone(),
            control,
            planned.wait,
            wal.consumer(&format!("follower.{}", planned.pipeline)),
            wal.appender(),
            telemetry.clone(),
            exporters_stop.clone(),
        )));
    }
    let mut store: Option<Arc<LocalStore>> = None;
    for planned in &plan.exporters {
        let id = &planned.id;
        let consumer = wal.consumer(&format!("exporter.{id}"));
        if planned.storage {
            let opened = open_store(&data_dir, &config)?;
            store = Some(opened.clone());
            exporter_tasks.push(Box::pin(exporter::storage::run(
                id.clone(),
                opened,
                consumer,
                planned.feeds.clone(),
                telemetry.clone(),
                exporters_stop.clone(),
            )));
            continue;
        }
        let built =
            exporter::build(id, &config.exporters[id], &data_dir).with_context(|| format!("building exporter {id}"))?;
        exporter_tasks.push(Box::pin(exporter::run(
            id.clone(),
            built,
            consumer,
            planned.feeds.clone(),
            telemetry.clone(),
            exporters_stop.clone(),
        )));
    }
    let mut samplers = JoinSet::new();
    for task in sampler_tasks {
        samplers.spawn(task);
    }
    let mut exporters = JoinSet::new();
    for task in exporter_tasks {
        exporters.spawn(task);
    }

    // Query API (and /metrics, /healthz, /readyz).
    let health = Arc::new(Health {
        telemetry: telemetry.clone(),
        wal: wal.stats(),
        ingest: ingest.clone(),
        ready: AtomicBool::new(false),
    });
    let (stop_query, query_stop) = watch::channel(false);
    let query_listener = tokio::net::TcpListener::bind(config.query.endpoint.to_bind_string())
        .await
        .with_context(|| format!("binding the query endpoint {}", config.query.endpoint))?;
    tracing::info!(component = "query", address = %query_listener.local_addr()?, "listening");
    let query_server = axum::serve(
        query_listener,
        timed(
            sift_query::router(sift_query::Backends {
                health: health.clone(),
                store: store.clone().map(|s| s as Arc<dyn sift_storage::Store>),
                sampling: (!controls.0.is_empty()).then(|| Arc::new(controls.clone()) as Arc<dyn sift_query::Sampling>),
            }),
            telemetry.clone(),
        ),
    )
    .with_graceful_shutdown(when_set(query_stop));
    let query_server = tokio::spawn(async move { query_server.await });

    // Receivers.
    let (stop_receivers, receivers_stop) = watch::channel(false);
    let mut receivers = JoinSet::new();
    for (id, receiver_config) in &config.receivers {
        let ReceiverConfig::Otlp(otlp) = receiver_config;
        if let Some(grpc) = &otlp.protocols.grpc {
            let (address, server) =
                receiver::grpc::bind(id.clone(), grpc, ingest.clone(), when_set(receivers_stop.clone()))
                    .await
                    .with_context(|| format!("binding {id} gRPC endpoint {}", grpc.endpoint))?;
            tracing::info!(component = %format!("{id}/grpc"), address = %address, "listening");
            receivers.spawn(async move { server.await.map_err(anyhow::Error::from) });
        }
        if let Some(http) = &otlp.protocols.http {
            let (address, server) =
                receiver::http::bind(id.clone(), http, ingest.clone(), when_set(receivers_stop.clone()))
                    .await
                    .with_context(|| format!("binding {id} HTTP endpoint {}", http.endpoint))?;
            tracing::info!(component = %format!("{id}/http"), address = %address, "listening");
            receivers.spawn(async move { server.await.map_err(anyhow::Error::from) });
        }
    }
    health.ready.store(true, Ordering::Relaxed);
    tracing::info!("sift is ready");

    wait_for_shutdown(options.config_path.as_deref(), &ingest, &controls, &config).await;
    health.ready.store(false, Ordering::Relaxed);
    tracing::info!("shutting down: no longer accepting data");

    let _ = stop_receivers.send(true);
    let receivers_done = async {
        while let Some(result) = receivers.join_next().await {
            match result {
                Ok(Err(e)) => tracing::error!(error = %e, "receiver failed"),
                Err(e) => tracing::error!(error = %e, "receiver task failed"),
                Ok(Ok(())) => {}
            }
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, receivers_done).await.is_err() {
        tracing::warn!("in-flight requests did not finish in time");
    }
    drop(ingest);

    tokio::task::spawn_blocking(move || {
        wal.close();
        wal
    })
    .await
    .context("closing the write-ahead log")?;

    let drained = async {
        while samplers.join_next().await.is_some() {}
        while exporters.join_next().await.is_some() {}
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
        tracing::warn!("exporters did not drain in time; the rest stays in the write-ahead log");
        let _ = stop_exporters.send(true);
        let stopped = async {
            while samplers.join_next().await.is_some() {}
            while exporters.join_next().await.is_some() {}
        };
        if tokio::time::timeout(Duration::from_secs(2), stopped).await.is_err() {
            tracing::warn!("an exporter is blocked; leaving it behind");
            samplers.abort_all();
            exporters.abort_all();
        }
    }
    let _ = stop_query.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), query_server).await;
    drop(lock);
    tracing::info!("sift stopped");
    Ok(())
}

/// Waits for SIGINT or SIGTERM. SIGHUP reloads processor rules from the config file.
async fn wait_for_shutdown(
    config_path: Option<&std::path::Path>,
    ingest: &Ingest,
    samplers: &Samplers,
    running: &Config,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut terminate), Ok(mut interrupt), Ok(mut hangup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = terminate.recv() => return,
            _ = interrupt.recv() => return,
            _ = hangup.recv() => reload(config_path, ingest, samplers, running),
        }
    }
}

/// Re-reads the config file and swaps in the rules of every processor it still defines. An invalid
/// file changes nothing. Changes to receivers, exporters or pipelines need a restart.
fn reload(config_path: Option<&std::path::Path>, ingest: &Ingest, samplers: &Samplers, running: &Config) {
    let Some(path) = config_path else {
        tracing::info!("SIGHUP: running on embedded defaults, nothing to reload");
        return;
    };
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            tracing::error!(config = %path.display(), "SIGHUP: configuration rejected, keeping the running rules:\n{errors}");
            return;
        }
    };
    let mut reloaded = 0;
    for (id, handle) in ingest.processors() {
        match config.processors.get(id) {
            Some(processor) => {
                handle.reload(processor);
                reloaded += 1;
            }
            None => {
                tracing::warn!(processor = %id, "SIGHUP: processor no longer in the file; its rules stay until restart")
            }
        }
    }
    for sampler in &samplers.0 {
        let pipeline = config
            .pipelines
            .iter()
            .find(|(id, _)| id.to_string() == sampler.pipeline());
        let sampling = pipeline.and_then(|(_, p)| {
            p.processors.iter().find_map(|id| match config.processors.get(id) {
                Some(ProcessorConfig::TailSampling(sampling)) => Some(sampling),
                _ => None,
            })
        });
        match sampling {
            Some(sampling) => {
                sampler.replace(&sampling.policies, sampling.policies_source.clone());
                reloaded += 1;
            }
            None => tracing::warn!(
                pipeline = sampler.pipeline(),
                "SIGHUP: the pipeline no longer samples; its policies stay until restart"
            ),
        }
    }
    let structure_changed = config.receivers != running.receivers
        || config.exporters != running.exporters
        || config.pipelines != running.pipelines;
    if structure_changed {
        tracing::warn!("SIGHUP: receiver, exporter or pipeline changes take effect on restart");
    }
    tracing::info!(config = %path.display(), rules = reloaded, "SIGHUP: processor rules reloaded");
}
