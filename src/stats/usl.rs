//! The Universal Scalability Law (Neil Gunther, *Guerrilla Capacity Planning*, 2007;
//! Baron Schwartz, *Practical Scalability Analysis with the Universal Scalability Law*,
//! 2015): the throughput of N concurrent clients
//!
//! ```text
//!            λ N
//! X(N) = ─────────────────────────
//!        1 + σ (N − 1) + κ N (N − 1)
//! ```
//!
//! - λ: the throughput of one client (req/s), what the system does with no contention;
//! - σ: contention, the share of the work that is serialized (Amdahl's law when κ = 0):
//!   throughput levels off at λ / σ; one thread doing everything is σ near 1;
//! - κ: coherency (crosstalk), what each pair of clients costs each other (a shared queue
//!   whose lock every worker takes): throughput peaks at N* = √((1 − σ) / κ) and then
//!   falls.
//!
//! Fitted by nonlinear least squares on the relative residuals (X̂(N) / X(N) − 1, so a
//! point at 1 client weighs as much as one at 256) with the `levenberg-marquardt` crate
//! (MINPACK's algorithm), started from the linear least-squares solution of the
//! linearized law `N / X = 1/λ + (σ/λ)(N − 1) + (κ/λ) N (N − 1)` (nalgebra's SVD). λ, σ
//! and κ are kept non-negative by fitting `ln λ`, √σ and √κ. Their intervals, and those of
//! the peak, come from a percentile bootstrap over the repetitions of each client count
//! (each count's repetitions drawn again with replacement, the fit repeated).

use levenberg_marquardt::{LeastSquaresProblem, LevenbergMarquardt};
use nalgebra::{DMatrix, DVector, Dyn, Owned, U3, Vector3};

use super::Interval;

/// The largest distance, as a share of the measured throughput, at which a fitted curve
/// still follows a point: Schwartz's "within 20%", the limit the issue's anchors use.
pub const FITS_WITHIN: f64 = 0.20;

/// The fewest distinct client counts a fit needs: three coefficients and one more point
/// to show whether they describe the curve at all.
pub const MIN_POINTS: usize = 4;

/// One USL curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usl {
    /// Throughput of one client, req/s.
    pub lambda: f64,
    /// Contention (serialized share), dimensionless, ≥ 0.
    pub sigma: f64,
    /// Coherency (crosstalk per pair of clients), dimensionless, ≥ 0.
    pub kappa: f64,
}

impl Usl {
    /// The curve's throughput at `n` clients, req/s.
    pub fn throughput(&self, n: f64) -> f64 {
        self.lambda * n / (1.0 + self.sigma * (n - 1.0) + self.kappa * n * (n - 1.0))
    }

    /// N* = √((1 − σ) / κ), where throughput peaks; `None` when κ is 0 (no peak: the
    /// curve levels off at λ / σ) or σ ≥ 1 (it peaks at one client).
    pub fn peak_clients(&self) -> Option<f64> {
        (self.kappa > 0.0 && self.sigma < 1.0).then(|| ((1.0 - self.sigma) / self.kappa).sqrt())
    }

    /// The highest throughput the curve reaches: at N* when it peaks, else its limit
    /// λ / σ (`inf` when σ is 0 too: linear scaling as far as the fit can tell).
    pub fn peak_throughput(&self) -> f64 {
        match self.peak_clients() {
            Some(n) => self.throughput(n.max(1.0)),
            None if self.sigma >= 1.0 => self.lambda,
            None if self.sigma > 0.0 => self.lambda / self.sigma,
            None => f64::INFINITY,
        }
    }
}

/// A fit of the USL to measured points, with its intervals and whether it follows them.
#[derive(Debug, Clone, PartialEq)]
pub struct UslFit {
    pub usl: Usl,
    pub lambda: Interval,
    pub sigma: Interval,
    pub kappa: Interval,
    /// N* (`None` without a peak) and the peak (or limiting) throughput.
    pub peak_clients: Option<Interval>,
    pub peak_throughput: Interval,
    /// The point farthest from the curve: its client count and measured / fitted − 1.
    pub worst: (f64, f64),
}

impl UslFit {
    /// Whether the curve follows every point within [`FITS_WITHIN`].
    pub fn fits(&self) -> bool {
        self.worst.1.abs() <= FITS_WITHIN
    }
}

/// Why no curve was fitted.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum UslError {
    #[error("{0} client counts: a fit needs at least {MIN_POINTS}")]
    TooFewPoints(usize),
    #[error("a throughput is zero or not a number: nothing to fit")]
    NotPositive,
    #[error("the least-squares fit did not converge")]
    NoConvergence,
}

