//! The tail sampler of one traces pipeline: a stage after the WAL that reads the pipeline's
//! `received` entries, groups spans into traces ([`Buffer`]), decides each trace when it is due
//! ([`decide`]), and writes the kept traces back as the pipeline's `sampled` entries, which its
//! exporters read instead of the received ones. So exporters only ever see kept traces.
//!
//! Durability: the sampler checkpoints at the WAL position of its oldest pending trace, so after a
//! crash or a restart the pending traces are rebuilt by replaying from there. On replay, a kept
//! trace's spans are met again after its `sampled` entry, which is recognised: the trace is known
//! as decided and not emitted twice. Dropped traces are recorded too (their ids in a `dropped`
//! entry, which no exporter reads), so no trace is decided twice with different outcomes, even by
//! rate-based policies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sift_config::TailSamplingConfig;
use sift_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use sift_proto::SignalKind;
use sift_wal::{EntryKind, WalAppender, WalConsumer, WalEntry, WalRecord};
use tokio::sync::watch;

use super::buffer::{Buffer, Limits, Pending, Reason, TraceId};
use super::cache::DecisionCache;
use super::control::{SamplerControl, State};
use super::policy::{decide, NamedPolicy, ADJUSTED_COUNT};
use super::trace::{encode_request, encoded_spans, EncodedSpan};
use crate::after_wal::{stopped, Event, Flow, Stage, StageFuture};
use crate::telemetry::{DecisionLabels, Telemetry};

/// The live state of a pipeline's sampler, built from its config (the task is [`run`]).
pub fn control(pipeline: &str, config: &TailSamplingConfig) -> Arc<SamplerControl> {
    let limits = Limits {
        decision_wait: config.decision_wait.0,
        after_root: config.decision_wait_after_root_received.map(|d| d.0),
        max_traces: usize::try_from(config.num_traces).unwrap_or(usize::MAX),
        max_trace_bytes: usize::try_from(config.maximum_trace_size_bytes).unwrap_or(usize::MAX),
        max_total_bytes: usize::try_from(config.max_buffer_size_mib << 20).unwrap_or(usize::MAX),
    };
    let cache = DecisionCache::new(
        usize::try_from(config.decision_cache.sampled_cache_size).unwrap_or(usize::MAX),
        usize::try_from(config.decision_cache.non_sampled_cache_size).unwrap_or(usize::MAX),
    );
    SamplerControl::new(pipeline, config, Buffer::new(limits), cache)
}

/// How often due traces are looked for.
const TICK: Duration = Duration::from_millis(100);

struct Sampler {
    pipeline: String,
    control: Arc<SamplerControl>,
    appender: WalAppender,
    telemetry: Arc<Telemetry>,
    /// Spans of kept traces (and late spans of kept traces), written with the next emission.
    to_emit: Vec<EncodedSpan>,
    /// Dropped traces, recorded with the next emission.
    to_drop: Vec<TraceId>,
    /// The WAL's end when it was opened: records before it are a replay, during which traces
    /// are not decided early (their recorded decisions come later in the log).
    replay_end: u64,
}

/// Runs the sampler of `pipeline` until the WAL is closed or `stop` is set. Pending traces are
/// not lost on stop: the checkpoint stays at the oldest of them.
pub async fn run(
    pipeline: String,
    control: Arc<SamplerControl>,
    consumer: WalConsumer,
    appender: WalAppender,
    telemetry: Arc<Telemetry>,
    stop: watch::Receiver<bool>,
) {
    let sampler = Sampler {
        replay_end: consumer.replay_end(),
        pipeline,
        control,
        appender,
        telemetry,
        to_emit: Vec::new(),
        to_drop: Vec::new(),
    };
    crate::after_wal::drive(sampler, consumer, stop).await;
}

impl Stage for Sampler {
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
            let mut end = None;
            if let Event::Records(records) = &event {
                end = records.last().map(|r| r.end);
                self.take_in(records);
            }
            self.decide_due();
            if !self.emit(stop).await {
                // Decided but not written: the checkpoint stays, so a restart redoes them.
                return Flow::Stopped;
            }
            let pending = self.control.state().buffer.len();
            self.telemetry
                .sampling_pending
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
            Flow::Handled(end)
        })
    }

    fn checkpoint(&self, handled_end: u64) -> Option<u64> {
        let oldest = self.control.state().buffer.oldest_position();
        Some(oldest.map_or(handled_end, |oldest| oldest.min(handled_end)))
    }

    fn finish(&mut self) -> StageFuture<'_, ()> {
        let pending = self.control.state().buffer.len();
        tracing::debug!(pipeline = %self.pipeline, pending, "sampler stopped; pending traces stay in the WAL");
        Box::pin(async {})
    }
}

