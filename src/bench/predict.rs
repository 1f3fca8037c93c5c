//! Every cell's predicted throughput, from the run's calibration and the model's cost
//! formula ([`crate::models::cost`]), and, for every cell the prediction misses by more
//! than [`THRESHOLD`], a computed sentence: which term dominates, whether the figure
//! lies in the range placement allows, or that nothing here explains it.
//!
//! ```text
//! calibration (µs) + regime (which CPUs, does the client spin) + cell (model, n, clients)
//!     -> Costs -> model.cost.predict() -> Prediction { rps or range, terms }
//!     -> Check { measured / predicted, explanation }
//! ```
//!
//! Peers (servers fiblab did not start) have no cost model and are not predicted.

use serde::Serialize;

use super::results::{BenchReport, Cell, FLOOR, StarvationResult, WIDE_SPREAD};
use super::scenario::RegimePlan;
use crate::calibrate::Calibration;
use crate::models::cost::{CostModel, Costs, Kept, Prediction};
use crate::server::Variant;
use crate::units::thousands;

pub mod machine;

/// A prediction within this fraction of the measurement (either way) counts as
/// predicting it.
pub const THRESHOLD: f64 = 0.30;

/// The cost formula and its inputs for one cell of `report`, or `None` for a peer, a
/// report without a calibration, or a workload the calibration did not time.
pub fn inputs(report: &BenchReport, cell: &Cell) -> Option<(CostModel, Costs)> {
    inputs_for(report, &cell.regime, &cell.variant, cell.n, cell.clients)
}

/// As [`inputs`], for a cell given by its parts.
pub fn inputs_for(
    report: &BenchReport,
    regime: &str,
    variant: &str,
    n: u32,
    clients: usize,
) -> Option<(CostModel, Costs)> {
    inputs_with(
        report,
        report.calibration.as_ref()?,
        regime,
        variant,
        n,
        clients,
    )
}

/// As [`inputs_for`], from `calibration` rather than the report's own.
fn inputs_with(
    report: &BenchReport,
    calibration: &Calibration,
    regime: &str,
    variant: &str,
    n: u32,
    clients: usize,
) -> Option<(CostModel, Costs)> {
    let cell = Cell {
        regime: regime.to_string(),
        variant: variant.to_string(),
        n,
        clients,
        median_rps: 0.0,
        throughput: crate::stats::Interval::point(0.0),
        spread: 0.0,
        p50_us: 0,
        p99_us: 0,
        starved: false,
        errors: 0,
        latency_cdf: Vec::new(),
    };
    let (model, fib, fib_interpreted) = match cell.variant.as_str() {
        FLOOR => (CostModel::ThreadPerConnection, 0.0, 0.0),
        variant => {
            let model = crate::models::find(&Variant::split(variant).model)?;
            (
                model.cost,
                calibration.fib_us(cell.n)?,
                calibration.fib_interpreted_us(cell.n).unwrap_or(0.0),
            )
        }
    };
    let plan = report.regime(&cell.regime);
    let offload = Variant::split(&cell.variant).offload;
    let workers = crate::models::find(&Variant::split(&cell.variant).model);
    let costs = regime_costs(calibration, plan, cell.clients, fib, fib_interpreted)?;
    let workers = workers.map_or(costs.cpus, |m| m.workers.default_for(costs.cpus));
    Some((
        model,
        Costs {
            workers,
            offload,
            ..costs
        },
    ))
}

/// The calibrated costs as a cell in regime `plan` meets them (`None`: the report's
/// one unnamed regime, unpinned with a sleeping client).
fn regime_costs(
    c: &Calibration,
    plan: Option<&RegimePlan>,
    clients: usize,
    fib: f64,
    fib_interpreted: f64,
) -> Option<Costs> {
    let us = |m: Option<crate::calibrate::Measure>| m.map(|m| m.median_us);
    let rtt_local = us(c.rtt_same_cpu)?;
    let rtt_spin = us(c.rtt_spinning).unwrap_or(rtt_local);
    let rtt_two = us(c.rtt_two_cpus).unwrap_or(rtt_local);
    let wake_up = us(c.wake_up).unwrap_or(0.0);
    let spin = plan.is_some_and(|p| p.spin);
    let cpus = match plan.map(|p| p.server_cpus.len()) {
        Some(pinned) if pinned > 0 => pinned,
        _ => c.machine.cpus.max(1),
    };
    Some(Costs {
        clients,
        cpus,
        shared: plan.is_none_or(RegimePlan::shared_cpus),
        workers: cpus,
        offload: false,
        client_spins: spin,
        rtt_local,
        // A spinning client is never woken: only the server's wake-up is left.
        rtt_cross: match (spin, plan.is_none_or(RegimePlan::shared_cpus)) {
            (true, _) => us(c.rtt_client_spinning).unwrap_or(rtt_spin + wake_up),
            // Unpinned, the kernel places the two threads as it places a cell's: the
            // unpinned round trip is the one such a cell pays.
            (false, true) => us(c.rtt_unpinned).unwrap_or(rtt_two),
            (false, false) => rtt_two,
        },
        rtt_spin,
        wake_up,
        epoll_wait: us(c.epoll_1).unwrap_or(0.0),
        select: us(c.select_1).unwrap_or(0.0),
        pipe: us(c.pipe_round_trip).unwrap_or(0.0),
        handoff: us(c.handoff).unwrap_or(0.0),
        client_work: c.loadgen_overhead_us().unwrap_or(0.0),
        client_cpus: match plan {
            Some(p) if !p.shared_cpus() => p.client_cpus.len(),
            _ => 0,
        },
        fib,
        fib_interpreted,
    })
}

