//! The seeds' conclusions, checked against this machine's measurements.
//!
//! Seed 000 ends with a summary (总结) of what its tables showed, seed 004 with what
//! one heavy request did. Each claim below is a rule over the benchmark's cells: it
//! cites the cells it reads and says whether this run reproduces the claim,
//! contradicts it, or why it does not apply to Rust (no GIL). Nothing here is written
//! by hand into a report: change the measurements and the verdicts follow.

use serde::Serialize;

use super::report::BenchReport;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    Reproduces,
    Contradicts,
    DoesNotApply,
    NotMeasured,
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Reproduces => "reproduces",
            Verdict::Contradicts => "contradicts",
            Verdict::DoesNotApply => "does not apply",
            Verdict::NotMeasured => "not measured",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Where the claim is made.
    pub source: &'static str,
    /// The claim, in English.
    pub claim: &'static str,
    pub verdict: Verdict,
    /// The measured figures the verdict rests on.
    pub evidence: String,
}

/// Median req/s of a cell.
fn rps(r: &BenchReport, variant: &str, n: u32, clients: usize) -> Option<f64> {
    r.cells
        .iter()
        .find(|c| c.variant == variant && c.n == n && c.clients == clients)
        .map(|c| c.median_rps)
        .filter(|&v| v > 0.0)
}

/// Light throughput kept during the heavy request.
fn kept(r: &BenchReport, variant: &str) -> Option<f64> {
    r.starvation
        .iter()
        .find(|s| s.variant == variant)
        .map(|s| s.kept)
}

fn finding(
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
    }
}

fn missing(source: &'static str, claim: &'static str, needs: &str) -> Finding {
    finding(
        source,
        claim,
        Verdict::NotMeasured,
        format!("needs {needs} in the scenario"),
    )
}

/// A claim about one cell's throughput relative to another's: `holds(a / b)` decides.
struct Ratio<'a> {
    source: &'static str,
    claim: &'static str,
    /// (label, model, n, clients) of the two cells.
    a: (&'a str, &'a str, u32, usize),
    b: (&'a str, &'a str, u32, usize),
    holds: fn(f64) -> bool,
}

impl Ratio<'_> {
    fn check(&self, r: &BenchReport) -> Finding {
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
                let evidence = format!("n={n}, {who}: {la} {x:.0} req/s, {lb} {y:.0}: {ratio:.2}x");
                finding(self.source, self.claim, verdict, evidence)
            }
            _ => missing(
                self.source,
                self.claim,
                &format!("{ma} and {mb} at n={n} with {who}"),
            ),
        }
    }
}