impl Sampler {
    /// Buffers the spans of `records`. Late spans of kept traces are queued for writing; traces
    /// that must be decided at once (buffer full, trace too large) are, so that the rest of their
    /// spans in the same batch already follow the decision.
    fn take_in(&mut self, records: &[WalRecord]) {
        let now = Instant::now();
        let policies = self.control.policies();
        let control = self.control.clone();
        let mut state = control.state();
        for record in records {
            let replaying = record.end <= self.replay_end;
            if state.buffer.is_enforcing() == replaying {
                state.buffer.set_enforcing(!replaying);
                if !replaying {
                    for ready in state.buffer.enforce() {
                        self.telemetry.sampling_early.inc();
                        self.decide(&mut state, ready, &policies, now);
                    }
                }
            }
            let Ok(entry) = WalEntry::decode(&record.payload) else {
                continue;
            };
            if entry.signal != SignalKind::Traces || entry.pipeline != self.pipeline {
                continue;
            }
            match entry.kind {
                EntryKind::Received => {}
                // Decisions recorded by this process are known already: only a replay reads them.
                EntryKind::Sampled | EntryKind::Dropped if !replaying => continue,
                EntryKind::Dropped => {
                    // Replay after a restart: these traces were dropped before.
                    for id in entry.dropped_trace_ids() {
                        state.buffer.remove(&id);
                        if state.cache.get(&id).is_none() {
                            state.remember(id, false, 1.0, "replayed");
                        }
                    }
                    continue;
                }
                EntryKind::Sampled => {
                    // Our own output read back after a restart (no decision remembered): these
                    // traces were kept and emitted before, do not decide them again.
                    let Ok(spans) = encoded_spans(&entry.body) else {
                        tracing::error!(pipeline = %self.pipeline, "undecodable sampled traces entry in the WAL");
                        continue;
                    };
                    for id in spans.iter().filter_map(EncodedSpan::trace_id) {
                        state.buffer.remove(&id);
                        if state.cache.get(&id).is_none() {
                            state.remember(id, true, 1.0, "replayed");
                        }
                    }
                    continue;
                }
            }
            let Ok(spans) = encoded_spans(&entry.body) else {
                tracing::error!(pipeline = %self.pipeline, "undecodable traces entry in the WAL");
                continue;
            };
            for span in spans {
                let Some(id) = span.trace_id() else {
                    continue;
                };
                if let Some(decision) = state.cache.get(&id) {
                    self.telemetry.sampling_late_spans.inc();
                    if decision.sampled {
                        let mut span = span;
                        mark_adjusted(&mut span, decision.probability);
                        self.to_emit.push(span);
                    }
                    continue;
                }
                for ready in state.buffer.insert(span, record.position, now) {
                    self.telemetry.sampling_early.inc();
                    self.decide(&mut state, ready, &policies, now);
                }
            }
        }
    }

    /// Decides every trace whose wait is over.
    fn decide_due(&mut self) {
        let now = Instant::now();
        let policies = self.control.policies();
        let control = self.control.clone();
        let mut state = control.state();
        for ready in state.buffer.take_due(now) {
            self.decide(&mut state, ready, &policies, now);
        }
    }

    /// Decides one trace, remembers the decision and queues what must be written.
    fn decide(
        &mut self,
        state: &mut State,
        (id, pending, reason): (TraceId, Pending, Reason),
        policies: &[NamedPolicy],
        now: Instant,
    ) {
        if reason == Reason::Due {
            self.telemetry
                .sampling_decision_latency
                .observe(now.saturating_duration_since(pending.due).as_secs_f64());
        }
        let decision = decide(policies, &pending.trace(), now);
        let label = if decision.sampled { "sampled" } else { "not_sampled" };
        self.telemetry
            .sampling_decisions
            .get_or_create(&DecisionLabels {
                decision: label.to_owned(),
                policy: decision.policy.clone(),
            })
            .inc();
        state.remember(id, decision.sampled, decision.probability, &decision.policy);
        if !decision.sampled {
            self.to_drop.push(id);
            return;
        }
        let mut spans = pending.spans;
        for span in &mut spans {
            mark_adjusted(span, decision.probability);
        }
        self.to_emit.extend(spans);
    }

    /// Appends the kept spans (with late spans of kept traces) and the ids of dropped traces to
    /// the WAL. Returns false if stopped before the appends succeeded.
    async fn emit(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        let kept = std::mem::take(&mut self.to_emit);
        let dropped = std::mem::take(&mut self.to_drop);
        if !dropped.is_empty() {
            let entry = WalEntry::encode_dropped(&self.pipeline, &dropped);
            if !append_with_retry(&self.appender, entry, &self.pipeline, stop).await {
                return false;
            }
        }
        if kept.is_empty() {
            return true;
        }
        let items = kept.len() as u64;
        let body = encode_request(kept);
        let entry = WalEntry::encode(EntryKind::Sampled, SignalKind::Traces, &self.pipeline, items, &body);
        append_with_retry(&self.appender, entry, &self.pipeline, stop).await
    }
}

/// Gives a span kept with `probability` < 1 the number of traces it stands for.
fn mark_adjusted(span: &mut EncodedSpan, probability: f64) {
    if probability > 0.0 && probability < 1.0 {
        span.push_attribute(&KeyValue {
            key: ADJUSTED_COUNT.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::DoubleValue(1.0 / probability)),
            }),
            ..Default::default()
        });
    }
}

/// Appends `entry` to the WAL, retrying while it is full; false if stopped first.
pub(super) async fn append_with_retry(
    appender: &WalAppender,
    entry: Bytes,
    pipeline: &str,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut backoff = Duration::from_millis(50);
    loop {
        match appender.append_reserved(entry.clone()).await {
            Ok(_) => return true,
            Err(e) => {
                tracing::warn!(pipeline, error = %e, "cannot write sampled data yet, will retry");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    () = stopped(stop) => return false,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}
