//! Records more than one experiment holds, as plain data: seed 004's heavy request
//! among light ones (the starvation experiment's rows, and the python experiment's).

use serde::{Deserialize, Serialize};

/// Seed 004's experiment on one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StarvationResult {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub regime: String,
    pub variant: String,
    /// fib(n) of the heavy request.
    pub heavy_n: u32,
    /// Seconds the heavy request took, if it was answered within the run.
    pub heavy_s: Option<f64>,
    /// Light replies per second before the heavy request was sent.
    pub light_before_rps: f64,
    /// Light replies per second while the heavy request was in the server (until the
    /// end of the run if it never came back).
    pub light_during_rps: f64,
    /// `light_during_rps / light_before_rps`: 1 means untouched, 0 means collapsed.
    pub kept: f64,
    /// Light replies per 100 ms over the whole run, for timelines.
    pub timeline: Vec<u64>,
    /// When the heavy request was sent, in seconds from the start of the run.
    pub heavy_at_s: f64,
}
