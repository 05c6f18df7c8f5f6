//! The pending-trace buffer of tail sampling: spans (as they arrived, encoded) grouped by trace
//! id, each trace due `decision_wait` after its first span (sooner once its root span arrived,
//! with `decision_wait_after_root_received`), bounded by a trace count, a per-trace size and a
//! total size. When full, the oldest trace is handed out early rather than dropped; an oversized trace is
//! handed out at once. It also knows the WAL position of its oldest pending span, which is where a
//! replay after a crash has to start.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::trace::{EncodedSpan, Trace};

/// A trace id.
pub type TraceId = [u8; 16];

/// A trace waiting for its decision.
#[derive(Debug)]
pub struct Pending {
    /// The spans so far, as they arrived.
    pub spans: Vec<EncodedSpan>,
    /// WAL position of the record holding its first span.
    pub first_position: u64,
    /// When it is due.
    pub due: Instant,
    /// Encoded size of its spans.
    pub bytes: usize,
}

impl Pending {
    /// The trace decoded for the policies (a span that does not decode is left out; it was
    /// validated when received, so none should).
    pub fn trace(&self) -> Trace {
        Trace {
            spans: self.spans.iter().filter_map(EncodedSpan::decode).collect(),
        }
    }
}

/// Why a trace left the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its wait was over.
    Due,
    /// The buffer was full: decided early.
    Evicted,
    /// It grew over the per-trace size limit.
    TooLarge,
}

/// The limits of a [`Buffer`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wait after the first span.
    pub decision_wait: Duration,
    /// Shorter wait once the root span is in (if set).
    pub after_root: Option<Duration>,
    /// Traces held at most.
    pub max_traces: usize,
    /// Bytes per trace at most (0: no limit).
    pub max_trace_bytes: usize,
    /// Bytes of all pending traces at most.
    pub max_total_bytes: usize,
}

/// Pending traces in arrival order.
pub struct Buffer {
    limits: Limits,
    traces: HashMap<TraceId, Pending>,
    arrival: VecDeque<TraceId>,
    total_bytes: usize,
    enforcing: bool,
}

impl Buffer {
    /// An empty buffer.
    pub fn new(limits: Limits) -> Buffer {
        Buffer {
            limits,
            traces: HashMap::new(),
            arrival: VecDeque::new(),
            total_bytes: 0,
            enforcing: true,
        }
    }

    /// Traces pending.
    pub fn len(&self) -> usize {
        self.traces.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.traces.is_empty()
    }

    /// Adds a span (read from the WAL record at `position`). Returns the traces that must be
    /// decided now because of it: this one if it grew too large, the oldest if the buffer was full.
    pub fn insert(&mut self, span: EncodedSpan, position: u64, now: Instant) -> Vec<(TraceId, Pending, Reason)> {
        let mut out = Vec::new();
        let Some(id) = span.trace_id() else {
            return out;
        };
        let is_root = span.is_root();
        let bytes = span.bytes.len();
        if !self.traces.contains_key(&id) {
            while self.enforcing && self.traces.len() >= self.limits.max_traces.max(1) {
                let Some(oldest) = self.arrival.pop_front() else { break };
                if let Some(pending) = self.traces.remove(&oldest) {
                    self.total_bytes -= pending.bytes;
                    out.push((oldest, pending, Reason::Evicted));
                }
            }
            self.arrival.push_back(id);
            self.traces.insert(
                id,
                Pending {
                    spans: Vec::new(),
                    first_position: position,
                    due: now + self.limits.decision_wait,
                    bytes: 0,
                },
            );
        }
        let pending = self.traces.get_mut(&id).expect("inserted above");
        pending.spans.push(span);
        pending.bytes += bytes;
        self.total_bytes += bytes;
        if let (true, Some(after_root)) = (is_root, self.limits.after_root) {
            pending.due = pending.due.min(now + after_root);
        }
        if !self.enforcing {
            return out;
        }
        if self.limits.max_trace_bytes > 0 && pending.bytes > self.limits.max_trace_bytes {
            let pending = self.remove(&id).expect("present");
            out.push((id, pending, Reason::TooLarge));
        }
        while self.total_bytes > self.limits.max_total_bytes.max(1) {
            let Some(oldest) = self.arrival.front().copied() else {
                break;
            };
            let pending = self.remove(&oldest).expect("arrival and traces agree");
            out.push((oldest, pending, Reason::Evicted));
        }
        out
    }

