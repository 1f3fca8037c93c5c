//! Distribution-free methods: order-statistic intervals of a median and of any
//! quantile, and the Mann-Whitney U test. See the module docs of [`super`].

use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal};

use super::{Interval, LEVEL, median};

/// The median of `values` with its distribution-free interval: the order statistics
/// `x(j)` and `x(n+1-j)` for the largest `j` whose binomial coverage
/// `1 - 2 P(Bin(n, 1/2) < j)` is at least `level`; where even the range covers less
/// (fewer than six samples at 95%), the range, with the coverage it has.
pub fn median_interval(values: &[f64], level: f64) -> Interval {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n < 2 {
        return Interval::point(median(values));
    }
    // P(Bin(n, 1/2) < j), built up term by term.
    let coverage = |j: usize| {
        let mut below = 0.0;
        let mut term = 0.5f64.powi(n as i32); // C(n, 0) / 2^n
        for k in 0..j {
            below += term;
            term *= (n - k) as f64 / (k + 1) as f64;
        }
        1.0 - 2.0 * below
    };
    let mut j = 1;
    while j < n / 2 && coverage(j + 1) >= level {
        j += 1;
    }
    Interval {
        estimate: median(values),
        ci_low: v[j - 1],
        ci_high: v[n - j],
        ci_level: coverage(j),
        n,
    }
}

/// The order statistics that bound the `q`-quantile of `n` samples at `level`, as
/// 1-based ranks `(l, u)`: `l` the largest rank with `P(B < l) <= (1 - level) / 2` and
/// `u` the smallest with `P(B >= u) <= (1 - level) / 2`, where `B ~ Bin(n, q)` counts the
/// samples below the quantile (the exact distribution-free interval, as scipy's
/// `quantile_test(...).confidence_interval()`). `None` for a side the samples cannot
/// bound (too few, or a quantile too close to 0 or 1): `(None, Some(u))` has no lower
/// order statistic.
pub fn quantile_ranks(n: u64, q: f64, level: f64) -> (Option<u64>, Option<u64>) {
    let Ok(b) = Binomial::new(q.clamp(0.0, 1.0), n) else {
        return (None, None);
    };
    let tail = (1.0 - level) / 2.0;
    // The largest l with cdf(l - 1) <= tail: cdf is rising, so search it.
    let lower = match b.cdf(0) <= tail {
        false => None,
        true => {
            let (mut lo, mut hi) = (0u64, n); // cdf(lo) <= tail
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                match b.cdf(mid) <= tail {
                    true => lo = mid,
                    false => hi = mid - 1,
                }
            }
            Some(lo + 1)
        }
    };
    // The smallest u with 1 - cdf(u - 1) <= tail.
    let upper = match n >= 1 && 1.0 - b.cdf(n - 1) <= tail {
        false => None,
        true => {
            let (mut lo, mut hi) = (0u64, n - 1); // answer k = u - 1 in [lo, hi]
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match 1.0 - b.cdf(mid) <= tail {
                    true => hi = mid,
                    false => lo = mid + 1,
                }
            }
            Some(lo + 1)
        }
    };
    (lower, upper)
}

/// The `q`-quantile of a latency histogram with its order-statistic interval
/// ([`quantile_ranks`]) at [`LEVEL`], µs; a side the samples cannot bound is the
/// histogram's min or max. `None` for an empty histogram. Within one run only.
pub fn quantile_interval(h: &hdrhistogram::Histogram<u64>, q: f64) -> Option<Interval> {
    let n = h.len();
    if n == 0 {
        return None;
    }
    let (l, u) = quantile_ranks(n, q, LEVEL);
    let at = |rank: u64| h.value_at_quantile(rank as f64 / n as f64) as f64;
    Some(Interval {
        estimate: h.value_at_quantile(q) as f64,
        ci_low: l.map_or(h.min() as f64, at),
        ci_high: u.map_or(h.max() as f64, at),
        ci_level: LEVEL,
        n: n as usize,
    })
}

/// Mann-Whitney U, two-sided p-value that `a` and `b` come from one distribution: exact
/// (the U distribution counted) when both samples are under 8 and nothing ties, as scipy's
/// `method="auto"`; otherwise the normal approximation with the tie and continuity
/// corrections. 1 when either side is empty.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    // Ranks of the pooled sample, ties sharing their mean rank.
    let mut pooled: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = pooled.len();
    let (mut rank_sum_a, mut tie_term, mut ties) = (0.0, 0.0, false);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && pooled[j + 1].0 == pooled[i].0 {
            j += 1;
        }
        let count = (j - i + 1) as f64;
        let rank = (i + j) as f64 / 2.0 + 1.0;
        if count > 1.0 {
            ties = true;
            tie_term += count.powi(3) - count;
        }
        rank_sum_a += rank * pooled[i..=j].iter().filter(|p| p.1).count() as f64;
        i = j + 1;
    }
    let (f1, f2) = (n1 as f64, n2 as f64);
    let u1 = rank_sum_a - f1 * (f1 + 1.0) / 2.0;
    let u = u1.max(f1 * f2 - u1);
    if !ties && (n1 < 8 || n2 < 8) {
        return (2.0 * exact_u_sf(u as usize, n1, n2)).min(1.0);
    }
    let mu = f1 * f2 / 2.0;
    let nf = n as f64;
    let sigma = (f1 * f2 / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)))).sqrt();
    if sigma <= 0.0 {
        return 1.0;
    }
    let z = (u - mu - 0.5) / sigma;
    match Normal::new(0.0, 1.0) {
        Ok(normal) => (2.0 * normal.sf(z)).min(1.0),
        Err(_) => 1.0,
    }
}

/// P(U >= u) under the null for samples of `n1` and `n2` without ties: the number of
/// arrangements with each U, counted by the recurrence
/// `c(u; m, n) = c(u - n; m - 1, n) + c(u; m, n - 1)`, over C(n1 + n2, n1).
fn exact_u_sf(u: usize, n1: usize, n2: usize) -> f64 {
    let max = n1 * n2;
    // counts[m][n][u] would be cubic; roll over m with a table per n.
    // table[n][u] = arrangements of (m, n) with statistic u, for the current m.
    let mut table: Vec<Vec<f64>> = (0..=n2)
        .map(|_| {
            let mut row = vec![0.0; max + 1];
            row[0] = 1.0;
            row
        })
        .collect();
    for m in 1..=n1 {
        let mut next: Vec<Vec<f64>> = vec![vec![0.0; max + 1]; n2 + 1];
        next[0][0] = 1.0; // m items and no items of the other side: U = 0
        for n in 1..=n2 {
            for v in 0..=m * n {
                let from_m = if v >= n { table[n][v - n] } else { 0.0 };
                next[n][v] = from_m + next[n - 1][v];
            }
        }
        table = next;
    }
    let counts = &table[n2];
    let total: f64 = counts.iter().sum();
    counts[u.min(max)..].iter().sum::<f64>() / total
}
