//! `fiblab compare OLD.json NEW.json`: what changed between two runs, and whether the
//! data can tell. For bench reports, every cell measured in both (by regime, row,
//! workload and clients), and every knee (its sweeps the samples, each known only to its
//! sweep's step): the old and new figure with their intervals, the change
//! `new / old` with Welch's interval and p-value ([`crate::stats::Difference`]), and a
//! mark: `+` faster, `-` slower, `~` no change the data can show (not significant, or
//! under the noise threshold, as criterion's noise threshold). For load reports, the
//! throughput (its samples: the run's whole seconds, so within one run) and each class's
//! p50 and p99, whose intervals are the order-statistic intervals of the quantile
//! ([`crate::stats::quantile_interval`]); a percentile changed only where the two
//! intervals do not overlap.
//!
//! A regression gate (`--fail-on-regression 5%`) fails on a cell that is significantly
//! slower and slower by more than the threshold, as criterion baselines and k6
//! thresholds gate a CI job.

use std::fmt::Write as _;

use crate::bench::results::{BenchReport, KneeSweep};
use crate::load::report::Report as LoadReport;
use crate::stats::{Difference, Interval, LEVEL, quantile_interval};

/// What a comparison ignores and what it gates on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// A change smaller than this fraction (0.02: 2%) counts as no change, significant
    /// or not.
    pub noise: f64,
    /// Fail on a significant slowdown (or a significantly higher percentile) beyond
    /// this fraction; `None`: never fail.
    pub fail_on_regression: Option<f64>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            noise: 0.02,
            fail_on_regression: None,
        }
    }
}

/// Two reports that cannot be compared, or a file that is not a report.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(
        "{which} is not a fiblab bench or load report (JSON from `fiblab bench` or `fiblab load --json`): {why}"
    )]
    NotAReport { which: &'static str, why: String },
    #[error(
        "OLD is a {old} report and NEW a {new} report: compare two bench reports or two load reports"
    )]
    Kinds {
        old: &'static str,
        new: &'static str,
    },
    #[error(
        "OLD ran scenario `{old}` and NEW scenario `{new}`: their cells measure different things; compare two runs of one scenario"
    )]
    Scenarios { old: String, new: String },
    #[error("OLD and NEW share no cell: nothing to compare ({why})")]
    Disjoint { why: String },
}

/// Which way a figure moved, as far as the data can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Better,
    Worse,
    /// No change the data can show: not significant, or within the noise threshold.
    Same,
}

impl Mark {
    pub fn symbol(self) -> &'static str {
        match self {
            Mark::Better => "+",
            Mark::Worse => "-",
            Mark::Same => "~",
        }
    }
}

/// One figure in both reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The cell: `shared n=1 2 clients threads`, or `n=1 p99 µs` for a load report.
    pub what: String,
    pub old: Interval,
    pub new: Interval,
    /// `new / old` with its interval; a point where the figure has no samples to test.
    pub change: Interval,
    /// The test's p-value, adjusted over every row (Benjamini-Hochberg); `None` where the
    /// figures were compared by their intervals.
    pub p: Option<f64>,
    /// Mann-Whitney's p-value, unadjusted (it counts only with five samples a side).
    pub p_mann_whitney: f64,
    pub mark: Mark,
    /// Higher is better (throughput) or lower (latency).
    pub higher_is_better: bool,
    /// Worse beyond `--fail-on-regression`, significantly.
    pub regression: bool,
    /// The smallest change (a ratio, 1.12: 12% either way) this row's samples could
    /// have shown with 80% power at the 95% level, before the correction over the
    /// rows ([`crate::stats::smallest_detectable_ratio`]); `None` where the figure was
    /// compared by its intervals. A `~` row says no more than that: a change smaller
    /// than this may have happened unseen.
    pub detectable: Option<f64>,
}

/// Everything `fiblab compare` found.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub kind: &'static str,
    pub options: Options,
    pub rows: Vec<Row>,
    /// What the reader must know: a different machine or pinning, cells in one report
    /// only.
    pub warnings: Vec<String>,
}

