//! The advice confirmed by measurement: the predicted tier 1 and one contrasting model
//! served here, the described load driven through the bench's own measuring path
//! ([`crate::bench::measure()`]) from a scenario written for it, and each measured
//! beside its prediction, in tiers by the bench's statistics.
//!
//! ```text
//! no wait:   the seed tables' cells (fib(n), N clients), three interleaved
//!            repetitions and the race, shared CPUs: samples = repetitions
//! a wait:    the waiting experiment's cell (a `fiblab backend` answering after the
//!            wait, fib(n), N clients): samples = the measured seconds
//! ```

use std::time::Duration;

use serde::Serialize;

use super::{Advice, ModelAdvice};
use crate::bench::predict::THRESHOLD;
use crate::bench::results::BenchReport;
use crate::bench::scenario::{Scenario, ScenarioError};
use crate::stats::Interval;

/// Tier-1 models measured at most (the fastest predicted), besides the advised one and
/// the contrast.
const MOST_CONTENDERS: usize = 4;

/// What a confirmation's scenario costs besides its cells: the calibration, starting
/// and stopping servers, s.
const OVERHEAD_S: f64 = 8.0;

/// The models to measure: the advised one, the fastest of tier 1 (at most
/// four in all), and a contrast: the fastest model below tier 1 that can
/// hold the load, so the measurement can show the gap the prediction claims.
pub fn models_to_measure(advice: &Advice) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = advice.advised.into_iter().collect();
    for m in advice.models.iter().filter(|m| m.tier == 1) {
        if out.len() >= MOST_CONTENDERS {
            break;
        }
        if !out.contains(&m.model) {
            out.push(m.model);
        }
    }
    let contrast = advice.models.iter().find(|m| m.tier == 2).or_else(|| {
        advice
            .models
            .iter()
            .find(|m| m.tier == 0 && m.cannot.is_none())
    });
    if let Some(c) = contrast.filter(|c| !out.contains(&c.model)) {
        out.push(c.model);
    }
    out
}

/// The scenario that measures `models` under `advice`'s service within `budget`.
///
/// # Errors
/// The scenario the description makes is not one the bench accepts (a bug: the
/// description was checked).
pub fn scenario(
    advice: &Advice,
    models: &[&str],
    budget: Duration,
) -> Result<Scenario, ScenarioError> {
    let s = &advice.service;
    let cells = models.len().max(1) as f64;
    let list = models
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let spend = (budget.as_secs_f64() - OVERHEAD_S).max(2.0);
    let text = match s.wait_us > 0.0 {
        false => {
            // Three rounds of every cell and the floor, each cell a warm-up and a
            // measured window; the race spends what the budget has left.
            let window = (spend / 2.0 / (3.0 * (cells + 1.0)) / 1.4).clamp(0.15, 3.0);
            format!(
                "name = \"advise\"\nabout = \"fiblab advise: the advice measured\"\n\
                 models = [{list}]\nworkloads = [{n}]\nclients = [{c}]\n\
                 duration = \"{d}ms\"\nwarmup = \"{w}ms\"\nrepetitions = 3\n\
                 precision = \"5%\"\ntime_budget = \"{b}s\"\nregimes = [\"shared\"]\n",
                n = s.n,
                c = s.clients,
                d = (window * 1e3).round(),
                w = (window * 400.0).round(),
                b = budget.as_secs().max(10),
            )
        }
        true => {
            // One cell per model, long enough for a few whole seconds to sample.
            let window = (spend / cells - 1.0).clamp(2.0, 10.0);
            format!(
                "name = \"advise\"\nabout = \"fiblab advise: the advice measured\"\n\
                 models = []\nworkloads = [1]\nclients = [1]\nduration = \"100ms\"\n\
                 warmup = \"50ms\"\nrepetitions = 1\nregimes = [\"shared\"]\n\n\
                 [waiting]\nmodels = [{list}]\ndelays = [\"{wait}us\"]\nclients = [{c}]\n\
                 n = {n}\nduration = \"{d}ms\"\nwarmup = \"500ms\"\njitter = 0.2\n",
                wait = s.wait_us.round(),
                c = s.clients,
                n = s.n,
                d = (window * 1e3).round(),
            )
        }
    };
    Scenario::parse(&text)
}

