//! What Sift writes into each WAL record.
//!
//! Version 3: `3 | kind u8 | signal u8 | items u32 LE | pipeline len u8 | pipeline | body`.
//! The [`EntryKind`] says which stage wrote the record, so every reader selects what it needs by
//! kind and pipeline without decoding the body:
//! - [`EntryKind::Received`]: a request as the receivers accepted it (after the pipeline's
//!   processors); the body is the OTLP `Export*ServiceRequest`, protobuf-encoded.
//! - [`EntryKind::Sampled`]: what a tail sampler kept (spans) or a log follower let through (log
//!   records), same body; a sampled pipeline's exporters read these instead of its received ones.
//! - [`EntryKind::Dropped`]: the ids of the traces a tail sampler dropped, 16 bytes each, so that
//!   a replay after a crash does not decide them again.
//!
//! Older logs still replay: version 2 (`2 | signal | items | name`) tagged sampled and dropped
//! records with `#sampled` / `#dropped` name suffixes and carried dropped ids as empty spans;
//! version 1 had no item count. Both are decoded into the version-3 form.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use sift_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sift_proto::{item_count_protobuf, SignalKind};

const VERSION: u8 = 3;

/// Which stage wrote a WAL entry (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    /// A request as received, after the pipeline's processors.
    Received,
    /// Data a stage after the WAL kept: a tail sampler's traces, a log follower's records.
    Sampled,
    /// Trace ids a tail sampler dropped (16 bytes each).
    Dropped,
}

impl EntryKind {
    fn tag(self) -> u8 {
        match self {
            EntryKind::Received => 1,
            EntryKind::Sampled => 2,
            EntryKind::Dropped => 3,
        }
    }

    fn from_tag(tag: u8) -> Option<EntryKind> {
        Some(match tag {
            1 => EntryKind::Received,
            2 => EntryKind::Sampled,
            3 => EntryKind::Dropped,
            _ => return None,
        })
    }

    /// The kind's name, as in logs and plans.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Received => "received",
            EntryKind::Sampled => "sampled",
            EntryKind::Dropped => "dropped",
        }
    }
}

/// A decoded WAL entry; `body` shares the record's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalEntry {
    /// Which stage wrote it.
    pub kind: EntryKind,
    /// The signal of the request.
    pub signal: SignalKind,
    /// The pipeline it belongs to (`traces`, `logs/audit`, ...).
    pub pipeline: String,
    /// Spans, log records or data points in the request (for [`EntryKind::Dropped`]: trace ids).
    pub items: u64,
    /// The OTLP request, protobuf-encoded (for [`EntryKind::Dropped`]: the trace ids).
    pub body: Bytes,
}

