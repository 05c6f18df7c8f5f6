//! Tail sampling (in progress): the trace model and the Collector-compatible policy evaluators.
//! The buffer that groups spans into traces, the decision cache and the WAL consumer that feeds
//! exporters only kept traces are not built yet, so the processor cannot be configured yet.

pub mod policy;
pub mod trace;
