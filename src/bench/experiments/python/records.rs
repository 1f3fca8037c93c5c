//! The python experiment's records, as plain data.

use serde::{Deserialize, Serialize};

use crate::bench::records::StarvationResult;

/// The python experiment's records: how its CPU-bound n was sized, and what was
/// measured with and without the emulated GIL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PythonRecords {
    /// The seeds' CPU-bound n (20), run by the Python peers.
    pub seed_n: u32,
    /// The I/O-bound n (1).
    pub light_n: u32,
    /// What the seeds' fib(seed_n) costs in CPython here, µs.
    pub python_fib_us: f64,
    /// fiblab's n whose native fib costs about as much, and its cost, µs.
    pub cpu_n: u32,
    pub cpu_n_us: f64,
    /// How `python_fib_us` was found, for the report.
    pub how_sized: String,
    pub switch_interval_ms: f64,
    pub samples: Vec<PythonSample>,
    pub starvation: Vec<PythonStarvation>,
}

/// One closed-loop cell of the python experiment, one repetition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PythonSample {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub regime: String,
    /// `threads`, `threads+gil`, or a peer's name.
    pub row: String,
    /// `io` or `cpu`.
    pub workload: String,
    pub n: u32,
    pub clients: usize,
    pub repetition: usize,
    pub throughput_rps: f64,
    /// Correct replies in the measured time.
    pub requests: u64,
    /// What the server's lock did during the cell (`--gil` rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gil: Option<crate::gil::GilCounts>,
}

/// Seed 004's experiment on one row of the python experiment, with the lock's counters
/// over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PythonStarvation {
    pub result: StarvationResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gil: Option<crate::gil::GilCounts>,
}