impl Comparison {
    /// Compare two reports given as JSON text.
    pub fn of_json(old: &str, new: &str, options: Options) -> Result<Comparison, CompareError> {
        match (parse(old, "OLD")?, parse(new, "NEW")?) {
            (Parsed::Bench(o), Parsed::Bench(n)) => bench(&o, &n, options),
            (Parsed::Load(o), Parsed::Load(n)) => Ok(load(&o, &n, options)),
            (o, n) => Err(CompareError::Kinds {
                old: o.kind(),
                new: n.kind(),
            }),
        }
    }

    /// The rows marked as regressions.
    pub fn regressions(&self) -> Vec<&Row> {
        self.rows.iter().filter(|r| r.regression).collect()
    }

    /// The comparison as a text table, warnings first, a count last.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        let header = ["", "figure", "old", "new", "new / old", "p", "detectable"];
        let rows: Vec<[String; 7]> = self
            .rows
            .iter()
            .map(|r| {
                let figure = |x: f64| match r.higher_is_better {
                    // A share (seed 004's light throughput kept) in hundredths.
                    true if x.abs() < 10.0 => format!("{x:.2}"),
                    true => crate::units::thousands(x),
                    false => format!("{x:.0}"),
                };
                [
                    r.mark.symbol().to_string() + if r.regression { "!" } else { "" },
                    r.what.clone(),
                    r.old.text(figure),
                    r.new.text(figure),
                    r.change.text(|x| format!("{x:.3}")),
                    r.p.map_or("(intervals)".into(), |p| format!("{p:.3}")),
                    r.detectable
                        .map_or("–".into(), |d| format!("±{:.0}%", (d - 1.0) * 100.0)),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 7]| {
            let mut text = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let pad = w.saturating_sub(cell.chars().count());
                match i {
                    0 | 1 => text.push_str(&format!("{cell}{}  ", " ".repeat(pad))),
                    _ => text.push_str(&format!("{}{cell}  ", " ".repeat(pad))),
                }
            }
            text.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(header));
        for row in &rows {
            let _ = writeln!(out, "{}", line(row.each_ref().map(String::as_str)));
        }
        let count = |m: Mark| self.rows.iter().filter(|r| r.mark == m).count();
        let _ = writeln!(
            out,
            "\n{} figures: {} better (+), {} worse (-), {} no change the data can show (~: p >= {:.2}, Benjamini-Hochberg-adjusted over the figures, or under the {:.0}% noise threshold). Intervals {:.0}%. \"detectable\": the smallest change each figure's samples could have shown (80% power, 95% level, before the correction): a ~ says nothing of changes smaller than that.",
            self.rows.len(),
            count(Mark::Better),
            count(Mark::Worse),
            count(Mark::Same),
            1.0 - LEVEL,
            self.options.noise * 100.0,
            LEVEL * 100.0
        );
        if let Some(limit) = self.options.fail_on_regression {
            let _ = writeln!(
                out,
                "Regressions beyond {:.0}% (marked -!): {}.",
                limit * 100.0,
                self.regressions().len()
            );
        }
        out
    }
}

enum Parsed {
    Bench(Box<BenchReport>),
    Load(Box<LoadReport>),
}

impl Parsed {
    fn kind(&self) -> &'static str {
        match self {
            Parsed::Bench(_) => "bench",
            Parsed::Load(_) => "load",
        }
    }
}

fn parse(text: &str, which: &'static str) -> Result<Parsed, CompareError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| CompareError::NotAReport {
            which,
            why: e.to_string(),
        })?;
    let bad = |e: serde_json::Error| CompareError::NotAReport {
        which,
        why: e.to_string(),
    };
    match (value.get("scenario"), value.get("target")) {
        (Some(_), _) => crate::bench::export::json::parse(text)
            .map(|r| Parsed::Bench(Box::new(r)))
            .map_err(bad),
        (None, Some(_)) => serde_json::from_value(value)
            .map(|r| Parsed::Load(Box::new(r)))
            .map_err(bad),
        (None, None) => Err(CompareError::NotAReport {
            which,
            why: "it has neither a `scenario` (bench) nor a `target` (load)".into(),
        }),
    }
}

