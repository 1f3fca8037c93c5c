//! Benchmark scenarios as data: TOML files in `scenarios/`, one [`Scenario`] each.
//!
//! ```toml
//! name = "quick"
//! about = "what it is for"
//! models = ["threads", "epoll+offload"]   # a model name, `+offload` for the variant
//! workloads = [1, 20]                      # fib(n) per cell
//! clients = [1, 2]                         # connections per cell
//! duration = "700ms"                       # measured time per cell
//! warmup = "200ms"
//! repetitions = 3                          # each cell, interleaved across models
//! rate = 20000                             # optional: open loop at 20k req/s per cell
//!
//! regimes = ["shared", "pinned-spinning"]  # optional; how client and server share the CPUs
//!
//! [pinning]                                # optional, instead of regimes: one regime, these CPUs
//! server = [0]                             # CPUs the server process may run on
//! client = [1]                             # CPUs the load generator's threads run on
//! ```
//!
//! Every field can be overridden on the command line ([`Overrides`]), so
//! `fiblab bench quick --models threads,epoll --clients 1,2,16` needs no new file.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::server::Variant;

pub use super::experiments::connections::settings::Connections;
pub use super::experiments::knee::settings::{Knee, KneeWorkload};
pub use super::experiments::python::settings::Python;
pub use super::experiments::scaleout::settings::ScaleOut;
pub use super::experiments::starvation::settings::Starvation;
pub use super::experiments::waiting::settings::Waiting;

mod overrides;
pub use overrides::Overrides;

/// A scenario that cannot run; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScenarioError(String);

/// The scenario `fiblab bench` runs when given none.
pub const QUICK: &str = include_str!("../../scenarios/quick.toml");

/// The scenarios built into the binary, by name, so `fiblab bench seeds` works anywhere.
pub const SHIPPED: &[(&str, &str)] = &[
    ("quick", QUICK),
    ("seeds", include_str!("../../scenarios/seeds.toml")),
    ("full", include_str!("../../scenarios/full.toml")),
    ("python", include_str!("../../scenarios/python.toml")),
    ("c10k", include_str!("../../scenarios/c10k.toml")),
    ("knee", include_str!("../../scenarios/knee.toml")),
    ("cores", include_str!("../../scenarios/cores.toml")),
    ("waiting", include_str!("../../scenarios/waiting.toml")),
    ("scale", include_str!("../../scenarios/scale.toml")),
    ("scaleout", include_str!("../../scenarios/scaleout.toml")),
];

fn one_agent() -> usize {
    1
}

