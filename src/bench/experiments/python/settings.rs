//! The python experiment's section of a scenario (`[python]`).

use std::time::Duration;

use serde::Deserialize;

use crate::server::Variant;

/// The python experiment (`scenarios/python.toml`): seed 000's tables and seed 004's
/// heavy request for `models`, each without and with `--gil`, beside the seeds' Python
/// servers given as `--target`s.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Python {
    #[serde(deserialize_with = "crate::models::deserialize_variants")]
    pub models: Vec<Variant>,
    /// The I/O-bound n, the seeds' 1.
    pub light_n: u32,
    /// The seeds' CPU-bound n (20), as the Python servers run it; fiblab's rows run the
    /// n whose native fib costs as much here as CPython's fib(seed_n).
    pub seed_n: u32,
    /// `--switch-interval` of the `+gil` rows.
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub switch_interval: Duration,
    /// The heavy request's arrival and the run's length, as in [`Starvation`](crate::bench::scenario::Starvation).
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub at: Duration,
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub length: Duration,
}
