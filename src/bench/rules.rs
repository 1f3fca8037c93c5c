//! The shapes of the rules that check the seeds' conclusions against a run: a claim is
//! a rule over the report's cells that cites the figures it read and says whether this
//! run reproduces it, contradicts it, or why it does not apply to Rust (no GIL). Each
//! experiment states its own rules with these ([`super::experiments`]); nothing here is
//! written by hand into a report: change the measurements and the verdicts follow.

use super::results::{BenchReport, Finding, Table, Verdict};

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
        match (rps(r, ma, n, clients), rps(r, mb, nb, cb)) {
            (Some(x), Some(y)) => {
                let ratio = x / y;
                let verdict = if (self.holds)(ratio) {
                    Verdict::Reproduces
                } else {
                    Verdict::Contradicts
                };
                let who = if clients == 1 {
                    "1 client".to_string()
                } else {
                    format!("{clients} clients")
                };
                let evidence = format!(
                    "n={n}, {who}: {la} {x:.0} req/s, {lb} {y:.0}: {}x",
                    self::ratio(ratio)
                );
                finding(self.source, self.claim, verdict, evidence)
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
