//! The connections (C10K) experiment's section of a scenario (`[connections]`).

use std::time::Duration;

use serde::Deserialize;

use crate::server::Variant;

/// The connections experiment (`scenarios/c10k.toml`): for each of `models`, a fresh
/// server holding each of `idle` idle connections in turn (each after one fib(1)),
/// and meanwhile `active` closed-loop clients of fib(`n`) measured for `duration`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connections {
    #[serde(deserialize_with = "crate::models::deserialize_variants")]
    pub models: Vec<Variant>,
    /// Idle connection counts, rising; a model that cannot hold one is not tried at the
    /// larger ones.
    pub idle: Vec<usize>,
    /// Active client counts measured at each idle count.
    pub active: Vec<usize>,
    /// The active clients' request, fib(n).
    pub n: u32,
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub duration: Duration,
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub warmup: Duration,
    /// Extra `threads` rows with these `--stack-size`s (`"128KiB"`), beside the default.
    #[serde(default, deserialize_with = "crate::server::deserialize_stack_sizes")]
    pub thread_stacks: Vec<usize>,
    /// The regimes it runs in, by name (`["shared"]`); none: every regime of the run.
    /// A probe in a short scenario runs once, where its questions are asked.
    #[serde(default)]
    pub regimes: Vec<String>,
}

impl Connections {
    /// Rough wall time in one regime: per row and idle count a server start, the
    /// opening (about 150 µs per connection on a 2-core VM), a settle, and the active
    /// loads.
    pub fn estimate(&self) -> Duration {
        let rows = (self.models.len() + self.thread_stacks.len()) as u32;
        let opening: Duration = self
            .idle
            .iter()
            .map(|&n| Duration::from_micros(150) * n as u32)
            .sum();
        let fixed = (Duration::from_millis(900)
            + (self.duration + self.warmup + Duration::from_millis(100))
                * self.active.len() as u32)
            * self.idle.len() as u32;
        (opening + fixed) * rows
    }
}
