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
