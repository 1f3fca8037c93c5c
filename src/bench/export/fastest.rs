//! The head's "fastest model" slots in plain words.

use crate::bench::results::{BenchReport, Cell, FLOOR};
use crate::stats::median;
use crate::units::thousands;

/// A "fastest model" slot of the head in plain words: tier 1 and its span (leader's
/// median over the slowest member's), then the next tier; where no model has two
/// samples, that the run cannot rank. `name` and `count` read a ranked cell's model
/// and its number of samples.
pub(super) fn in_words<T>(
    ranked: &[crate::stats::Ranked<T>],
    name: impl Fn(&T) -> String,
    count: impl Fn(&T) -> usize,
    leader: &crate::stats::Ranked<T>,
) -> String {
    let figure = leader
        .estimate
        .map_or(String::new(), |i| format!("{} req/s", i.text(thousands)));
    let names = |tier: usize| -> Vec<String> {
        ranked
            .iter()
            .filter(|t| t.tier == Some(tier))
            .map(|t| format!("`{}`", name(&t.item)))
            .collect()
    };
    if ranked.iter().all(|t| count(&t.item) < 2) {
        return format!(
            "{} measured fastest ({figure}), but with one repetition per model the run cannot rank (`--repetitions 3` or more)",
            names(1).first().cloned().unwrap_or_default()
        );
    }
    let first = names(1);
    let medians: Vec<f64> = ranked
        .iter()
        .filter(|t| t.tier == Some(1))
        .filter_map(|t| t.estimate.map(|e| e.estimate))
        .collect();
    let span = match (medians.first(), medians.last()) {
        (Some(&top), Some(&low)) if low > 0.0 => top / low,
        _ => 1.0,
    };
    let head = match first.len() {
        1 => format!("{} ({figure})", first[0]),
        k => format!(
            "{} ({k} within {span:.1}x of each other, which the repetitions cannot separate; the first {figure})",
            first.join(", ")
        ),
    };
    let second = names(2);
    match second.len() {
        0 => head,
        k if k <= 4 => format!("{head}, then {}", second.join(", ")),
        k => format!("{head}, then {} and {} more", second[..3].join(", "), k - 3),
    }
}

/// The head's resolution line: per regime, the smallest ratio by which a model must
/// trail the leader for this run to separate them with 95% confidence and 80% power
/// ([`crate::stats::smallest_separable_ratio`]), from the median cell's spread between
/// repetitions (the standard deviation of their log throughput), the median number of
/// repetitions of each workload's leader (the race gives the leader and its contenders
/// more than the rest), and the leader's comparisons (one fewer than the models).
/// `None` where no cell has two repetitions.
pub(super) fn resolution(r: &BenchReport, widest: usize) -> Option<String> {
    let names = r.regime_names();
    let parts: Vec<String> = names
        .iter()
        .filter_map(|regime| {
            let cells: Vec<&Cell> = r
                .cells
                .iter()
                .filter(|c| c.clients == widest && &c.regime == regime)
                .filter(|c| c.variant != FLOOR && !r.is_peer(&c.variant))
                .collect();
            let mut spreads = Vec::new();
            // The repetitions at the top of each ranking, where the race put them: each
            // workload's leader's.
            let mut counts: Vec<f64> = Vec::new();
            let mut workloads: Vec<u32> = cells.iter().map(|c| c.n).collect();
            workloads.sort_unstable();
            workloads.dedup();
            for n in workloads {
                let leader = cells
                    .iter()
                    .filter(|c| c.n == n)
                    .max_by(|a, b| a.median_rps.total_cmp(&b.median_rps));
                if let Some(leader) = leader {
                    counts.push(r.samples_of(leader).count() as f64);
                }
            }
            for cell in &cells {
                let logs: Vec<f64> = r
                    .samples_of(cell)
                    .map(|s| s.throughput_rps)
                    .filter(|x| *x > 0.0)
                    .map(f64::ln)
                    .collect();
                if logs.len() >= 2 {
                    let mean = logs.iter().sum::<f64>() / logs.len() as f64;
                    let var = logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>()
                        / (logs.len() - 1) as f64;
                    spreads.push(var.sqrt());
                }
            }
            if spreads.is_empty() {
                return None;
            }
            let spread = median(&spreads);
            let n = median(&counts).round() as usize;
            let mut models: Vec<&str> = cells.iter().map(|c| c.variant.as_str()).collect();
            models.sort_unstable();
            models.dedup();
            let ratio = crate::stats::smallest_separable_ratio(
                spread,
                n,
                models.len().saturating_sub(1),
                0.8,
            )?;
            let label = match names.len() {
                1 => String::new(),
                _ => format!("`{regime}` "),
            };
            Some(format!(
                "{label}{ratio:.2}x (the median cell's spread {spread:.2} in log throughput, and the {n} repetitions of the leaders)"
            ))
        })
        .collect();
    (!parts.is_empty()).then(|| {
        format!(
            "Resolution: with 95% confidence and 80% power, this run tells a model from the fastest when it is slower by {}; closer ones may share tier 1 with it.",
            parts.join("; ")
        )
    })
}

