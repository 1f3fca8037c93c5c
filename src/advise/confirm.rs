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
    let gil_row = |m: &str| super::GIL_ROWS.iter().any(|(_, row)| *row == m);
    for m in advice
        .models
        .iter()
        .filter(|m| m.tier == 1 && !gil_row(m.model))
    {
        if out.len() >= MOST_CONTENDERS {
            break;
        }
        if !out.contains(&m.model) {
            out.push(m.model);
        }
    }
    let contrast = advice
        .models
        .iter()
        .find(|m| m.tier == 2 && !gil_row(m.model))
        .or_else(|| {
            advice
                .models
                .iter()
                .find(|m| m.tier == 0 && m.cannot.is_none() && !gil_row(m.model))
        });
    if let Some(c) = contrast.filter(|c| !out.contains(&c.model)) {
        out.push(c.model);
    }
    // Asked for, the GIL's rows are measured where they can be (with a wait).
    if advice.service.gil && advice.service.wait_us > 0.0 && advice.service.rate.is_none() {
        for (_, row) in super::GIL_ROWS {
            let serves = advice
                .models
                .iter()
                .any(|m| m.model == row && m.cannot.is_none());
            if serves && !out.contains(&row) {
                out.push(row);
            }
        }
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
    // The GIL's rows run only in the waiting experiment (its `gil` rows).
    let gil_base = |m: &str| {
        super::GIL_ROWS
            .iter()
            .find(|(_, row)| *row == m)
            .map(|(base, _)| *base)
    };
    let plain: Vec<&str> = models
        .iter()
        .copied()
        .filter(|m| gil_base(m).is_none())
        .collect();
    let gil: Vec<String> = models
        .iter()
        .filter_map(|m| gil_base(m))
        .map(|b| format!("\"{b}\""))
        .collect();
    let cells = match s.wait_us > 0.0 && s.rate.is_none() {
        true => models.len().max(1) as f64,
        false => plain.len().max(1) as f64,
    };
    let list = plain
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let spend = (budget.as_secs_f64() - OVERHEAD_S).max(2.0);
    let text = match (s.rate, s.wait_us > 0.0) {
        (Some(rate), _) => {
            // The knee's open loop held at the one rate offered: three sweeps of one
            // step each, interleaved across models, each against a fresh server (a
            // step the model does not sustain steps down twice: the budget allows it).
            let step = (spend / (3.0 * cells) / 2.5 - 0.3).clamp(0.3, 5.0);
            format!(
                "name = \"advise\"\nabout = \"fiblab advise: the advice measured\"\n\
                 models = []\nworkloads = [1]\nclients = [1]\nduration = \"100ms\"\n\
                 warmup = \"50ms\"\nrepetitions = 1\nregimes = [\"shared\"]\n\n\
                 [knee]\nmodels = [{list}]\nconnections = {c}\npipeline = 1\n\
                 step = \"{d}ms\"\nwarmup = \"300ms\"\nstart_rate = {rate}\nfactor = 2.0\n\
                 refine = 0\nmax_rate = {rate}\nsweeps = 3\nrace = 0\ntick = \"50us\"\n\n\
                 [[knee.workloads]]\nmix = \"{mix}\"\nslo = \"{slo}us\"\n",
                c = s.clients,
                d = (step * 1e3).round(),
                rate = rate.round().max(1.0),
                mix = s.mix_text(),
                slo = s.slo_p99_us.unwrap_or(10e6).round(),
            )
        }
        (None, false) => {
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
        (None, true) => {
            // One cell per model, long enough for a few whole seconds to sample.
            let window = (spend / cells - 1.0).clamp(2.0, 10.0);
            format!(
                "name = \"advise\"\nabout = \"fiblab advise: the advice measured\"\n\
                 models = []\nworkloads = [1]\nclients = [1]\nduration = \"100ms\"\n\
                 warmup = \"50ms\"\nrepetitions = 1\nregimes = [\"shared\"]\n\n\
                 [waiting]\nmodels = [{list}]\ngil = [{gil}]\ndelays = [\"{wait}us\"]\n\
                 clients = [{c}]\nn = {n}\nduration = \"{d}ms\"\nwarmup = \"500ms\"\n\
                 jitter = 0.2\n",
                wait = s.wait_us.round(),
                gil = gil.join(", "),
                c = s.clients,
                n = s.n,
                d = (window * 1e3).round(),
            )
        }
    };
    Scenario::parse(&text)
}

/// Measures `advice` here within `budget`: [`models_to_measure`], the [`scenario`]
/// for them through [`crate::bench::measure()`] (servers started from `exe`), read
/// against the prediction ([`read`]). `progress` sees each cell; `interrupt` stops the
/// run between cells. What the CLI's and the lab's confirmations run.
///
/// # Errors
/// No model can hold the load (nothing to measure), or the bench could not run (no
/// port, no server).
pub fn run(
    advice: &Advice,
    budget: Duration,
    exe: &std::path::Path,
    interrupt: std::sync::Arc<std::sync::atomic::AtomicBool>,
    progress: &mut dyn FnMut(crate::bench::Step<'_>),
    command: String,
) -> std::io::Result<Confirmation> {
    let models = models_to_measure(advice);
    if models.is_empty() {
        return Err(std::io::Error::other(
            "no model can hold this load here, so there is nothing to measure",
        ));
    }
    if let Some(why) = unmeasurable(&advice.service) {
        return Err(std::io::Error::other(why));
    }
    let scenario = scenario(advice, &models, budget).map_err(std::io::Error::other)?;
    let report = crate::bench::measure(&scenario, &[], exe, interrupt, progress, command)?;
    Ok(read(advice, &report))
}

/// Why a description is predicted only; `None` where it can be measured here.
pub fn unmeasurable(s: &super::Service) -> Option<&'static str> {
    match (s.rate, s.mix.is_empty(), s.wait_us > 0.0) {
        (Some(_), _, true) => Some(
            "an open loop with a wait is predicted only: the bench's open loop (the knee) has no downstream",
        ),
        (None, false, _) => Some(
            "a mix in a closed loop is predicted only: the bench's closed-loop cells send one n; give a rate to measure the mix in an open loop",
        ),
        _ => None,
    }
}

/// One model measured beside its prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    pub model: String,
    /// Requests per second: the median of the samples, with its interval.
    pub rps: Interval,
    pub p99_us: u64,
    /// In an open loop, the p99 predicted at the best placement, µs.
    pub predicted_p99_us: Option<f64>,
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
        if s.rate.is_some() {
            return open_loop_samples(report, model);
        }
        match (s.wait_us > 0.0, &report.waiting) {
            (true, Some(w)) => w
                .records
                .iter()
                .find(|r| r.row == model)
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
    let measured: Vec<(String, Vec<f64>, u64, u64)> = models_measured(report, s)
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
                predicted_p99_us: predicted.p99_us.map(|p| p[0]),
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

/// What an open loop measured of `model`: the throughput each sweep achieved at the
/// rate offered (its first step), the median of their p99s, and the requests that
/// failed or timed out.
fn open_loop_samples(report: &BenchReport, model: &str) -> (Vec<f64>, u64, u64) {
    let Some(knee) = &report.knee else {
        return Default::default();
    };
    let steps: Vec<&crate::bench::experiments::knee::records::KneeStep> = knee
        .sweeps
        .iter()
        .filter(|sweep| sweep.row == model)
        .filter_map(|sweep| sweep.steps.first())
        .collect();
    let mut p99: Vec<u64> = steps.iter().map(|s| s.p99_us).collect();
    p99.sort_unstable();
    (
        steps.iter().map(|s| s.achieved_rps).collect(),
        p99.get(p99.len() / 2).copied().unwrap_or(0),
        steps.iter().map(|s| s.failed + s.timeouts).sum(),
    )
}

/// The models a run measured, in the order it lists them.
fn models_measured(report: &BenchReport, s: &super::Service) -> Vec<String> {
    if s.rate.is_some() {
        let mut out: Vec<String> = report
            .knee
            .iter()
            .flat_map(|k| k.sweeps.iter().map(|sweep| sweep.row.clone()))
            .collect();
        let mut seen = std::collections::HashSet::new();
        out.retain(|m| seen.insert(m.clone()));
        return out;
    }
    let waits = s.wait_us > 0.0;
    let mut out: Vec<String> = match (waits, &report.waiting) {
        (true, Some(w)) => w.records.iter().map(|r| r.row.clone()).collect(),
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
    if let Some(rate) = s.rate {
        let steps: Vec<_> = report
            .knee
            .iter()
            .flat_map(|k| k.sweeps.iter())
            .filter(|sweep| sweep.row == model)
            .filter_map(|sweep| sweep.steps.first())
            .collect();
        let verdicts: Vec<&str> = steps.iter().map(|s| s.verdict.label()).collect();
        let busy = steps.iter().map(|s| s.client_busy).fold(0.0, f64::max);
        return format!(
            "{} req/s of the {} offered, its sweeps' verdicts {}; the load generator's busiest thread at {:.0}%",
            crate::units::thousands(rps),
            crate::units::thousands(rate),
            verdicts.join(", "),
            busy * 100.0
        );
    }
    let record = report
        .waiting
        .as_ref()
        .and_then(|w| w.records.iter().find(|r| r.row == model));
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
pub(crate) fn against(measured: f64, p: &ModelAdvice) -> (f64, bool) {
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