/// A WAL payload that is not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WAL entry: {0}")]
pub struct EntryError(&'static str);

fn signal_tag(signal: SignalKind) -> u8 {
    match signal {
        SignalKind::Traces => 1,
        SignalKind::Logs => 2,
        SignalKind::Metrics => 3,
    }
}

fn signal_of(tag: u8) -> Result<SignalKind, EntryError> {
    match tag {
        1 => Ok(SignalKind::Traces),
        2 => Ok(SignalKind::Logs),
        3 => Ok(SignalKind::Metrics),
        _ => Err(EntryError("unknown signal tag")),
    }
}

/// The suffixes version 2 used for what version 3 says with [`EntryKind`].
const V2_SAMPLED: &str = "#sampled";
const V2_DROPPED: &str = "#dropped";

impl WalEntry {
    /// Encodes an entry for [`crate::WalAppender::append`]. Names longer than 255 bytes are cut
    /// (pipeline names are short identifiers).
    pub fn encode(kind: EntryKind, signal: SignalKind, pipeline: &str, items: u64, body: &[u8]) -> Bytes {
        let name = &pipeline.as_bytes()[..pipeline.len().min(255)];
        let mut out = BytesMut::with_capacity(8 + name.len() + body.len());
        out.put_u8(VERSION);
        out.put_u8(kind.tag());
        out.put_u8(signal_tag(signal));
        out.put_u32_le(u32::try_from(items).unwrap_or(u32::MAX));
        out.put_u8(name.len() as u8);
        out.put_slice(name);
        out.put_slice(body);
        out.freeze()
    }

    /// Encodes the record of the traces `pipeline`'s sampler dropped.
    pub fn encode_dropped(pipeline: &str, trace_ids: &[[u8; 16]]) -> Bytes {
        let body: Vec<u8> = trace_ids.concat();
        WalEntry::encode(
            EntryKind::Dropped,
            SignalKind::Traces,
            pipeline,
            trace_ids.len() as u64,
            &body,
        )
    }

    /// The trace ids of a [`EntryKind::Dropped`] entry (none for other kinds).
    pub fn dropped_trace_ids(&self) -> impl Iterator<Item = [u8; 16]> + '_ {
        let body = if self.kind == EntryKind::Dropped {
            &self.body[..]
        } else {
            &[]
        };
        body.chunks_exact(16).map(|id| {
            let mut out = [0; 16];
            out.copy_from_slice(id);
            out
        })
    }

    /// Decodes a WAL payload of any version.
    pub fn decode(payload: &Bytes) -> Result<WalEntry, EntryError> {
        let Some(&version) = payload.first() else {
            return Err(EntryError("shorter than its header"));
        };
        match version {
            1 | 2 => decode_v2(payload, version),
            3 => {
                let header = payload.get(..8).ok_or(EntryError("shorter than its header"))?;
                let kind = EntryKind::from_tag(header[1]).ok_or(EntryError("unknown entry kind"))?;
                let signal = signal_of(header[2])?;
                let items = u64::from(u32::from_le_bytes([header[3], header[4], header[5], header[6]]));
                let (pipeline, body) = name_and_body(payload, 7)?;
                if kind == EntryKind::Dropped && (signal != SignalKind::Traces || body.len() % 16 != 0) {
                    return Err(EntryError("dropped-traces entry is not a list of trace ids"));
                }
                Ok(WalEntry {
                    kind,
                    signal,
                    pipeline: pipeline.to_owned(),
                    items,
                    body,
                })
            }
            _ => Err(EntryError("unknown entry version")),
        }
    }
}

/// Splits `payload` at `name_at` into the length-prefixed pipeline name and the body.
fn name_and_body(payload: &Bytes, name_at: usize) -> Result<(&str, Bytes), EntryError> {
    let name_len = *payload.get(name_at).ok_or(EntryError("pipeline name cut off"))? as usize;
    let body_start = name_at + 1 + name_len;
    let name = payload
        .get(name_at + 1..body_start)
        .ok_or(EntryError("pipeline name cut off"))?;
    let name = std::str::from_utf8(name).map_err(|_| EntryError("pipeline name is not UTF-8"))?;
    Ok((name, payload.slice(body_start..)))
}

