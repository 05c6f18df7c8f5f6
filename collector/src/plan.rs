//! The pipeline graph: what a [`Config`] asks Sift to run, worked out once, without sockets or
//! files, so it can be tested per configuration. [`crate::service::serve`] runs a [`Plan`].
//!
//! Data flows in two halves around the WAL:
//! - before it, [`Route`]s: each receiver's requests of a signal go through a pipeline's ingest
//!   processors (redaction) and are written as [`EntryKind::Received`] entries of that pipeline;
//! - after it, WAL consumers that each select their [`Feed`]s, the (pipeline, kind) pairs of
//!   entries they read:
//!   - a [`SamplerPlan`] (a traces pipeline with `tail_sampling`) reads the pipeline's received
//!     spans and writes `sampled` entries (kept traces) and `dropped` entries (ids of the rest);
//!   - a [`FollowerPlan`] (a logs pipeline with the same `tail_sampling` processor) reads the
//!     pipeline's received logs and writes `sampled` entries once their trace is decided;
//!   - an [`ExporterPlan`] reads, for each pipeline that lists it, that pipeline's `sampled`
//!     entries if a sampler or follower stands in between, its `received` entries otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use sift_config::{ComponentId, Config, ExporterConfig, PipelineSignal, ProcessorConfig, TailSamplingConfig};
use sift_proto::SignalKind;
use sift_wal::{EntryKind, WalEntry};

/// A stream of WAL entries a consumer reads: the entries of one kind of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Feed {
    /// The pipeline (`traces`, `logs/audit`).
    pub pipeline: String,
    /// Which stage wrote the entries.
    pub kind: EntryKind,
}

impl Feed {
    /// Whether `entry` belongs to this feed.
    pub fn matches(&self, entry: &WalEntry) -> bool {
        entry.kind == self.kind && entry.pipeline == self.pipeline
    }
}

impl fmt::Display for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.pipeline, self.kind.as_str())
    }
}

/// The feeds a consumer reads; an entry is wanted if any feed matches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Feeds(pub BTreeSet<Feed>);

impl Feeds {
    /// Whether an entry is wanted.
    pub fn wants(&self, entry: &WalEntry) -> bool {
        self.0.iter().any(|feed| feed.matches(entry))
    }
}

/// Where one receiver's requests of one signal go before the WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The receiver.
    pub receiver: ComponentId,
    /// The signal.
    pub signal: SignalKind,
    /// The pipeline whose `received` entries the requests become.
    pub pipeline: String,
    /// Processors applied before the WAL, in order (`tail_sampling` runs after it: not listed).
    pub processors: Vec<ComponentId>,
}

/// The tail sampler of a traces pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerPlan {
    /// The traces pipeline (its received spans are the input).
    pub pipeline: String,
    /// The `tail_sampling` processor it runs.
    pub processor: ComponentId,
    /// Its settings.
    pub config: TailSamplingConfig,
}

/// The logs pipeline that follows a traces pipeline's sampling decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerPlan {
    /// The logs pipeline.
    pub pipeline: String,
    /// The traces pipeline whose sampler decides.
    pub follows: String,
    /// How long a record waits for its trace's decision before it is kept anyway: two decision
    /// waits and a second, as a log may arrive before its trace's first span.
    pub wait: Duration,
}

/// One exporter and what it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterPlan {
    /// The exporter.
    pub id: ComponentId,
    /// Whether it is the embedded store (run by its own stage) rather than a plain exporter.
    pub storage: bool,
    /// What it reads.
    pub feeds: Feeds,
}

/// Everything `serve` runs for a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Receiver → pipeline routes before the WAL.
    pub routes: Vec<Route>,
    /// Tail samplers, one per sampled traces pipeline.
    pub samplers: Vec<SamplerPlan>,
    /// Logs pipelines following a sampler.
    pub followers: Vec<FollowerPlan>,
    /// Exporters used by some pipeline, in id order.
    pub exporters: Vec<ExporterPlan>,
    /// Exporters defined but used by no pipeline (not run).
    pub unused_exporters: Vec<ComponentId>,
}

/// A configuration that cannot be planned (validation normally catches these first).
#[derive(Debug, thiserror::Error)]
#[error("pipeline {pipeline}: {message}")]
pub struct PlanError {
    pipeline: String,
    message: String,
}

fn signal_kind(signal: PipelineSignal) -> SignalKind {
    match signal {
        PipelineSignal::Traces => SignalKind::Traces,
        PipelineSignal::Logs => SignalKind::Logs,
        PipelineSignal::Metrics => SignalKind::Metrics,
    }
}

