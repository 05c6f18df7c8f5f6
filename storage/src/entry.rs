//! What Sift writes into each WAL record: `version u8 | signal u8 | items u32 | pipeline len u8 |
//! pipeline | OTLP protobuf request`. The record is the redacted request exactly as it will be
//! exported, tagged with the pipeline it entered and its item count, so consumers can filter and
//! count without decoding the body. Version 1 (no item count) is still read.

use bytes::{BufMut, Bytes, BytesMut};
use sift_proto::{item_count_protobuf, SignalKind};

const VERSION: u8 = 2;

/// A decoded WAL entry; `body` shares the record's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalEntry {
    /// The signal of the request.
    pub signal: SignalKind,
    /// The pipeline the request entered (`traces`, `logs/audit`, ...).
    pub pipeline: String,
    /// Spans, log records or data points in the request.
    pub items: u64,
    /// The OTLP `Export*ServiceRequest`, protobuf-encoded.
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

impl WalEntry {
    /// Encodes an entry for [`crate::wal::WalAppender::append`].
    pub fn encode(signal: SignalKind, pipeline: &str, items: u64, body: &[u8]) -> Bytes {
        let name = &pipeline.as_bytes()[..pipeline.len().min(255)];
        let mut out = BytesMut::with_capacity(7 + name.len() + body.len());
        out.put_u8(VERSION);
        out.put_u8(signal_tag(signal));
        out.put_u32_le(u32::try_from(items).unwrap_or(u32::MAX));
        out.put_u8(name.len() as u8);
        out.put_slice(name);
        out.put_slice(body);
        out.freeze()
    }

    /// Decodes a WAL payload.
    pub fn decode(payload: &Bytes) -> Result<WalEntry, EntryError> {
        let [version, tag, ..] = payload[..] else {
            return Err(EntryError("shorter than its header"));
        };
        let signal = match tag {
            1 => SignalKind::Traces,
            2 => SignalKind::Logs,
            3 => SignalKind::Metrics,
            _ => return Err(EntryError("unknown signal tag")),
        };
        let (items, name_at) = match version {
            1 => (None, 2),
            2 => {
                let count = payload.get(2..6).ok_or(EntryError("item count cut off"))?;
                (
                    Some(u64::from(u32::from_le_bytes([count[0], count[1], count[2], count[3]]))),
                    6,
                )
            }
            _ => return Err(EntryError("unknown entry version")),
        };
        let name_len = *payload.get(name_at).ok_or(EntryError("pipeline name cut off"))? as usize;
        let body_start = name_at + 1 + name_len;
        if payload.len() < body_start {
            return Err(EntryError("pipeline name cut off"));
        }
        let pipeline = std::str::from_utf8(&payload[name_at + 1..body_start])
            .map_err(|_| EntryError("pipeline name is not UTF-8"))?;
        let body = payload.slice(body_start..);
        let items = match items {
            Some(items) => items,
            None => item_count_protobuf(signal, &body).map_err(|_| EntryError("undecodable version 1 body"))?,
        };
        Ok(WalEntry {
            signal,
            pipeline: pipeline.to_owned(),
            items,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn round_trip(pipeline in "[a-z/]{0,20}", body in proptest::collection::vec(any::<u8>(), 0..100), s in 0usize..3, items in 0u64..1_000_000) {
            let signal = SignalKind::ALL[s];
            let bytes = WalEntry::encode(signal, &pipeline, items, &body);
            let entry = WalEntry::decode(&bytes).unwrap();
            prop_assert_eq!(entry, WalEntry { signal, pipeline, items, body: Bytes::from(body) });
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = WalEntry::decode(&Bytes::from(bytes));
        }
    }

    #[test]
    fn version_1_entries_stay_readable() {
        use prost::Message;
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
            (entry.signal, entry.pipeline.as_str(), entry.items),
            (SignalKind::Logs, "logs", 2)
        );
        assert_eq!(entry.body, Bytes::from(body));
    }
}
