//! Command-line overrides of a scenario (`fiblab bench quick --clients 1,16`): each
//! reaches every experiment that can follow it, and says in one line where one cannot.

use std::time::Duration;

use super::{Regime, Scenario, ScenarioError};
use crate::models;
use crate::units::{CpuList, parse_duration};

/// Command-line overrides of a scenario's fields (`fiblab bench quick --clients 1,16`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Models instead of the scenario's, in every experiment that names its models (the
    /// seed tables, the knee, the python, connections and waiting experiments),
    /// comma-separated
    /// (`epoll+offload` for a variant).
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Workloads (fib n) instead of the scenario's, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub workloads: Option<Vec<u32>>,
    /// Client counts instead of the scenario's (the seed tables' and the waiting
    /// experiment's closed loops), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub clients: Option<Vec<usize>>,
    /// Measured time per cell (the seed tables', the connections and waiting
    /// experiments'), e.g. 3s.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Warm-up per cell, e.g. 500ms.
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Repetitions of every cell.
    #[arg(long)]
    pub repetitions: Option<usize>,
    /// After the interleaved rounds, race: measure again only the cells that decide an
    /// open question (a ranking's contenders, an undecided verdict's cells), leaving
    /// alone a model within this share of the leader (e.g. 5%: as good as the best).
    #[arg(long, value_parser = crate::units::parse_percent)]
    pub precision: Option<f64>,
    /// The whole command's wall-time budget, e.g. 5m, counted from its start: the race
    /// after the interleaved rounds stops there.
    #[arg(long, value_parser = parse_duration)]
    pub time_budget: Option<Duration>,
    /// Open loop at this many requests per second per cell, instead of closed loops.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Split each cell's load across this many in-process agents (execution segments)
    /// and merge their reports.
    #[arg(long)]
    pub agents: Option<usize>,
    /// Pin the server process to these CPUs, e.g. 0 or 0,1 or 0-3.
    #[arg(long)]
    pub server_cpus: Option<CpuList>,
    /// Pin the load generator's threads to these CPUs, e.g. 1 or 2-3.
    #[arg(long)]
    pub client_cpus: Option<CpuList>,
    /// Regimes instead of the scenario's, comma-separated: shared (unpinned, a
    /// sleeping client), pinned-spinning (client busy-polling on the first CPU, server
    /// on the others), pinned-sleeping (the same, the client sleeping between replies)
    #[arg(long, value_delimiter = ',', value_enum)]
    pub regimes: Option<Vec<Regime>>,
    /// Leave out seed 004's starvation experiment.
    #[arg(long)]
    pub no_starvation: bool,
    /// Leave out the connections (C10K) experiment.
    #[arg(long)]
    pub no_connections: bool,
    /// Leave out the knee (latency against offered load) experiment.
    #[arg(long)]
    pub no_knee: bool,
    /// Scale-out: each copy in a network namespace of its own, reached over a veth pair
    /// (a real interface, not loopback; needs root and iproute2's `ip`).
    #[arg(long)]
    pub netns: bool,
}

impl Overrides {
    /// The scenario with these overrides applied, checked again as a whole.
    ///
    /// # Errors
    /// An unknown model, or a scenario the overrides leave unable to run.
    pub fn apply(&self, scenario: Scenario) -> Result<Scenario, ScenarioError> {
        self.apply_noting(scenario).map(|(s, _)| s)
    }