/// The prediction for one cell; see [`inputs`].
pub fn predict(report: &BenchReport, cell: &Cell) -> Option<Prediction> {
    predict_with(report, report.calibration.as_ref()?, cell)
}

/// As [`predict`], from `calibration` rather than the report's own.
fn predict_with(
    report: &BenchReport,
    calibration: &Calibration,
    cell: &Cell,
) -> Option<Prediction> {
    let found = inputs_with(
        report,
        calibration,
        &cell.regime,
        &cell.variant,
        cell.n,
        cell.clients,
    );
    found.map(|(model, costs)| predict_costs(model, &costs))
}

/// `model`'s prediction from `costs`, held to the load generator's capacity (crowded
/// where its threads outnumber its CPUs): what [`predict`] gives every cell.
pub fn predict_costs(model: CostModel, costs: &Costs) -> Prediction {
    let per_wake = model.replies_per_wake(costs);
    let p = model
        .predict(costs)
        .within_client(costs.client_capacity(per_wake));
    match model.crowded_client_threads(costs) {
        Some(fewest) => p.crowded(
            Costs {
                client_cpus: fewest,
                ..*costs
            }
            .client_capacity(per_wake),
        ),
        None => p,
    }
}

/// The costs of `model` serving `clients` closed-loop clients of fib costing `fib_us`
/// (`fib_interpreted_us` in the isolates' interpreter) on `calibration`'s machine, in
/// the unpinned regime: server and clients share every CPU, nobody spins, as a service
/// and its load generator on one machine do. `None`: the calibration lacks the round
/// trip on one CPU. What `fiblab advise` predicts from.
pub fn unpinned_costs(
    calibration: &Calibration,
    model: &crate::models::Model,
    clients: usize,
    fib_us: f64,
    fib_interpreted_us: f64,
) -> Option<Costs> {
    regime_model_costs(
        calibration,
        None,
        model,
        clients,
        fib_us,
        fib_interpreted_us,
    )
}

/// As [`unpinned_costs`], in regime `plan` (a bench report's: which CPUs serve, which
/// load, who spins); `None`: unpinned. The costs [`predict`] gives a cell of that
/// regime, so `fiblab advise --calibration REPORT --regime NAME` predicts the report's
/// own cells as `--replot` does.
pub fn regime_model_costs(
    calibration: &Calibration,
    plan: Option<&RegimePlan>,
    model: &crate::models::Model,
    clients: usize,
    fib_us: f64,
    fib_interpreted_us: f64,
) -> Option<Costs> {
    let costs = regime_costs(calibration, plan, clients, fib_us, fib_interpreted_us)?;
    Some(Costs {
        workers: model.workers.default_for(costs.cpus),
        ..costs
    })
}

/// A cell against its prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub regime: String,
    pub variant: String,
    pub n: u32,
    pub clients: usize,
    pub measured_rps: f64,
    pub prediction: Prediction,
    /// `measured / predicted`; against the range's nearer end when there is no point.
    pub ratio: f64,
    /// Within [`THRESHOLD`] of the point, or inside the range widened by it.
    pub within: bool,
    /// Off, but accounted for: inside the range placement allows, noisy, or with an
    /// interval that holds the prediction.
    pub explained: bool,
    /// The computed sentence for the report.
    pub explanation: String,
}

/// Every predictable cell of `report` (of every regime) against its prediction.
pub fn checks(report: &BenchReport) -> Vec<Check> {
    report
        .cells
        .iter()
        .filter(|c| c.median_rps > 0.0)
        .filter_map(|cell| {
            predict(report, cell).map(|p| {
                let mut c = check(cell, p);
                if !c.explained
                    && c.ratio < 1.0
                    && let Some(why) = plateau(report, cell)
                {
                    c.explained = true;
                    c.explanation = format!(
                        "{why}; {}",
                        c.explanation.trim_start_matches("unexplained: ")
                    );
                }
                if !c.explained
                    && let Some(why) = drifted(report, cell)
                {
                    c.explained = true;
                    c.explanation = format!(
                        "{why}; {}",
                        c.explanation.trim_start_matches("unexplained: ")
                    );
                }
                c
            })
        })
        .collect()
}

