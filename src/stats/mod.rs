//! What a handful of repeated measurements can and cannot say: confidence intervals of
//! one figure and of the ratio of two, two-sample tests, the Holm correction for a
//! table of many comparisons, and rankings as tiers of models the data cannot separate.
//! Every report's interval, verdict, ranking and `fiblab compare` goes through here.
//!
//! # The levels a bench measures, and which the intervals cover
//!
//! ```text
//! requests within one load window       many: latency percentiles, one throughput
//! windows within one server process     the warm-up, then the measured window
//! server processes                      each repetition starts a fresh `fiblab serve`
//!                                       (placement, memory layout, the kernel's choices)
//! the machine's drift during the run    repetitions interleave models, so a slow minute
//!                                       lands on every model alike
//! ```
//!
//! A cell's samples are its repetitions, one per server process, so its interval covers
//! the variance of everything below: requests, windows and processes. It does not cover a
//! different machine, kernel or day; the report's calibration says what this machine's
//! primitives cost and how much they drifted during the run.
//!
//! # Methods, and why
//!
//! - **A figure** ([`Interval::of`]): the median of the repetitions, with the Student-t
//!   interval of the mean of their logarithms (the geometric mean's interval), widened to
//!   hold the median. Throughput noise is multiplicative (a slow wake-up costs a
//!   fraction, not a constant), so the log scale; t, because three to ten top-level
//!   repetitions are what a bench can afford (Kalibera & Jones, "Rigorous Benchmarking in
//!   Reasonable Time", ISMM 2013, §4: t-based intervals over the top level's repetitions).
//! - **A median alone** ([`median_interval`]): the distribution-free order-statistic
//!   interval (binomial coverage, as in Conover, *Practical Nonparametric Statistics*,
//!   §3.2); too few samples give the range, at the coverage it really has (three
//!   samples: 75%).
//! - **A ratio of two systems** ([`Difference::of`]): Welch's t-interval of the
//!   difference of the log means, exponentiated: the interval of the ratio of the two
//!   geometric means, with Welch–Satterthwaite degrees of freedom, so the two sides may
//!   differ in spread and count. Its p-value is the test the interval inverts: the
//!   interval excludes 1 exactly when p < 1 - level, so a table never shows an interval
//!   and a verdict that disagree.
//! - **A distribution-free check** ([`mann_whitney`]): the Mann-Whitney U test, exact for
//!   small samples without ties, normal with tie and continuity corrections otherwise
//!   (as Go's benchstat and scipy). With five or more samples a side, a difference counts
//!   as significant only when both tests agree; below that U cannot reach p < 0.05
//!   (three against three: its smallest two-sided p is 0.1).
//! - **Many comparisons** ([`holm`]): Holm's step-down correction (Holm 1979), which holds
//!   the chance of any false difference in a table at the level without Bonferroni's cost.
//! - **Rankings** ([`tiers`]): highest estimate first; a model joins the tier of the
//!   models above it unless it is significantly below the tier's leader (Holm-corrected
//!   over every pair ranked).
//!
//! Each method is tested against values computed once with scipy (see `tests.rs`).

use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal, StudentsT};

/// The confidence level of every interval a report prints.
pub const LEVEL: f64 = 0.95;

/// Samples per side from which a difference must also pass [`mann_whitney`].
pub const MANN_WHITNEY_FROM: usize = 5;

/// One figure with its confidence interval. In JSON: `estimate`, `ci_low`, `ci_high`,
/// `ci_level` (the coverage the interval really has, 0-1: below [`LEVEL`] where too
/// few samples allow no more; 0 for one sample, which has no interval) and `n` (the
/// samples it rests on).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Interval {
    pub estimate: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub ci_level: f64,
    pub n: usize,
}

impl Interval {
    /// A figure measured once (or computed exactly): no interval.
    pub fn point(value: f64) -> Interval {
        Interval {
            estimate: value,
            ci_low: value,
            ci_high: value,
            ci_level: 0.0,
            n: 1,
        }
    }

    /// The median of positive `samples` with the interval of their geometric mean (see
    /// the module docs), at [`LEVEL`]. Non-positive samples (a cell that served nothing)
    /// make the interval run down to 0; no samples give a point at 0.
    pub fn of(samples: &[f64]) -> Interval {
        let estimate = median(samples);
        let positive: Vec<f64> = samples.iter().copied().filter(|&x| x > 0.0).collect();
        if samples.len() < 2 {
            return Interval::point(estimate);
        }
        let zeros = positive.len() < samples.len();
        let logs: Vec<f64> = positive.iter().map(|x| x.ln()).collect();
        let (mean, var) = mean_var(&logs);
        let (mut low, mut high) = match logs.len() {
            0 => (0.0, 0.0),
            1 => (positive[0], positive[0]),
            n => {
                let half = t_quantile(n as f64 - 1.0) * (var / n as f64).sqrt();
                ((mean - half).exp(), (mean + half).exp())
            }
        };
        if zeros {
            low = 0.0;
            high = high.max(samples.iter().copied().fold(0.0, f64::max));
        }
        Interval {
            estimate,
            ci_low: low.min(estimate),
            ci_high: high.max(estimate),
            ci_level: LEVEL,
            n: samples.len(),
        }
    }