    /// [`apply`](Self::apply), and one line for each experiment an override does not
    /// reach (its own workload, connection count or step length), to say so instead of
    /// silently ignoring the flag.
    ///
    /// # Errors
    /// As [`apply`](Self::apply).
    pub fn apply_noting(
        &self,
        mut scenario: Scenario,
    ) -> Result<(Scenario, Vec<String>), ScenarioError> {
        let mut notes = Vec::new();
        if let Some(names) = &self.models {
            let named: Vec<_> = names
                .iter()
                .map(|m| models::parse_variant(m))
                .collect::<Result<_, _>>()
                .map_err(|e| ScenarioError(e.to_string()))?;
            // Every experiment that names its models measures the named ones; the seed
            // tables only where the scenario has them (a knee scenario's are empty).
            if !scenario.models.is_empty() {
                scenario.models = named.clone();
            }
            if let Some(knee) = &mut scenario.knee {
                knee.models = named.clone();
            }
            if let Some(python) = &mut scenario.python {
                python.models = named.clone();
            }
            if let Some(connections) = &mut scenario.connections {
                connections.models = named.clone();
            }
            if let Some(waiting) = &mut scenario.waiting {
                waiting.gil.retain(|m| named.iter().any(|v| &v.model == m));
                waiting.models = named;
            }
        }
        if let Some(w) = &self.workloads {
            scenario.workloads = w.clone();
            if let Some(knee) = &mut scenario.knee {
                let before = knee.workloads.len();
                knee.workloads
                    .retain(|k| mix_ns(&k.mix).is_some_and(|ns| ns.iter().all(|n| w.contains(n))));
                if knee.workloads.len() < before {
                    notes.push(format!(
                        "--workloads: the knee sweeps only its workloads made of these n ({} of {})",
                        knee.workloads.len(),
                        before
                    ));
                }
            }
            if let Some(c) = &scenario.connections {
                notes.push(format!("--workloads does not reach the connections experiment: its active clients ask fib({}) (its `n`)", c.n));
            }
            if let Some(wt) = &scenario.waiting {
                notes.push(format!("--workloads does not reach the waiting experiment: its requests wait on a downstream, then compute fib({}) (its `n`)", wt.n));
            }
            if scenario.python.is_some() {
                notes.push("--workloads does not reach the python experiment: it runs the seeds' own n (its `light_n`, `seed_n`)".into());
            }
            if scenario.starvation.is_some() {
                notes.push("--workloads does not reach the starvation experiment: its light and heavy requests are its own (`light_n`, `heavy_seconds`)".into());
            }
        }
        if let Some(c) = &self.clients {
            scenario.clients = c.clone();
            if let Some(w) = &mut scenario.waiting {
                w.clients = c.clone();
            }
            if let Some(k) = &scenario.knee {
                notes.push(format!("--clients does not reach the knee: an open loop over its {} connections (its `connections`)", k.connections));
            }
            if scenario.connections.is_some() {
                notes.push("--clients does not reach the connections experiment: it counts idle and active connections (its `idle`, `active`)".into());
            }
        }
        if let Some(d) = self.duration {
            scenario.duration = d;
            if let Some(w) = &mut scenario.waiting {
                w.duration = d;
            }
            if let Some(c) = &mut scenario.connections {
                c.duration = d;
            }
            if scenario.knee.is_some() {
                notes.push(
                    "--duration does not reach the knee: each rate is held for its `step`".into(),
                );
            }
        }
        if let Some(w) = self.warmup {
            scenario.warmup = w;
            if let Some(wt) = &mut scenario.waiting {
                wt.warmup = w;
            }
            if let Some(c) = &mut scenario.connections {
                c.warmup = w;
            }
            if scenario.knee.is_some() {
                notes.push(
                    "--warmup does not reach the knee: its steps warm up for its own `warmup`"
                        .into(),
                );
            }
        }
        if let Some(r) = self.repetitions {
            scenario.repetitions = r;
            if scenario.knee.is_some() {
                notes.push(
                    "--repetitions does not reach the knee: it repeats whole sweeps (its `sweeps`)"
                        .into(),
                );
            }
        }
        if self.precision.is_some() {
            scenario.precision = self.precision;
        }
        if self.time_budget.is_some() {
            scenario.time_budget = self.time_budget;
        }
        if self.rate.is_some() {
            scenario.rate = self.rate;
        }
        if let Some(agents) = self.agents {
            scenario.agents = agents;
        }
        if let Some(regimes) = &self.regimes {
            scenario.regimes = regimes.clone();
            scenario.pinning = None;
        }
        if self.server_cpus.is_some() || self.client_cpus.is_some() {
            let mut pinning = scenario.pinning.take().unwrap_or_default();
            if let Some(cpus) = &self.server_cpus {
                pinning.server = cpus.0.clone();
            }
            if let Some(cpus) = &self.client_cpus {
                pinning.client = cpus.0.clone();
            }
            scenario.pinning = Some(pinning);
        }
        if self.no_starvation {
            scenario.starvation = None;
        }
        if self.no_connections {
            scenario.connections = None;
        }
        if self.no_knee {
            scenario.knee = None;
        }
        if self.netns {
            match &mut scenario.scaleout {
                Some(s) => s.netns = true,
                None => notes.push("--netns reaches only the scale-out experiment (`[scaleout]`), which this scenario does not run".into()),
            }
        }
        scenario.check()?;
        Ok((scenario, notes))
    }
}

/// The n of a `--mix` (`20`, `1:99,30:1`); `None` if it does not parse.
fn mix_ns(mix: &str) -> Option<Vec<u32>> {
    mix.split(',')
        .map(|part| part.split(':').next()?.trim().parse().ok())
        .collect()
}
