//! `fiblab advise`: which model for a service described in its own terms, predicted for
//! every model from a calibration and the cost formulas (issue 44).
//!
//! A service is its CPU work per request (fib(n), or a duration turned into the n that
//! costs it, [`crate::calibrate::work`]), its wait per request on a downstream, and its
//! load: `clients` in a closed loop, each sending its next request once its reply is
//! back. For each model:
//!
//! ```text
//! X_cpu   = the model's cost formula at N clients with fib = CPU + the downstream's
//!           socket calls (models::cost, bench::predict: 94% of the 16-core cells
//!           within 30%); waiting only frees CPUs, so with waits X <= X_cpu
//! X_wait  = min(N, cap) / (W + L1)       Little's law: at most min(N, cap) requests
//!           are in their path at once, each spends the wait W plus the path L1 one
//!           request takes alone (the formula's terms at one client)
//! X       = min(X_cpu, X_wait), a range where the formula gives one
//! R       = N / X                        the mean latency a closed loop of N sees
//!                                        (Little's law again)
//! ```
//!
//! `cap` is how many requests a model lets wait at once by its design (`single` 1, a
//! pool its workers: [`concurrency_cap`]). A model whose design cannot hold the load —
//! fewer connections served at once than clients (the rest are never answered in a
//! closed loop), more descriptors than `select`'s `FD_SETSIZE` or the process's limit —
//! cannot serve it, and says why in one computed sentence.
//!
//! Tier 1 is every model that can serve the load and whose upper prediction reaches
//! the best model's lower one less the formulas' accuracy ([`THRESHOLD`], 30%): the
//! formulas cannot tell them apart. The advice is the tier-1 model that costs least
//! (threads, then descriptors), since a tier is a tie on throughput; [`what_changes`]
//! says at which load, work or wait the advice would be another model.
//!
//! Unless asked for a prediction only, the advice is then measured here
//! ([`confirm`]): the predicted tier 1 and a contrast, the described load, the bench's
//! statistics. Not yet here: an open loop (`--rate`), mixes of request classes, and
//! resident memory per connection.

mod changes;
pub mod confirm;
mod render;
mod words;

use std::time::Duration;

use serde::Serialize;

use crate::bench::experiments::waiting::concurrency_cap;
use crate::bench::predict::{THRESHOLD, predict_costs, unpinned_costs};
use crate::calibrate::Calibration;
use crate::calibrate::work::from_table;
use crate::models::{CostModel, MODELS, Model};

pub use changes::what_changes;
pub use render::{markdown, text};

/// `select`'s limit on the descriptors one call may watch (glibc's `FD_SETSIZE`).
pub const FD_SETSIZE: usize = 1024;

/// Descriptors every server holds besides its connections: the listener, stdin,
/// stdout, stderr, and a few a runtime opens (epoll, eventfd, timerfd).
const BASE_DESCRIPTORS: usize = 8;

/// The most clients a description may name.
pub const MOST_CLIENTS: usize = 1 << 20;

/// The longest wait a description may name.
pub const MOST_WAIT: Duration = Duration::from_secs(60);

/// A service, described in its own terms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    /// Its CPU work per request: fib(n).
    pub n: u32,
    /// What the user asked for in CPU time, µs, when they gave a duration.
    pub asked_cpu_us: Option<f64>,
    /// Its wait per request on a downstream, µs (0: none).
    pub wait_us: f64,
    /// Clients in a closed loop.
    pub clients: usize,
    /// The latency objective: the 99th percentile under this, µs.
    pub slo_p99_us: Option<f64>,
}

/// A description that cannot be advised on; each says the range (the CLI's and the
/// lab's messages name the flag or field).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DescriptionError {
    #[error("{0} clients: give 1 to {MOST_CLIENTS}")]
    Clients(usize),
    #[error("'{0}': give a wait from 0 to 60s, e.g. 20ms")]
    Wait(String),
    #[error("'{0}': write it as p99=50ms (the 99th percentile's objective, more than 0)")]
    Slo(String),
}

/// Parses `--slo p99=50ms`, µs.
///
/// # Errors
/// Another percentile, no duration, or zero.
pub fn parse_slo(text: &str) -> Result<f64, DescriptionError> {
    let bad = || DescriptionError::Slo(text.to_string());
    let (key, value) = text.split_once('=').ok_or_else(bad)?;
    if key.trim() != "p99" {
        return Err(bad());
    }
    let d = crate::units::parse_duration(value).map_err(|_| bad())?;
    match d.is_zero() {
        true => Err(bad()),
        false => Ok(d.as_secs_f64() * 1e6),
    }
}

