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
//! pool its workers: [`concurrency_cap`](crate::bench::experiments::waiting::concurrency_cap)). A model whose design cannot hold the load —
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
//! statistics.
//!
//! Also: an open loop (`--rate`, latency by M/G/c, [`queue`]), request classes
//! (`--mix`, their weighted mean and spread), resident memory at the load, the GIL's
//! rows (`--gil`), and a bench report's regime (`--regime`, [`On`]).

mod changes;
pub mod confirm;
mod predict;
pub mod queue;
mod render;
mod service;
mod words;

use serde::Serialize;

use crate::bench::predict::THRESHOLD;
use crate::calibrate::Calibration;

pub use changes::what_changes;
pub use predict::{FD_SETSIZE, GIL_ROWS, On, predict_all};
use predict::{FibCosts, advised};
pub use render::{html, markdown, text};
pub use service::{
    DescriptionError, MOST_CLIENTS, MOST_RATE, MOST_WAIT, Service, check_clients, parse_rate,
    parse_slo, parse_wait,
};

/// One model's predicted fate under the service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelAdvice {
    pub model: &'static str,
    /// Requests per second where the formula gives a point.
    pub rps: Option<f64>,
    /// Every placement the formula allows, req/s.
    pub low: f64,
    pub high: f64,
    /// The mean latency over the range, µs: `[at high, at low]`; in a closed loop
    /// N / X, in an open loop the path, the wait and the queue ([`queue`]).
    pub mean_latency_us: [f64; 2],
    /// In an open loop, the 99th percentile over the range, µs ([`queue`]).
    pub p99_us: Option<[f64; 2]>,
    /// In an open loop, the most it can serve, req/s: `[high, low]`.
    pub capacity: Option<[f64; 2]>,
    /// What limits it, in words.
    pub limit: String,
    /// Threads the server runs at this load, and processes.
    pub threads: usize,
    pub processes: usize,
    /// Descriptors the server holds at this load.
    pub descriptors: usize,
    /// Resident memory its connections cost the server at this load, KiB: each thread
    /// beyond the first at the calibrated `thread_resident_kib` (what the `threads`
    /// model's resident memory grows by per idle connection), and each connection's state at
    /// the model's C10K target (`Model::idle_target_kib`, what the connections
    /// experiment holds event loops to). `None`: the calibration lacks the thread's.
    pub memory_kib: Option<f64>,
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

/// The advice for `service` on `calibration`'s machine; `source` says where the
/// calibration comes from.
pub fn advise(calibration: &Calibration, service: &Service, source: &str) -> Advice {
    advise_on(&On::unpinned(calibration), service, source)
}

/// [`advise`] on a placement of server and load ([`On`]).
pub fn advise_on(on: &On<'_>, service: &Service, source: &str) -> Advice {
    let calibration = on.calibration;
    let models = predict_all(on, service);
    let choice = advised(&models).cloned();
    let fib = FibCosts::of(calibration);
    let cpu_us = FibCosts::mean(service, |n| fib.native(n)).unwrap_or(f64::NAN);
    let recommendation = recommend(&models, choice.as_ref(), service);
    Advice {
        service: service.clone(),
        cpu_us,
        calibration: source.to_string(),
        machine: format!(
            "{}, {}{}",
            calibration.machine.cpu,
            calibration.machine.cpus_in_words(),
            on.regime.map_or(String::new(), |r| match r.shared_cpus() {
                true => format!("; regime `{}`, unpinned", r.name),
                false => format!(
                    "; regime `{}`: server on CPUs {}, load on {}{}",
                    r.name,
                    crate::calibrate::describe_cpus(&r.server_cpus),
                    crate::calibrate::describe_cpus(&r.client_cpus),
                    if r.spin { ", spinning" } else { "" }
                ),
            })
        ),
        advised: choice.as_ref().map(|c| c.model),
        changes: what_changes(on, service, choice.as_ref().map(|c| c.model)),
        models,
        recommendation,
        confirmation: None,
    }
}

/// The advice in a paragraph, from the tiers and the advised model's prediction.
fn recommend(models: &[ModelAdvice], choice: Option<&ModelAdvice>, service: &Service) -> String {
    let Some(c) = choice else {
        let why = match service.slo_p99_us {
            Some(_) if models.iter().any(|a| a.cannot.is_none()) && service.rate.is_some() => {
                "every model that can hold the load has a predicted p99 over the objective"
            }
            Some(_) if models.iter().any(|a| a.cannot.is_none()) => {
                "every model that can hold the load has a mean latency over the objective"
            }
            _ => "every model's design is short of the load",
        };
        return format!(
            "No model serves this load here: {why}. Fewer clients per server (more servers), less CPU or less wait per request would."
        );
    };
    let is_gil = |a: &ModelAdvice| GIL_ROWS.iter().any(|(_, row)| *row == a.model);
    let tier: Vec<&str> = models
        .iter()
        .filter(|a| a.tier == 1 && !is_gil(a))
        .map(|a| a.model)
        .collect();
    let others = tier.len().saturating_sub(1);
    let fastest = models
        .iter()
        .find(|a| !is_gil(a))
        .map_or(c.model, |a| a.model);
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
    for g in models.iter().filter(|a| is_gil(a)) {
        text.push_str(&format!(
            " Under CPython's GIL, `{}`: {} req/s ({}), tier {}.",
            g.model,
            words::rate(g),
            g.limit,
            match g.tier {
                0 => "— (cannot serve)".to_string(),
                t => t.to_string(),
            }
        ));
    }
    text
}

#[cfg(test)]
mod tests;
