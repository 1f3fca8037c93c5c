//! Racing: after the interleaved rounds, the time left goes to the measurements that
//! decide the report's questions, and to nothing else.
//!
//! The questions are the head's rankings (the fastest model per workload and regime,
//! at the widest client count) and the seeds' verdicts. A model the data have already
//! separated from a slot's leader gets no more repetitions there; the leader and the
//! models still in its tier 1 (the contenders) do, and so do the cells a verdict reads
//! while its interval straddles the rule's threshold. This is racing as Maron & Moore's
//! Hoeffding races and Birattari's F-Race run it (stop measuring a candidate once it is
//! ruled out), with the tiers' own test ([`crate::stats::tiers`]) as the elimination
//! rule and an indifference zone as in Bechhofer's ranking and selection (1954): a
//! contender within `--precision` of the leader is as good as the best for this
//! question, and separating it is not worth the time.
//!
//! ```text
//! loop until the deadline, or nothing is open:
//!     open = for each slot: leader + tier-1 members beyond the indifference zone
//!          + for each undecided verdict: the seed-table cells its rule read
//!     measure again the (regime, model) with the most open cells, only those cells,
//!     on a fresh server process (fewest samples first on a tie)
//! ```

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, Instant};

use super::{MOST_REPETITIONS, repetition_of};
use crate::bench::experiments::{Row, Run};
use crate::bench::results::{BenchReport, Cell, FLOOR, Finding, RaceRecord, Verdict, aggregate};
use crate::bench::scenario::RegimePlan;

/// A cell of the seed tables: (regime, model, n, clients).
pub type CellKey = (String, String, u32, usize);

/// What the race measures next: a row (regime, model) and which of its (n, clients)
/// cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Next {
    pub regime: String,
    pub variant: String,
    pub cells: Vec<(u32, usize)>,
}

/// What the race still has to decide: the questions asked, and the cells that decide
/// the ones still open.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Open {
    /// Every question: the head's slots and the seed-table verdicts, per regime.
    pub asked: usize,
    /// The questions still open, in words (`shared n=1: threads, threadpool`).
    pub open: Vec<String>,
    /// The cells measuring more would decide, each once.
    pub cells: Vec<CellKey>,
}