/// Parses `--wait 20ms` (0 to [`MOST_WAIT`]).
///
/// # Errors
/// Not a duration, or over a minute.
pub fn parse_wait(text: &str) -> Result<Duration, DescriptionError> {
    match crate::units::parse_duration(text) {
        Ok(d) if d <= MOST_WAIT => Ok(d),
        _ => Err(DescriptionError::Wait(text.to_string())),
    }
}

/// Checks `--clients`.
///
/// # Errors
/// 0, or more than [`MOST_CLIENTS`].
pub fn check_clients(clients: usize) -> Result<usize, DescriptionError> {
    match (1..=MOST_CLIENTS).contains(&clients) {
        true => Ok(clients),
        false => Err(DescriptionError::Clients(clients)),
    }
}

/// One model's predicted fate under the service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelAdvice {
    pub model: &'static str,
    /// Requests per second where the formula gives a point.
    pub rps: Option<f64>,
    /// Every placement the formula allows, req/s.
    pub low: f64,
    pub high: f64,
    /// The mean latency (N / X) over the range, µs: `[at high, at low]`.
    pub mean_latency_us: [f64; 2],
    /// What limits it, in words.
    pub limit: String,
    /// Threads the server runs at this load, and processes.
    pub threads: usize,
    pub processes: usize,
    /// Descriptors the server holds at this load.
    pub descriptors: usize,
    /// Why it cannot serve this load, if it cannot.
    pub cannot: Option<String>,
    /// Its mean latency already exceeds the p99 objective (no placement meets it).
    pub misses_slo: bool,
    /// 1: the formulas cannot tell it from the best; 2: below; 0: cannot serve.
    pub tier: usize,
}

impl ModelAdvice {
    /// The point, or the middle of the range (geometric) where placement decides.
    pub fn middle(&self) -> f64 {
        self.rps.unwrap_or((self.low * self.high).sqrt())
    }

    fn serves(&self) -> bool {
        self.cannot.is_none() && !self.misses_slo
    }
}

/// Every model's prediction, the advice and what would change it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advice {
    pub service: Service,
    /// fib(n)'s cost on the calibrated machine, µs.
    pub cpu_us: f64,
    /// Where the calibration comes from: `measured here now`, or a file.
    pub calibration: String,
    /// The calibrated machine in words.
    pub machine: String,
    pub models: Vec<ModelAdvice>,
    /// The model advised, if any serves the load.
    pub advised: Option<&'static str>,
    /// The advice in one computed paragraph.
    pub recommendation: String,
    /// At which load, work or wait the advice would change, one sentence each.
    pub changes: Vec<String>,
    /// The advice measured here ([`confirm`]); `None`: predicted only.
    pub confirmation: Option<confirm::Confirmation>,
}

/// The fib tables of `calibration` as timers (µs), extended by φ per step of n.
struct FibCosts {
    native: Vec<(u32, f64)>,
    interpreted: Vec<(u32, f64)>,
}

impl FibCosts {
    fn of(calibration: &Calibration) -> FibCosts {
        let table = |t: &[crate::calibrate::FibCost]| {
            t.iter()
                .map(|f| (f.n, f.cost.median_us))
                .collect::<Vec<_>>()
        };
        FibCosts {
            native: table(&calibration.fib),
            interpreted: table(&calibration.fib_interpreted),
        }
    }

    fn native(&self, n: u32) -> Option<f64> {
        (!self.native.is_empty()).then(|| from_table(&self.native)(n))
    }

    fn interpreted(&self, n: u32) -> Option<f64> {
        (!self.interpreted.is_empty()).then(|| from_table(&self.interpreted)(n))
    }
}

/// Threads and processes a model runs with `clients` connections and `workers`.
fn threads_of(model: &Model, clients: usize, workers: usize) -> (usize, usize) {
    match model.cost {
        CostModel::OneAtATime | CostModel::EventLoop(_) | CostModel::SpinLoop => (1, 1),
        // An acceptor and a thread per connection.
        CostModel::ThreadPerConnection => (clients + 1, 1),
        CostModel::ConnectionPool => (workers + 1, 1),
        // A connection thread and its interpreter's thread per connection.
        CostModel::Isolated => (2 * clients + 1, 1),
        CostModel::WorkStealing | CostModel::PerCore => (workers, 1),
        // Connection threads, and a process per worker.
        CostModel::ProcessPool => (clients + 1 + workers, workers + 1),
        CostModel::Prefork => (workers, workers),
    }
}

