//! The shapes of the rules that check the seeds' conclusions against a run: a claim is
//! a rule over the report's cells that cites the figures it read and says whether this
//! run reproduces it, contradicts it, or why it does not apply to Rust (no GIL). Each
//! experiment states its own rules with these ([`super::experiments`]); nothing here is
//! written by hand into a report: change the measurements and the verdicts follow.

use super::results::{BenchReport, Finding, Table, Verdict};
use crate::stats::{Difference, Interval};

/// A ratio as every table and finding prints it: two decimals (1.0946 -> `1.09`), so a
/// figure reads the same wherever it appears.
pub fn ratio(x: f64) -> String {
    format!("{x:.2}")
}

/// Median req/s of a cell.
pub fn rps(r: &BenchReport, variant: &str, n: u32, clients: usize) -> Option<f64> {
    r.cells
        .iter()
        .find(|c| c.variant == variant && c.n == n && c.clients == clients)
        .map(|c| c.median_rps)
        .filter(|&v| v > 0.0)
}

/// The throughput samples of a cell, one per repetition (each a server process of its
/// own), in the regime of the first cell that matches; the cell's median alone where the
/// report kept no samples (a predicted view). Empty when the cell is missing or served
/// nothing.
pub fn samples(r: &BenchReport, variant: &str, n: u32, clients: usize) -> Vec<f64> {
    let Some(cell) = r
        .cells
        .iter()
        .find(|c| c.variant == variant && c.n == n && c.clients == clients)
        .filter(|c| c.median_rps > 0.0)
    else {
        return Vec::new();
    };
    let kept: Vec<f64> = r.samples_of(cell).map(|s| s.throughput_rps).collect();
    match kept.is_empty() {
        true => vec![cell.median_rps],
        false => kept,
    }
}

/// A cell's throughput with its interval ([`Interval::of`] its repetitions).
pub fn throughput(r: &BenchReport, variant: &str, n: u32, clients: usize) -> Option<Interval> {
    let s = samples(r, variant, n, clients);
    (!s.is_empty()).then(|| Interval::of(&s))
}

/// Cell `a` against cell `b`, each `(variant, n, clients)`: the ratio of their throughputs
/// with its interval and p-value ([`Difference::of`]).
pub fn versus(r: &BenchReport, a: (&str, u32, usize), b: (&str, u32, usize)) -> Option<Difference> {
    Difference::of(&samples(r, a.0, a.1, a.2), &samples(r, b.0, b.1, b.2))
}

/// A ratio as the reports print it with its interval: `1.30 [1.12–1.50]`.
pub fn ratio_ci(x: &Interval) -> String {
    x.text(ratio)
}

/// Whether `holds` is true of the whole interval (`Some(true)`), of none of it
/// (`Some(false)`), or the interval straddles the rule's threshold (`None`). `holds` is
/// a threshold or a range over the figure: it is asked at both ends and the estimate.
pub fn decide(x: &Interval, holds: impl Fn(f64) -> bool) -> Option<bool> {
    let at = [x.ci_low, x.estimate, x.ci_high].map(&holds);
    match at {
        [true, true, true] => Some(true),
        [false, false, false] => Some(false),
        _ => None,
    }
}

/// Several parts of one rule, each decided or not (Kleene's three-valued "and"): false
/// if any part is false, true if all are true, undecided otherwise.
pub fn all(parts: &[Option<bool>]) -> Option<bool> {
    match parts.contains(&Some(false)) {
        true => Some(false),
        false => parts
            .iter()
            .copied()
            .collect::<Option<Vec<bool>>>()
            .map(|_| true),
    }
}

/// The verdict of a rule that holds, does not, or cannot be told at this precision.
pub fn verdict(decided: Option<bool>) -> Verdict {
    decided.map_or(Verdict::Undecided, holds)
}

/// Why an interval leaves `holds` undecided, for the evidence: where the rule flips
/// inside the interval and about how many repetitions of each cell would decide it (the
/// interval's width shrinking as 1/sqrt(n)); empty when it is decided.
pub fn undecided_why(x: &Interval, holds: impl Fn(f64) -> bool) -> String {
    if decide(x, &holds).is_some() {
        return String::new();
    }
    // The flip nearest the estimate: bisect towards whichever end disagrees with it.
    let at_estimate = holds(x.estimate);
    let far = match holds(x.ci_low) != at_estimate {
        true => x.ci_low,
        false => x.ci_high,
    };
    let (mut near, mut far) = (x.estimate, far);
    for _ in 0..60 {
        let mid = (near + far) / 2.0;
        match holds(mid) == at_estimate {
            true => near = mid,
            false => far = mid,
        }
    }
    let threshold = (near + far) / 2.0;
    match x.samples_to_decide(threshold) {
        Some(n) if n > 100 => format!(
            " (undecided at this precision: the interval straddles {}; it sits so close that more than 100 repetitions would be needed)",
            ratio(threshold)
        ),
        Some(n) => format!(
            " (undecided at this precision: the interval straddles {}; about {n} repetitions would decide it)",
            ratio(threshold)
        ),
        None => format!(
            " (undecided at this precision: the interval straddles {})",
            ratio(threshold)
        ),
    }
}