/// A shipped scenario by name, or a scenario file by path.
pub fn load(name_or_path: &str) -> Result<Scenario, ScenarioError> {
    if let Some((_, text)) = SHIPPED.iter().find(|(name, _)| *name == name_or_path) {
        return Scenario::parse(text);
    }
    let text = std::fs::read_to_string(name_or_path).map_err(|e| {
        let names: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
        ScenarioError(format!(
            "'{name_or_path}' is neither a shipped scenario ({}) nor a readable file: {e}",
            names.join(", ")
        ))
    })?;
    Scenario::parse(&text).map_err(|e| ScenarioError(format!("{name_or_path}: {e}")))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub about: String,
    #[serde(deserialize_with = "crate::models::deserialize_variants")]
    pub models: Vec<Variant>,
    pub workloads: Vec<u32>,
    /// Closed-loop client counts; with `clients_per_server_cpu`, computed instead.
    #[serde(default)]
    pub clients: Vec<usize>,
    /// Clients doubling from 1 up to this many per server CPU (the scale experiment: 16
    /// gives 1 to 16 on 2 CPUs split in halves, 1 to 128 on 16), replacing `clients`.
    /// Resolved when the scenario is read, from the CPUs this process may use and the
    /// first regime's split.
    #[serde(default)]
    pub clients_per_server_cpu: Option<usize>,
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub duration: Duration,
    #[serde(deserialize_with = "crate::units::deserialize_duration")]
    pub warmup: Duration,
    pub repetitions: usize,
    /// The race's indifference zone (`"5%"`): after the interleaved rounds, the seed
    /// tables' cells that decide an open question (a ranking's contenders, an undecided
    /// verdict's cells) are measured again, except a tier-1 model within this share of
    /// its leader, which is as good as the best for the question
    /// (the race: `bench/experiments/seed_tables/race.rs`).
    #[serde(default, deserialize_with = "crate::units::deserialize_percent")]
    pub precision: Option<f64>,
    /// The whole command's wall-time budget (`"290s"`), counted from its start
    /// (calibration and every experiment included): the race stops where its next
    /// measurement would end past it. Without one (and with `precision`), twice the
    /// run's estimate.
    #[serde(
        default,
        deserialize_with = "crate::units::deserialize_optional_duration"
    )]
    pub time_budget: Option<Duration>,
    /// Load agents per seed-table cell: its load split into this many execution
    /// segments run by in-process agents from one start, their reports merged, as
    /// `fiblab load --segment` and `fiblab load merge` do across hosts. 1 (the
    /// default): one load generator. A cell with fewer clients than agents runs as one.
    #[serde(default = "one_agent")]
    pub agents: usize,
    /// Open loop: every cell sends this many requests per second in all, on schedule,
    /// and latency counts from when each was due. `None`: closed loops (each client
    /// sends its next request when the last reply is in), as the seeds' clients do.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Seed 004's experiment, once per model: see [`Starvation`].
    pub starvation: Option<Starvation>,
    /// The seeds' Python results with an emulated GIL: see [`Python`].
    #[serde(default)]
    pub python: Option<Python>,
    /// Many idle connections (C10K): see [`Connections`].
    #[serde(default)]
    pub connections: Option<Connections>,
    /// Latency against offered load, each model's knee: see [`Knee`].
    #[serde(default)]
    pub knee: Option<Knee>,
    /// Requests that wait on a downstream (I/O-bound work): see [`Waiting`].
    #[serde(default)]
    pub waiting: Option<Waiting>,
    /// One process against copies behind SO_REUSEPORT, one queue, HAProxy: [`ScaleOut`].
    #[serde(default)]
    pub scaleout: Option<ScaleOut>,
    /// How server and load generator share the machine; every cell is measured in
    /// each. Default: `["shared"]`.
    #[serde(default = "Regime::default_list")]
    pub regimes: Vec<Regime>,
    /// CPUs for the server and the client, as one regime of its own instead of
    /// `regimes`; `None`: the regimes decide.
    #[serde(default)]
    pub pinning: Option<Pinning>,
}

/// How the server and the load generator share the CPUs while cells are measured. On
/// a small VM this decides a closed loop's figures more than the model does: a client
/// that sleeps between replies makes every reply wake an idle CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Regime {
    /// Nothing pinned, a load generator that sleeps in epoll between replies: how the
    /// seeds ran, and how most servers meet their clients.
    Shared,
    /// The load generator on the first CPU, busy-polling (it never sleeps, so no reply
    /// wakes it); the server on the other CPUs. Needs 2 CPUs.
    PinnedSpinning,
    /// The load generator on the first CPU, sleeping between replies; the server on the
    /// other CPUs. Neither takes CPU time from the other, so an open loop's client is
    /// never late because a server thread ran in its place, and its own saturation
    /// still shows. Needs 2 CPUs.
    PinnedSleeping,
    /// The load generator on the first half of the CPUs (rounded down), sleeping between
    /// replies; the server on the other half: how the scale experiment gives both sides
    /// room to grow (on 2 CPUs, one each; on 16, eight each). Needs 2 CPUs.
    Halves,
}

/// Whether an experiment limited to the regimes `wanted` (none: every one) runs in
/// `regime`, one of the run's `regimes`: in the ones it names, or, where the run has
/// none of them (`--regimes` chose others), in the run's first, so that its questions
/// are still answered once.
pub fn runs_in(wanted: &[String], regimes: &[String], regime: &str) -> bool {
    let named = |name: &str| wanted.iter().any(|w| w == name);
    match (wanted.is_empty(), regimes.iter().any(|r| named(r))) {
        (true, _) => true,
        (false, true) => named(regime),
        (false, false) => regimes.first().is_none_or(|first| first == regime),
    }
}

impl Regime {
    fn default_list() -> Vec<Regime> {
        vec![Regime::Shared]
    }