/// Predicts `model` for `service` on `calibration`'s machine; `None` where the
/// calibration cannot (no round trip, or no interpreter timing for `isolates`).
fn predict_model(
    calibration: &Calibration,
    fib: &FibCosts,
    model: &'static Model,
    service: &Service,
) -> Option<ModelAdvice> {
    let native = fib.native(service.n)?;
    let interpreted = match model.cost {
        CostModel::Isolated => fib.interpreted(service.n)?,
        _ => fib.interpreted(service.n).unwrap_or(0.0),
    };
    let waits = service.wait_us > 0.0;
    let at = |clients: usize| {
        unpinned_costs(calibration, model, clients, native, interpreted).map(|mut c| {
            // The downstream's send and receive, on the server's CPU.
            if waits {
                c.fib += c.rtt_spin / 2.0;
                c.fib_interpreted += c.rtt_spin / 2.0;
            }
            c
        })
    };
    let costs = at(service.clients)?;
    let cpu = predict_costs(model.cost, &costs);
    let alone = predict_costs(model.cost, &at(1)?);
    let path_alone: f64 = alone.terms.iter().map(|t| t.us).sum::<f64>().max(1e-3);
    let workers = costs.workers;
    let cap = concurrency_cap(model, workers);
    let served = cap.map_or(service.clients, |cap| cap.min(service.clients));
    // Without a wait the formula at N clients is the whole model (it knows how N
    // clients pair with the server's threads); a wait holds each request longer.
    let little = match waits {
        true => served as f64 * 1e6 / (service.wait_us + path_alone),
        false => f64::INFINITY,
    };
    let (low, high, rps) = (
        cpu.low.min(little),
        cpu.high.min(little),
        cpu.rps.map(|x| x.min(little)),
    );
    let limit = match little < cpu.high {
        true => format!(
            "Little's law: {} request{} in flight, each {} µs of wait and path",
            crate::units::thousands(served as f64),
            if served == 1 { "" } else { "s" },
            crate::units::thousands(service.wait_us + path_alone)
        ),
        false => cpu.limit.describe().to_string(),
    };
    let (threads, processes) = threads_of(model, service.clients, workers);
    let per_connection = if waits { 2 } else { 1 };
    let descriptors = BASE_DESCRIPTORS
        + service.clients * per_connection
        + match model.cost {
            // Each worker's two pipes, both ends held by the parent.
            CostModel::ProcessPool => 4 * workers,
            _ => 0,
        };
    let limit_fds = calibration.machine.descriptor_limit as usize;
    let cannot = match cap {
        Some(cap) if cap < service.clients => Some(format!(
            "serves {cap} connection{} at once ({}); in a closed loop the other {} clients \
             are never answered",
            if cap == 1 { "" } else { "s" },
            match model.clients {
                crate::models::Clients::OneAtATime => "one at a time".to_string(),
                crate::models::Clients::Sharded => format!("{workers} one-at-a-time copies"),
                crate::models::Clients::Concurrent =>
                    format!("{workers} workers, each holding a connection"),
            },
            crate::units::thousands((service.clients - cap) as f64)
        )),
        _ if matches!(
            model.cost,
            CostModel::EventLoop(crate::models::Readiness::Select)
        ) && descriptors > FD_SETSIZE =>
        {
            Some(format!(
                "would watch {} descriptors, past select's FD_SETSIZE of {FD_SETSIZE}",
                crate::units::thousands(descriptors as f64)
            ))
        }
        _ if limit_fds > 0 && descriptors > limit_fds => Some(format!(
            "needs {} descriptors, past the process's limit of {} (raise `ulimit -n`)",
            crate::units::thousands(descriptors as f64),
            crate::units::thousands(limit_fds as f64)
        )),
        _ => None,
    };
    let clients = service.clients as f64;
    let mean_latency_us = [
        clients * 1e6 / high.max(1e-9),
        clients * 1e6 / low.max(1e-9),
    ];
    let misses_slo = service
        .slo_p99_us
        .is_some_and(|slo| mean_latency_us[0] > slo);
    Some(ModelAdvice {
        model: model.name,
        rps,
        low,
        high,
        mean_latency_us,
        limit,
        threads,
        processes,
        descriptors,
        cannot,
        misses_slo,
        tier: 0,
    })
}