/// Fits the USL to one throughput per client count: `points` are (clients, req/s).
///
/// # Errors
/// Fewer than [`MIN_POINTS`] distinct client counts, a throughput that is not positive,
/// or a fit that does not converge.
pub fn fit(points: &[(f64, f64)]) -> Result<Usl, UslError> {
    let mut counts: Vec<f64> = points.iter().map(|p| p.0).collect();
    counts.sort_by(f64::total_cmp);
    counts.dedup();
    if counts.len() < MIN_POINTS {
        return Err(UslError::TooFewPoints(counts.len()));
    }
    let usable = |&(n, x): &(f64, f64)| x.is_finite() && x > 0.0 && n >= 1.0;
    if !points.iter().all(usable) {
        return Err(UslError::NotPositive);
    }
    let start = linearized(points).unwrap_or(Usl {
        lambda: points.iter().map(|p| p.1 / p.0).fold(0.0, f64::max),
        sigma: 0.1,
        kappa: 1e-4,
    });
    // √0 has no slope to leave 0 by: start a little inside.
    let problem = Problem {
        points: points.to_vec(),
        params: Vector3::new(
            start.lambda.max(1e-9).ln(),
            start.sigma.clamp(1e-4, 1.0).sqrt(),
            start.kappa.max(1e-8).sqrt(),
        ),
    };
    let (done, report) = LevenbergMarquardt::new().minimize(problem);
    if !report.termination.was_successful() && !report.objective_function.is_finite() {
        return Err(UslError::NoConvergence);
    }
    let usl = done.usl();
    match usl.lambda.is_finite() && usl.sigma.is_finite() && usl.kappa.is_finite() {
        true => Ok(usl),
        false => Err(UslError::NoConvergence),
    }
}

/// Fits the USL to repetitions: `samples` are (clients, each repetition's req/s). The
/// point estimate fits each count's mean; the intervals are the percentile bootstrap
/// over `resamples` redraws of the repetitions (seeded, so a report draws the same
/// intervals each time).
///
/// # Errors
/// As [`fit`], for the means.
pub fn fit_repetitions(
    samples: &[(f64, Vec<f64>)],
    resamples: usize,
    seed: u64,
) -> Result<UslFit, UslError> {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let points: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| (*n, mean(v)))
        .collect();
    let usl = fit(&points)?;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut fits = Vec::new();
    if samples.iter().any(|(_, v)| v.len() > 1) {
        for _ in 0..resamples {
            let redrawn: Vec<(f64, f64)> = samples
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(n, v)| {
                    let sum: f64 = (0..v.len()).map(|_| v[rng.usize(..v.len())]).sum();
                    (*n, sum / v.len() as f64)
                })
                .collect();
            if let Ok(f) = fit(&redrawn) {
                fits.push(f);
            }
        }
    }
    let interval = |estimate: f64, of: &dyn Fn(&Usl) -> f64| percentile(estimate, &fits, of);
    let worst = points
        .iter()
        .map(|&(n, x)| (n, x / usl.throughput(n) - 1.0))
        .fold(
            (1.0, 0.0),
            |a: (f64, f64), b| if b.1.abs() > a.1.abs() { b } else { a },
        );
    Ok(UslFit {
        usl,
        lambda: interval(usl.lambda, &|u| u.lambda),
        sigma: interval(usl.sigma, &|u| u.sigma),
        kappa: interval(usl.kappa, &|u| u.kappa),
        peak_clients: usl
            .peak_clients()
            .map(|n| interval(n, &|u| u.peak_clients().unwrap_or(f64::INFINITY))),
        peak_throughput: interval(usl.peak_throughput(), &|u| u.peak_throughput()),
        worst,
    })
}

/// The percentile interval at [`super::LEVEL`] of `of` over the bootstrap's fits, around
/// `estimate`; a point when there are none.
fn percentile(estimate: f64, fits: &[Usl], of: &dyn Fn(&Usl) -> f64) -> Interval {
    let mut values: Vec<f64> = fits.iter().map(of).filter(|v| !v.is_nan()).collect();
    match values.len() {
        0 | 1 => Interval::point(estimate),
        _ => super::percentile_interval(estimate, &mut values),
    }
}

/// The linearized law's least-squares solution (nalgebra's SVD): a starting point.
fn linearized(points: &[(f64, f64)]) -> Option<Usl> {
    let a = DMatrix::from_fn(points.len(), 3, |i, j| {
        let n = points[i].0;
        [1.0, n - 1.0, n * (n - 1.0)][j]
    });
    let b = DVector::from_iterator(points.len(), points.iter().map(|&(n, x)| n / x));
    let solution = a.svd(true, true).solve(&b, 1e-12).ok()?;
    let inverse_lambda = solution[0];
    (inverse_lambda > 0.0).then(|| Usl {
        lambda: 1.0 / inverse_lambda,
        sigma: (solution[1] / inverse_lambda).max(0.0),
        kappa: (solution[2] / inverse_lambda).max(0.0),
    })
}

/// The least-squares problem: parameters (ln λ, √σ, √κ), residuals X̂(N)/X(N) − 1.
struct Problem {
    points: Vec<(f64, f64)>,
    params: Vector3<f64>,
}

impl Problem {
    fn usl(&self) -> Usl {
        Usl {
            lambda: self.params[0].exp(),
            sigma: self.params[1].powi(2),
            kappa: self.params[2].powi(2),
        }
    }
}

impl LeastSquaresProblem<f64, Dyn, U3> for Problem {
    type ResidualStorage = Owned<f64, Dyn>;
    type JacobianStorage = Owned<f64, Dyn, U3>;
    type ParameterStorage = Owned<f64, U3>;