/// A higher-is-better figure's row from two sets of samples.
/// A row for two figures known only by their intervals (no samples to test): changed
/// where the intervals are apart and the change passes `--noise`; a regression where it
/// is worse beyond `--fail-on-regression`.
fn by_intervals(
    what: String,
    o: Interval,
    n: Interval,
    higher_is_better: bool,
    options: Options,
) -> Row {
    let change = match o.estimate > 0.0 {
        true => n.estimate / o.estimate,
        false => 1.0,
    };
    let apart = n.ci_low > o.ci_high || n.ci_high < o.ci_low;
    let moved = (change - 1.0).abs() >= options.noise;
    let better = match higher_is_better {
        true => change >= 1.0,
        false => change <= 1.0,
    };
    let mark = match (apart && moved, better) {
        (false, _) => Mark::Same,
        (true, true) => Mark::Better,
        (true, false) => Mark::Worse,
    };
    let beyond = |limit: f64| match higher_is_better {
        true => change < 1.0 - limit,
        false => change > 1.0 + limit,
    };
    Row {
        what,
        old: o,
        new: n,
        change: Interval::point(change),
        p: None,
        p_mann_whitney: 1.0,
        mark,
        higher_is_better,
        regression: mark == Mark::Worse && options.fail_on_regression.is_some_and(beyond),
        detectable: None,
    }
}

fn tested(what: String, old: &[f64], new: &[f64], options: Options) -> Option<Row> {
    let d = Difference::of(new, old)?;
    // The p-value is adjusted over all the rows later ([`adjust`]); this mark is provisional.
    let significant = d.significant_at(d.p, new.len(), old.len());
    let moved = (d.ratio.estimate - 1.0).abs() >= options.noise;
    let mark = match (significant && moved, d.ratio.estimate >= 1.0) {
        (false, _) => Mark::Same,
        (true, true) => Mark::Better,
        (true, false) => Mark::Worse,
    };
    let regression = mark == Mark::Worse
        && options
            .fail_on_regression
            .is_some_and(|limit| d.ratio.estimate < 1.0 - limit);
    Some(Row {
        what,
        old: Interval::of(old),
        new: Interval::of(new),
        change: d.ratio,
        p: Some(d.p),
        p_mann_whitney: d.p_mann_whitney,
        mark,
        higher_is_better: true,
        regression,
        detectable: crate::stats::smallest_detectable_ratio(new, old, 0.0, 0.0, POWER),
    })
}

/// The power at which a row's smallest detectable change is computed.
const POWER: f64 = 0.8;

/// The rows' p-values adjusted together (Benjamini-Hochberg: many cells are compared
/// at once), and their marks and regressions decided again on the adjusted values.
fn adjust(rows: &mut [Row], sizes: &[(usize, usize)], options: Options) {
    let raw: Vec<f64> = rows.iter().map(|r| r.p.unwrap_or(1.0)).collect();
    let adjusted = crate::stats::benjamini_hochberg(&raw);
    for ((row, p), &(n_new, n_old)) in rows.iter_mut().zip(adjusted).zip(sizes) {
        let Some(raw_p) = row.p else { continue };
        let d = Difference {
            ratio: row.change,
            p: raw_p,
            p_mann_whitney: row.p_mann_whitney,
        };
        let significant = d.significant_at(p, n_new, n_old);
        let moved = (row.change.estimate - 1.0).abs() >= options.noise;
        row.p = Some(p);
        row.mark = match (significant && moved, row.change.estimate >= 1.0) {
            (false, _) => Mark::Same,
            (true, true) => Mark::Better,
            (true, false) => Mark::Worse,
        };
        row.regression = row.mark == Mark::Worse
            && options
                .fail_on_regression
                .is_some_and(|limit| row.change.estimate < 1.0 - limit);
    }
}