/// Every rule, in the order the seeds state the claims.
pub fn findings(r: &BenchReport) -> Vec<Finding> {
    let mut out = Vec::new();

    out.push(
        Ratio {
            source: "seed 000, 总结 1",
            claim: "I/O-bound, threads perform about like Go",
            a: ("threads", "threads", 1, 2),
            b: ("tokio (Go's design)", "tokio", 1, 2),
            holds: |ratio| (0.8..=1.25).contains(&ratio),
        }
        .check(r),
    );

    let (source, claim) = (
        "seed 000, 总结 2",
        "CPU-bound, Go is tens of times faster than Python threads",
    );
    out.push(match (rps(r, "threads", 20, 2), rps(r, "tokio", 20, 2)) {
        (Some(t), Some(g)) => finding(
            source,
            claim,
            Verdict::DoesNotApply,
            format!("no GIL in Rust: n=20, 2 clients: threads {t:.0} req/s, tokio {g:.0} ({:.2}x); the gap was Python's interpreter, not threads", t / g),
        ),
        _ => missing(source, claim, "threads and tokio at n=20 with 2 clients"),
    });

    out.push(
        Ratio {
            source: "seed 000, 总结 3",
            claim: "I/O-bound, a process pool is much slower than threads",
            a: ("procpool", "procpool", 1, 2),
            b: ("threads", "threads", 1, 2),
            holds: |ratio| ratio < 0.8,
        }
        .check(r),
    );

    let (source, claim) = (
        "seed 000, 总结 4",
        "CPU-bound, processes gain from a second client and threads do not (the GIL)",
    );
    out.push(match (rps(r, "threads", 20, 1), rps(r, "threads", 20, 2), rps(r, "procpool", 20, 1), rps(r, "procpool", 20, 2)) {
        (Some(t1), Some(t2), Some(p1), Some(p2)) => {
            let (threads_gain, procs_gain) = (t2 / t1, p2 / p1);
            let verdict = if threads_gain < 1.2 && procs_gain >= 1.2 { Verdict::Reproduces } else { Verdict::Contradicts };
            finding(
                source,
                claim,
                verdict,
                format!("n=20, 1 -> 2 clients: threads x{threads_gain:.2} ({t1:.0} -> {t2:.0}), procpool x{procs_gain:.2} ({p1:.0} -> {p2:.0})"),
            )
        }
        _ => missing(source, claim, "threads and procpool at n=20 with 1 and 2 clients"),
    });

    let (source, claim) = (
        "seed 000, 总结 5",
        "coroutines can replace threads for I/O-bound work, but block on CPU-bound work",
    );
    out.push(match (rps(r, "coroutines", 1, 2), rps(r, "threads", 1, 2), kept(r, "coroutines")) {
        (Some(c), Some(t), Some(k)) => {
            let verdict = if c / t >= 0.5 && k < 0.1 { Verdict::Reproduces } else { Verdict::Contradicts };
            finding(
                source,
                claim,
                verdict,
                format!("n=1, 2 clients: coroutines {c:.0} req/s vs threads {t:.0} ({:.2}x); during one heavy request coroutines kept {:.0}% of light throughput", c / t, k * 100.0),
            )
        }
        _ => missing(source, claim, "coroutines and threads at n=1 with 2 clients, and the starvation experiment"),
    });

    out.push(
        Ratio {
            source: "seed 000, 总结 6",
            claim: "sub-interpreters isolate, but do not cure the interpreter's slowness",
            a: ("isolates (wasmi)", "isolates", 20, 1),
            b: ("threads (native)", "threads", 20, 1),
            holds: |ratio| ratio < 0.5,
        }
        .check(r),
    );

    let (source, claim) = (
        "seed 004",
        "one heavy request collapses a server's light throughput (~100x)",
    );
    let loops = [
        "tokio-current",
        "nonblocking",
        "select",
        "epoll",
        "coroutines",
    ];
    let collapsed: Vec<String> = loops
        .iter()
        .filter_map(|m| kept(r, m).map(|k| format!("{m} {:.0}%", k * 100.0)))
        .collect();
    out.push(match (collapsed.is_empty(), kept(r, "threads")) {
        (false, Some(threads)) => {
            let worst_loop = loops.iter().filter_map(|m| kept(r, m)).fold(0.0, f64::max);
            let verdict = if worst_loop < 0.05 { Verdict::Reproduces } else { Verdict::Contradicts };
            finding(
                source,
                claim,
                verdict,
                format!(
                    "light throughput kept during the heavy request: single-thread loops {}; threads {:.0}% (no GIL: the other core serves)",
                    collapsed.join(", "),
                    threads * 100.0
                ),
            )
        }
        _ => missing(source, claim, "the starvation experiment for threads and the single-thread loops"),
    });

    let (source, claim) = (
        "seed 004",
        "a process pool removes the collapse, at about 10x the throughput cost",
    );
    out.push(match (kept(r, "procpool"), rps(r, "procpool", 1, 1), rps(r, "threads", 1, 1)) {
        (Some(k), Some(p), Some(t)) => {
            let cost = t / p;
            let verdict = if k >= 0.5 && cost >= 5.0 { Verdict::Reproduces } else { Verdict::Contradicts };
            finding(
                source,
                claim,
                verdict,
                format!("procpool kept {:.0}% of light throughput during the heavy request; its n=1 throughput is 1/{cost:.1} of threads' ({p:.0} vs {t:.0} req/s)", k * 100.0),
            )
        }
        _ => missing(source, claim, "procpool and threads at n=1 with 1 client, and the starvation experiment"),
    });
    out
}