    /// Half the interval's width over the estimate: 0.05 is "±5%". Infinite for an
    /// estimate of 0 with a non-zero width, 0 for a point.
    pub fn precision(&self) -> f64 {
        let half = (self.ci_high - self.estimate).max(self.estimate - self.ci_low);
        match self.estimate.abs() > 0.0 {
            true => half / self.estimate.abs(),
            false if half > 0.0 => f64::INFINITY,
            false => 0.0,
        }
    }

    /// True when the interval has a width (more than one sample).
    pub fn has_width(&self) -> bool {
        self.n > 1 && self.ci_level > 0.0
    }

    /// The same interval with every bound passed through `f`, which must be increasing
    /// (a unit change, a scale).
    pub fn map(self, f: impl Fn(f64) -> f64) -> Interval {
        Interval {
            estimate: f(self.estimate),
            ci_low: f(self.ci_low),
            ci_high: f(self.ci_high),
            ..self
        }
    }

    /// `84,120 [81,900–86,300]` with `format` for each figure; the estimate alone for a
    /// point.
    pub fn text(&self, format: impl Fn(f64) -> String) -> String {
        match self.has_width() {
            true => format!(
                "{} [{}–{}]",
                format(self.estimate),
                format(self.ci_low),
                format(self.ci_high)
            ),
            false => format(self.estimate),
        }
    }

    /// Which side of `threshold` the interval lies on: `Some(true)` when all of it is
    /// above (or at), `Some(false)` when all below, `None` when it straddles.
    pub fn side_of(&self, threshold: f64) -> Option<bool> {
        match (self.ci_low >= threshold, self.ci_high < threshold) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }

    /// About how many samples in all would shrink the interval off `threshold`, from
    /// the width's 1/sqrt(n) law (the t quantile's own shrinking ignored); `None` when
    /// the interval already decides, has no width, or its estimate sits on the threshold.
    pub fn samples_to_decide(&self, threshold: f64) -> Option<usize> {
        if self.side_of(threshold).is_some() || !self.has_width() {
            return None;
        }
        let distance = (self.estimate - threshold).abs();
        let half = if self.estimate >= threshold {
            self.estimate - self.ci_low
        } else {
            self.ci_high - self.estimate
        };
        if distance <= 0.0 || half <= 0.0 {
            return None;
        }
        let needed = self.n as f64 * (half / distance).powi(2);
        Some((needed.min(1e6).ceil() as usize).max(self.n + 1))
    }
}

/// Two systems' samples compared: the ratio `a / b` with its interval and the tests'
/// p-values. See the module docs for the methods.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// Median of `a` over median of `b`, with Welch's interval of the ratio of the
    /// geometric means (widened to hold the estimate).
    pub ratio: Interval,
    /// Welch's t-test on the logarithms, two-sided.
    pub p: f64,
    /// Mann-Whitney U, two-sided.
    pub p_mann_whitney: f64,
}

impl Difference {
    /// `a` against `b`; `None` when either side has no positive sample.
    pub fn of(a: &[f64], b: &[f64]) -> Option<Difference> {
        let (ma, mb) = (median(a), median(b));
        if ma <= 0.0 || mb <= 0.0 || a.is_empty() || b.is_empty() {
            return None;
        }
        let estimate = ma / mb;
        let welch = welch_log(a, b);
        let ratio = match welch {
            Some(w) => Interval {
                estimate,
                ci_low: w.low.exp().min(estimate),
                ci_high: w.high.exp().max(estimate),
                ci_level: LEVEL,
                n: a.len().min(b.len()),
            },
            None => Interval::point(estimate),
        };
        Some(Difference {
            ratio,
            p: welch.map_or(1.0, |w| w.p),
            p_mann_whitney: mann_whitney(a, b),
        })
    }

    /// True when `a` and `b` differ at `1 - LEVEL` with p-value `p` (Holm-adjusted by
    /// the caller where it makes many comparisons): Welch's test, and Mann-Whitney too
    /// where both sides have [`MANN_WHITNEY_FROM`] samples or more.
    pub fn significant_at(&self, p: f64, a: usize, b: usize) -> bool {
        let alpha = 1.0 - LEVEL;
        let distribution_free = a < MANN_WHITNEY_FROM || b < MANN_WHITNEY_FROM;
        p < alpha && (distribution_free || self.p_mann_whitney < alpha)
    }
}