/// The head's slots (per regime and workload, the models at the widest client count),
/// ranked in tiers, and the verdicts of `findings` (per regime) that read seed-table
/// cells: which are still open. A slot is open while its tier 1 holds a model slower
/// than the leader by more than `indifference` (0.05: 5%); its cells are the leader's and
/// those models'. A verdict is open while it is undecided; its cells are those its rule
/// read. Peers and the floor are measured but not ranked.
pub fn open_questions(r: &BenchReport, findings: &[Finding], indifference: f64) -> Open {
    let mut out = Open::default();
    let widest = r.cells.iter().map(|c| c.clients).max().unwrap_or(1);
    let add = |out: &mut Open, key: CellKey| {
        if !out.cells.contains(&key) {
            out.cells.push(key);
        }
    };
    for regime in r.regime_names() {
        let mut workloads: Vec<u32> = r.cells.iter().map(|c| c.n).collect();
        workloads.sort_unstable();
        workloads.dedup();
        for n in workloads {
            let models: Vec<&Cell> = r
                .cells
                .iter()
                .filter(|c| c.n == n && c.clients == widest && c.regime == regime)
                .filter(|c| c.variant != FLOOR && !r.is_peer(&c.variant))
                .collect();
            if models.len() < 2 {
                continue;
            }
            out.asked += 1;
            let samples =
                |c: &&Cell| -> Vec<f64> { r.samples_of(c).map(|s| s.throughput_rps).collect() };
            let ranked = crate::stats::tiers(models, samples);
            let first: Vec<(&Cell, f64)> = ranked
                .iter()
                .filter(|t| t.tier == Some(1))
                .filter_map(|t| t.estimate.map(|e| (t.item, e.estimate)))
                .collect();
            let Some(&(leader, top)) = first.first() else {
                continue;
            };
            let contenders: Vec<&Cell> = first[1..]
                .iter()
                .filter(|(_, m)| *m * (1.0 + indifference) < top)
                .map(|(c, _)| *c)
                .collect();
            if contenders.is_empty() {
                continue;
            }
            let in_regime = match regime.is_empty() {
                true => String::new(),
                false => format!("{regime} "),
            };
            out.open.push(format!(
                "{in_regime}n={n}: {}",
                std::iter::once(leader)
                    .chain(contenders.iter().copied())
                    .map(|c| c.variant.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            for c in std::iter::once(leader).chain(contenders) {
                add(&mut out, (regime.clone(), c.variant.clone(), n, widest));
            }
        }
    }
    let measured = |key: &CellKey| {
        r.cells
            .iter()
            .any(|c| (&c.regime, &c.variant, c.n, c.clients) == (&key.0, &key.1, key.2, key.3))
    };
    for f in findings {
        let per_regime: Vec<(String, Verdict)> = match f.by_regime.is_empty() {
            true => vec![(String::new(), f.verdict)],
            false => f
                .by_regime
                .iter()
                .map(|v| (v.regime.clone(), v.verdict))
                .collect(),
        };
        for (regime, verdict) in per_regime {
            let cells: Vec<CellKey> = f
                .cells
                .iter()
                .map(|(v, n, c)| (regime.clone(), v.clone(), *n, *c))
                .filter(measured)
                .collect();
            if cells.is_empty() {
                continue;
            }
            out.asked += 1;
            if verdict != Verdict::Undecided {
                continue;
            }
            let in_regime = match regime.is_empty() {
                true => String::new(),
                false => format!(" in {regime}"),
            };
            out.open.push(format!("{}{in_regime}", f.source));
            for key in cells {
                add(&mut out, key);
            }
        }
    }
    out
}

/// The (regime, model) to measure again and which of its (n, clients) cells: among the
/// rows with an open cell below `cap` samples, the one whose open cell has the fewest
/// samples (so every contender gets one more measurement per round of the race, as in
/// successive elimination), the most open cells on a tie; `None` when nothing open can
/// be measured again.
pub fn next(r: &BenchReport, open: &Open, cap: usize) -> Option<Next> {
    let samples = |key: &CellKey| {
        r.samples
            .iter()
            .filter(|s| (&s.regime, &s.variant, s.n, s.clients) == (&key.0, &key.1, key.2, key.3))
            .count()
    };
    // Per row (regime, model): its open cells and the fewest samples among them.
    type Cells = (Vec<(u32, usize)>, usize);
    let mut rows: BTreeMap<(String, String), Cells> = BTreeMap::new();
    for key in &open.cells {
        let count = samples(key);
        if count >= cap {
            continue;
        }
        let row = rows
            .entry((key.0.clone(), key.1.clone()))
            .or_insert_with(|| (Vec::new(), usize::MAX));
        row.0.push((key.2, key.3));
        row.1 = row.1.min(count);
    }
    rows.into_iter()
        .min_by(|a, b| {
            a.1.1
                .cmp(&b.1.1)
                .then_with(|| b.1.0.len().cmp(&a.1.0.len()))
        })
        .map(|((regime, variant), (cells, _))| Next {
            regime,
            variant,
            cells,
        })
}

/// The race itself (see the module docs): after every regime ran, measure again what
/// [`next`] picks, each time on a fresh server process, until nothing is open, every open
/// cell has [`MOST_REPETITIONS`], or the next measurement would end past `deadline`.
/// What it asked, spent and left open is kept in `report.race`.
///
/// # Errors
/// A server cannot be started or the load cannot run.
pub fn race(
    run: &mut Run<'_>,
    report: &mut BenchReport,
    plans: &[RegimePlan],
    indifference: f64,
    deadline: Instant,
) -> io::Result<()> {
    let scenario = run.scenario;
    let started = Instant::now();
    let per_cell = scenario.duration + scenario.warmup + Duration::from_millis(40);
    let start = Duration::from_millis(200);
    let findings = |r: &BenchReport| crate::bench::experiments::findings(r);
    let at_start = open_questions(report, &findings(report), indifference);
    let mut open = at_start.clone();
    let mut measurements = 0;
    while !run.interrupted() {
        let Some(Next {
            regime,
            variant,
            cells,
        }) = next(report, &open, MOST_REPETITIONS)
        else {
            break;
        };
        if Instant::now() + start + per_cell * cells.len() as u32 > deadline {
            break;
        }
        let (Some(plan), Some(row)) = (
            plans.iter().find(|p| p.name == regime).cloned(),
            run.rows.iter().find(|r: &&Row| r.label() == variant),
        ) else {
            break;
        };
        let repetition = report
            .samples
            .iter()
            .filter(|s| s.regime == regime && s.variant == variant)
            .map(|s| s.repetition + 1)
            .max()
            .unwrap_or(0);
        run.regime = plan;
        run.add_steps(cells.len());
        let done = repetition_of(run, report, row, repetition, Some(&cells))?;
        report.cells = aggregate(&report.samples);
        measurements += cells.len();
        open = open_questions(report, &findings(report), indifference);
        if !done {
            break;
        }
    }
    report.race = Some(RaceRecord {
        indifference,
        budget_s: deadline.saturating_duration_since(started).as_secs_f64(),
        measurements,
        spent_s: started.elapsed().as_secs_f64(),
        asked: open.asked,
        open_before: at_start.open.len(),
        open: open.open,
        most_samples: most_samples(report),
    });
    Ok(())
}

/// The most samples any cell has.
fn most_samples(r: &BenchReport) -> usize {
    r.cells
        .iter()
        .map(|c| r.samples_of(c).count())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::tests::{report_of, sample};

    /// The median ratio of `a` to `b` in one cell of every regime.
    fn gap(r: &BenchReport, n: u32, clients: usize, a: &str, b: &str) -> f64 {
        let of = |v: &str| {
            crate::stats::median(
                &r.samples
                    .iter()
                    .filter(|s| s.n == n && s.clients == clients && s.variant == v)
                    .map(|s| s.throughput_rps)
                    .collect::<Vec<_>>(),
            )
        };
        of(a) / of(b)
    }

    /// Three models at 2 clients: `a` and `b` 1.3x apart with a spread that cannot yet
    /// separate them in three repetitions, `c` 3x below with little spread.
    fn report() -> BenchReport {
        let mut samples = Vec::new();
        for (i, s) in [0.8, 1.0, 1.25].iter().enumerate() {
            samples.push(sample("a", 1, 2, i, 100_000.0 * s, vec![]));
            samples.push(sample("b", 1, 2, i, 77_000.0 * s, vec![]));
            samples.push(sample(
                "c",
                1,
                2,
                i,
                33_000.0 * (1.0 + 0.05 * i as f64),
                vec![],
            ));
            samples.push(sample("a", 1, 1, i, 10_000.0, vec![]));
        }
        report_of(samples)
    }

    #[test]
    fn the_race_measures_the_contenders_and_not_the_ruled_out() {
        let r = report();
        assert!(gap(&r, 1, 2, "a", "b") > 1.25);
        let open = open_questions(&r, &[], 0.05);
        assert_eq!(open.asked, 1);
        assert_eq!(open.open, vec!["n=1: a, b".to_string()]);
        let raced: Vec<&str> = open.cells.iter().map(|c| c.1.as_str()).collect();
        assert_eq!(
            raced,
            ["a", "b"],
            "c is ruled out 3x below; a 1-client cell is no question"
        );
        let Next { variant, cells, .. } = next(&r, &open, 20).unwrap();
        assert_eq!(cells, vec![(1, 2)]);
        assert!(variant == "a" || variant == "b");
        // A gap inside the indifference zone is not worth deciding.
        assert!(open_questions(&r, &[], 0.5).open.is_empty());
        // Nothing is measured past the cap.
        assert!(next(&r, &open, 3).is_none());
        // One more sample of one contender: the other goes next (a round each).
        let mut more = r.clone();
        let first = variant.clone();
        more.samples.push(sample(&first, 1, 2, 3, 90_000.0, vec![]));
        more.cells = aggregate(&more.samples);
        let second = next(&more, &open, 20).unwrap().variant;
        assert_ne!(second, first);
    }

    #[test]
    fn an_undecided_verdict_races_the_cells_it_read() {
        let r = report();
        let f = |verdict| Finding {
            source: "seed 000, 总结 1",
            claim: "a claim",
            verdict,
            evidence: String::new(),
            cells: vec![
                ("c".into(), 1, 2),
                ("a".into(), 1, 1),
                ("gone".into(), 1, 2),
            ],
            by_regime: Vec::new(),
            decided_by: None,
        };
        let open = open_questions(&r, &[f(Verdict::Undecided)], 0.5);
        assert_eq!(open.asked, 2);
        assert_eq!(open.open, vec!["seed 000, 总结 1".to_string()]);
        // Only the cells the seed tables measured, one row at a time.
        assert_eq!(open.cells.len(), 2);
        let Next { variant, cells, .. } = next(&r, &open, 20).unwrap();
        assert_eq!(cells.len(), 1);
        assert!(variant == "c" || variant == "a");
        let decided = open_questions(&r, &[f(Verdict::Reproduces)], 0.5);
        assert_eq!((decided.asked, decided.open.len()), (2, 0));
    }
}
