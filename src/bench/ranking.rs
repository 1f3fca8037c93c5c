//! Rankings, one rule for every report that orders rows: highest figure first, rows
//! without a figure last in the order given (they are listed, not ranked), equal
//! figures in the order given. The knee's "which model for which workload" and the
//! summary's "fastest model" both rank through it, so a rule that groups rows the data
//! cannot separate changes both at once.

/// `items` ordered by `figure`, highest first, each with its rank (1-based, its place;
/// `None` for an item without a figure, kept last in its original order). Equal
/// figures keep their original order.
pub fn rank_by<T>(items: Vec<T>, figure: impl Fn(&T) -> Option<f64>) -> Vec<(Option<usize>, T)> {
    let mut scored: Vec<(Option<f64>, usize, T)> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| (figure(&item).filter(|f| f.is_finite()), i, item))
        .collect();
    // Highest first; unscored last, stable in their given order.
    scored.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => y.total_cmp(&x).then(a.1.cmp(&b.1)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    scored
        .into_iter()
        .enumerate()
        .map(|(position, (score, _, item))| (score.map(|_| position + 1), item))
        .collect()
}

/// The first of `items` by `figure` (highest), if any has one.
pub fn best<T>(items: Vec<T>, figure: impl Fn(&T) -> Option<f64>) -> Option<T> {
    rank_by(items, figure)
        .into_iter()
        .next()
        .and_then(|(rank, item)| rank.map(|_| item))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_first_ties_in_order_and_the_unranked_come_last_in_order() {
        let rows = vec![
            ("a", None),
            ("b", Some(5.0)),
            ("c", Some(9.0)),
            ("d", Some(5.0)),
            ("e", None),
        ];
        let ranked = rank_by(rows, |r| r.1);
        let got: Vec<(Option<usize>, &str)> = ranked.iter().map(|(k, r)| (*k, r.0)).collect();
        assert_eq!(
            got,
            [
                (Some(1), "c"),
                (Some(2), "b"),
                (Some(3), "d"),
                (None, "a"),
                (None, "e")
            ]
        );
    }

    #[test]
    fn best_is_none_when_nothing_has_a_figure() {
        assert_eq!(best(vec![1, 2], |_| None), None);
        assert_eq!(best(vec![1, 3, 2], |x| Some(f64::from(*x))), Some(3));
    }
}
