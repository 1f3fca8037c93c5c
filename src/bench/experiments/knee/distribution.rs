//! The knee as a distribution: a row's sweeps (one per round, each against a fresh
//! server), their median knee with its interval or range, how finely each sweep located
//! its knee, and the rows of a workload in tiers by their knees.

use super::*;

/// Every sweep of `row` on `workload`, in the order they ran, but those of a round set
/// aside as disturbed.
pub(super) fn sweeps_of<'a>(k: &'a KneeRecords, row: &str, workload: &str) -> Vec<&'a KneeSweep> {
    k.sweeps
        .iter()
        .filter(|s| s.row == row && s.workload == workload && !s.set_aside)
        .collect()
}

/// The sweep whose knee is the median of `row`'s sweeps on `workload` (the lower middle
/// one of an even count): the one whose steps the tables and curves show.
pub(super) fn sweep_of<'a>(k: &'a KneeRecords, row: &str, workload: &str) -> Option<&'a KneeSweep> {
    let mut sweeps = sweeps_of(k, row, workload);
    sweeps.sort_by(|a, b| a.knee_rps().total_cmp(&b.knee_rps()));
    let middle = sweeps.len().saturating_sub(1) / 2;
    sweeps.get(middle).copied()
}

/// The knees of `row`'s sweeps on `workload`, req/s (0 where a sweep sustained none).
pub(super) fn knees(k: &KneeRecords, row: &str, workload: &str) -> Vec<f64> {
    sweeps_of(k, row, workload)
        .iter()
        .map(|s| s.knee_rps())
        .collect()
}

/// How finely `row`'s sweeps on `workload` located their knees: the mean over its sweeps
/// of `ln(broke / knee)^2 / 12`, the variance of the logarithm of a knee that lies
/// anywhere between the last rate sustained and the next one tried (0 where a sweep has
/// no such step).
pub(super) fn resolution(k: &KneeRecords, row: &str, workload: &str) -> f64 {
    KneeSweep::grid_variance(&sweeps_of(k, row, workload))
}

/// True when some sweep of `row` on `workload` ended at the load generator's limit: its
/// knee is a lower bound.
pub(super) fn bounded(k: &KneeRecords, row: &str, workload: &str) -> bool {
    sweeps_of(k, row, workload)
        .iter()
        .any(|s| s.at_client_limit())
}

/// The knee over the sweeps: their median with its order-statistic interval, or their
/// range where too few sweeps allow no 95% one (three: a 75% range), `≥` in front where
/// a sweep ended at the client's limit. One sweep: its knee alone.
pub(super) fn knee_text(k: &KneeRecords, row: &str, workload: &str) -> String {
    let knees = knees(k, row, workload);
    if knees.iter().all(|&x| x <= 0.0) {
        return "none".into();
    }
    let i = crate::stats::median_interval(&knees, crate::stats::LEVEL);
    let bound = match bounded(k, row, workload) {
        true => "≥ ",
        false => "",
    };
    let level = match (i.has_width(), i.ci_low < i.ci_high) {
        (true, false) => format!(" (all {} sweeps)", i.n),
        (true, true) if i.ci_level < crate::stats::LEVEL => {
            format!(" (range, {:.0}%)", i.ci_level * 100.0)
        }
        _ => String::new(),
    };
    format!("{bound}{}{level}", i.text(thousands))
}

/// Each sweep's knee in the order they ran: `45,255 / 64,000 / ≥ 128,000`.
pub(super) fn each_knee(k: &KneeRecords, row: &str, workload: &str) -> String {
    sweeps_of(k, row, workload)
        .iter()
        .map(|s| match (s.knee(), s.at_client_limit()) {
            (None, _) => "none".to_string(),
            (Some(x), true) => format!("≥ {}", thousands(x.offered_rps)),
            (Some(x), false) => thousands(x.offered_rps),
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The rows of one workload in tiers by their knees over the sweeps
/// ([`crate::stats::tiers`]: highest median first; a row joins the tier above unless its
/// knees are significantly lower than that tier's leader's, Holm-corrected over the
/// leader's comparisons), rows that
/// sustained nothing last and unranked. A row whose knee is a lower bound (a sweep ended
/// at the client's limit) ties with every row above it: tier 1. Each row is shown by
/// its median sweep.
pub(super) fn ranked<'a>(
    k: &'a KneeRecords,
    w: &KneeWorkloadRecord,
) -> Vec<(Option<usize>, &'a KneeSweep)> {
    // The floor is the reference, not a choice.
    let rows: Vec<String> = rows_in_order(k)
        .into_iter()
        .filter(|row| row != FLOOR && sweep_of(k, row, &w.label).is_some())
        .collect();
    let knees_of = |row: &String| {
        let knees = knees(k, row, &w.label);
        match knees.iter().all(|&x| x <= 0.0) {
            true => Vec::new(),
            false => knees,
        }
    };
    // One sweep a row cannot rank: listed by their knees, unranked, not all in tier 1.
    let one_each = rows.iter().all(|row| knees(k, row, &w.label).len() < 2);
    let mut ranked: Vec<(Option<usize>, &KneeSweep)> =
        crate::stats::tiers_resolved(rows, knees_of, |row| resolution(k, row, &w.label))
            .into_iter()
            .filter_map(|r| {
                let tier = match (r.tier, bounded(k, &r.item, &w.label)) {
                    _ if one_each => None,
                    (Some(_), true) => Some(1),
                    (tier, _) => tier,
                };
                Some((tier, sweep_of(k, &r.item, &w.label)?))
            })
            .collect();
    // Stable: within a tier, the order of the medians.
    ranked.sort_by_key(|(tier, _)| tier.unwrap_or(usize::MAX));
    ranked
}

/// How many sweeps each knee rests on, in words, for the head of the tables.
pub(super) fn sweeps_intro(k: &KneeRecords) -> String {
    let most = rows_in_order(k)
        .iter()
        .flat_map(|row| {
            k.workloads
                .iter()
                .map(move |w| sweeps_of(k, row, &w.label).len())
        })
        .max()
        .unwrap_or(0);
    match most {
        0 | 1 => "One sweep per model: its knee has no interval, and one sweep cannot rank the models (`sweeps = 3` or more in `[knee]` gives both).".into(),
        n => format!(
            "{n} sweeps per model, interleaved across models, each against a server process of its own: the knee is their median with its order-statistic interval, or their range where {n} sweeps allow no 95% interval (three give a 75% range); the step figures are those of the median sweep."
        ),
    }
}

/// The (row, workload) pairs whose knees a race would sweep again: in each workload's
/// tier 1 ([`ranked`]'s rule), the rows slower than the leader by more than
/// `indifference` (0.05: 5%) that are not lower bounds at the client's limit (more
/// sweeps do not lift a bound), and that leader. Empty where every tier 1 is decided.
pub(super) fn contenders(k: &KneeRecords, indifference: f64) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for w in &k.workloads {
        let median_of = |row: &str| crate::stats::median(&knees(k, row, &w.label));
        let first: Vec<String> = ranked(k, w)
            .into_iter()
            .filter(|(tier, _)| *tier == Some(1))
            .map(|(_, s)| s.row.clone())
            .collect();
        let Some(leader) = first.first() else {
            continue;
        };
        let top = median_of(leader);
        let open: Vec<&String> = first[1..]
            .iter()
            .filter(|row| !bounded(k, row, &w.label))
            .filter(|row| median_of(row) * (1.0 + indifference) < top)
            .collect();
        if open.is_empty() {
            continue;
        }
        for row in std::iter::once(leader).chain(open) {
            out.push((row.clone(), w.label.clone()));
        }
    }
    out
}