impl Plan {
    /// Plans a validated configuration.
    pub fn new(config: &Config) -> Result<Plan, PlanError> {
        let mut plan = Plan {
            routes: Vec::new(),
            samplers: Vec::new(),
            followers: Vec::new(),
            exporters: Vec::new(),
            unused_exporters: Vec::new(),
        };
        let mut feeds: BTreeMap<&ComponentId, BTreeSet<Feed>> = BTreeMap::new();
        // Pipelines are ordered traces first, so a follower's sampler is planned before it.
        let mut sampler_of: BTreeMap<&ComponentId, String> = BTreeMap::new();
        for (id, pipeline) in &config.pipelines {
            let name = id.to_string();
            let sampling = pipeline.processors.iter().find_map(|p| match config.processors.get(p) {
                Some(ProcessorConfig::TailSampling(sampling)) => Some((p, sampling)),
                _ => None,
            });
            let ingest: Vec<ComponentId> = pipeline
                .processors
                .iter()
                .filter(|p| matches!(config.processors.get(*p), Some(ProcessorConfig::Redaction(_))))
                .cloned()
                .collect();
            for receiver in &pipeline.receivers {
                plan.routes.push(Route {
                    receiver: receiver.clone(),
                    signal: signal_kind(id.signal),
                    pipeline: name.clone(),
                    processors: ingest.clone(),
                });
            }
            let exported = match (sampling, id.signal) {
                (None, _) => EntryKind::Received,
                (Some((processor, sampling)), PipelineSignal::Traces) => {
                    sampler_of.insert(processor, name.clone());
                    plan.samplers.push(SamplerPlan {
                        pipeline: name.clone(),
                        processor: processor.clone(),
                        config: sampling.as_ref().clone(),
                    });
                    EntryKind::Sampled
                }
                (Some((processor, sampling)), PipelineSignal::Logs) => {
                    let follows = sampler_of.get(processor).cloned().ok_or_else(|| PlanError {
                        pipeline: name.clone(),
                        message: format!("{processor} is used by no traces pipeline to follow"),
                    })?;
                    plan.followers.push(FollowerPlan {
                        pipeline: name.clone(),
                        follows,
                        wait: sampling.decision_wait.0 * 2 + Duration::from_secs(1),
                    });
                    EntryKind::Sampled
                }
                (Some(_), PipelineSignal::Metrics) => {
                    return Err(PlanError {
                        pipeline: name,
                        message: "tail_sampling does not apply to metrics".into(),
                    })
                }
            };
            for exporter in &pipeline.exporters {
                feeds.entry(exporter).or_default().insert(Feed {
                    pipeline: name.clone(),
                    kind: exported,
                });
            }
        }
        for (id, exporter) in &config.exporters {
            match feeds.remove(id) {
                Some(feeds) => plan.exporters.push(ExporterPlan {
                    id: id.clone(),
                    storage: matches!(exporter, ExporterConfig::Storage(_)),
                    feeds: Feeds(feeds),
                }),
                None => plan.unused_exporters.push(id.clone()),
            }
        }
        if let Some((exporter, _)) = feeds.into_iter().next() {
            return Err(PlanError {
                pipeline: String::new(),
                message: format!("exporter {exporter} is not defined"),
            });
        }
        Ok(plan)
    }
}