fn bench(
    old: &BenchReport,
    new: &BenchReport,
    options: Options,
) -> Result<Comparison, CompareError> {
    if old.scenario != new.scenario {
        return Err(CompareError::Scenarios {
            old: old.scenario.clone(),
            new: new.scenario.clone(),
        });
    }
    let mut warnings = Vec::new();
    let (om, nm) = (&old.machine, &new.machine);
    if (&om.cpu, om.cpus, &om.kernel) != (&nm.cpu, nm.cpus, &nm.kernel) {
        warnings.push(format!(
            "the machines differ (OLD: {}, {} CPUs, Linux {}; NEW: {}, {} CPUs, Linux {}): a change may be the machine's",
            om.cpu, om.cpus, om.kernel, nm.cpu, nm.cpus, nm.kernel
        ));
    }
    if om.pinning != nm.pinning {
        warnings.push(format!(
            "the pinning differs (OLD: {}; NEW: {}): a change may be the placement's",
            om.pinning, nm.pinning
        ));
    }
    let samples = |r: &BenchReport, c: &crate::bench::results::Cell| -> Vec<f64> {
        r.samples_of(c).map(|s| s.throughput_rps).collect()
    };
    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    let mut only_one = 0;
    for c in &old.cells {
        let Some(twin) = new.cells.iter().find(|x| {
            x.regime == c.regime && x.variant == c.variant && x.n == c.n && x.clients == c.clients
        }) else {
            only_one += 1;
            continue;
        };
        let regime = match c.regime.is_empty() {
            true => String::new(),
            false => format!("{} ", c.regime),
        };
        let what = format!(
            "{regime}n={} {} {}, req/s",
            c.n,
            crate::bench::results::plural(c.clients, "client"),
            c.variant
        );
        let (o, n) = (samples(old, c), samples(new, twin));
        if let Some(row) = tested(what, &o, &n, options) {
            rows.push(row);
            sizes.push((n.len(), o.len()));
        }
    }

    only_one += new.cells.len() - (old.cells.len() - only_one);
    // Seed 004's light throughput kept during the heavy request: one run a model, so
    // compared by their bootstrap intervals (within each run), as a percentile is.
    for s in &old.starvation {
        let Some(twin) = new
            .starvation
            .iter()
            .find(|x| x.regime == s.regime && x.variant == s.variant)
        else {
            continue;
        };
        let (o, n) = (
            crate::bench::rules::kept_of(s),
            crate::bench::rules::kept_of(twin),
        );
        let regime = match s.regime.is_empty() {
            true => String::new(),
            false => format!("{} ", s.regime),
        };
        rows.push(by_intervals(
            format!(
                "{regime}seed 004 {}, light throughput kept (share)",
                s.variant
            ),
            o,
            n,
            true,
            options,
        ));
        sizes.push((1, 1));
    }
    // The knees, where both ran the knee: each sweep's knee a sample, each known only to
    // its sweep's step.
    if let (Some(ok), Some(nk)) = (&old.knee, &new.knee) {
        let mut keys: Vec<(&str, &str, &str)> = Vec::new();
        for s in &ok.sweeps {
            let key = (s.regime.as_str(), s.workload.as_str(), s.row.as_str());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        for (regime, workload, row) in keys {
            let (o, n) = (
                sweeps_in(ok, regime, workload, row),
                sweeps_in(nk, regime, workload, row),
            );
            if n.is_empty() {
                only_one += 1;
                continue;
            }
            let knees = |s: &[&KneeSweep]| s.iter().map(|x| x.knee_rps()).collect::<Vec<f64>>();
            let (ko, kn) = (knees(&o), knees(&n));
            let bound = match o.iter().chain(&n).any(|s| s.at_client_limit()) {
                true => " (a lower bound: the client's limit)",
                false => "",
            };
            let regime = match regime.is_empty() {
                true => String::new(),
                false => format!("{regime} "),
            };
            let what = format!("{regime}knee {workload} {row}{bound}, req/s");
            let (floor_new, floor_old) =
                (KneeSweep::grid_variance(&n), KneeSweep::grid_variance(&o));
            let Some(d) = Difference::resolved(&kn, &ko, floor_new, floor_old) else {
                continue;
            };
            rows.push(Row {
                what,
                old: crate::stats::median_interval(&ko, LEVEL),
                new: crate::stats::median_interval(&kn, LEVEL),
                change: d.ratio,
                p: Some(d.p),
                p_mann_whitney: d.p_mann_whitney,
                mark: Mark::Same,
                higher_is_better: true,
                regression: false,
                detectable: crate::stats::smallest_detectable_ratio(
                    &kn, &ko, floor_new, floor_old, POWER,
                ),
            });
            sizes.push((kn.len(), ko.len()));
        }
    }
    adjust(&mut rows, &sizes, options);
    if only_one > 0 {
        warnings.push(format!(
            "{only_one} cells are in one report only (other models, workloads or regimes): compared only what both measured"
        ));
    }
    if rows.is_empty() {
        return Err(CompareError::Disjoint {
            why: "no (regime, model, n, clients) cell with a throughput in both".into(),
        });
    }
    Ok(Comparison {
        kind: "bench",
        options,
        rows,
        warnings,
    })
}

/// The sweeps of `row` on `workload` in `regime`.
fn sweeps_in<'a>(
    k: &'a crate::bench::results::KneeRecords,
    regime: &str,
    workload: &str,
    row: &str,
) -> Vec<&'a KneeSweep> {
    k.sweeps
        .iter()
        .filter(|s| s.regime == regime && s.workload == workload && s.row == row)
        .filter(|s| !s.set_aside)
        .collect()
}

