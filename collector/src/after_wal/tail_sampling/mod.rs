//! Tail sampling, after the WAL: the [`sampler`] of a traces pipeline keeps or drops whole traces
//! by the Collector's policies ([`policy`]) once they are complete ([`buffer`]), and remembers its
//! decisions ([`cache`]); the [`follower`] lets a logs pipeline's records follow their trace's
//! decision. [`control`] is their live state for the query API and SIGHUP; [`trace`] the span
//! model they share.

pub mod buffer;
pub mod cache;
pub mod control;
pub mod follower;
pub mod policy;
pub mod sampler;
pub mod trace;