    /// Whether the limits apply.
    pub fn is_enforcing(&self) -> bool {
        self.enforcing
    }

    /// Turns the limits off (while replaying the WAL after a restart: decisions recorded later in
    /// the log must be met before a trace is decided early) or back on.
    pub fn set_enforcing(&mut self, on: bool) {
        self.enforcing = on;
    }

    /// Applies the limits to what was buffered while they were off: traces over the size limit,
    /// then the oldest while over the count or byte bound.
    pub fn enforce(&mut self) -> Vec<(TraceId, Pending, Reason)> {
        let mut out = Vec::new();
        if self.limits.max_trace_bytes > 0 {
            let big: Vec<TraceId> = self
                .traces
                .iter()
                .filter(|(_, p)| p.bytes > self.limits.max_trace_bytes)
                .map(|(id, _)| *id)
                .collect();
            for id in big {
                if let Some(pending) = self.remove(&id) {
                    out.push((id, pending, Reason::TooLarge));
                }
            }
        }
        while self.traces.len() > self.limits.max_traces.max(1) || self.total_bytes > self.limits.max_total_bytes.max(1)
        {
            let Some(oldest) = self.arrival.front().copied() else {
                break;
            };
            match self.remove(&oldest) {
                Some(pending) => out.push((oldest, pending, Reason::Evicted)),
                None => {
                    self.arrival.pop_front();
                }
            }
        }
        out
    }

    /// Encoded bytes of all pending spans.
    pub fn bytes(&self) -> usize {
        self.total_bytes
    }

