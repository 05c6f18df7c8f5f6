//! Processors: stages that change a request before it is written ahead. They run inside
//! [`crate::pipeline::Ingest`], per pipeline, in the configured order, so nothing they remove is
//! ever buffered, written to disk, forwarded or logged.
//!
//! Each configured processor is a [`ProcessorHandle`] whose rules can be swapped at run time
//! (SIGHUP) without touching the pipelines that use it.

pub mod redaction;

use std::sync::{Arc, RwLock};

use sift_config::{ComponentId, ProcessorConfig};
use sift_proto::Signal;

use crate::telemetry::Telemetry;
use redaction::Redactor;

/// The live rules of one configured processor.
#[derive(Clone)]
pub struct ProcessorHandle {
    id: ComponentId,
    rules: Arc<RwLock<Arc<Redactor>>>,
}

impl ProcessorHandle {
    /// Builds the ingest-time processor for a config entry (`None` for `tail_sampling`, which
    /// runs after the WAL as its own task).
    pub fn build(id: &ComponentId, config: &ProcessorConfig) -> Option<ProcessorHandle> {
        match config {
            ProcessorConfig::Redaction(redaction) => Some(ProcessorHandle {
                id: id.clone(),
                rules: Arc::new(RwLock::new(Arc::new(Redactor::new(redaction)))),
            }),
            ProcessorConfig::TailSampling(_) => None,
        }
    }

    /// The processor's id.
    pub fn id(&self) -> &ComponentId {
        &self.id
    }

    /// Swaps in the rules of `config` (same processor type); requests already being processed
    /// finish with the old rules.
    pub fn reload(&self, config: &ProcessorConfig) {
        match config {
            ProcessorConfig::Redaction(redaction) => {
                *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Redactor::new(redaction));
            }
            ProcessorConfig::TailSampling(_) => {
                tracing::warn!(processor = %self.id, "a redaction processor cannot become tail_sampling; restart to change types");
            }
        }
    }

    /// Processes `request`; returns whether anything in it changed.
    pub fn process<S: Signal>(&self, request: &mut S::Request, telemetry: &Telemetry) -> bool {
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner()).clone();
        let counts = rules.redact::<S>(request);
        counts.record(S::KIND.as_str(), telemetry);
        counts.changed()
    }
}