/// One line per element: how the plan is logged at startup and checked by tests.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(", ");
        for route in &self.routes {
            writeln!(
                f,
                "route {} {} -> [{}] -> {}",
                route.receiver,
                route.signal.as_str(),
                list(&mut route.processors.iter().map(ToString::to_string)),
                Feed {
                    pipeline: route.pipeline.clone(),
                    kind: EntryKind::Received
                }
            )?;
        }
        for sampler in &self.samplers {
            writeln!(
                f,
                "sampler {} ({}): {}:received -> {0}:sampled, {0}:dropped",
                sampler.pipeline, sampler.processor, sampler.pipeline
            )?;
        }
        for follower in &self.followers {
            writeln!(
                f,
                "follower {} (decisions of {}, wait {:?}): {0}:received -> {0}:sampled",
                follower.pipeline, follower.follows, follower.wait
            )?;
        }
        for exporter in &self.exporters {
            let kind = if exporter.storage { "store" } else { "exporter" };
            writeln!(
                f,
                "{kind} {} <- {}",
                exporter.id,
                list(&mut exporter.feeds.0.iter().map(ToString::to_string))
            )?;
        }
        for unused in &self.unused_exporters {
            writeln!(f, "unused exporter {unused}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(example: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/examples")
            .join(example);
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{example}: {e}"));
        Plan::new(&config).unwrap().to_string()
    }

    fn lines(text: &str) -> String {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn default_samples_traces_and_stores_everything() {
        let expected = "
            route otlp traces -> [redaction] -> traces:received
            route otlp logs -> [redaction] -> logs:received
            route otlp metrics -> [redaction] -> metrics:received
            sampler traces (tail_sampling): traces:received -> traces:sampled, traces:dropped
            store storage <- logs:received, metrics:received, traces:sampled
        ";
        assert_eq!(plan_of("default.yaml"), lines(expected));
        // The embedded defaults are the same graph.
        assert_eq!(
            Plan::new(&Config::embedded_default()).unwrap().to_string(),
            lines(expected)
        );
    }

    #[test]
    fn benchmark_nop_exports_what_was_received() {
        assert_eq!(
            plan_of("benchmark-nop.yaml"),
            lines(
                "
                route otlp traces -> [] -> traces:received
                route otlp logs -> [] -> logs:received
                route otlp metrics -> [] -> metrics:received
                exporter nop <- logs:received, metrics:received, traces:received
                "
            )
        );
    }

    #[test]
    fn debug_and_file_share_feeds_per_exporter() {
        assert_eq!(
            plan_of("debug-and-file.yaml"),
            lines(
                "
                route otlp traces -> [] -> traces:received
                route otlp logs -> [] -> logs:received
                route otlp metrics -> [] -> metrics:received
                exporter debug <- logs:received, metrics:received, traces:received
                exporter file/all <- logs:received, traces:received
                "
            )
        );
    }

    #[test]
    fn forward_fans_out_to_three_exporters() {
        assert_eq!(
            plan_of("forward.yaml"),
            lines(
                "
                route otlp traces -> [redaction] -> traces:received
                route otlp logs -> [redaction] -> logs:received
                route otlp metrics -> [redaction] -> metrics:received
                exporter file <- logs:received, traces:received
                exporter otlp/tempo <- metrics:received, traces:received
                exporter otlp/vendor <- logs:received, traces:received
                "
            )
        );
    }

    #[test]
    fn redaction_hmac_uses_its_named_processor() {
        assert_eq!(
            plan_of("redaction-hmac.yaml"),
            lines(
                "
                route otlp traces -> [redaction/strict] -> traces:received
                route otlp logs -> [redaction/strict] -> logs:received
                exporter file <- logs:received, traces:received
                "
            )
        );
    }

    #[test]
    fn logs_follow_their_traces_pipeline_and_unused_exporters_are_listed() {
        let config = Config::from_yaml(
            "
            receivers:
              otlp: { protocols: { http: { endpoint: 127.0.0.1:0 } } }
              otlp/b: { protocols: { grpc: { endpoint: 127.0.0.1:0 } } }
            processors:
              tail_sampling/checkout: { decision_wait: 2s, policies: [{ name: all, type: always_sample }] }
            exporters: { storage: {}, debug: {}, nop: {} }
            service:
              pipelines:
                logs/checkout: { receivers: [otlp], processors: [tail_sampling/checkout], exporters: [storage] }
                traces/checkout: { receivers: [otlp, otlp/b], processors: [tail_sampling/checkout], exporters: [storage, debug] }
                metrics: { receivers: [otlp/b], exporters: [storage] }
            ",
        )
        .unwrap();
        assert_eq!(
            Plan::new(&config).unwrap().to_string(),
            lines(
                "
                route otlp traces -> [] -> traces/checkout:received
                route otlp/b traces -> [] -> traces/checkout:received
                route otlp logs -> [] -> logs/checkout:received
                route otlp/b metrics -> [] -> metrics:received
                sampler traces/checkout (tail_sampling/checkout): traces/checkout:received -> traces/checkout:sampled, traces/checkout:dropped
                follower logs/checkout (decisions of traces/checkout, wait 5s): logs/checkout:received -> logs/checkout:sampled
                exporter debug <- traces/checkout:sampled
                store storage <- logs/checkout:sampled, metrics:received, traces/checkout:sampled
                unused exporter nop
                "
            )
        );
    }

    #[test]
    fn feeds_select_by_kind_and_pipeline() {
        let feeds = Feeds(BTreeSet::from([Feed {
            pipeline: "traces".into(),
            kind: EntryKind::Sampled,
        }]));
        let entry = |kind, pipeline: &str| WalEntry {
            kind,
            signal: SignalKind::Traces,
            pipeline: pipeline.into(),
            items: 1,
            body: Default::default(),
        };
        assert!(feeds.wants(&entry(EntryKind::Sampled, "traces")));
        assert!(!feeds.wants(&entry(EntryKind::Received, "traces")));
        assert!(!feeds.wants(&entry(EntryKind::Dropped, "traces")));
        assert!(!feeds.wants(&entry(EntryKind::Sampled, "traces/other")));
    }
}
