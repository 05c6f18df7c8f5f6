//! Logs that follow their trace's sampling decision (`tail_sampling` in a logs pipeline).
//!
//! A stage after the WAL that reads the logs pipeline's `received` entries: records without a trace id pass at once; records
//! with one wait until the traces sampler using the same processor has decided their trace, then
//! are kept or dropped with it. A record whose trace is never decided (no spans seen, or a decision
//! forgotten after a restart) is kept once its wait is over: losing logs silently is worse than
//! keeping a few of a dropped trace. Kept records are written back as the pipeline's `sampled`
//! entries, which its exporters read. The checkpoint stays at the oldest waiting record, so a restart
//! re-reads what was waiting (records already emitted may then be emitted again: at-least-once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use sift_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sift_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sift_proto::{Logs, Signal, SignalKind};
use sift_wal::{EntryKind, WalAppender, WalConsumer, WalEntry, WalRecord};
use tokio::sync::watch;

use super::buffer::TraceId;
use super::control::SamplerControl;
use super::sampler::append_with_retry;
use super::trace::{group_by_origin, Origin};
use crate::after_wal::{Event, Flow, Stage, StageFuture};
use crate::telemetry::Telemetry;

/// How often waiting records are checked against decisions.
const TICK: Duration = Duration::from_millis(100);

struct Held {
    trace: TraceId,
    position: u64,
    deadline: Instant,
    origin: Arc<Origin>,
    log: LogRecord,
}

/// Follows the decisions of `control`'s sampler for the logs of `pipeline`.
pub async fn run(
    pipeline: String,
    control: Arc<SamplerControl>,
    wait: Duration,
    consumer: WalConsumer,
    appender: WalAppender,
    telemetry: Arc<Telemetry>,
    stop: watch::Receiver<bool>,
) {
    let follower = Follower {
        pipeline,
        control,
        wait,
        appender,
        telemetry,
        held: Vec::new(),
    };
    crate::after_wal::drive(follower, consumer, stop).await;
}

/// The log follower of one logs pipeline: the records waiting for their trace's decision.
struct Follower {
    pipeline: String,
    control: Arc<SamplerControl>,
    wait: Duration,
    appender: WalAppender,
    telemetry: Arc<Telemetry>,
    held: Vec<Held>,
}

impl Stage for Follower {
    fn name(&self) -> &str {
        &self.pipeline
    }

    fn tick(&self) -> Option<Duration> {
        Some(TICK)
    }

    fn handle<'a>(
        &'a mut self,
        event: Event,
        _consumer: &'a mut WalConsumer,
        stop: &'a mut watch::Receiver<bool>,
    ) -> StageFuture<'a, Flow> {
        Box::pin(async move {
            let mut ready: Vec<(Arc<Origin>, LogRecord)> = Vec::new();
            let mut end = None;
            if let Event::Records(records) = &event {
                end = records.last().map(|r| r.end);
                take_in(&self.pipeline, records, self.wait, &mut self.held, &mut ready);
            }
            let now = Instant::now();
            let mut waiting = Vec::with_capacity(self.held.len());
            for h in self.held.drain(..) {
                match self.control.sampled(&h.trace) {
                    Some(true) => ready.push((h.origin, h.log)),
                    Some(false) => {
                        self.telemetry.sampling_logs_dropped.inc();
                    }
                    None if now >= h.deadline => ready.push((h.origin, h.log)),
                    None => waiting.push(h),
                }
            }
            self.held = waiting;
            if !ready.is_empty() {
                let request = request_of(ready);
                let items = Logs::item_count(&request);
                let body = Bytes::from(request.encode_to_vec());
                let entry = WalEntry::encode(EntryKind::Sampled, SignalKind::Logs, &self.pipeline, items, &body);
                if !append_with_retry(&self.appender, entry, &self.pipeline, stop).await {
                    // Not written: the checkpoint stays, so a restart reads these records again.
                    return Flow::Stopped;
                }
            }
            Flow::Handled(end)
        })
    }

    /// The oldest held record, or what was read if nothing is held.
    fn checkpoint(&self, handled_end: u64) -> Option<u64> {
        let oldest = self.held.iter().map(|h| h.position).min();
        Some(oldest.map_or(handled_end, |oldest| oldest.min(handled_end)))
    }
}

/// Sorts the records of `pipeline` in `records` into passing (no trace id) and held.
fn take_in(
    pipeline: &str,
    records: &[WalRecord],
    wait: Duration,
    held: &mut Vec<Held>,
    ready: &mut Vec<(Arc<Origin>, LogRecord)>,
) {
    let deadline = Instant::now() + wait;
    for record in records {
        let Ok(entry) = WalEntry::decode(&record.payload) else {
            continue;
        };
        if entry.kind != EntryKind::Received || entry.signal != SignalKind::Logs || entry.pipeline != pipeline {
            continue;
        }
        let Ok(request) = ExportLogsServiceRequest::decode(entry.body.clone()) else {
            tracing::error!(pipeline, "undecodable logs entry in the WAL");
            continue;
        };
        for rl in request.resource_logs {
            for sl in rl.scope_logs {
                let origin = Arc::new(Origin {
                    resource: rl.resource.clone().unwrap_or_default(),
                    resource_schema_url: rl.schema_url.clone(),
                    scope: sl.scope.unwrap_or_default(),
                    scope_schema_url: sl.schema_url,
                });
                for log in sl.log_records {
                    match TraceId::try_from(log.trace_id.as_slice()) {
                        Ok(trace) if trace != [0; 16] => held.push(Held {
                            trace,
                            position: record.position,
                            deadline,
                            origin: origin.clone(),
                            log,
                        }),
                        _ => ready.push((origin.clone(), log)),
                    }
                }
            }
        }
    }
}

/// A request holding `logs`, grouped back under their resources and scopes.
fn request_of(logs: Vec<(Arc<Origin>, LogRecord)>) -> ExportLogsServiceRequest {
    let groups = group_by_origin(logs);
    ExportLogsServiceRequest {
        resource_logs: groups
            .into_iter()
            .map(|(origin, log_records)| ResourceLogs {
                resource: Some(origin.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(origin.scope.clone()),
                    log_records,
                    schema_url: origin.scope_schema_url.clone(),
                }],
                schema_url: origin.resource_schema_url.clone(),
            })
            .collect(),
    }
}