/// Versions 1 and 2: the kind is in the pipeline name's suffix; dropped ids are empty spans.
fn decode_v2(payload: &Bytes, version: u8) -> Result<WalEntry, EntryError> {
    let signal = signal_of(*payload.get(1).ok_or(EntryError("shorter than its header"))?)?;
    let (items, name_at) = if version == 1 {
        (None, 2)
    } else {
        let count = payload.get(2..6).ok_or(EntryError("item count cut off"))?;
        (
            Some(u64::from(u32::from_le_bytes([count[0], count[1], count[2], count[3]]))),
            6,
        )
    };
    let (name, body) = name_and_body(payload, name_at)?;
    let (kind, pipeline) = if let Some(pipeline) = name.strip_suffix(V2_SAMPLED) {
        (EntryKind::Sampled, pipeline)
    } else if let Some(pipeline) = name.strip_suffix(V2_DROPPED) {
        (EntryKind::Dropped, pipeline)
    } else {
        (EntryKind::Received, name)
    };
    if kind == EntryKind::Dropped {
        let request =
            ExportTraceServiceRequest::decode(body).map_err(|_| EntryError("undecodable version 2 dropped traces"))?;
        let ids: Vec<[u8; 16]> = request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .filter_map(|span| <[u8; 16]>::try_from(span.trace_id.as_slice()).ok())
            .collect();
        return WalEntry::decode(&WalEntry::encode_dropped(pipeline, &ids));
    }
    let items = match items {
        Some(items) => items,
        None => item_count_protobuf(signal, &body).map_err(|_| EntryError("undecodable version 1 body"))?,
    };
    Ok(WalEntry {
        kind,
        signal,
        pipeline: pipeline.to_owned(),
        items,
        body,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sift_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    fn kind(k: usize) -> EntryKind {
        [EntryKind::Received, EntryKind::Sampled][k]
    }

    proptest! {
        #[test]
        fn round_trip(pipeline in "[a-z/#]{0,20}", body in proptest::collection::vec(any::<u8>(), 0..100), s in 0usize..3, k in 0usize..2, items in 0u64..1_000_000) {
            let signal = SignalKind::ALL[s];
            let bytes = WalEntry::encode(kind(k), signal, &pipeline, items, &body);
            let entry = WalEntry::decode(&bytes).unwrap();
            prop_assert_eq!(entry, WalEntry { kind: kind(k), signal, pipeline, items, body: Bytes::from(body) });
        }

        #[test]
        fn dropped_ids_round_trip(ids in proptest::collection::vec(any::<[u8; 16]>(), 0..20)) {
            let entry = WalEntry::decode(&WalEntry::encode_dropped("traces/x", &ids)).unwrap();
            prop_assert_eq!((entry.kind, entry.items), (EntryKind::Dropped, ids.len() as u64));
            prop_assert_eq!(entry.dropped_trace_ids().collect::<Vec<_>>(), ids);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = WalEntry::decode(&Bytes::from(bytes));
        }
    }

    /// A version-2 record as Sift wrote it before version 3.
    fn v2(signal: u8, items: u32, name: &str, body: &[u8]) -> Bytes {
        let mut out = vec![2u8, signal];
        out.extend_from_slice(&items.to_le_bytes());
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(body);
        Bytes::from(out)
    }

    #[test]
    fn version_2_suffixes_and_empty_spans_become_kinds() {
        let received = WalEntry::decode(&v2(1, 3, "traces/a", b"xyz")).unwrap();
        assert_eq!(
            (
                received.kind,
                received.pipeline.as_str(),
                received.items,
                &received.body[..]
            ),
            (EntryKind::Received, "traces/a", 3, &b"xyz"[..])
        );
        let sampled = WalEntry::decode(&v2(2, 1, "logs#sampled", b"body")).unwrap();
        assert_eq!(
            (sampled.kind, sampled.signal, sampled.pipeline.as_str()),
            (EntryKind::Sampled, SignalKind::Logs, "logs")
        );
        let ids = [[7u8; 16], [9u8; 16]];
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: ids
                        .iter()
                        .map(|id| Span {
                            trace_id: id.to_vec(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let dropped = WalEntry::decode(&v2(1, 0, "traces#dropped", &request.encode_to_vec())).unwrap();
        assert_eq!(
            (dropped.kind, dropped.pipeline.as_str(), dropped.items),
            (EntryKind::Dropped, "traces", 2)
        );
        assert_eq!(dropped.dropped_trace_ids().collect::<Vec<_>>(), ids);
    }

    #[test]
    fn a_dropped_entry_that_is_not_whole_ids_is_refused() {
        let bytes = WalEntry::encode(EntryKind::Dropped, SignalKind::Traces, "traces", 1, &[1, 2, 3]);
        assert!(WalEntry::decode(&bytes).is_err());
    }

    #[test]
    fn version_1_entries_stay_readable() {
        let request = sift_proto::json::decode_logs(
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"a"}},{}]}]}]}"#,
        )
        .unwrap();
        let body = request.encode_to_vec();
        let mut v1 = vec![1u8, 2, 4];
        v1.extend_from_slice(b"logs");
        v1.extend_from_slice(&body);
        let entry = WalEntry::decode(&Bytes::from(v1)).unwrap();
        assert_eq!(
            (entry.kind, entry.signal, entry.pipeline.as_str(), entry.items),
            (EntryKind::Received, SignalKind::Logs, "logs", 2)
        );
        assert_eq!(entry.body, Bytes::from(body));
    }
}
