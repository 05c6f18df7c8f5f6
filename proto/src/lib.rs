//! OTLP types and their mappings for Sift.
//!
//! - [`otlp`]: the OTLP protobuf messages and gRPC services (prost/tonic, from `opentelemetry-proto`).
//! - [`Signal`]: traces, logs and metrics behind one trait, so every pipeline stage is written once.
//! - [`json`]: Sift's own OTLP/JSON codec (lenient where the mapping allows, never silently lossy).
//! - [`status`]: `google.rpc.Status` and `RetryInfo` for error bodies and retry advice.
#![warn(missing_docs)]

pub mod json;
mod signal;
pub mod status;

pub use opentelemetry_proto::tonic as otlp;
pub use signal::{data_point_count, Logs, Metrics, Rejected, Signal, SignalKind, Traces};