/// One model measured beside its prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    pub model: String,
    /// Requests per second: the median of the samples, with its interval.
    pub rps: Interval,
    pub p99_us: u64,
    /// Requests that failed or timed out (a client the model never served shows here).
    pub errors: u64,
    /// The measured tier (the bench's comparison with the best); `None`: no samples.
    pub tier: Option<usize>,
    /// The predicted range, req/s.
    pub predicted: [f64; 2],
    /// Measured over predicted (against the range's nearer end).
    pub ratio: f64,
    /// Within [`THRESHOLD`] of the prediction, or inside its range widened by it.
    pub within: bool,
    /// The p99 over the objective, where one was given.
    pub misses_slo: bool,
    /// Why it is off its prediction, computed from what the run measured; `None` where
    /// it is within.
    pub reason: Option<String>,
}

/// The measurement and what it says of the advice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Confirmation {
    pub rows: Vec<Measured>,
    /// The verdict in one computed paragraph.
    pub verdict: String,
}

/// Reads `report` (the scenario's run) against `advice`.
pub fn read(advice: &Advice, report: &BenchReport) -> Confirmation {
    let s = &advice.service;
    let samples_of = |model: &str| -> (Vec<f64>, u64, u64) {
        match (s.wait_us > 0.0, &report.waiting) {
            (true, Some(w)) => w
                .records
                .iter()
                .find(|r| r.model == model && r.row == model)
                .map(|r| (r.per_second.clone(), r.p99_us, r.errors))
                .unwrap_or_default(),
            (true, None) => Default::default(),
            (false, _) => {
                let cell = report
                    .cells
                    .iter()
                    .find(|c| c.variant == model && c.n == s.n && c.clients == s.clients);
                (
                    crate::bench::rules::samples(report, model, s.n, s.clients),
                    cell.map_or(0, |c| c.p99_us),
                    cell.map_or(0, |c| c.errors),
                )
            }
        }
    };
    let measured: Vec<(String, Vec<f64>, u64, u64)> = models_measured(report, s.wait_us > 0.0)
        .into_iter()
        .map(|m| {
            let (samples, p99, errors) = samples_of(&m);
            (m, samples, p99, errors)
        })
        .filter(|(_, samples, _, _)| !samples.is_empty())
        .collect();
    let ranked = crate::stats::tiers(measured, |(_, samples, _, _)| samples.clone());
    let rows: Vec<Measured> = ranked
        .into_iter()
        .filter_map(|r| {
            let (model, samples, p99_us, errors) = r.item;
            let predicted = advice.models.iter().find(|a| a.model == model)?;
            let rps = r.estimate.unwrap_or_else(|| Interval::of(&samples));
            let (ratio, within) = against(rps.estimate, predicted);
            let reason = (!within).then(|| why_off(report, s, &model, rps.estimate));
            Some(Measured {
                reason,
                misses_slo: s.slo_p99_us.is_some_and(|slo| p99_us as f64 > slo),
                model,
                rps,
                p99_us,
                errors,
                tier: r.tier,
                predicted: [predicted.low, predicted.high],
                ratio,
                within,
            })
        })
        .collect();
    let verdict = verdict(advice, &rows);
    Confirmation { rows, verdict }
}

/// The models a run measured, in the order it lists them.
fn models_measured(report: &BenchReport, waits: bool) -> Vec<String> {
    let mut out: Vec<String> = match (waits, &report.waiting) {
        (true, Some(w)) => w.records.iter().map(|r| r.model.clone()).collect(),
        (true, None) => Vec::new(),
        (false, _) => report
            .cells
            .iter()
            .filter(|c| c.variant != crate::bench::results::FLOOR)
            .map(|c| c.variant.clone())
            .collect(),
    };
    out.dedup();
    out
}

/// Why `model` measured `rps` off its prediction: for a wait, the bound the waiting
/// experiment holds its cell to, from what the run measured (Little's law, the model's
/// CPUs, or the machine's CPUs shared by server, load generator and downstream); with
/// no wait, the bench's own check of the cell against the formula at this run's
/// calibration.
fn why_off(report: &BenchReport, s: &super::Service, model: &str, rps: f64) -> String {
    use crate::bench::experiments::waiting::{Limit, bound};
    let record = report.waiting.as_ref().and_then(|w| {
        w.records
            .iter()
            .find(|r| r.model == model && r.row == model)
    });
    if let Some(r) = record {
        let (x, limit) = bound(r);
        let cpu = |us: Option<f64>| us.map_or("?".to_string(), |us| format!("{us:.0}"));
        let held = rps >= x * (1.0 - THRESHOLD);
        let by = match limit {
            Limit::Machine => format!(
                "the machine's {} CPUs, shared by the server ({} µs), the load generator ({} µs) and the downstream ({} µs of CPU per request)",
                r.shared_cpus.unwrap_or(0),
                cpu(r.server_cpu_us),
                cpu(r.client_cpu_us),
                cpu(r.backend_cpu_us)
            ),
            Limit::Cpu => format!(
                "the model's {} CPU(s) at the {} µs of server CPU per request measured",
                r.cpus,
                cpu(r.server_cpu_us)
            ),
            Limit::Waits | Limit::Cap => format!(
                "Little's law at the {:.1} ms wait the downstream gave",
                r.waited_ms
            ),
        };
        return match held {
            true => format!(
                "held by {by}: at most {} req/s, which the prediction leaves out",
                crate::units::thousands(x)
            ),
            false => format!(
                "unexplained: {:.2}x its measured bound, {} req/s ({by})",
                rps / x.max(1e-9),
                crate::units::thousands(x)
            ),
        };
    }
    crate::bench::predict::checks(report)
        .into_iter()
        .find(|c| c.variant == model && c.n == s.n && c.clients == s.clients)
        .map_or_else(
            || "no prediction from this run's calibration to compare with".to_string(),
            |c| c.explanation,
        )
}

