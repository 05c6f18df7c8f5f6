//! `debug`: counts and one-line summaries of each batch in Sift's log, like the Collector's debug
//! exporter. `detailed` logs every request as OTLP/JSON.

use prost::Message;
use sift_config::Verbosity;
use sift_proto::otlp::common::v1::any_value;
use sift_proto::otlp::resource::v1::Resource;
use sift_proto::{with_signal, Signal};
use sift_storage::WalEntry;

use super::{Delivery, ExportError, ExportFuture, Exporter};

pub(super) struct DebugExporter {
    name: String,
    verbosity: Verbosity,
}

impl DebugExporter {
    pub(super) fn new(name: String, verbosity: Verbosity) -> Self {
        DebugExporter { name, verbosity }
    }

    fn log(&self, entry: &WalEntry) -> Result<(), prost::DecodeError> {
        with_signal!(entry.signal, S => {
            let request = <S as Signal>::Request::decode(entry.body.clone())?;
            let items = S::item_count(&request);
            tracing::info!(exporter = %self.name, signal = %entry.signal, pipeline = %entry.pipeline, items, "{} {}", items, entry.signal.item_name());
            if self.verbosity == Verbosity::Detailed {
                tracing::info!(exporter = %self.name, signal = %entry.signal, "{}", S::encode_json(&request));
            }
        });
        if self.verbosity == Verbosity::Normal {
            for service in services(entry)? {
                tracing::info!(exporter = %self.name, signal = %entry.signal, service = %service, "resource");
            }
        }
        Ok(())
    }
}

fn service_name(resource: Option<&Resource>) -> String {
    let found = resource.and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"));
    match found.and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(name)) => name.clone(),
        _ => "unknown_service".to_owned(),
    }
}

fn services(entry: &WalEntry) -> Result<Vec<String>, prost::DecodeError> {
    use sift_proto::SignalKind;
    let body = entry.body.clone();
    Ok(match entry.signal {
        SignalKind::Traces => <sift_proto::Traces as Signal>::Request::decode(body)?
            .resource_spans
            .iter()
            .map(|r| service_name(r.resource.as_ref()))
            .collect(),
        SignalKind::Logs => <sift_proto::Logs as Signal>::Request::decode(body)?
            .resource_logs
            .iter()
            .map(|r| service_name(r.resource.as_ref()))
            .collect(),
        SignalKind::Metrics => <sift_proto::Metrics as Signal>::Request::decode(body)?
            .resource_metrics
            .iter()
            .map(|r| service_name(r.resource.as_ref()))
            .collect(),
    })
}

impl Exporter for DebugExporter {
    fn export<'a>(&'a mut self, batch: &'a [WalEntry]) -> ExportFuture<'a> {
        Box::pin(async move {
            for entry in batch {
                self.log(entry)
                    .map_err(|e| ExportError::Permanent(format!("undecodable {} entry: {e}", entry.signal)))?;
            }
            Ok(Delivery::default())
        })
    }
}