    /// What deployment its figures stand for, and which question to read them for.
    pub fn stands_for(self) -> &'static str {
        match self {
            Regime::Shared => {
                "a client on the server's own machine (a sidecar, a local proxy, the seeds' own runs): read it for what a caller next to the server sees, wake-ups included"
            }
            Regime::PinnedSpinning => {
                "a server whose clients are elsewhere (behind a load balancer, on other machines), so none wakes on its CPUs: read it for the server's own cost per request"
            }
            Regime::PinnedSleeping => {
                "client and server on CPUs of their own, the client sleeping between replies: read it for latency under an offered load without a shared CPU"
            }
            Regime::Halves => {
                "both sides given half the machine to grow into: read it for how far a model scales with CPUs"
            }
        }
    }

    /// Its name in scenarios, reports and file names.
    pub fn name(self) -> &'static str {
        match self {
            Regime::Shared => "shared",
            Regime::PinnedSpinning => "pinned-spinning",
            Regime::PinnedSleeping => "pinned-sleeping",
            Regime::Halves => "halves",
        }
    }

    /// The CPUs each side gets among `allowed` (the CPUs this process may use), and
    /// whether the client spins; `None` when `allowed` is too few.
    pub fn resolve(self, allowed: &[usize]) -> Option<RegimePlan> {
        match self {
            Regime::Shared => Some(RegimePlan {
                name: self.name().into(),
                server_cpus: Vec::new(),
                client_cpus: Vec::new(),
                spin: false,
            }),
            Regime::PinnedSpinning | Regime::PinnedSleeping => match allowed {
                [client, server @ ..] if !server.is_empty() => Some(RegimePlan {
                    name: self.name().into(),
                    server_cpus: server.to_vec(),
                    client_cpus: vec![*client],
                    spin: self == Regime::PinnedSpinning,
                }),
                _ => None,
            },
            Regime::Halves if allowed.len() >= 2 => {
                let (client, server) = allowed.split_at(allowed.len() / 2);
                Some(RegimePlan {
                    name: self.name().into(),
                    server_cpus: server.to_vec(),
                    client_cpus: client.to_vec(),
                    spin: false,
                })
            }
            Regime::Halves => None,
        }
    }
}

/// A regime as it runs on this machine: which CPUs each side has (empty: unpinned)
/// and whether the load generator busy-polls.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RegimePlan {
    pub name: String,
    pub server_cpus: Vec<usize>,
    pub client_cpus: Vec<usize>,
    pub spin: bool,
}

impl RegimePlan {
    /// A scenario's explicit `pinning`, as a regime named `pinned`.
    pub fn pinned(pinning: &Pinning) -> RegimePlan {
        RegimePlan {
            name: "pinned".into(),
            server_cpus: pinning.server.clone(),
            client_cpus: pinning.client.clone(),
            spin: false,
        }
    }

    /// True when the client may run on the server's CPUs (nothing keeps them apart).
    pub fn shared_cpus(&self) -> bool {
        self.server_cpus.is_empty()
            || self.client_cpus.is_empty()
            || self
                .client_cpus
                .iter()
                .any(|c| self.server_cpus.contains(c))
    }

    /// One line for a report: who runs where, and how the client waits.
    pub fn describe(&self) -> String {
        let side = |cpus: &[usize]| match cpus {
            [] => "unpinned".to_string(),
            [one] => format!("on CPU {one}"),
            cpus => format!("on CPUs {}", crate::calibrate::describe_cpus(cpus)),
        };
        format!(
            "`{}`: server {}, load generator {}, {}",
            self.name,
            side(&self.server_cpus),
            side(&self.client_cpus),
            match self.spin {
                true => "busy-polling its sockets (it never sleeps, so no reply wakes it)",
                false => "sleeping in epoll between replies",
            }
        )
    }
}

/// Which CPUs the server and the load generator may use. On a small machine a
/// one-connection figure depends on it (waking an idle CPU costs more than the work), so
/// it heads every report and figures taken under different pinning are not comparable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pinning {
    /// The server process (and every thread it starts); empty: unpinned.
    #[serde(default)]
    pub server: Vec<usize>,
    /// The load generator's threads; empty: unpinned.
    #[serde(default)]
    pub client: Vec<usize>,
}