/// Why a cell is off the prediction from the run's calibration (the median of every
/// round of its round trips) but near the one from a single round: the machine's
/// round trips moved during the run ([`Calibration::by_round`]), and the cell ran while
/// they were as that round measured them. `None` when no round's prediction holds it,
/// or the run measured its round trips once.
pub fn drifted(report: &BenchReport, cell: &Cell) -> Option<String> {
    let calibration = report.calibration.as_ref()?;
    let rounds = calibration.by_round();
    let two_cpus = |c: &Calibration| c.rtt_two_cpus.map_or(0.0, |m| m.median_us);
    let all: Vec<f64> = rounds.iter().map(two_cpus).collect();
    let (lowest, highest) = all
        .iter()
        .fold((f64::INFINITY, 0.0_f64), |(l, h), &x| (l.min(x), h.max(x)));
    rounds.iter().enumerate().find_map(|(i, round)| {
        let p = predict_with(report, round, cell)?;
        let c = check(cell, p);
        c.within.then(|| {
            format!(
                "the machine moved during the run: its round trips were measured {} times, two CPUs {:.1}–{:.1} µs, and from round {} alone ({:.1} µs) the formula gives {} req/s, {:.2}x of it",
                rounds.len(),
                lowest,
                highest,
                i + 1,
                two_cpus(round),
                label(&c.prediction),
                c.ratio
            )
        })
    })
}

/// Why a cell measures below its prediction when its model's curve has gone flat: the
/// cell is one of the model's last two client counts (of at least four), whose
/// throughputs are within 10% of each other, so more clients bought nothing: one step
/// every request passes through, one at a time (a lock, a shared queue, one thread),
/// takes `1 / X` of each second per request, a cost no term of the formula counts.
/// `None` for any other cell.
pub fn plateau(report: &BenchReport, cell: &Cell) -> Option<String> {
    let mut curve: Vec<&Cell> = report
        .cells
        .iter()
        .filter(|c| c.regime == cell.regime && c.variant == cell.variant && c.n == cell.n)
        .collect();
    curve.sort_by_key(|c| c.clients);
    let [.., a, b] = curve.as_slice() else {
        return None;
    };
    let flat = curve.len() >= 4
        && b.clients >= 2 * a.clients
        && (b.median_rps / a.median_rps - 1.0).abs() <= 0.10
        && (cell.clients == a.clients || cell.clients == b.clients);
    flat.then(|| {
        let x = (a.median_rps + b.median_rps) / 2.0;
        format!(
            "a plateau: {} and {} clients both near {} req/s, so more clients bought nothing; one step every request passes through one at a time (a lock, a shared queue, one thread) takes about {:.1} µs per request, which no term of the formula counts",
            a.clients,
            b.clients,
            thousands(x),
            1e6 / x
        )
    })
}

fn check(cell: &Cell, prediction: Prediction) -> Check {
    let measured = cell.median_rps;
    let (low, high) = (prediction.low, prediction.high);
    let in_range = measured >= low * (1.0 - THRESHOLD) && measured <= high * (1.0 + THRESHOLD);
    let (ratio, within) = match prediction.rps {
        Some(point) => {
            let ratio = measured / point;
            (ratio, (ratio - 1.0).abs() <= THRESHOLD)
        }
        None => {
            let nearer = if measured < low {
                low
            } else if measured > high {
                high
            } else {
                measured
            };
            (measured / nearer, in_range)
        }
    };
    let path = path_sentence(&prediction);
    let (explained, explanation) = match (within, prediction.rps) {
        (true, Some(_)) => (true, path),
        (true, None) => (
            true,
            format!(
                "inside the range {}–{} req/s: {}",
                thousands(low),
                thousands(high),
                prediction.rule
            ),
        ),
        (false, _) if in_range => (
            true,
            format!(
                "placement: {} req/s lies between {} (every request crosses CPUs) and {} (client and server paired on one CPU), the range the formula allows; the kernel's choice of CPU decides. At the point: {path}",
                thousands(measured),
                thousands(low),
                thousands(high),
            ),
        ),
        (false, _) if cell.spread > WIDE_SPREAD => (
            true,
            format!(
                "noisy: its repetitions spread over {:.0}% of the median (over {:.0}%: see its interval), so one median cannot be held to the prediction; {path}",
                cell.spread * 100.0,
                WIDE_SPREAD * 100.0
            ),
        ),
        (false, _) if holds(&cell.throughput, &prediction) => (
            true,
            format!(
                "undecided at this run's precision: the cell's {:.0}% interval {}–{} req/s ({} repetitions) holds the prediction, so the measurement does not contradict it; more or longer repetitions would decide. At the point: {path}",
                cell.throughput.ci_level * 100.0,
                thousands(cell.throughput.ci_low),
                thousands(cell.throughput.ci_high),
                cell.throughput.n,
            ),
        ),
        (false, Some(_)) => (
            false,
            format!("unexplained: {ratio:.2}x the prediction; the formula's terms: {path}"),
        ),
        (false, None) => (
            false,
            format!(
                "unexplained: {ratio:.2}x the prediction and outside the range placement allows ({}–{} req/s); the formula's terms: {path}",
                thousands(low),
                thousands(high),
            ),
        ),
    };
    Check {
        regime: cell.regime.clone(),
        variant: cell.variant.clone(),
        n: cell.n,
        clients: cell.clients,
        measured_rps: measured,
        prediction,
        ratio,
        within,
        explained,
        explanation,
    }
}

