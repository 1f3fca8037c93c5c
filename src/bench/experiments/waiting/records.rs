//! The waiting experiment's records, as plain data.

use serde::{Deserialize, Serialize};

/// The waiting experiment's records: one per row, delay and client count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitingRecords {
    /// Each request's work once its wait is over, fib(n).
    pub n: u32,
    /// Measured seconds per load, after its warm-up.
    pub duration_s: f64,
    /// The spread of the downstream's waits, a share of the delay (each uniform over
    /// `delay × (1 ± jitter / 2)`); 0 (and in reports from before it existed): none.
    #[serde(default)]
    pub jitter: f64,
    pub records: Vec<WaitingRecord>,
}

/// One row (a model, perhaps with `--gil`) at one downstream delay and client count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitingRecord {
    pub regime: String,
    /// As the tables name it: `threads`, `threads --gil`.
    pub row: String,
    pub model: String,
    /// The downstream's delay asked, ms.
    pub delay_ms: f64,
    pub clients: usize,
    /// Correct replies per second over the measured window, and per whole second.
    pub throughput_rps: f64,
    pub per_second: Vec<f64>,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Requests that got no reply within the load's timeout, and failed connections.
    pub errors: u64,
    /// `ERR` replies: clients turned away (`ERR server busy`) or failed waits.
    #[serde(default)]
    pub err_replies: u64,
    /// What the downstream gave: its mean wait per request (ms, its timer's slack and
    /// its own thread's delays included), the most requests waiting at once, its CPU per request (µs).
    pub waited_ms: f64,
    pub most_waiting: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_cpu_us: Option<f64>,
    /// How many requests the model lets wait at once by its design (`single` 1, a
    /// pool its workers); `None`: one per client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_cap: Option<usize>,
    /// CPUs the model's work can use: 1 for a one-thread loop, else the server's.
    pub cpus: usize,
    /// The server's CPU per reply over the window, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_us: Option<f64>,
    /// The load generator's CPU per reply over the window, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cpu_us: Option<f64>,
    /// CPUs server, load generator and downstream share when nothing is pinned (the
    /// machine's, for its limit); `None` when the regime gives each side its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_cpus: Option<usize>,
    /// The server's process tree before the load (after one request) and at the end of
    /// the measured window: threads and resident KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<(u64, u64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_kib: Option<(u64, u64)>,
}
