//! The starvation experiment's section of a scenario (`[starvation]`).

use std::time::Duration;

use serde::Deserialize;

/// Seed 004's experiment: a closed loop of light requests on one connection, and one
/// heavy request on another, sent `at` into the run and sized so it takes about
/// `heavy_seconds` on this machine. How much of the light throughput survives while the
/// heavy request runs is the measure of a model's isolation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Starvation {
    pub light_n: u32,
    pub heavy_seconds: f64,
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub at: Duration,
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub length: Duration,
}
