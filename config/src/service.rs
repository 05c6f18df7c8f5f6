//! `service.pipelines`: which receivers feed which processors and exporters, per signal.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::component::ComponentId;
use crate::error::{join, typed, ConfigError};

/// The signal a pipeline carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PipelineSignal {
    /// Spans.
    Traces,
    /// Log records.
    Logs,
    /// Metric data points.
    Metrics,
}

impl PipelineSignal {
    /// The signal's name as in pipeline ids.
    pub fn as_str(self) -> &'static str {
        match self {
            PipelineSignal::Traces => "traces",
            PipelineSignal::Logs => "logs",
            PipelineSignal::Metrics => "metrics",
        }
    }

    fn parse(text: &str) -> Option<PipelineSignal> {
        Some(match text {
            "traces" => PipelineSignal::Traces,
            "logs" => PipelineSignal::Logs,
            "metrics" => PipelineSignal::Metrics,
            _ => return None,
        })
    }
}

/// A pipeline id: a signal, optionally named (`traces`, `logs/audit`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PipelineId {
    /// What it carries.
    pub signal: PipelineSignal,
    /// Optional name after the slash.
    pub name: Option<String>,
}

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{}/{name}", self.signal.as_str()),
            None => f.write_str(self.signal.as_str()),
        }
    }
}

/// One pipeline's wiring.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// Where data enters.
    pub receivers: Vec<ComponentId>,
    /// Applied in order.
    pub processors: Vec<ComponentId>,
    /// Where data goes; each exporter runs at its own pace.
    pub exporters: Vec<ComponentId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    #[serde(default)]
    pipelines: BTreeMap<String, RawPipeline>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    #[serde(default)]
    receivers: Vec<String>,
    #[serde(default)]
    processors: Vec<String>,
    #[serde(default)]
    exporters: Vec<String>,
}

fn ids(path: &str, names: Vec<String>, errors: &mut Vec<ConfigError>) -> Vec<ComponentId> {
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        match ComponentId::parse(&name) {
            Ok(id) if out.contains(&id) => {
                errors.push(ConfigError::new(
                    format!("{path}[{i}]"),
                    format!("{name:?} is listed twice"),
                ));
            }
            Ok(id) => out.push(id),
            Err(message) => errors.push(ConfigError::new(format!("{path}[{i}]"), message)),
        }
    }
    out
}

/// Parses `service` into pipelines, collecting problems into `errors`.
pub(crate) fn pipelines(service: Value, errors: &mut Vec<ConfigError>) -> BTreeMap<PipelineId, PipelineConfig> {
    let service = if service.is_null() {
        Value::Object(Default::default())
    } else {
        service
    };
    let raw: RawService = match typed(service, "service") {
        Ok(raw) => raw,
        Err(error) => {
            errors.push(error);
            return BTreeMap::new();
        }
    };
    let mut out = BTreeMap::new();
    for (key, pipeline) in raw.pipelines {
        let path = join("service.pipelines", &key);
        let (signal, name) = match key.split_once('/') {
            Some((signal, name)) => (signal, Some(name.to_owned())),
            None => (key.as_str(), None),
        };
        let Some(signal) = PipelineSignal::parse(signal) else {
            errors.push(ConfigError::new(
                path,
                format!("unknown signal {signal:?} (expected traces, logs or metrics)"),
            ));
            continue;
        };
        if name.as_deref() == Some("") {
            errors.push(ConfigError::new(path, "pipeline name after / must not be empty"));
            continue;
        }
        let receivers = ids(&join(&path, "receivers"), pipeline.receivers, errors);
        let processors = ids(&join(&path, "processors"), pipeline.processors, errors);
        let exporters = ids(&join(&path, "exporters"), pipeline.exporters, errors);
        if receivers.is_empty() {
            errors.push(ConfigError::new(
                join(&path, "receivers"),
                "at least one receiver is required",
            ));
        }
        if exporters.is_empty() {
            errors.push(ConfigError::new(
                join(&path, "exporters"),
                "at least one exporter is required",
            ));
        }
        out.insert(
            PipelineId { signal, name },
            PipelineConfig {
                receivers,
                processors,
                exporters,
            },
        );
    }
    out
}
