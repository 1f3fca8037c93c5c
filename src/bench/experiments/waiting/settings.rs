//! The waiting experiment's section of a scenario (`[waiting]`).

use std::time::Duration;

use serde::Deserialize;

use crate::server::Variant;

/// The waiting experiment (`scenarios/waiting.toml`): each of `models` serves fib(`n`)
/// with `--downstream` pointing at a `fiblab backend` that answers after each of
/// `delays`, to closed loops of each of `clients`; `gil` names models measured a second
/// time with `--gil`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiting {
    #[serde(deserialize_with = "crate::models::deserialize_variants")]
    pub models: Vec<Variant>,
    /// The downstream's delays (`"1ms"`, `"10ms"`).
    #[serde(deserialize_with = "crate::units::deserialize_durations")]
    pub delays: Vec<Duration>,
    /// Closed-loop client counts, rising.
    pub clients: Vec<usize>,
    /// Each request's work once its wait is over, fib(n).
    pub n: u32,
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub duration: Duration,
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub warmup: Duration,
    /// Models measured again with `--gil` (CPython's lock, released while waiting).
    #[serde(default)]
    pub gil: Vec<String>,
}