/// The levels of variance the run measured, per regime, and what they say about how
/// to spend its time (Kalibera & Jones, ISMM 2013: repeat at the level that varies):
/// the spread between server processes (the standard deviation of a cell's log
/// throughput around its mean, pooled over the cells, from the interleaved rounds) and
/// the rounds' common drift (the standard deviation over rounds of every cell's mean
/// deviation in that round: the machine's state, shared by every model measured in it).
/// `None` with fewer than two rounds.
pub(super) fn levels(r: &BenchReport) -> Option<String> {
    let rounds = r.repetitions;
    if rounds < 2 {
        return None;
    }
    let names = r.regime_names();
    let parts: Vec<String> = names
        .iter()
        .filter_map(|regime| {
            // Per round: the deviations of every cell measured in it.
            let mut by_round: Vec<Vec<f64>> = vec![Vec::new(); rounds];
            let (mut squares, mut df) = (0.0, 0usize);
            for cell in r.cells.iter().filter(|c| &c.regime == regime) {
                let logs: Vec<(usize, f64)> = r
                    .samples_of(cell)
                    .filter(|s| s.repetition < rounds && s.throughput_rps > 0.0)
                    .map(|s| (s.repetition, s.throughput_rps.ln()))
                    .collect();
                if logs.len() < rounds {
                    continue;
                }
                let mean = logs.iter().map(|x| x.1).sum::<f64>() / logs.len() as f64;
                for &(round, x) in &logs {
                    by_round[round].push(x - mean);
                    squares += (x - mean).powi(2);
                }
                df += logs.len() - 1;
            }
            if df == 0 {
                return None;
            }
            let within = (squares / df as f64).sqrt();
            let effects: Vec<f64> = by_round
                .iter()
                .map(|d| d.iter().sum::<f64>() / d.len().max(1) as f64)
                .collect();
            let drift = (effects.iter().map(|e| e * e).sum::<f64>()
                / (effects.len() - 1).max(1) as f64)
                .sqrt();
            let label = match names.len() {
                1 => String::new(),
                _ => format!("`{regime}`: "),
            };
            let which = match (within >= 2.0 * drift, drift >= 2.0 * within) {
                (true, _) => "processes dominate",
                (_, true) => "the drift dominates",
                _ => "neither dominates",
            };
            Some(format!(
                "{label}between server processes {within:.2}, the rounds' common drift {drift:.2} ({which})"
            ))
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    Some(format!(
        "Levels of variance (standard deviations of log throughput, from the {rounds} interleaved rounds): {}. Where processes dominate, more and shorter repetitions narrow an interval and longer ones would not; where the drift does, the interleaving keeps it out of every comparison, and more rounds, not longer cells, narrow the intervals.",
        parts.join("; ")
    ))
}
