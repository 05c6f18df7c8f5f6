//! Receivers: where OTLP enters Sift. One `otlp` receiver serves gRPC and/or HTTP; both hand
//! decoded requests to the shared [`crate::pipeline::Ingest`].

mod decompress;
pub mod grpc;
pub mod http;
pub mod refusal;

pub use decompress::{decompress, DecompressError, Encoding};
