//! The connections (C10K) experiment's records, as plain data.

use serde::{Deserialize, Serialize};

/// The connections (C10K) experiment's records: the limits it ran under, and one
/// record per row and idle count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionRecords {
    /// The active clients' request, fib(n).
    pub n: u32,
    /// Measured seconds per active load, after its warm-up.
    pub duration_s: f64,
    /// The limits in force, for the report's header: descriptors of the client and of
    /// each server, the loopback's ephemeral ports, threads and memory maps.
    pub limits: Vec<String>,
    pub records: Vec<ConnectionRecord>,
}

/// One row (a model, perhaps with a stack size) holding `idle` idle connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    pub regime: String,
    /// As the tables name it: `threads`, `threads (128KiB stacks)`.
    pub row: String,
    /// The registry model it runs.
    pub model: String,
    /// `--stack-size` of the server, bytes; `None`: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_size: Option<usize>,
    /// Idle connections asked for.
    pub idle: usize,
    /// Answered (each its one fib(1)) and held open.
    pub held: usize,
    /// Held open without a reply (in the accept backlog, or a pool's queue).
    #[serde(default)]
    pub waiting: usize,
    /// What the idle clients got, in words (`1,015 answered, 3,985 told ERR server busy`).
    pub outcome: String,
    /// Why not all were tried, if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// From the first connect to the last first reply, seconds.
    pub open_s: f64,
    /// Per connection held open (answered or waiting), the server's process tree before
    /// and after: descriptors, resident KiB, address-space KiB, threads. `None` when
    /// none was held.
    pub descriptors: Option<f64>,
    pub rss_kib: Option<f64>,
    pub vsz_kib: Option<f64>,
    pub threads: Option<f64>,
    /// One non-blocking read that finds nothing, µs, over the held connections in turn
    /// (the client's side of them): the per-connection cost of a loop that tries every
    /// socket, at this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_read_us: Option<f64>,
    /// The active loads run while the idle connections were held.
    pub active: Vec<ActiveLoad>,
}

/// A closed loop of `clients` active clients among the idle ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveLoad {
    pub clients: usize,
    pub throughput_rps: f64,
    pub requests_ok: u64,
    /// Latency percentiles of the correct replies, µs; 0 when there were none.
    pub p50_us: u64,
    pub p99_us: u64,
    pub p99_9_us: u64,
    /// Requests without a reply in time, `ERR` replies, lost to a reset or a refused
    /// connection.
    pub timeouts: u64,
    pub err_replies: u64,
    pub failed: u64,
    /// The replies' latency HdrHistogram (V2 + DEFLATE, base64), for the percentiles'
    /// intervals; empty in reports from before it was kept.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub histogram: String,
}
