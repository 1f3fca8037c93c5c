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
use statrs::distribution::{ContinuousCDF, StudentsT};

mod multiple;
mod order;
pub mod usl;

pub use multiple::{Ranked, benjamini_hochberg, holm, tiers, tiers_resolved};
pub use order::{mann_whitney, median_interval, quantile_interval, quantile_ranks};

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
    /// point, or where every sample was the same.
    pub fn text(&self, format: impl Fn(f64) -> String) -> String {
        match self.has_width() && self.ci_low < self.ci_high {
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
        Difference::resolved(a, b, 0.0, 0.0)
    }

    /// `a` against `b` where each sample is only known to a resolution: `floor_a` and
    /// `floor_b` are variances (of the natural logarithm) added to each side's sample
    /// variance. A knee found on a grid of rates is somewhere between the last rate
    /// sustained and the next one tried: uniform over a step of ratio `r`, its logarithm
    /// has the variance `ln(r)^2 / 12`, which three equal knees do not make zero.
    pub fn resolved(a: &[f64], b: &[f64], floor_a: f64, floor_b: f64) -> Option<Difference> {
        let (ma, mb) = (median(a), median(b));
        if ma <= 0.0 || mb <= 0.0 || a.is_empty() || b.is_empty() {
            return None;
        }
        let estimate = ma / mb;
        let welch = welch_log(a, b, floor_a, floor_b);
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

    /// The p-value of "the two differ" within a family of `family` comparisons that a
    /// correction will adjust together: Welch's, or the larger of Welch's and
    /// Mann-Whitney's where both sides have [`MANN_WHITNEY_FROM`] samples or more and
    /// Mann-Whitney could reject at all in that family ([`mann_whitney_can_decide`]).
    /// Mann-Whitney is a second opinion where the sample allows it, never a veto it can
    /// never lift: 3 against 3 cannot go below p = 0.1, 5 against 5 below 0.0079.
    pub fn p_within(&self, a: usize, b: usize, family: usize) -> f64 {
        match a >= MANN_WHITNEY_FROM
            && b >= MANN_WHITNEY_FROM
            && mann_whitney_can_decide(a, b, family)
        {
            true => self.p.max(self.p_mann_whitney),
            false => self.p,
        }
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

/// Whether Mann-Whitney's test of `a` against `b` samples can reach `1 - LEVEL` within a
/// family of `family` comparisons: its smallest two-sided p, when every sample of one
/// side is above every sample of the other, is 2 / C(a + b, a) (exact, no ties), and
/// Holm's correction multiplies the smallest p by the family's size.
pub fn mann_whitney_can_decide(a: usize, b: usize, family: usize) -> bool {
    // C(n, k) as a float: exact far past any sample size here.
    let (n, k) = (a + b, a.min(b));
    let choose = (0..k).fold(1.0f64, |c, i| c * (n - i) as f64 / (i + 1) as f64);
    2.0 / choose * (family.max(1) as f64) < 1.0 - LEVEL
}

/// Welch's interval of mean(ln a) - mean(ln b) at [`LEVEL`] and its two-sided p.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Welch {
    low: f64,
    high: f64,
    p: f64,
}

fn welch_log(a: &[f64], b: &[f64], floor_a: f64, floor_b: f64) -> Option<Welch> {
    let la: Vec<f64> = a.iter().filter(|&&x| x > 0.0).map(|x| x.ln()).collect();
    let lb: Vec<f64> = b.iter().filter(|&&x| x > 0.0).map(|x| x.ln()).collect();
    welch(&la, &lb, floor_a, floor_b)
}

/// Welch's two-sample t on `a - b`: interval of the difference of means and p, each
/// side's sample variance raised by its `floor` (see [`Difference::resolved`]).
fn welch(a: &[f64], b: &[f64], floor_a: f64, floor_b: f64) -> Option<Welch> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let ((ma, va), (mb, vb)) = (mean_var(a), mean_var(b));
    let (va, vb) = (va + floor_a.max(0.0), vb + floor_b.max(0.0));
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
/// The smallest ratio between two cells that a comparison of `n` samples a side, each
/// side's logarithms spread with standard deviation `sd`, detects with probability
/// `power` at `1 - LEVEL` within a family of `family` comparisons (Holm's strictest
/// step: the level over the family): exp((t(1 - α/2m) + t(power)) · sd · √(2/n)) on
/// 2(n - 1) degrees of freedom, the two-sample t test's minimum detectable effect
/// (Cohen, *Statistical Power Analysis*, 1988, ch. 2, on the log scale). `None` for
/// fewer than two samples.
pub fn smallest_separable_ratio(sd: f64, n: usize, family: usize, power: f64) -> Option<f64> {
    if n < 2 || !sd.is_finite() || sd < 0.0 {
        return None;
    }
    let df = 2.0 * (n as f64 - 1.0);
    let t = StudentsT::new(0.0, 1.0, df).ok()?;
    let alpha = (1.0 - LEVEL) / family.max(1) as f64;
    let delta =
        (t.inverse_cdf(1.0 - alpha / 2.0) + t.inverse_cdf(power)) * sd * (2.0 / n as f64).sqrt();
    Some(delta.exp())
}

/// The smallest ratio between two sets of samples (`a` against `b`, each with a
/// variance of its logarithms known besides its spread: `floor_a`, `floor_b`, as in
/// [`Difference::resolved`]) that Welch's test on the logarithms detects with
/// probability `power` at `1 - LEVEL`: exp((t(1 - α/2) + t(power)) · se) with Welch's
/// standard error and degrees of freedom from the samples' own variances (Cohen,
/// *Statistical Power Analysis*, 1988, ch. 2, on the log scale). What `fiblab compare`
/// prints as the change a cell could have shown. `None` with fewer than two samples a
/// side or a value not positive.
pub fn smallest_detectable_ratio(
    a: &[f64],
    b: &[f64],
    floor_a: f64,
    floor_b: f64,
    power: f64,
) -> Option<f64> {
    if a.len() < 2 || b.len() < 2 || a.iter().chain(b).any(|x| *x <= 0.0 || !x.is_finite()) {
        return None;
    }
    let logs = |x: &[f64]| x.iter().map(|v| v.ln()).collect::<Vec<f64>>();
    let ((_, va), (_, vb)) = (mean_var(&logs(a)), mean_var(&logs(b)));
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (sa, sb) = ((va + floor_a.max(0.0)) / na, (vb + floor_b.max(0.0)) / nb);
    let se2 = sa + sb;
    if se2 <= 0.0 {
        return Some(1.0);
    }
    let df = se2 * se2 / (sa * sa / (na - 1.0) + sb * sb / (nb - 1.0));
    let t = StudentsT::new(0.0, 1.0, df.max(1e-9)).ok()?;
    let alpha = 1.0 - LEVEL;
    Some(((t.inverse_cdf(1.0 - alpha / 2.0) + t.inverse_cdf(power)) * se2.sqrt()).exp())
}

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
    Some(Interval {
        n: a.len().min(b.len()),
        ..percentile_interval(estimate, &mut ratios)
    })
}

/// The percentile interval at [`LEVEL`] of bootstrap `values` around `estimate` (which
/// it always contains); `n` is the number of values. Sorts `values`.
pub(crate) fn percentile_interval(estimate: f64, values: &mut [f64]) -> Interval {
    if values.is_empty() {
        return Interval::point(estimate);
    }
    values.sort_by(f64::total_cmp);
    let last = values.len() - 1;
    let at = |q: f64| values[((q * last as f64).round() as usize).min(last)];
    let tail = (1.0 - LEVEL) / 2.0;
    Interval {
        estimate,
        ci_low: at(tail).min(estimate),
        ci_high: at(1.0 - tail).max(estimate),
        ci_level: LEVEL,
        n: values.len(),
    }
}

/// The least-squares slope of `ys` against `xs` (units of y per unit of x), with its
/// [`LEVEL`] interval: Student's t with n - 2 degrees of freedom times the slope's
/// standard error (as scipy's `linregress`). A cost that grows with a count (memory per
/// connection, time per connection opened) is this slope: it leaves out what the server
/// spent once, which a plain division by the count would spread over the connections.
/// `None` under two points or when every x is the same; with two points the slope is
/// exact (no degree of freedom is left to estimate the scatter), so `n` says 2.
pub fn slope(xs: &[f64], ys: &[f64]) -> Option<Interval> {
    let n = xs.len().min(ys.len());
    if n < 2 {
        return None;
    }
    let (mx, _) = mean_var(&xs[..n]);
    let (my, _) = mean_var(&ys[..n]);
    let sxx: f64 = xs[..n].iter().map(|x| (x - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = xs[..n]
        .iter()
        .zip(&ys[..n])
        .map(|(x, y)| (x - mx) * (y - my))
        .sum();
    let b = sxy / sxx;
    if n == 2 {
        return Some(Interval {
            n,
            ..Interval::point(b)
        });
    }
    let residual: f64 = xs[..n]
        .iter()
        .zip(&ys[..n])
        .map(|(x, y)| (y - my - b * (x - mx)).powi(2))
        .sum();
    let se = (residual / (n - 2) as f64 / sxx).sqrt();
    // Points on one line up to rounding: exact, not an interval of float dust.
    let half = match se <= 1e-9 * b.abs() {
        true => 0.0,
        false => t_quantile((n - 2) as f64) * se,
    };
    Some(Interval {
        estimate: b,
        ci_low: b - half,
        ci_high: b + half,
        ci_level: LEVEL,
        n,
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

#[cfg(test)]
mod tests;
