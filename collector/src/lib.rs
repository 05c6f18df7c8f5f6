//! Sift's collector: OTLP receivers, the pipeline (redact → WAL → fan-out), processors, exporters, its own
//! telemetry, and the service that runs them all (`sift serve`).
#![warn(missing_docs)]

pub mod consumer;
pub mod exporter;
pub mod pipeline;
pub mod processor;
pub mod receiver;
pub mod service;
pub mod telemetry;
