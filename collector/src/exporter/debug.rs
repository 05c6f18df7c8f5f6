//! `debug`: counts and one-line summaries of each batch in Sift's log, like the Collector's debug
//! exporter. `detailed` logs every request as OTLP/JSON.

use prost::Message;
use sift_config::Verbosity;
use sift_proto::otlp::common::v1::{any_value, KeyValue};
use sift_proto::{with_signal, AttributeSite, Signal};
use sift_wal::WalEntry;

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
            let mut request = <S as Signal>::Request::decode(entry.body.clone())?;
            let items = S::item_count(&request);
            tracing::info!(exporter = %self.name, signal = %entry.signal, pipeline = %entry.pipeline, items, "{} {}", items, entry.signal.item_name());
            match self.verbosity {
                Verbosity::Basic => {}
                Verbosity::Normal => S::visit_attributes(&mut request, &mut |site, attributes| {
                    if site == AttributeSite::Resource {
                        let service = service_name(attributes);
                        tracing::info!(exporter = %self.name, signal = %entry.signal, service = %service, "resource");
                    }
                }),
                Verbosity::Detailed => {
                    let mut text = String::new();
                    S::write_json(&request, &mut text);
                    tracing::info!(exporter = %self.name, signal = %entry.signal, "{text}");
                }
            }
        });
        Ok(())
    }
}

fn service_name(attributes: &[KeyValue]) -> &str {
    let found = attributes.iter().find(|kv| kv.key == "service.name");
    match found.and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(name)) => name,
        _ => "unknown_service",
    }
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
