//! OTLP types and their mappings for Sift.
//!
//! - [`otlp`]: the OTLP protobuf messages and gRPC services (prost/tonic, from `opentelemetry-proto`).
//! - [`Signal`]: traces, logs and metrics behind one trait, so every pipeline stage is written once.
//! - [`json`]: Sift's own OTLP/JSON codec (lenient where the mapping allows, never silently lossy).
//! - [`status`]: `google.rpc.Status` and `RetryInfo` for error bodies and retry advice.
//! - [`RawCodec`]: a tonic codec that passes OTLP message bytes through untouched.
//! - [`wire`]: a validating, non-allocating scan of protobuf requests (items and their validity).
//! - [`civil`]: calendar dates ⇄ epoch days (partition names, RFC 3339).
#![warn(missing_docs)]

pub mod civil;
mod grpc_codec;
pub mod json;
mod signal;
pub mod status;
pub mod wire;

pub use grpc_codec::RawCodec;
pub use opentelemetry_proto::tonic as otlp;
pub use signal::{
    data_point_count, item_count_protobuf, protobuf_to_json, AttributeSite, Logs, Metrics, Rejected, Signal,
    SignalKind, Traces,
};

/// Evaluates `$body` with the type alias `$S` bound to the [`Signal`] implementation of `$kind`:
/// the one place where a runtime [`SignalKind`] becomes a static signal type.
///
/// ```
/// use sift_proto::{with_signal, Signal, SignalKind};
/// let name = with_signal!(SignalKind::Logs, S => S::KIND.item_name());
/// assert_eq!(name, "log records");
/// ```
#[macro_export]
macro_rules! with_signal {
    ($kind:expr, $S:ident => $body:expr) => {
        match $kind {
            $crate::SignalKind::Traces => {
                type $S = $crate::Traces;
                $body
            }
            $crate::SignalKind::Logs => {
                type $S = $crate::Logs;
                $body
            }
            $crate::SignalKind::Metrics => {
                type $S = $crate::Metrics;
                $body
            }
        }
    };
}

/// The bytes of a file of `testdata/otlp-json` (for tests), found where `cargo test` runs them:
/// the path compiled in may be another checkout's, when checkouts share a target directory and a
/// test binary was not rebuilt.
#[cfg(test)]
pub(crate) fn test_vector(name: &str) -> Vec<u8> {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let path = format!("{root}/testdata/otlp-json/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}
