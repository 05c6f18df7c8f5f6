//! Logs that follow their trace's sampling decision (`tail_sampling` in a logs pipeline).
//!
//! A WAL consumer of the logs pipeline's entries: records without a trace id pass at once; records
//! with one wait until the traces sampler using the same processor has decided their trace, then
//! are kept or dropped with it. A record whose trace is never decided (no spans seen, or a decision
//! forgotten after a restart) is kept once its wait is over: losing logs silently is worse than
//! keeping a few of a dropped trace. Kept records are appended under `<pipeline>#sampled`, which the
//! pipeline's exporters read. The checkpoint stays at the oldest waiting record, so a restart
//! re-reads what was waiting (records already emitted may then be emitted again: at-least-once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use sift_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sift_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sift_proto::{Logs, Signal, SignalKind};
use sift_storage::wal::{WalAppender, WalConsumer, WalRecord};
use sift_storage::WalEntry;
use tokio::sync::watch;

use super::buffer::TraceId;
use super::control::SamplerControl;
use super::sampler::{append_with_retry, sampled_tag, stopped};
use super::trace::{group_by_origin, Origin};
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
    mut consumer: WalConsumer,
    appender: WalAppender,
    telemetry: Arc<Telemetry>,
    mut stop: watch::Receiver<bool>,
) {
    let tag = sampled_tag(&pipeline);
    let mut held: Vec<Held> = Vec::new();
    let mut tick = tokio::time::interval(TICK);
    let mut read_end: Option<u64> = None;
    loop {
        let mut ready: Vec<(Arc<Origin>, LogRecord)> = Vec::new();
        tokio::select! {
            batch = consumer.next_batch(4 << 20) => match batch {
                Ok(Some(records)) => {
                    read_end = records.last().map(|r| r.end).or(read_end);
                    take_in(&pipeline, &records, wait, &mut held, &mut ready);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(pipeline = %pipeline, error = %e, "log follower cannot read the WAL");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = tick.tick() => {}
            () = stopped(&mut stop) => break,
        }
        let now = Instant::now();
        let mut waiting = Vec::with_capacity(held.len());
        for h in held.drain(..) {
            match control.sampled(&h.trace) {
                Some(true) => ready.push((h.origin, h.log)),
                Some(false) => {
                    telemetry.sampling_logs_dropped.inc();
                }
                None if now >= h.deadline => ready.push((h.origin, h.log)),
                None => waiting.push(h),
            }
        }
        held = waiting;
        if !ready.is_empty() {
            let request = request_of(ready);
            let items = Logs::item_count(&request);
            let body = Bytes::from(request.encode_to_vec());
            let entry = WalEntry::encode(SignalKind::Logs, &tag, items, &body);
            if !append_with_retry(&appender, entry, &pipeline, &mut stop).await {
                // Not written: leave the checkpoint, so a restart reads these records again.
                read_end = None;
                break;
            }
        }
        checkpoint(&mut consumer, &pipeline, &held, read_end, false);
    }
    checkpoint(&mut consumer, &pipeline, &held, read_end, true);
}

/// Moves the checkpoint to the oldest held record, or to what was read if nothing is held.
fn checkpoint(consumer: &mut WalConsumer, pipeline: &str, held: &[Held], read_end: Option<u64>, force: bool) {
    let Some(end) = read_end else {
        return;
    };
    let position = held
        .iter()
        .map(|h| h.position)
        .min()
        .map_or(end, |oldest| oldest.min(end));
    if let Err(e) = consumer.commit(position, force) {
        tracing::error!(pipeline, error = %e, "cannot store the log follower's checkpoint");
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
        if entry.signal != SignalKind::Logs || entry.pipeline != pipeline {
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
