//! The scale-out experiment's section of a scenario (`[scaleout]`).

use std::time::Duration;

use serde::Deserialize;

use crate::balancer::Way;
use crate::server::Variant;

/// The scale-out experiment (`scenarios/scaleout.toml`): each of `models` serving
/// fib(each of `workloads`) to closed loops of `clients_per_server_cpu` × the server's
/// CPUs, as one process and as each of `copies` copies shared each of `ways`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleOut {
    #[serde(deserialize_with = "crate::models::deserialize_variants")]
    pub models: Vec<Variant>,
    pub workloads: Vec<u32>,
    /// Closed-loop clients per server CPU (the cell's clients: this × the regime's
    /// server CPUs).
    pub clients_per_server_cpu: Vec<usize>,
    /// Copies; empty (the default): 1, 2, 4, ... up to the server's CPUs. One copy is
    /// measured only behind HAProxy (alone it is the one process).
    #[serde(default)]
    pub copies: Vec<usize>,
    /// The ways to share clients measured: `process`, `reuseport`, `one-queue`,
    /// `haproxy-leastconn`, `haproxy-roundrobin` (default: all).
    #[serde(default = "all_ways")]
    pub ways: Vec<Way>,
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub duration: Duration,
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub warmup: Duration,
    /// Repetitions of each cell, interleaved (every way once, then again).
    pub repetitions: usize,
    /// Each copy in a network namespace of its own (`crate::netns`), reached over a
    /// veth pair instead of loopback (copies sharing a port or a queue: one namespace
    /// for them all). Needs root and iproute2.
    #[serde(default)]
    pub netns: bool,
    /// A copy killed under load: see [`Kill`].
    #[serde(default)]
    pub kill: Option<Kill>,
    /// The regimes it runs in, by name; none: every regime of the run.
    #[serde(default)]
    pub regimes: Vec<String>,
}

/// One copy killed (SIGKILL) `at` into the measured window of a closed loop, for each
/// of `ways`, and every request the clients sent accounted for.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kill {
    pub model: String,
    pub n: u32,
    pub clients_per_server_cpu: usize,
    /// Copies (at least 2).
    pub copies: usize,
    pub ways: Vec<Way>,
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub duration: Duration,
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub at: Duration,
}

fn all_ways() -> Vec<Way> {
    Way::ALL.to_vec()
}

/// What is wrong with a `[scaleout]` section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[scaleout]: {0}")]
pub struct Invalid(pub String);

impl ScaleOut {
    /// What is wrong with the section, if anything.
    ///
    /// # Errors
    /// [`Invalid`], saying what.
    pub fn check(&self) -> Result<(), Invalid> {
        let bad = |why: &str| Err(Invalid(why.to_string()));
        if self.models.is_empty() || self.workloads.is_empty() || self.ways.is_empty() {
            return bad("needs models, workloads and ways");
        }
        if self.clients_per_server_cpu.is_empty()
            || self.clients_per_server_cpu.contains(&0)
            || self.copies.contains(&0)
            || self.repetitions == 0
        {
            return bad("clients per server CPU, copies and repetitions must be at least 1");
        }
        if self
            .workloads
            .iter()
            .any(|&n| n > crate::service::DEFAULT_MAX_N)
        {
            return bad("workloads must be at most the servers' --max-n");
        }
        for model in self
            .models
            .iter()
            .map(|v| v.model.as_str())
            .chain(self.kill.iter().map(|k| k.model.as_str()))
        {
            match crate::models::find(model) {
                None => return bad(&format!("`{model}` is not a model")),
                Some(m) if m.reuse_port || m.ports => {
                    return bad(&format!(
                        "`{model}` is already copies of a process; scale out a model of one process"
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(k) = &self.kill
            && (k.copies < 2
                || k.ways.is_empty()
                || k.ways.contains(&Way::Process)
                || k.at >= k.duration)
        {
            return bad(
                "[scaleout.kill] needs at least 2 copies, ways of copies (not `process`), and `at` within `duration`",
            );
        }
        Ok(())
    }

    /// The copies measured on `server_cpus` CPUs: the scenario's, or 1, 2, 4, ... up to
    /// the CPUs.
    pub fn copies_for(&self, server_cpus: usize) -> Vec<usize> {
        match self.copies.is_empty() {
            false => self.copies.clone(),
            true => std::iter::successors(Some(1usize), |c| Some(c * 2))
                .take_while(|&c| c <= server_cpus.max(1))
                .collect(),
        }
    }

    /// The (way, copies) pairs of one group of cells, in the tables' order: `process`
    /// once, each way of copies at each count (one copy only behind HAProxy).
    pub fn layouts(&self, server_cpus: usize) -> Vec<(Way, usize)> {
        let mut out = Vec::new();
        if self.ways.contains(&Way::Process) {
            out.push((Way::Process, 1));
        }
        for copies in self.copies_for(server_cpus) {
            for &way in self.ways.iter().filter(|&&w| w != Way::Process) {
                if copies > 1 || way.balance().is_some() {
                    out.push((way, copies));
                }
            }
        }
        out
    }

    /// Cells in one regime.
    pub fn cells(&self, server_cpus: usize) -> usize {
        self.models.len()
            * self.workloads.len()
            * self.clients_per_server_cpu.len()
            * self.layouts(server_cpus).len()
    }

    /// Rough wall time in one regime: each cell's repetitions (a start of every copy,
    /// HAProxy, the load) and the kills.
    pub fn estimate(&self, server_cpus: usize) -> Duration {
        let cell = self.duration + self.warmup + Duration::from_millis(400);
        let kills = self.kill.as_ref().map_or(Duration::ZERO, |k| {
            (k.duration + Duration::from_millis(800)) * k.ways.len() as u32
        });
        cell * (self.cells(server_cpus) * self.repetitions) as u32 + kills
    }
}