/// Measured over predicted, and whether that is within the formulas' accuracy.
fn against(measured: f64, p: &ModelAdvice) -> (f64, bool) {
    let ratio = match p.rps {
        Some(point) => measured / point.max(1e-9),
        None if measured < p.low => measured / p.low.max(1e-9),
        None if measured > p.high => measured / p.high.max(1e-9),
        None => 1.0,
    };
    let inside = measured >= p.low * (1.0 - THRESHOLD) && measured <= p.high * (1.0 + THRESHOLD);
    (ratio, (ratio - 1.0).abs() <= THRESHOLD || inside)
}

/// The verdict: is the measured best in the advised tier 1, how the advised model did
/// against its prediction and the objective, how many predictions held.
fn verdict(advice: &Advice, rows: &[Measured]) -> String {
    let Some(best) = rows.first() else {
        return "Nothing was measured (interrupted, or every server failed to start).".into();
    };
    let predicted_tier = |m: &str| {
        advice
            .models
            .iter()
            .find(|a| a.model == m)
            .map_or(0, |a| a.tier)
    };
    let mut text = match predicted_tier(&best.model) {
        1 => format!(
            "Confirmed: the fastest measured, `{}` ({} req/s), is in the predicted tier 1.",
            best.model,
            crate::units::thousands(best.rps.estimate)
        ),
        _ => format!(
            "Not confirmed: the fastest measured, `{}` ({} req/s), was predicted outside tier 1.",
            best.model,
            crate::units::thousands(best.rps.estimate)
        ),
    };
    let held = rows.iter().filter(|r| r.within).count();
    text.push_str(&format!(
        " {held} of {} measured within {:.0}% of their prediction (or inside its range).",
        rows.len(),
        THRESHOLD * 100.0
    ));
    let cost = |m: &str| {
        advice
            .models
            .iter()
            .find(|a| a.model == m)
            .map_or(usize::MAX, |a| a.threads + a.processes)
    };
    let cheapest_measured = rows
        .iter()
        .filter(|r| r.tier == Some(1) && !r.misses_slo)
        .min_by_key(|r| cost(&r.model));
    if let Some(a) = advice.advised
        && let Some(r) = rows.iter().find(|r| r.model == a)
    {
        text.push_str(&format!(
            " `{a}`, advised: {} [{}–{}] req/s measured, tier {}, p99 {}{}.",
            crate::units::thousands(r.rps.estimate),
            crate::units::thousands(r.rps.ci_low),
            crate::units::thousands(r.rps.ci_high),
            r.tier.map_or("-".to_string(), |t| t.to_string()),
            super::words::duration_us(r.p99_us as f64),
            match (advice.service.slo_p99_us, r.misses_slo) {
                (Some(_), true) => ", over the objective",
                (Some(_), false) => ", within the objective",
                (None, _) => "",
            }
        ));
    }
    let advised_holds = advice.advised.is_some_and(|a| {
        rows.iter()
            .any(|r| r.model == a && r.tier == Some(1) && !r.misses_slo)
    });
    match (advice.advised, cheapest_measured) {
        (Some(a), Some(c)) if a != c.model && !advised_holds => text.push_str(&format!(
            " Measured, the advice is `{}` instead: the least costly model of the measured tier 1{}.",
            c.model,
            match advice.service.slo_p99_us {
                Some(_) => " within the objective",
                None => "",
            }
        )),
        (_, None) => text.push_str(" No measured model is in tier 1 within the objective."),
        _ => {}
    }
    text
}
