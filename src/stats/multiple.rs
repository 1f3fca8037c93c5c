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

/// `items` ranked highest first by the median of their samples, in tiers: the first
/// item leads tier 1; each next item joins the current tier unless it is significantly
/// below its leader (Welch on the logarithms, and Mann-Whitney where both have five
/// samples or more, Holm-corrected over all pairs of ranked items), when it leads the next
/// tier.
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
    // Every pair (i < j) of ranked items, tested once, corrected together.
    let mut pairs = Vec::new();
    let mut raw = Vec::new();
    for i in 0..ranked {
        for j in i + 1..ranked {
            let d = Difference::resolved(&scored[i].0, &scored[j].0, scored[i].3, scored[j].3);
            raw.push(d.map_or(1.0, |d| d.p));
            pairs.push((i, j, d));
        }
    }
    let adjusted = holm(&raw);
    let sizes: Vec<usize> = scored.iter().map(|s| s.0.len()).collect();
    let separated = |i: usize, j: usize| {
        pairs
            .iter()
            .zip(&adjusted)
            .find(|((x, y, _), _)| *x == i && *y == j)
            .is_some_and(|((_, _, d), &p)| {
                d.is_some_and(|d| d.ratio.estimate > 1.0 && d.significant_at(p, sizes[i], sizes[j]))
            })
    };
    let mut tier = 0;
    let mut leader = 0;
    let mut out = Vec::new();
    for (k, (s, _, item, _)) in scored.into_iter().enumerate() {
        if s.is_empty() {
            out.push(Ranked {
                item,
                tier: None,
                estimate: None,
            });
            continue;
        }
        if k == 0 || separated(leader, k) {
            tier += 1;
            leader = k;
        }
        out.push(Ranked {
            item,
            tier: Some(tier),
            estimate: Some(Interval::of(&s)),
        });
    }
    out
}
