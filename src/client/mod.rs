//! The seeds' measuring clients, `perf1` (latency of each request) and `perf2`
//! (requests per second), as presets of the load generator ([`crate::load`]): the
//! same engine, the seeds' output; and `soak`, a long mixed run with exact accounting.

pub mod perf1;
pub mod perf2;
pub mod soak;