/// True when `measured`'s confidence interval (a real one: two or more repetitions)
/// reaches the prediction's point, or its range.
fn holds(measured: &crate::stats::Interval, p: &Prediction) -> bool {
    let (low, high) = match p.rps {
        Some(point) => (point, point),
        None => (p.low, p.high),
    };
    measured.n >= 2 && measured.ci_level > 0.0 && measured.ci_low <= high && measured.ci_high >= low
}

/// "`limit`: 60 of the 69 µs per request is waking the sleeping side on another CPU".
pub fn path_sentence(p: &Prediction) -> String {
    match p.dominant() {
        Some((term, total)) => format!(
            "{}; {} of the {} µs per request is {}",
            p.limit.describe(),
            short_us(term.us),
            short_us(total),
            term.what
        ),
        None => p.limit.describe().to_string(),
    }
}

fn short_us(us: f64) -> String {
    match us {
        u if u < 10.0 => format!("{u:.1}"),
        u => thousands(u),
    }
}

/// A prediction as a table shows it: `14.7k`, or `29k–182k` for a range.
pub fn label(p: &Prediction) -> String {
    match p.rps {
        Some(rps) => compact(rps),
        None => format!("{}–{}", compact(p.low), compact(p.high)),
    }
}

/// `14,366` -> `14.4k`; `208,161` -> `208k`; `950` -> `950`.
pub fn compact(rps: f64) -> String {
    match rps {
        r if r >= 100_000.0 => format!("{:.0}k", r / 1000.0),
        r if r >= 1_000.0 => format!("{:.1}k", r / 1000.0),
        r => format!("{r:.0}"),
    }
}

/// `report` with each cell's throughput replaced by its predicted point (0 where the
/// prediction is a range or there is none), for asking what the findings would say
/// from the calibration alone. `None` without a calibration.
///
/// The starvation results keep their predicted `kept` ([`kept`]); those without one
/// (peers) are left out.
pub fn predicted(report: &BenchReport) -> Option<BenchReport> {
    report.calibration.as_ref()?;
    let mut out = report.clone();
    // The GIL's figures have no cost model: claims that read them are not predicted.
    out.python = None;
    // The rules read a cell's samples for its interval; a predicted cell has none.
    out.samples.clear();
    for cell in &mut out.cells {
        cell.median_rps = predict(report, cell).and_then(|p| p.rps).unwrap_or(0.0);
        cell.throughput = crate::stats::Interval::point(cell.median_rps);
    }
    let predicted_kept: Vec<Option<Kept>> =
        report.starvation.iter().map(|s| kept(report, s)).collect();
    let mut predicted_kept = predicted_kept.into_iter();
    out.starvation
        .retain_mut(|s| match predicted_kept.next().flatten() {
            Some(k) => {
                s.kept = k.ratio;
                // The measured timeline would lend a predicted figure its interval.
                s.timeline.clear();
                true
            }
            None => false,
        });
    Some(out)
}

/// The light throughput a model is predicted to keep during seed 004's heavy request
/// ([`CostModel::kept`]), for a starvation result of `report`; `None` for a peer or
/// without a calibration.
pub fn kept(report: &BenchReport, s: &StarvationResult) -> Option<Kept> {
    // The light request: the smallest n calibrated (every scenario's is fib(1), whose
    // cost is nothing beside a round trip).
    let light_n = report.calibration.as_ref()?.fib.first()?.n;
    let (model, costs) = inputs_for(report, &s.regime, &s.variant, light_n, 1)?;
    Some(model.kept(&costs))
}

/// How well the predictions did: (within the threshold, explained, all).
pub fn score(checks: &[Check]) -> (usize, usize, usize) {
    (
        checks.iter().filter(|c| c.within).count(),
        checks.iter().filter(|c| c.explained).count(),
        checks.len(),
    )
}

#[cfg(test)]
pub(crate) mod tests;
