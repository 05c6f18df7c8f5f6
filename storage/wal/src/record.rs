//! The framing of one WAL record: `magic u32 | len u32 | crc32(len ++ payload) u32 | payload`.
//!
//! The magic lets a reader find the next record after a damaged one; the checksum covers the length
//! so that a flipped length byte is caught too. Decoding never panics on any input.

/// Marks the start of a record ("SWAL" little-endian).
pub(crate) const MAGIC: u32 = 0x4C41_5753;
/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 12;
/// Largest payload accepted (a bound for readers facing a corrupt length).
pub(crate) const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

fn checksum(len: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one framed record to `out`.
pub(crate) fn encode(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("payload larger than 4 GiB");
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Framed size of a payload of `len` bytes.
pub(crate) fn framed_len(len: usize) -> usize {
    HEADER_LEN + len
}

/// What is at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A valid record: its payload and its framed length.
    Record(&'a [u8], usize),
    /// The buffer ends inside a record (or is empty): need more bytes, or it is a torn tail.
    Incomplete,
    /// The bytes here are not a valid record.
    Corrupt,
}

/// Decodes the record at the start of `buf`.
pub(crate) fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < HEADER_LEN {
        return Decoded::Incomplete;
    }
    let word = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    if word(0) != MAGIC {
        return Decoded::Corrupt;
    }
    let len = word(4);
    let crc = word(8);
    let payload_len = len as usize;
    if payload_len > MAX_PAYLOAD {
        return Decoded::Corrupt;
    }
    let total = HEADER_LEN + payload_len;
    if buf.len() < total {
        return Decoded::Incomplete;
    }
    let payload = &buf[HEADER_LEN..total];
    if checksum(len, payload) != crc {
        return Decoded::Corrupt;
    }
    Decoded::Record(payload, total)
}

/// Offset of the next position after `from` where a valid record starts, if any.
pub(crate) fn resync(buf: &[u8], from: usize) -> Option<usize> {
    let magic = MAGIC.to_le_bytes();
    let mut at = from;
    while at + HEADER_LEN <= buf.len() {
        let found = buf[at..].windows(4).position(|w| w == magic)?;
        let candidate = at + found;
        if let Decoded::Record(..) = decode(&buf[candidate..]) {
            return Some(candidate);
        }
        at = candidate + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let mut buf = Vec::new();
        encode(b"hello", &mut buf);
        encode(b"world!", &mut buf);
        let Decoded::Record(first, n) = decode(&buf) else {
            panic!()
        };
        assert_eq!(first, b"hello");
        assert_eq!(n, framed_len(5));
        let Decoded::Record(second, _) = decode(&buf[n..]) else {
            panic!()
        };
        assert_eq!(second, b"world!");
        assert_eq!(decode(&buf[..n - 1]), Decoded::Incomplete);

        let mut flipped = buf.clone();
        flipped[HEADER_LEN + 1] ^= 0x40;
        assert_eq!(decode(&flipped), Decoded::Corrupt);
        assert_eq!(resync(&flipped, 1), Some(n));
        let mut bad_len = buf.clone();
        bad_len[5] ^= 0x01;
        assert_ne!(decode(&bad_len), Decoded::Record(b"hello", n));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            let _ = resync(&bytes, 0);
        }

        #[test]
        fn encode_decode_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..500)) {
            let mut buf = Vec::new();
            encode(&payload, &mut buf);
            prop_assert_eq!(decode(&buf), Decoded::Record(&payload, buf.len()));
        }
    }
}