    fn set_params(&mut self, x: &Vector3<f64>) {
        self.params.copy_from(x);
    }

    fn params(&self) -> Vector3<f64> {
        self.params
    }

    fn residuals(&self) -> Option<DVector<f64>> {
        let u = self.usl();
        Some(DVector::from_iterator(
            self.points.len(),
            self.points.iter().map(|&(n, x)| u.throughput(n) / x - 1.0),
        ))
    }

    fn jacobian(&self) -> Option<nalgebra::OMatrix<f64, Dyn, U3>> {
        let u = self.usl();
        let (a, b) = (self.params[1], self.params[2]);
        let mut j = nalgebra::OMatrix::<f64, Dyn, U3>::zeros(self.points.len());
        for (i, &(n, x)) in self.points.iter().enumerate() {
            let d = 1.0 + u.sigma * (n - 1.0) + u.kappa * n * (n - 1.0);
            let fitted = u.lambda * n / d;
            // ∂X̂/∂ln λ = X̂; ∂X̂/∂σ = −X̂ (N − 1) / D; ∂X̂/∂κ = −X̂ N (N − 1) / D.
            j[(i, 0)] = fitted / x;
            j[(i, 1)] = -fitted * (n - 1.0) / d * 2.0 * a / x;
            j[(i, 2)] = -fitted * n * (n - 1.0) / d * 2.0 * b / x;
        }
        Some(j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(usl: Usl, counts: &[f64]) -> Vec<(f64, f64)> {
        counts.iter().map(|&n| (n, usl.throughput(n))).collect()
    }

    /// Curves with known coefficients, exact and with ±3% noise, give them back.
    #[test]
    fn recovers_known_coefficients() {
        let counts = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
        for truth in [
            // A one-thread loop: contention only.
            Usl {
                lambda: 20_000.0,
                sigma: 0.7,
                kappa: 0.0,
            },
            // Threads on 8 CPUs: a little of both.
            Usl {
                lambda: 25_000.0,
                sigma: 0.06,
                kappa: 0.0002,
            },
            // A pool that falls off: crosstalk.
            Usl {
                lambda: 40_000.0,
                sigma: 0.02,
                kappa: 0.004,
            },
        ] {
            let got = fit(&curve(truth, &counts)).unwrap();
            assert!(
                (got.lambda / truth.lambda - 1.0).abs() < 1e-3,
                "{got:?} vs {truth:?}"
            );
            assert!(
                (got.sigma - truth.sigma).abs() < 1e-3,
                "{got:?} vs {truth:?}"
            );
            assert!(
                (got.kappa - truth.kappa).abs() < 1e-5,
                "{got:?} vs {truth:?}"
            );
            // Two noisy repetitions per count (±3%, alternating): the truth is inside
            // the bootstrap's intervals, or close to them.
            let samples: Vec<(f64, Vec<f64>)> = counts
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let x = truth.throughput(n);
                    let e = if i % 2 == 0 { 0.03 } else { -0.03 };
                    (n, vec![x * (1.0 + e), x * (1.0 - e / 2.0)])
                })
                .collect();
            let f = fit_repetitions(&samples, 200, 7).unwrap();
            assert!(f.fits(), "{f:?}");
            assert!((f.sigma.estimate - truth.sigma).abs() < 0.03, "{f:?}");
            assert!(f.sigma.ci_low <= f.sigma.estimate && f.sigma.estimate <= f.sigma.ci_high);
            assert!(f.lambda.has_width(), "{f:?}");
        }
        let peaked = Usl {
            lambda: 40_000.0,
            sigma: 0.02,
            kappa: 0.004,
        };
        let n_star = peaked.peak_clients().unwrap();
        assert!((n_star - (0.98f64 / 0.004).sqrt()).abs() < 1e-9);
        assert!(peaked.peak_throughput() >= peaked.throughput(n_star.floor()));
        assert_eq!(
            Usl {
                lambda: 10.0,
                sigma: 0.5,
                kappa: 0.0
            }
            .peak_throughput(),
            20.0
        );
    }

    /// A curve the law cannot follow (flat, then a step up: a placement change, or a
    /// client-limited plateau that lifts) is fitted but said not to fit.
    #[test]
    fn says_when_the_law_does_not_fit() {
        let points = [
            (1.0, 10_000.0),
            (2.0, 10_000.0),
            (4.0, 10_000.0),
            (8.0, 40_000.0),
            (16.0, 40_000.0),
            (32.0, 40_000.0),
        ];
        let samples: Vec<(f64, Vec<f64>)> = points.iter().map(|&(n, x)| (n, vec![x])).collect();
        let f = fit_repetitions(&samples, 50, 1).unwrap();
        assert!(!f.fits(), "{f:?}");
        assert!(f.worst.1.abs() > FITS_WITHIN);
        assert_eq!(fit(&points[..3]), Err(UslError::TooFewPoints(3)));
        assert_eq!(
            fit(&[(1.0, 0.0), (2.0, 1.0), (4.0, 1.0), (8.0, 1.0)]),
            Err(UslError::NotPositive)
        );
    }
}
