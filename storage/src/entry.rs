//! What Sift writes into each WAL record: `version u8 | signal u8 | pipeline len u8 | pipeline |
//! OTLP protobuf request`. The record is the redacted request exactly as it will be exported, tagged
//! with the pipeline it entered, so consumers can filter without decoding the body.

use bytes::{BufMut, Bytes, BytesMut};
use sift_proto::SignalKind;

const VERSION: u8 = 1;

/// A decoded WAL entry; `body` shares the record's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalEntry {
    /// The signal of the request.
    pub signal: SignalKind,
    /// The pipeline the request entered (`traces`, `logs/audit`, ...).
    pub pipeline: String,
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
    pub fn encode(signal: SignalKind, pipeline: &str, body: &[u8]) -> Bytes {
        let name = &pipeline.as_bytes()[..pipeline.len().min(255)];
        let mut out = BytesMut::with_capacity(3 + name.len() + body.len());
        out.put_u8(VERSION);
        out.put_u8(signal_tag(signal));
        out.put_u8(name.len() as u8);
        out.put_slice(name);
        out.put_slice(body);
        out.freeze()
    }

    /// Decodes a WAL payload.
    pub fn decode(payload: &Bytes) -> Result<WalEntry, EntryError> {
        let [version, tag, name_len, ..] = payload[..] else {
            return Err(EntryError("shorter than its header"));
        };
        if version != VERSION {
            return Err(EntryError("unknown entry version"));
        }
        let signal = match tag {
            1 => SignalKind::Traces,
            2 => SignalKind::Logs,
            3 => SignalKind::Metrics,
            _ => return Err(EntryError("unknown signal tag")),
        };
        let body_start = 3 + name_len as usize;
        if payload.len() < body_start {
            return Err(EntryError("pipeline name cut off"));
        }
        let pipeline =
            std::str::from_utf8(&payload[3..body_start]).map_err(|_| EntryError("pipeline name is not UTF-8"))?;
        Ok(WalEntry {
            signal,
            pipeline: pipeline.to_owned(),
            body: payload.slice(body_start..),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn round_trip(pipeline in "[a-z/]{0,20}", body in proptest::collection::vec(any::<u8>(), 0..100), s in 0usize..3) {
            let signal = SignalKind::ALL[s];
            let bytes = WalEntry::encode(signal, &pipeline, &body);
            let entry = WalEntry::decode(&bytes).unwrap();
            prop_assert_eq!(entry, WalEntry { signal, pipeline, body: Bytes::from(body) });
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = WalEntry::decode(&Bytes::from(bytes));
        }
    }
}