/// Every model's prediction for `service`, tiered (best first), and the advised one.
fn predict_all(calibration: &Calibration, service: &Service) -> Vec<ModelAdvice> {
    let fib = FibCosts::of(calibration);
    let mut all: Vec<ModelAdvice> = MODELS
        .iter()
        .filter_map(|m| predict_model(calibration, &fib, m, service))
        .collect();
    let best_low = all
        .iter()
        .filter(|a| a.serves())
        .map(|a| a.low)
        .fold(0.0, f64::max);
    for a in &mut all {
        a.tier = match a.serves() {
            false => 0,
            true if a.high >= best_low * (1.0 - THRESHOLD) => 1,
            true => 2,
        };
    }
    // Tier 1, then 2, then those that cannot serve; within a tier, fastest first.
    all.sort_by(|a, b| {
        let rank = |t: usize| if t == 0 { 3 } else { t };
        rank(a.tier)
            .cmp(&rank(b.tier))
            .then(b.middle().total_cmp(&a.middle()))
    });
    all
}

/// The tier-1 model that costs least: fewest threads, then descriptors, then the
/// fastest.
fn advised(models: &[ModelAdvice]) -> Option<&ModelAdvice> {
    models.iter().filter(|a| a.tier == 1).min_by(|a, b| {
        (a.threads + a.processes)
            .cmp(&(b.threads + b.processes))
            .then(a.descriptors.cmp(&b.descriptors))
            .then(b.middle().total_cmp(&a.middle()))
    })
}

/// The advice for `service` on `calibration`'s machine; `source` says where the
/// calibration comes from.
pub fn advise(calibration: &Calibration, service: &Service, source: &str) -> Advice {
    let models = predict_all(calibration, service);
    let choice = advised(&models).cloned();
    let cpu_us = FibCosts::of(calibration)
        .native(service.n)
        .unwrap_or(f64::NAN);
    let recommendation = recommend(&models, choice.as_ref(), service);
    Advice {
        service: service.clone(),
        cpu_us,
        calibration: source.to_string(),
        machine: format!(
            "{}, {}",
            calibration.machine.cpu,
            calibration.machine.cpus_in_words()
        ),
        advised: choice.as_ref().map(|c| c.model),
        changes: what_changes(calibration, service, choice.as_ref().map(|c| c.model)),
        models,
        recommendation,
        confirmation: None,
    }
}

/// The advice in a paragraph, from the tiers and the advised model's prediction.
fn recommend(models: &[ModelAdvice], choice: Option<&ModelAdvice>, service: &Service) -> String {
    let Some(c) = choice else {
        let why = match service.slo_p99_us {
            Some(_) if models.iter().any(|a| a.cannot.is_none()) => {
                "every model that can hold the load has a mean latency over the objective"
            }
            _ => "every model's design is short of the load",
        };
        return format!(
            "No model serves this load here: {why}. Fewer clients per server (more servers), less CPU or less wait per request would."
        );
    };
    let tier: Vec<&str> = models
        .iter()
        .filter(|a| a.tier == 1)
        .map(|a| a.model)
        .collect();
    let others = tier.len() - 1;
    let fastest = models.first().map(|a| a.model).unwrap_or(c.model);
    let mut text = format!(
        "`{}`: predicted {} req/s ({}), mean latency {}, with {} thread{}{} and {} descriptors.",
        c.model,
        words::rate(c),
        c.limit,
        words::latency(c.mean_latency_us),
        crate::units::thousands(c.threads as f64),
        if c.threads == 1 { "" } else { "s" },
        match c.processes {
            1 => String::new(),
            p => format!(" in {p} processes"),
        },
        crate::units::thousands(c.descriptors as f64),
    );
    if others > 0 {
        text.push_str(&format!(
            " The formulas cannot tell it from {} other model{} (within {:.0}% of the best{}); of those it costs least.",
            others,
            if others == 1 { "" } else { "s" },
            THRESHOLD * 100.0,
            match fastest == c.model {
                true => String::new(),
                false => format!(", `{fastest}`"),
            }
        ));
    }
    text
}

#[cfg(test)]
mod tests;