    /// Removes and returns every trace due at `now`, oldest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<(TraceId, Pending, Reason)> {
        let mut out = Vec::new();
        if self.limits.after_root.is_none() {
            // Every trace is due a fixed wait after it arrived: the due ones are at the front.
            while let Some(id) = self.arrival.front().copied() {
                match self.traces.get(&id) {
                    Some(pending) if pending.due > now => break,
                    Some(_) => {
                        self.arrival.pop_front();
                        let pending = self.traces.remove(&id).expect("present");
                        self.total_bytes -= pending.bytes;
                        out.push((id, pending, Reason::Due));
                    }
                    None => {
                        self.arrival.pop_front();
                    }
                }
            }
            return out;
        }
        let mut keep = VecDeque::with_capacity(self.arrival.len());
        while let Some(id) = self.arrival.pop_front() {
            match self.traces.get(&id) {
                Some(pending) if pending.due <= now => {
                    let pending = self.traces.remove(&id).expect("present");
                    self.total_bytes -= pending.bytes;
                    out.push((id, pending, Reason::Due));
                }
                Some(_) => keep.push_back(id),
                None => {}
            }
        }
        self.arrival = keep;
        out
    }

    /// Removes one pending trace.
    pub fn contains(&self, id: &TraceId) -> bool {
        self.traces.contains_key(id)
    }

    /// Takes a trace out of the buffer.
    pub fn remove(&mut self, id: &TraceId) -> Option<Pending> {
        let pending = self.traces.remove(id)?;
        self.total_bytes -= pending.bytes;
        // Evictions take the oldest trace: pop it instead of scanning the whole queue.
        if self.arrival.front() == Some(id) {
            self.arrival.pop_front();
        } else {
            self.arrival.retain(|t| t != id);
        }
        Some(pending)
    }

    /// Removes and returns every pending trace (shutdown).
    pub fn drain(&mut self) -> Vec<(TraceId, Pending)> {
        let mut out = Vec::with_capacity(self.traces.len());
        while let Some(id) = self.arrival.pop_front() {
            if let Some(pending) = self.traces.remove(&id) {
                self.total_bytes -= pending.bytes;
                out.push((id, pending));
            }
        }
        out
    }

    /// The WAL position a replay must start from to rebuild every pending trace.
    pub fn oldest_position(&self) -> Option<u64> {
        self.traces.values().map(|p| p.first_position).min()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sift_proto::otlp::trace::v1::Span;

    use super::*;

    fn span(trace: u8, span: u8, root: bool) -> EncodedSpan {
        EncodedSpan::of(
            &Span {
                trace_id: vec![trace; 16],
                span_id: vec![span; 8],
                parent_span_id: if root { Vec::new() } else { vec![1; 8] },
                name: "x".repeat(50),
                ..Default::default()
            },
            Arc::new(Default::default()),
        )
    }

    fn limits() -> Limits {
        Limits {
            decision_wait: Duration::from_secs(10),
            after_root: None,
            max_traces: 3,
            max_trace_bytes: 0,
            max_total_bytes: usize::MAX,
        }
    }

    #[test]
    fn limits_can_wait_for_the_end_of_a_replay() {
        let mut buffer = Buffer::new(Limits {
            max_trace_bytes: 150,
            ..limits()
        });
        let t0 = Instant::now();
        buffer.set_enforcing(false);
        for trace in 1..=5u8 {
            for s in 1..=4u8 {
                assert!(buffer.insert(span(trace, s, s == 1), u64::from(trace), t0).is_empty());
            }
        }
        // A recorded decision met during the replay takes trace 2 out before any limit applies.
        assert!(buffer.remove(&[2; 16]).is_some());
        assert_eq!(buffer.len(), 4, "over max_traces and max_trace_bytes while replaying");
        buffer.set_enforcing(true);
        let ready = buffer.enforce();
        let reasons: Vec<(u8, Reason)> = ready.iter().map(|(id, _, r)| (id[0], *r)).collect();
        assert_eq!(reasons.len(), 4, "every trace is over the size limit: {reasons:?}");
        assert!(reasons.iter().all(|(_, r)| *r == Reason::TooLarge));
        assert!(buffer.is_empty());
        assert!(ready.iter().all(|(_, p, _)| p.spans.len() == 4), "no trace was split");
    }

    #[test]
    fn traces_are_due_after_the_decision_wait() {
        let mut buffer = Buffer::new(limits());
        let t0 = Instant::now();
        assert!(buffer.insert(span(1, 1, false), 100, t0).is_empty());
        assert!(buffer
            .insert(span(1, 2, false), 200, t0 + Duration::from_secs(5))
            .is_empty());
        assert!(buffer
            .insert(span(2, 1, false), 300, t0 + Duration::from_secs(6))
            .is_empty());
        assert_eq!(buffer.oldest_position(), Some(100));
        assert!(buffer.take_due(t0 + Duration::from_secs(9)).is_empty());
        let due = buffer.take_due(t0 + Duration::from_secs(10));
        assert_eq!(due.len(), 1);
        assert_eq!(
            due[0].1.spans.len(),
            2,
            "both spans of trace 1, though the second came later"
        );
        assert_eq!(buffer.oldest_position(), Some(300));
        assert_eq!(buffer.take_due(t0 + Duration::from_secs(16)).len(), 1);
        assert!(buffer.is_empty());
    }

    #[test]
    fn the_root_span_shortens_the_wait() {
        let mut buffer = Buffer::new(Limits {
            after_root: Some(Duration::from_secs(2)),
            ..limits()
        });
        let t0 = Instant::now();
        buffer.insert(span(1, 2, false), 1, t0);
        buffer.insert(span(1, 1, true), 2, t0 + Duration::from_secs(1));
        assert!(buffer.take_due(t0 + Duration::from_secs(2)).is_empty());
        assert_eq!(buffer.take_due(t0 + Duration::from_secs(3)).len(), 1);
    }

    #[test]
    fn when_full_the_oldest_is_decided_early_and_oversized_traces_at_once() {
        let mut buffer = Buffer::new(limits());
        let t0 = Instant::now();
        for t in 1..=3 {
            assert!(buffer.insert(span(t, 1, false), u64::from(t), t0).is_empty());
        }
        let early = buffer.insert(span(4, 1, false), 4, t0);
        assert_eq!(early.len(), 1);
        assert_eq!((early[0].0, early[0].2), ([1; 16], Reason::Evicted));
        assert_eq!(buffer.len(), 3);

        let mut small = Buffer::new(Limits {
            max_trace_bytes: 150,
            ..limits()
        });
        assert!(small.insert(span(9, 1, false), 1, t0).is_empty());
        let large = small.insert(span(9, 2, false), 2, t0);
        assert_eq!(large.len(), 1);
        assert_eq!(large[0].2, Reason::TooLarge);
        assert!(small.is_empty());

        let mut bounded = Buffer::new(Limits {
            max_total_bytes: 250,
            ..limits()
        });
        assert!(bounded.insert(span(1, 1, false), 1, t0).is_empty());
        assert!(bounded.insert(span(2, 1, false), 2, t0).is_empty());
        let over = bounded.insert(span(3, 1, false), 3, t0);
        assert_eq!(over.len(), 1, "the byte budget decides the oldest early");
        assert_eq!((over[0].0, over[0].2), ([1; 16], Reason::Evicted));
        assert!(bounded.bytes() <= 250);
    }
}
