//! End-to-end tests: a real `sift` process, real clients (the OpenTelemetry Python SDK, HTTP and
//! gRPC), real files, real signals.

mod cli;
mod common;
mod damage;
mod disk_full;
mod durability;
mod forwarding;
mod ingest_grpc;
mod ingest_http;
mod ingest_sdk;
mod ops;
mod overload;
mod query;
mod redaction;
mod tail_sampling;
