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
    /// The spread of the downstream's waits, a share of the delay: each wait is drawn
    /// uniformly from `delay × (1 ± jitter / 2)`, so its mean is still `delay`. A real
    /// downstream's waits vary; a fixed one returns every request in the order and
    /// rhythm it came, so a burst stays a burst for the whole run and the machine idles
    /// between bursts. 0: every wait exactly `delay`.
    #[serde(default)]
    pub jitter: f64,
    /// Models measured again with `--gil` (CPython's lock, released while waiting).
    #[serde(default)]
    pub gil: Vec<String>,
    /// The regimes it runs in, by name (`["shared"]`); none: every regime of the run.
    /// A probe in a short scenario runs once, where its questions are asked.
    #[serde(default)]
    pub regimes: Vec<String>,
}

impl Waiting {
    /// Rough wall time in one regime: per cell a downstream, a server, the load, and
    /// their teardown.
    pub fn estimate(&self) -> Duration {
        let rows = (self.models.len() + self.gil.len()) as u32;
        (self.duration + self.warmup + Duration::from_millis(300))
            * rows
            * (self.delays.len() * self.clients.len()) as u32
    }
}
