//! Tail sampling (in progress): the trace model, the Collector-compatible policy evaluators, the
//! pending-trace buffer and the decision cache. The WAL consumer that ties them together and feeds
//! exporters only kept traces is not built yet, so the processor cannot be configured yet.

pub mod buffer;
pub mod cache;
pub mod control;
pub mod follower;
pub mod policy;
pub mod sampler;
pub mod trace;