/// Welch's interval of mean(ln a) - mean(ln b) at [`LEVEL`] and its two-sided p.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Welch {
    low: f64,
    high: f64,
    p: f64,
}

fn welch_log(a: &[f64], b: &[f64]) -> Option<Welch> {
    let la: Vec<f64> = a.iter().filter(|&&x| x > 0.0).map(|x| x.ln()).collect();
    let lb: Vec<f64> = b.iter().filter(|&&x| x > 0.0).map(|x| x.ln()).collect();
    let welch = welch(&la, &lb)?;
    Some(welch)
}

/// Welch's two-sample t on `a - b`: interval of the difference of means and p.
fn welch(a: &[f64], b: &[f64]) -> Option<Welch> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let ((ma, va), (mb, vb)) = (mean_var(a), mean_var(b));
    let (sa, sb) = (va / na, vb / nb);
    let se2 = sa + sb;
    let d = ma - mb;
    if se2 <= 0.0 {
        // No spread on either side: the difference is exact.
        let p = if d == 0.0 { 1.0 } else { 0.0 };
        return Some(Welch { low: d, high: d, p });
    }
    let df = se2 * se2 / (sa * sa / (na - 1.0) + sb * sb / (nb - 1.0));
    let se = se2.sqrt();
    let half = t_quantile(df) * se;
    let t = StudentsT::new(0.0, 1.0, df).ok()?;
    let p = (2.0 * t.sf((d / se).abs())).min(1.0);
    Some(Welch {
        low: d - half,
        high: d + half,
        p,
    })
}

/// The two-sided [`LEVEL`] quantile of Student's t with `df` degrees of freedom.
fn t_quantile(df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df.max(1e-9))
        .map(|t| t.inverse_cdf(1.0 - (1.0 - LEVEL) / 2.0))
        .unwrap_or(f64::INFINITY)
}

/// Mean and unbiased variance (0 for fewer than two values).
fn mean_var(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let mean = values.iter().sum::<f64>() / n;
    let var = match values.len() {
        0 | 1 => 0.0,
        _ => values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0),
    };
    (mean, var)
}

/// The ratio of the means of `a` over `b` with its percentile-bootstrap interval at
/// [`LEVEL`] (Efron & Tibshirani, *An Introduction to the Bootstrap*, §13.3): `resamples`
/// times, each side drawn again with replacement and the ratio of the new means taken;
/// the interval runs between the ratios' 2.5th and 97.5th percentiles. The draws are
/// seeded (`seed`), so a report gives the same interval each time it is drawn. For
/// samples that may be zero (replies per 100 ms while a server starves), where the
/// logarithms of [`Difference`] do not exist. `None` when a side is empty or `b`'s mean
/// is not positive.
pub fn bootstrap_ratio_of_means(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    seed: u64,
) -> Option<Interval> {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    if a.is_empty() || b.is_empty() || mean(b) <= 0.0 {
        return None;
    }
    let estimate = mean(a) / mean(b);
    if a.len() < 2 || b.len() < 2 {
        return Some(Interval::point(estimate));
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut draw = |v: &[f64]| (0..v.len()).map(|_| v[rng.usize(..v.len())]).sum::<f64>();
    let mut ratios: Vec<f64> = (0..resamples)
        .filter_map(|_| {
            let (x, y) = (draw(a) / a.len() as f64, draw(b) / b.len() as f64);
            (y > 0.0).then(|| x / y)
        })
        .collect();
    if ratios.is_empty() {
        return Some(Interval::point(estimate));
    }
    ratios.sort_by(f64::total_cmp);
    let at =
        |q: f64| ratios[((q * (ratios.len() - 1) as f64).round() as usize).min(ratios.len() - 1)];
    let tail = (1.0 - LEVEL) / 2.0;
    Some(Interval {
        estimate,
        ci_low: at(tail).min(estimate),
        ci_high: at(1.0 - tail).max(estimate),
        ci_level: LEVEL,
        n: a.len().min(b.len()),
    })
}

/// The median (mean of the middle two for an even count; 0 for none).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        len if len % 2 == 1 => v[len / 2],
        len => (v[len / 2 - 1] + v[len / 2]) / 2.0,
    }
}

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
    let mut scored: Vec<(Vec<f64>, usize, T)> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let s: Vec<f64> = samples(&item)
                .into_iter()
                .filter(|x| x.is_finite())
                .collect();
            (s, i, item)
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
            let d = Difference::of(&scored[i].0, &scored[j].0);
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
    for (k, (s, _, item)) in scored.into_iter().enumerate() {
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

#[cfg(test)]
mod tests;
