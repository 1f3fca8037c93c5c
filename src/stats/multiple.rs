//! Many comparisons at once: Holm's and Benjamini-Hochberg's corrections, and rankings
//! as tiers. See the module docs of [`super`].

use super::{Difference, Interval, median};

/// Holm's step-down adjusted p-values, in the order given: the i-th smallest p is
/// multiplied by (m - i) (i from 0), made monotone, capped at 1.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&x, &y| p[x].total_cmp(&p[y]));
    let mut adjusted = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (i, &k) in order.iter().enumerate() {
        running = running.max(((m - i) as f64 * p[k]).min(1.0));
        adjusted[k] = running;
    }
    adjusted
}

/// Benjamini-Hochberg adjusted p-values, in the order given (Benjamini & Hochberg 1995):
/// the i-th smallest p (i from 1) times m / i, made monotone from the largest down, capped
/// at 1. Bounds the expected share of false differences among those reported at the
/// level: a comparison of many cells (`fiblab compare`) keeps its power where many cells
/// really moved, and reports next to nothing where none did.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&x, &y| p[y].total_cmp(&p[x]));
    let mut adjusted = vec![0.0; m];
    let mut running: f64 = 1.0;
    for (k, &i) in order.iter().enumerate() {
        let rank = (m - k) as f64;
        running = running.min((p[i] * m as f64 / rank).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// A ranked item's tier: 1 for the best, shared by every item the data cannot separate
/// from that tier's leader.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked<T> {
    pub item: T,
    /// `None` for an item without samples (listed last, not ranked).
    pub tier: Option<usize>,
    pub estimate: Option<Interval>,
}

/// `items` ranked highest first by the median of their samples, in tiers, by
/// comparison with the best (the question of Hsu's *multiple comparisons with the
/// best*, 1984: which could be the best?): the first item leads tier 1; it is compared
/// with every item ranked below it, those `k - 1` comparisons corrected together
/// (Holm), and the items down to the first one significantly below it form tier 1. That
/// one leads tier 2, compared the same way with the items still below it, and so on.
/// Each comparison is Welch's on the logarithms, with Mann-Whitney beside it where the
/// sample lets it decide ([`Difference::p_within`]). A ranking asks `k - 1` questions
/// of its leader, not `k (k - 1) / 2`: correcting for every pair would hide real gaps
/// among many models.
pub fn tiers<T>(items: Vec<T>, samples: impl Fn(&T) -> Vec<f64>) -> Vec<Ranked<T>> {
    tiers_resolved(items, samples, |_| 0.0)
}

/// [`tiers`] for samples known only to a resolution: `resolution(item)` is the variance
/// of the logarithm each of its samples carries besides their spread
/// ([`Difference::resolved`]; a knee on a grid of rates).
pub fn tiers_resolved<T>(
    items: Vec<T>,
    samples: impl Fn(&T) -> Vec<f64>,
    resolution: impl Fn(&T) -> f64,
) -> Vec<Ranked<T>> {
    let mut scored: Vec<(Vec<f64>, usize, T, f64)> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let s: Vec<f64> = samples(&item)
                .into_iter()
                .filter(|x| x.is_finite())
                .collect();
            let floor = resolution(&item);
            (s, i, item, floor)
        })
        .collect();
    scored.sort_by(|x, y| match (x.0.is_empty(), y.0.is_empty()) {
        (false, false) => median(&y.0).total_cmp(&median(&x.0)).then(x.1.cmp(&y.1)),
        (false, true) => std::cmp::Ordering::Less,
        (true, false) => std::cmp::Ordering::Greater,
        (true, true) => x.1.cmp(&y.1),
    });
    let ranked = scored.iter().filter(|s| !s.0.is_empty()).count();
    let alpha = 1.0 - super::LEVEL;
    let mut tiers = vec![None; scored.len()];
    let (mut tier, mut leader) = (0, 0);
    while leader < ranked {
        tier += 1;
        tiers[leader] = Some(tier);
        // The leader against each item below it: one family, corrected together.
        let family = ranked - leader - 1;
        let raw: Vec<(f64, bool)> = (leader + 1..ranked)
            .map(|j| {
                let (a, b) = (&scored[leader], &scored[j]);
                match Difference::resolved(&a.0, &b.0, a.3, b.3) {
                    Some(d) => (
                        d.p_within(a.0.len(), b.0.len(), family),
                        d.ratio.estimate > 1.0,
                    ),
                    None => (1.0, false),
                }
            })
            .collect();
        let adjusted = holm(&raw.iter().map(|r| r.0).collect::<Vec<_>>());
        let below = raw
            .iter()
            .zip(&adjusted)
            .position(|(&(_, above), &p)| above && p < alpha);
        let next = below.map_or(ranked, |i| leader + 1 + i);
        for t in &mut tiers[leader + 1..next] {
            *t = Some(tier);
        }
        leader = next;
    }
    scored
        .into_iter()
        .zip(tiers)
        .map(|((s, _, item, _), tier)| Ranked {
            item,
            tier: tier.filter(|_| !s.is_empty()),
            estimate: (!s.is_empty()).then(|| Interval::of(&s)),
        })
        .collect()
}
