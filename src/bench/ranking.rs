//! Rankings, one rule for every report that orders rows: highest figure first, rows
//! without a figure last in the order given (they are listed, not ranked), equal
//! figures sharing a rank. The knee's "which model for which workload" and the
//! summary's "fastest model" both rank through it.

/// `items` ordered by `figure`, highest first, each with its rank (1-based; `None` for
/// an item without a figure, kept last in its original order). Items whose figures are
/// equal share a rank, and the next rank counts them all ("1, 1, 3").
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
    let mut ranked = Vec::with_capacity(scored.len());
    let mut last: Option<(f64, usize)> = None;
    for (position, (score, _, item)) in scored.into_iter().enumerate() {
        let rank = score.map(|s| match last {
            Some((previous, rank)) if previous == s => rank,
            _ => position + 1,
        });
        if let (Some(s), Some(r)) = (score, rank) {
            last = Some((s, r));
        }
        ranked.push((rank, item));
    }
    ranked
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
    fn highest_first_ties_share_a_rank_and_the_unranked_come_last_in_order() {
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
                (Some(2), "d"),
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
