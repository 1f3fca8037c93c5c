//! The benchmark's experiments, behind one interface: each one measures, keeps its
//! records in the [`BenchReport`], and turns them into its own tables, plots and
//! findings. The runner ([`super::measure()`]), the progress bar and every exporter walk
//! [`EXPERIMENTS`] and know nothing of any one experiment.
//!
//! ```text
//! scenario ──> runner ──> for each experiment: measure(run, report)
//!                            report (results.rs) ──> for each experiment:
//!                                                     tables, plots, findings
//!                                                       ──> export: markdown, HTML, JSON, SVG
//! ```
//!
//! Adding an experiment is one module here and one entry in [`EXPERIMENTS`] (and, if it
//! keeps new records, a field in [`BenchReport`]); no other experiment's file changes.

pub mod connections;
pub mod knee;
pub mod python;
pub mod scale;
pub mod scaleout;
pub mod seed_tables;
pub mod starvation;
pub mod waiting;

use std::io;

use super::canvas::PlotError;
pub use super::measure::{Row, Run, Served, Step};
use super::results::{BenchReport, Finding, Plot, RegimeVerdict, Table, Verdict};
use super::scenario::Scenario;

/// One benchmark experiment. See the module docs.
pub trait Experiment: Sync {
    /// How progress lines and the docs name it.
    fn name(&self) -> &'static str;
    /// How many progress steps [`measure`](Self::measure) will report for these rows,
    /// in a regime it runs in.
    fn steps(&self, scenario: &Scenario, rows: &[Row]) -> usize;
    /// Whether it measures in `regime`, one of the run's `regimes` (by name); every
    /// regime unless its section limits it ([`super::scenario::runs_in`]).
    fn runs_in(&self, _scenario: &Scenario, _regime: &str, _regimes: &[String]) -> bool {
        true
    }
    /// Measures, and keeps the records in `report`. Stops early, keeping what it has,
    /// once the run is interrupted.
    ///
    /// # Errors
    /// A server of fiblab's own cannot be started or the load cannot run.
    fn measure(&self, run: &mut Run<'_>, report: &mut BenchReport) -> io::Result<()>;
    /// Its tables, and the footnotes they need.
    fn tables(&self, report: &BenchReport) -> (Vec<Table>, Vec<String>);
    /// Its plots; none when the report holds none of its records.
    ///
    /// # Errors
    /// plotters could not draw one.
    fn plots(&self, report: &BenchReport) -> Result<Vec<Plot>, PlotError>;
    /// The seeds' claims its records decide.
    fn findings(&self, report: &BenchReport) -> Vec<Finding>;
    /// Sentences for the report's opening lines, each computed from its records: the
    /// answers to the question the experiment asks (none by default: the seed tables'
    /// lines answer for most).
    fn summary(&self, _report: &BenchReport) -> Vec<String> {
        Vec::new()
    }
}

/// Every experiment, in the order they run and appear in a report.
pub const EXPERIMENTS: &[&dyn Experiment] = &[
    &seed_tables::SeedTables,
    &scale::Scale,
    &starvation::Starvation,
    &python::Python,
    &connections::Connections,
    &knee::Knee,
    &waiting::Waiting,
    &scaleout::ScaleOut,
];

/// Every experiment's findings, in the order the seeds state the claims (by source;
/// claims of one source in the order their experiment gives them).
///
/// With several regimes each claim is decided in each regime alone; where the regimes
/// agree that is the verdict, where they disagree the verdict is
/// [`Verdict::DependsOnRegime`] and [`Finding::decided_by`] says which machine cost
/// decides, from the predictions of the cells the rule read.
pub fn findings(report: &BenchReport) -> Vec<Finding> {
    let names = report.regime_names();
    if names.len() <= 1 {
        return findings_of(report);
    }
    let per_regime: Vec<RegimeFindings> = names
        .iter()
        .map(|name| {
            let view = report.view(name);
            let predicted = crate::bench::predict::predicted(&view).map(|p| findings_of(&p));
            (name.clone(), findings_of(&view), predicted)
        })
        .collect();
    let first = &per_regime[0].1;
    (0..first.len())
        .map(|i| merge(report, &per_regime, i))
        .collect()
}

/// One regime's name, its findings, and the findings its predicted cells give.
type RegimeFindings = (String, Vec<Finding>, Option<Vec<Finding>>);

/// Claim `i` of the first regime, with the same claim (by source and words) of every
/// regime, as one finding. A regime whose records lack it (its experiment did not
/// run there, or a predicted view without the GIL's records) counts as not measured.
fn merge(report: &BenchReport, per_regime: &[RegimeFindings], i: usize) -> Finding {
    let mut finding = per_regime[0].1[i].clone();
    let same = |f: &&Finding| f.source == finding.source && f.claim == finding.claim;
    let nth_same = |list: &[Finding]| {
        // Two claims may share source and words only in order; take the one at the
        // same rank among its twins.
        let rank = per_regime[0].1[..i]
            .iter()
            .filter(|f| f.source == finding.source && f.claim == finding.claim)
            .count();
        list.iter().filter(same).nth(rank).cloned()
    };
    finding.by_regime = per_regime
        .iter()
        .map(|(regime, measured, predicted)| {
            let measured = nth_same(measured);
            RegimeVerdict {
                regime: regime.clone(),
                verdict: measured
                    .as_ref()
                    .map_or(Verdict::NotMeasured, |f| f.verdict),
                evidence: measured.map_or(String::new(), |f| f.evidence),
                predicted: predicted
                    .as_deref()
                    .and_then(nth_same)
                    .map(|f| f.verdict)
                    .filter(|v| *v != Verdict::NotMeasured),
            }
        })
        .collect();
    if let Some(cells) = per_regime
        .iter()
        .filter_map(|p| nth_same(&p.1))
        .map(|f| f.cells)
        .find(|c| !c.is_empty())
    {
        finding.cells = cells;
    }
    let mut decided: Vec<Verdict> = finding
        .by_regime
        .iter()
        .map(|r| r.verdict)
        .filter(|v| *v != Verdict::NotMeasured)
        .collect();
    // A regime where the claim cannot be tested (one server CPU for a scaling claim)
    // does not disagree with one where it can.
    if decided.iter().any(|v| *v != Verdict::DoesNotApply) {
        decided.retain(|v| *v != Verdict::DoesNotApply);
    }
    // Nor does one whose figures cannot tell: a regime that decides, decides.
    if decided.iter().any(|v| *v != Verdict::Undecided) {
        decided.retain(|v| *v != Verdict::Undecided);
    }
    decided.dedup();
    finding.evidence = finding
        .by_regime
        .iter()
        .map(|r| {
            let predicted = match r.predicted {
                Some(v) => format!("; predicted from the calibration: {}", v.label()),
                None => String::new(),
            };
            format!(
                "`{}` ({}{predicted}): {}",
                r.regime,
                r.verdict.label(),
                r.evidence
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    match decided.as_slice() {
        [] => finding.verdict = Verdict::NotMeasured,
        [one] => finding.verdict = *one,
        _ => {
            finding.verdict = Verdict::DependsOnRegime;
            finding.decided_by = Some(decided_by(report, &finding));
        }
    }
    finding
}

/// Why the regimes disagree on `finding`, from the predictions of the cells it read.
fn decided_by(report: &BenchReport, finding: &Finding) -> String {
    use crate::bench::predict::{label, path_sentence, predict};
    let measured: Vec<Verdict> = finding.by_regime.iter().map(|r| r.verdict).collect();
    let predicted: Option<Vec<Verdict>> = finding.by_regime.iter().map(|r| r.predicted).collect();
    let lead = match &predicted {
        Some(p) if *p == measured => "the calibration predicts the same split, so the machine decides it".to_string(),
        Some(p) if p.windows(2).all(|w| w[0] == w[1]) => format!(
            "the cost model predicts \"{}\" in every regime, so the calibrated costs do not explain the split (noise near the claim's threshold, or an effect outside the formulas)",
            p[0].label()
        ),
        Some(_) => "the cost model splits the regimes differently from the measurement".to_string(),
        None => "the cost model cannot call the claim from the calibration alone (a cell's prediction is a range: placement decides)".to_string(),
    };
    let regimes: Vec<String> = finding
        .by_regime
        .iter()
        .map(|r| {
            let cells: Vec<String> = finding
                .cells
                .iter()
                .filter_map(|(variant, n, clients)| {
                    let cell = report.cells.iter().find(|c| {
                        c.regime == r.regime
                            && &c.variant == variant
                            && c.n == *n
                            && c.clients == *clients
                    })?;
                    let p = predict(report, cell)?;
                    Some(format!(
                        "`{variant}` n={n}, {} predicted {} req/s ({})",
                        super::results::plural(*clients, "client"),
                        label(&p),
                        path_sentence(&p)
                    ))
                })
                .collect();
            format!("in `{}`, {}", r.regime, cells.join(", "))
        })
        .collect();
    format!("{}: {}.", capitalized(&lead), regimes.join("; "))
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The findings of a report of one regime.
fn findings_of(report: &BenchReport) -> Vec<Finding> {
    let mut all: Vec<Finding> = EXPERIMENTS
        .iter()
        .flat_map(|e| e.findings(report))
        .collect();
    all.sort_by_key(|f| f.source);
    all
}

/// Every experiment's plots, in report order; with several regimes, each regime's
/// plots in turn, their files named `...-REGIME.svg`.
///
/// # Errors
/// plotters could not draw one.
pub fn plots(report: &BenchReport) -> Result<Vec<Plot>, PlotError> {
    let names = report.regime_names();
    let mut all = Vec::new();
    for name in &names {
        let view = match names.len() {
            1 => report.clone(),
            _ => report.view(name),
        };
        for experiment in EXPERIMENTS {
            for mut plot in experiment.plots(&view)? {
                if names.len() > 1 {
                    let stem = plot.file.trim_end_matches(".svg").to_string();
                    plot.file = format!("{stem}-{name}.svg");
                }
                all.push(plot);
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests;