fn load(old: &LoadReport, new: &LoadReport, options: Options) -> Comparison {
    let mut warnings = vec![
        "load reports are one run each: throughput is tested over the run's whole seconds (within one run, so it misses what changes between runs) and percentiles by their order-statistic intervals; `fiblab bench` repeats runs for intervals that hold across them".to_string(),
    ];
    if (old.mode.as_str(), old.connections, old.rate)
        != (new.mode.as_str(), new.connections, new.rate)
    {
        warnings.push(format!(
            "the loads differ (OLD: {} loop, {} connections, rate {:?}; NEW: {} loop, {} connections, rate {:?})",
            old.mode, old.connections, old.rate, new.mode, new.connections, new.rate
        ));
    }
    let seconds = |r: &LoadReport| -> Vec<f64> {
        r.per_second
            .iter()
            .filter(|s| s.span_s >= 0.999)
            .map(|s| s.classes.iter().map(|c| c.requests_ok).sum::<u64>() as f64 / s.span_s)
            .collect()
    };
    let mut rows = Vec::new();
    rows.extend(tested(
        "throughput req/s".into(),
        &seconds(old),
        &seconds(new),
        options,
    ));
    for class in &old.classes {
        let Some(twin) = new.classes.iter().find(|c| c.label == class.label) else {
            warnings.push(format!("class `{}` is in OLD only", class.label));
            continue;
        };
        let (Ok(ho), Ok(hn)) = (
            crate::load::decode_histogram(&class.histogram),
            crate::load::decode_histogram(&twin.histogram),
        ) else {
            continue;
        };
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            let (Some(o), Some(n)) = (quantile_interval(&ho, q), quantile_interval(&hn, q)) else {
                continue;
            };
            rows.push(by_intervals(
                format!("{} {name} µs", class.label),
                o,
                n,
                false,
                options,
            ));
        }
    }
    Comparison {
        kind: "load",
        options,
        rows,
        warnings,
    }
}

#[cfg(test)]
mod tests;
