//! Request body decompression with the size limit applied to the *decompressed* bytes, so that a
//! small compressed bomb is refused (413) after at most `limit + 1` bytes of output.

use std::io::Read;

/// A `Content-Encoding` Sift accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No compression.
    Identity,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
    /// zlib deflate.
    Deflate,
}

impl Encoding {
    /// Parses a `Content-Encoding` header value (absent means identity).
    pub fn parse(header: Option<&str>) -> Option<Encoding> {
        match header.map(|h| h.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Some(Encoding::Identity),
            Some("gzip") | Some("x-gzip") => Some(Encoding::Gzip),
            Some("zstd") => Some(Encoding::Zstd),
            Some("deflate") => Some(Encoding::Deflate),
            Some(_) => None,
        }
    }
}

/// Why a body could not be decompressed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    /// More than `limit` bytes after decompression.
    #[error("request body exceeds {limit} bytes after decompression")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Not valid data for its encoding.
    #[error("cannot decompress {encoding:?} request body: {message}")]
    Corrupt {
        /// The declared encoding.
        encoding: Encoding,
        /// What the decoder said.
        message: String,
    },
}

/// Decompresses `body`, refusing output larger than `limit`.
pub fn decompress(encoding: Encoding, body: bytes::Bytes, limit: usize) -> Result<bytes::Bytes, DecompressError> {
    let reader: Box<dyn Read + '_> = match encoding {
        Encoding::Identity => {
            if body.len() > limit {
                return Err(DecompressError::TooLarge { limit });
            }
            return Ok(body);
        }
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        Encoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        Encoding::Zstd => match zstd::stream::read::Decoder::new(&body[..]) {
            Ok(decoder) => Box::new(decoder),
            Err(e) => {
                return Err(DecompressError::Corrupt {
                    encoding,
                    message: e.to_string(),
                })
            }
        },
    };
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let read = reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecompressError::Corrupt {
            encoding,
            message: e.to_string(),
        })?;
    if read > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> bytes::Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap().into()
    }

    #[test]
    fn round_trips_and_limits() {
        let data = vec![b'a'; 10_000];
        assert_eq!(decompress(Encoding::Gzip, gzip(&data), 10_000).unwrap().len(), 10_000);
        assert_eq!(
            decompress(Encoding::Gzip, gzip(&data), 9_999),
            Err(DecompressError::TooLarge { limit: 9_999 })
        );
        let z = zstd::encode_all(&data[..], 3).unwrap();
        assert_eq!(decompress(Encoding::Zstd, z.into(), 10_000).unwrap().len(), 10_000);
        assert!(matches!(
            decompress(Encoding::Gzip, bytes::Bytes::from_static(b"not gzip"), 100),
            Err(DecompressError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_bomb_is_refused_without_inflating_it() {
        let bomb = gzip(&vec![0u8; 200 << 20]);
        assert!(bomb.len() < 1 << 20);
        assert_eq!(
            decompress(Encoding::Gzip, bomb, 1 << 20),
            Err(DecompressError::TooLarge { limit: 1 << 20 })
        );
    }

    #[test]
    fn encodings() {
        assert_eq!(Encoding::parse(None), Some(Encoding::Identity));
        assert_eq!(Encoding::parse(Some("GZIP")), Some(Encoding::Gzip));
        assert_eq!(Encoding::parse(Some("br")), None);
    }
}
