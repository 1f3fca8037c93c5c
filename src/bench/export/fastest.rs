//! The head's "fastest model" slots in plain words.

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
