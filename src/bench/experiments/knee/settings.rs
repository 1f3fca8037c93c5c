//! The knee experiment's section of a scenario (`[knee]`).

use std::time::Duration;

use serde::Deserialize;

use crate::server::Variant;

/// The knee experiment (`scenarios/knee.toml`): for each of `models` and each workload,
/// an open-loop sweep of offered rates, `start_rate` up by `factor` until a step is not
/// sustained (achieved below 99% of offered, errors, or p99 above the workload's SLO),
/// then `refine` steps between the last good and the first bad rate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Knee {
    #[serde(deserialize_with = "crate::models::deserialize_variants")]
    pub models: Vec<Variant>,
    pub workloads: Vec<KneeWorkload>,
    /// Connections of the open loop: enough that requests never queue behind their own
    /// connection.
    pub connections: usize,
    /// Requests in flight per connection, at most.
    pub pipeline: usize,
    /// Measured time per step, and its warm-up.
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub step: Duration,
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub warmup: Duration,
    /// The first offered rate, requests per second, and the factor between steps.
    pub start_rate: f64,
    pub factor: f64,
    /// Steps between the last sustained rate and the first that was not.
    pub refine: usize,
    /// No step offers more than this.
    pub max_rate: f64,
    /// Sweeps of each row and workload, interleaved across rows, each against a fresh
    /// server process: the knee is their median, with its interval (or their range,
    /// where too few sweeps allow no 95% interval).
    #[serde(default = "three")]
    pub sweeps: usize,
    /// The load generator's tick (`fiblab load --tick`): at most one wake-up per tick
    /// instead of about one per request, so the client's limit lies higher; each request
    /// is sent up to one tick late and measured from when it was due. Zero (the default): each request
    /// at its due time.
    #[serde(default, deserialize_with = "crate::units::deserialize_duration")]
    pub tick: Duration,
    /// After the rounds, at most this many more sweeps of each contender (a row in a
    /// workload's tier 1, not a lower bound, slower than its leader by more than the
    /// scenario's `precision`, 5% without one) and of that leader, a race as `quick`
    /// runs one: the rows already ruled out get none. 0: no race.
    #[serde(default)]
    pub race: usize,
}

fn three() -> usize {
    3
}

/// One workload of the knee: a fib mix (`1`, `20`, `1:99,30:1`) and its latency target.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KneeWorkload {
    /// `--mix` syntax: `N` or `N:WEIGHT,N:WEIGHT`.
    pub mix: String,
    /// p99 a sustained step stays under.
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub slo: Duration,
}
