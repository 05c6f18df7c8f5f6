//! Sift's collector: OTLP receivers, the pipeline (redact → WAL → fan-out), processors, exporters, its own
//! telemetry, and the service that runs them all (`sift serve`).
#![warn(missing_docs)]

pub mod after_wal;
pub mod exporter;
pub mod pipeline;
pub mod plan;
pub mod processor;
pub mod receiver;
pub mod service;
pub mod telemetry;