/// Light throughput kept during the heavy request, with the bootstrap interval of the
/// ratio of the mean light replies per 100 ms during it over those before it
/// ([`crate::stats::bootstrap_ratio_of_means`]; within the one run, so it covers the
/// variance of the 100 ms buckets, not of server processes). The estimate is the
/// report's `kept`. A point where too few buckets lie on either side.
pub fn kept_interval(r: &BenchReport, variant: &str) -> Option<Interval> {
    let s = r.starvation.iter().find(|s| s.variant == variant)?;
    Some(kept_of(s))
}

/// [`kept_interval`] of one starvation result.
pub fn kept_of(s: &crate::bench::records::StarvationResult) -> Interval {
    const BUCKET_S: f64 = 0.1;
    let end = s.heavy_s.map_or(f64::INFINITY, |h| s.heavy_at_s + h);
    let (mut before, mut during) = (Vec::new(), Vec::new());
    for (i, &replies) in s.timeline.iter().enumerate() {
        let (from, to) = (i as f64 * BUCKET_S, (i + 1) as f64 * BUCKET_S);
        // The first bucket holds the connection's start: not the steady rate.
        if i > 0 && to <= s.heavy_at_s + 1e-9 {
            before.push(replies as f64);
        } else if from >= s.heavy_at_s - 1e-9 && to <= end + 1e-9 {
            during.push(replies as f64);
        }
    }
    let interval = crate::stats::bootstrap_ratio_of_means(&during, &before, 2000, 4)
        .unwrap_or_else(|| Interval::point(s.kept));
    Interval {
        estimate: s.kept,
        ci_low: interval.ci_low.min(s.kept),
        ci_high: interval.ci_high.max(s.kept),
        ..interval
    }
}

/// Light throughput kept during the heavy request.
pub fn kept(r: &BenchReport, variant: &str) -> Option<f64> {
    r.starvation
        .iter()
        .find(|s| s.variant == variant)
        .map(|s| s.kept)
}

/// The verdict of a rule that holds or does not: every experiment says it so.
pub fn holds(holds: bool) -> Verdict {
    match holds {
        true => Verdict::Reproduces,
        false => Verdict::Contradicts,
    }
}

pub fn finding(
    source: &'static str,
    claim: &'static str,
    verdict: Verdict,
    evidence: String,
) -> Finding {
    Finding {
        source,
        claim,
        verdict,
        evidence,
        cells: Vec::new(),
        by_regime: Vec::new(),
        decided_by: None,
    }
}

impl Finding {
    /// The finding, naming the cells (variant, n, clients) its rule read.
    pub fn reading(mut self, cells: &[(&str, u32, usize)]) -> Finding {
        self.cells = cells
            .iter()
            .map(|&(v, n, c)| (v.to_string(), n, c))
            .collect();
        self
    }
}

pub fn missing(source: &'static str, claim: &'static str, needs: &str) -> Finding {
    finding(
        source,
        claim,
        Verdict::NotMeasured,
        format!("needs {needs} in the scenario"),
    )
}

/// A claim about one cell's throughput relative to another's: `holds(a / b)` decides.
pub struct Ratio<'a> {
    pub source: &'static str,
    pub claim: &'static str,
    /// (label, model, n, clients) of the two cells.
    pub a: (&'a str, &'a str, u32, usize),
    pub b: (&'a str, &'a str, u32, usize),
    pub holds: fn(f64) -> bool,
}

impl Ratio<'_> {
    pub fn check(&self, r: &BenchReport) -> Finding {
        let (la, ma, n, clients) = self.a;
        let (lb, mb, nb, cb) = self.b;
        let who = if clients == 1 {
            "1 client".to_string()
        } else {
            format!("{clients} clients")
        };
        match (
            rps(r, ma, n, clients),
            rps(r, mb, nb, cb),
            versus(r, (ma, n, clients), (mb, nb, cb)),
        ) {
            (Some(x), Some(y), Some(d)) => {
                let decided = decide(&d.ratio, self.holds);
                let evidence = format!(
                    "n={n}, {who}: {la} {x:.0} req/s, {lb} {y:.0}: {}x{}",
                    ratio_ci(&d.ratio),
                    undecided_why(&d.ratio, self.holds)
                );
                finding(self.source, self.claim, verdict(decided), evidence)
                    .reading(&[(ma, n, clients), (mb, nb, cb)])
            }
            _ => missing(
                self.source,
                self.claim,
                &format!("{ma} and {mb} at n={n} with {who}"),
            ),
        }
    }
}

/// The findings as a report table.
pub fn table(findings: &[Finding]) -> Table {
    Table {
        title: "The seeds' conclusions on this machine".into(),
        intro: String::new(),
        header: ["source", "claim", "verdict", "evidence"]
            .map(String::from)
            .to_vec(),
        left: 4,
        text_last: false,
        rows: findings
            .iter()
            .map(|f| {
                vec![
                    f.source.to_string(),
                    f.claim.to_string(),
                    match f.verdict {
                        Verdict::DependsOnRegime => format!(
                            "**{}**: {}",
                            f.verdict.label(),
                            f.by_regime
                                .iter()
                                .map(|r| format!("{} in `{}`", r.verdict.label(), r.regime))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        v => format!("**{}**", v.label()),
                    },
                    match &f.decided_by {
                        Some(why) => format!("{} **Why:** {why}", f.evidence),
                        None => f.evidence.clone(),
                    },
                ]
            })
            .collect(),
    }
}