impl Pinning {
    /// One line for report headers.
    pub fn describe(pinning: Option<&Pinning>) -> String {
        let side = |cpus: &[usize]| match cpus {
            [] => "unpinned".to_string(),
            cpus => format!(
                "CPU {}",
                cpus.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        match pinning {
            None => "none: server and client unpinned".into(),
            Some(p) => format!("server {}, client {}", side(&p.server), side(&p.client)),
        }
    }
}

impl Scenario {
    /// Parses a scenario file's text, checking what TOML alone cannot.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let mut scenario: Scenario =
            toml::from_str(text).map_err(|e| ScenarioError(e.to_string()))?;
        if let Some(per_cpu) = scenario.clients_per_server_cpu {
            scenario.clients = scenario.doubling_clients(per_cpu, &crate::cpu::allowed_cpus());
        }
        scenario.check()?;
        Ok(scenario)
    }

    fn check(&self) -> Result<(), ScenarioError> {
        let scenario = self;
        // A probe's regimes are names (its section is plain data): each must be one.
        let probes = [
            ("waiting", scenario.waiting.as_ref().map(|w| &w.regimes)),
            ("scaleout", scenario.scaleout.as_ref().map(|s| &s.regimes)),
            (
                "connections",
                scenario.connections.as_ref().map(|c| &c.regimes),
            ),
        ];
        for (section, names) in probes {
            for name in names.into_iter().flatten() {
                if <Regime as clap::ValueEnum>::from_str(name, false).is_err() {
                    return Err(ScenarioError(format!(
                        "[{section}] regimes: `{name}` is not a regime (shared, pinned-spinning, pinned-sleeping, halves)"
                    )));
                }
            }
        }
        if (scenario.models.is_empty()
            && scenario.python.is_none()
            && scenario.connections.is_none()
            && scenario.knee.is_none()
            && scenario.waiting.is_none()
            && scenario.scaleout.is_none())
            || scenario.workloads.is_empty()
            || scenario.clients.is_empty()
        {
            return Err(ScenarioError(
                "a scenario needs at least one model, workload and client count".into(),
            ));
        }
        if scenario.regimes.is_empty() {
            return Err(ScenarioError(
                "regimes may not be empty: leave it out for [\"shared\"]".into(),
            ));
        }
        if scenario.repetitions == 0 || scenario.clients.contains(&0) || scenario.agents == 0 {
            return Err(ScenarioError(
                "repetitions, client counts and agents must be at least 1".into(),
            ));
        }
        if scenario.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return Err(ScenarioError(
                "rate must be a positive number of requests per second".into(),
            ));
        }
        if let Some(n) = scenario
            .workloads
            .iter()
            .find(|&&n| n > crate::service::DEFAULT_MAX_N)
        {
            return Err(ScenarioError(format!(
                "workload n = {n} is above the servers' --max-n {}",
                crate::service::DEFAULT_MAX_N
            )));
        }
        if let Some(c) = &scenario.connections
            && (c.models.is_empty()
                || c.idle.is_empty()
                || c.active.is_empty()
                || c.idle.contains(&0)
                || c.active.contains(&0)
                || c.n > crate::service::DEFAULT_MAX_N
                || !c.idle.is_sorted())
        {
            return Err(ScenarioError(
                "[connections] needs models, rising idle counts and active client counts (all at least 1), and n up to the servers' --max-n".into(),
            ));
        }
        if let Some(w) = &scenario.waiting
            && (w.models.is_empty() && w.gil.is_empty()
                || w.delays.is_empty()
                || w.delays.iter().any(Duration::is_zero)
                || w.clients.is_empty()
                || w.clients.contains(&0)
                || w.n > crate::service::DEFAULT_MAX_N
                || w.gil.iter().any(|m| crate::models::find(m).is_none()))
        {
            return Err(ScenarioError(
                "[waiting] needs models (or gil models from the registry), delays above zero, client counts of at least 1, and n up to the servers' --max-n".into(),
            ));
        }
        if let Some(s) = &scenario.scaleout {
            s.check().map_err(|e| ScenarioError(e.to_string()))?;
        }
        if let Some(k) = &scenario.knee {
            let bad = |why: &str| Err(ScenarioError(format!("[knee]: {why}")));
            if k.models.is_empty() || k.workloads.is_empty() {
                return bad("needs models and workloads");
            }
            if k.connections == 0 || k.pipeline == 0 {
                return bad("connections and pipeline must be at least 1");
            }
            if !(k.start_rate > 0.0 && k.factor > 1.0 && k.max_rate >= k.start_rate) {
                return bad(
                    "start_rate must be positive, factor above 1, max_rate at least start_rate",
                );
            }
            for w in &k.workloads {
                if let Err(e) = crate::load::mix::Mix::parse_fib(&w.mix, true) {
                    return bad(&format!("workload mix '{}': {e}", w.mix));
                }
                if w.slo.is_zero() {
                    return bad("a workload's slo must be more than 0");
                }
            }
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some(p) = &scenario.pinning
            && let Some(cpu) = p.server.iter().chain(&p.client).find(|&&c| c >= cpus)
        {
            return Err(ScenarioError(format!(
                "pinning names CPU {cpu}, but this machine has CPUs 0 to {}",
                cpus - 1
            )));
        }
        Ok(())
    }

    /// Cells (variant, n, clients) in one repetition, floor first, `extra_rows` targets
    /// last.
    pub fn cells(&self, extra_rows: usize) -> usize {
        (self.models.len() + 1 + extra_rows) * self.workloads.len() * self.clients.len()
    }

    /// The regimes this scenario runs in on a machine whose usable CPUs are
    /// `allowed`, and a note for each that cannot run there.
    pub fn plans(&self, allowed: &[usize]) -> (Vec<RegimePlan>, Vec<String>) {
        if let Some(pinning) = &self.pinning {
            return (vec![RegimePlan::pinned(pinning)], Vec::new());
        }
        let mut plans = Vec::new();
        let mut notes = Vec::new();
        for regime in &self.regimes {
            match regime.resolve(allowed) {
                Some(plan) if !plans.contains(&plan) => plans.push(plan),
                Some(_) => {}
                None => notes.push(format!(
                    "Regime `{}` was left out: it needs 2 CPUs (one for the client, the others for the server), and this process may use {}.",
                    regime.name(),
                    allowed.len()
                )),
            }
        }
        (plans, notes)
    }

    /// 1, 2, 4, ... up to `per_cpu` times the server's CPUs under the first regime (or
    /// the explicit pinning) on `allowed` CPUs.
    pub fn doubling_clients(&self, per_cpu: usize, allowed: &[usize]) -> Vec<usize> {
        let server_cpus = match (&self.pinning, self.regimes.first()) {
            (Some(p), _) if !p.server.is_empty() => p.server.len(),
            (_, Some(regime)) => {
                regime
                    .resolve(allowed)
                    .map_or(allowed.len(), |plan| match plan.server_cpus.len() {
                        0 => allowed.len(),
                        n => n,
                    })
            }
            _ => allowed.len(),
        };
        let top = (per_cpu * server_cpus.max(1)).max(1);
        std::iter::successors(Some(1usize), |c| Some(c * 2))
            .take_while(|&c| c <= top)
            .collect()
    }

    /// Rough wall time with `extra_rows` targets: cells x repetitions x (warm-up +
    /// duration), server starts, and each experiment's own loads, per regime.
    pub fn estimate(&self, extra_rows: usize) -> Duration {
        let regimes = match self.pinning {
            Some(_) => 1,
            None => self.regimes.len().max(1) as u32,
        };
        // The probes limited to some regimes run in at most that many.
        let runs = |wanted: &[String]| match wanted.len() {
            0 => regimes,
            n => (n as u32).min(regimes),
        };
        let server_cpus = crate::cpu::allowed_cpus().len().max(1);
        self.estimate_one(extra_rows) * regimes
            + self
                .connections
                .as_ref()
                .map_or(Duration::ZERO, |c| c.estimate() * runs(&c.regimes))
            + self
                .waiting
                .as_ref()
                .map_or(Duration::ZERO, |w| w.estimate() * runs(&w.regimes))
            + self.scaleout.as_ref().map_or(Duration::ZERO, |s| {
                s.estimate(server_cpus) * runs(&s.regimes)
            })
    }

    fn estimate_one(&self, extra_rows: usize) -> Duration {
        let per_cell = self.duration + self.warmup;
        let starts =
            Duration::from_millis(150) * ((self.models.len() + 1) * self.repetitions) as u32;
        let starvation = self.starvation.as_ref().map_or(Duration::ZERO, |s| {
            (s.length + Duration::from_millis(150)) * (self.models.len() + extra_rows) as u32
        });
        let python = self.python.as_ref().map_or(Duration::ZERO, |p| {
            let rows = (2 * p.models.len() + extra_rows) as u32;
            (per_cell + Duration::from_millis(60))
                * rows
                * 2
                * self.clients.len() as u32
                * self.repetitions as u32
                + (p.length + Duration::from_millis(300)) * rows
        });
        let knee = self.knee.as_ref().map_or(Duration::ZERO, |k| {
            // About seven steps per sweep: a few doublings from the start, then refining.
            let rows = (k.models.len() + extra_rows) as u32;
            (k.step + k.warmup + Duration::from_millis(60)) * 7 * k.workloads.len() as u32 * rows
                + Duration::from_millis(150) * rows
        });
        per_cell * (self.cells(extra_rows) * self.repetitions) as u32
            + knee
            + starts
            + starvation
            + python
    }
}

#[cfg(test)]
mod tests;