/// The findings as a report table.
pub fn table(findings: &[Finding]) -> super::report::Table {
    super::report::Table {
        title: "The seeds' conclusions on this machine".into(),
        intro: String::new(),
        header: ["source", "claim", "verdict", "evidence"]
            .map(String::from)
            .to_vec(),
        left: 4,
        rows: findings
            .iter()
            .map(|f| {
                vec![
                    f.source.to_string(),
                    f.claim.to_string(),
                    format!("**{}**", f.verdict.label()),
                    f.evidence.clone(),
                ]
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::BenchReport;
    use crate::bench::{Sample, StarvationResult};

    fn report(cells: &[(&str, u32, usize, f64)], kept: &[(&str, f64)]) -> BenchReport {
        let samples: Vec<Sample> = cells
            .iter()
            .map(|&(variant, n, clients, rps)| Sample {
                variant: variant.into(),
                n,
                clients,
                repetition: 0,
                throughput_rps: rps,
                p50_us: 1,
                p99_us: 1,
                per_connection: vec![1; clients],
                errors: 0,
                histogram: String::new(),
            })
            .collect();
        let mut report = crate::bench::report::tests::report_of(samples);
        report.starvation = kept
            .iter()
            .map(|&(variant, kept)| StarvationResult {
                variant: variant.into(),
                heavy_n: 40,
                heavy_s: Some(1.0),
                light_before_rps: 100.0,
                light_during_rps: 100.0 * kept,
                kept,
                timeline: vec![],
                heavy_at_s: 1.0,
            })
            .collect();
        report
    }

    fn verdicts(r: &BenchReport) -> Vec<Verdict> {
        findings(r).into_iter().map(|f| f.verdict).collect()
    }

    #[test]
    fn nothing_measured_means_nothing_claimed() {
        assert!(
            verdicts(&report(&[], &[]))
                .iter()
                .all(|v| *v == Verdict::NotMeasured)
        );
    }

    #[test]
    fn python_like_figures_reproduce_the_seeds() {
        // The seeds' own numbers, shaped as fiblab cells.
        let r = report(
            &[
                ("threads", 1, 2, 19_000.0),
                ("tokio", 1, 2, 20_000.0),
                ("threads", 20, 1, 400.0),
                ("threads", 20, 2, 400.0),
                ("tokio", 20, 2, 11_000.0),
                ("procpool", 1, 1, 1_000.0),
                ("procpool", 1, 2, 4_300.0),
                ("procpool", 20, 1, 400.0),
                ("procpool", 20, 2, 700.0),
                ("coroutines", 1, 2, 14_000.0),
                ("isolates", 20, 1, 150.0),
                ("threads", 1, 1, 12_000.0),
            ],
            &[
                ("threads", 0.9),
                ("epoll", 0.01),
                ("coroutines", 0.01),
                ("procpool", 0.9),
            ],
        );
        let v = verdicts(&r);
        assert_eq!(v[0], Verdict::Reproduces, "threads ~ Go at n=1");
        assert_eq!(v[1], Verdict::DoesNotApply, "no GIL");
        assert_eq!(v[2], Verdict::Reproduces, "procpool slower at I/O");
        assert_eq!(v[3], Verdict::Reproduces, "threads flat, processes gain");
        assert_eq!(v[4], Verdict::Reproduces, "coroutines");
        assert_eq!(v[5], Verdict::Reproduces, "isolates slow");
        assert_eq!(v[6], Verdict::Reproduces, "collapse");
        assert_eq!(v[7], Verdict::Reproduces, "pool removes it at a cost");
    }

    #[test]
    fn rust_like_figures_contradict_the_gil_claims() {
        let r = report(
            &[
                ("threads", 20, 1, 20_000.0),
                ("threads", 20, 2, 44_000.0),
                ("procpool", 20, 1, 15_000.0),
                ("procpool", 20, 2, 26_000.0),
            ],
            &[],
        );
        let f = findings(&r);
        assert_eq!(f[3].verdict, Verdict::Contradicts);
        assert!(f[3].evidence.contains("threads x2.20"), "{}", f[3].evidence);
        assert!(
            table(&f)
                .rows
                .iter()
                .any(|row| row[0] == "seed 000, 总结 4")
        );
    }
}
