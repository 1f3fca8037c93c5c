//! How each model scales: the Universal Scalability Law ([`crate::stats::usl`]) fitted to
//! every model's seed-table curve, throughput against closed-loop clients, wherever a
//! report has at least [`usl::MIN_POINTS`] client counts (`scenarios/scale.toml`, or the
//! 16-core run in `../shared/data/16-core/`).
//!
//! It measures nothing of its own: the seed tables' cells are its points, and their
//! repetitions its bootstrap. Its table gives λ, σ, κ, the peak and where the curve
//! falls, each with its interval, and one computed sentence per model: what the
//! coefficients say of its design, or that the law does not follow its curve (a curve
//! the load generator limits, a placement step) and the coefficients mean nothing.

use std::io;

use plotters::prelude::*;

use super::{Experiment, Row, Run};
use crate::bench::canvas::{PlotError, err};
use crate::bench::results::{BenchReport, Finding, Plot, Table, thousands};
use crate::bench::scenario::Scenario;
use crate::stats::usl::{self, UslFit};

/// Bootstrap redraws per fit.
const RESAMPLES: usize = 200;

/// σ at or above this: the work is mostly serialized (a one-thread loop's is near 1).
const SERIAL: f64 = 0.5;

/// The scale experiment. See the module docs.
pub struct Scale;

/// One model's fit at one n in one regime.
#[derive(Debug, Clone)]
pub struct ModelFit {
    pub regime: String,
    pub variant: String,
    pub n: u32,
    /// (clients, median req/s) as measured.
    pub points: Vec<(f64, f64)>,
    /// The best cell's throughput with its interval over the repetitions.
    pub best: Option<crate::stats::Interval>,
    /// The machine's limit for this n ([`machine_limit`]), req/s; `None` without a
    /// calibration.
    pub limit: Option<f64>,
    /// The CPUs the model's work could use: one for a one-thread loop, else the server's
    /// (0: unknown, an unpinned server).
    pub work_cpus: usize,
    /// Client counts where a load generator thread was over 90% busy in some
    /// repetition (reports that recorded it): there the client may have been the limit.
    pub client_limited: Vec<f64>,
    pub fit: Result<UslFit, usl::UslError>,
}

/// Every model's fit, by regime, n and the report's row order.
pub fn fits(r: &BenchReport) -> Vec<ModelFit> {
    let mut out = Vec::new();
    for regime in r.regime_names() {
        let mut keys: Vec<(u32, String)> = Vec::new();
        for c in r.cells.iter().filter(|c| c.regime == regime) {
            if !keys.contains(&(c.n, c.variant.clone())) {
                keys.push((c.n, c.variant.clone()));
            }
        }
        keys.sort_by_key(|k| k.0);
        for (n, variant) in keys {
            let mut counts: Vec<usize> = r
                .cells
                .iter()
                .filter(|c| c.regime == regime && c.n == n && c.variant == variant)
                .map(|c| c.clients)
                .collect();
            counts.sort_unstable();
            counts.dedup();
            if counts.len() < usl::MIN_POINTS {
                continue;
            }
            let samples: Vec<(f64, Vec<f64>)> = counts
                .iter()
                .map(|&clients| {
                    let reps = r
                        .samples
                        .iter()
                        .filter(|s| {
                            s.regime == regime
                                && s.n == n
                                && s.variant == variant
                                && s.clients == clients
                        })
                        .map(|s| s.throughput_rps)
                        .collect();
                    (clients as f64, reps)
                })
                .collect();
            let cells: Vec<&crate::bench::results::Cell> = r
                .cells
                .iter()
                .filter(|c| c.regime == regime && c.n == n && c.variant == variant)
                .collect();
            let points = cells
                .iter()
                .map(|c| (c.clients as f64, c.median_rps))
                .collect();
            let best = cells
                .iter()
                .max_by(|a, b| a.median_rps.total_cmp(&b.median_rps))
                .map(|c| match c.throughput.n {
                    0 => crate::stats::Interval::point(c.median_rps),
                    _ => c.throughput,
                });
            let limit = machine_limit(r, &regime, n, variant == crate::bench::FLOOR);
            let server_cpus = r
                .regimes
                .iter()
                .find(|p| p.name == regime)
                .map_or(0, |p| p.server_cpus.len());
            let work_cpus = match crate::models::parse_variant(&variant) {
                Ok(v) => crate::models::find(&v.model).map_or(server_cpus, |m| {
                    m.work_cpus(v.offload, server_cpus.max(1))
                        .min(server_cpus.max(1))
                }),
                Err(_) => server_cpus,
            };
            let mut client_limited: Vec<f64> = r
                .samples
                .iter()
                .filter(|s| s.regime == regime && s.n == n && s.variant == variant)
                .filter(|s| s.client.is_some_and(|c| c.busiest > 0.9))
                .map(|s| s.clients as f64)
                .collect();
            client_limited.sort_by(f64::total_cmp);
            client_limited.dedup();
            // A seed per curve, so a redraw of the report gives the same intervals.
            let seed = variant.bytes().fold(u64::from(n), |h, b| {
                h.wrapping_mul(31).wrapping_add(u64::from(b))
            });
            out.push(ModelFit {
                regime: regime.clone(),
                variant,
                n,
                points,
                best,
                limit,
                work_cpus,
                client_limited,
                fit: usl::fit_repetitions(&samples, RESAMPLES, seed),
            });
        }
    }
    out
}

/// The machine's limit for fib(n), req/s: the server's CPUs, each doing nothing but
/// requests, over one request's own cost, `server CPUs / (fib(n) + the server's socket
/// calls)`, the socket calls being half the calibrated round trip with nobody asleep
/// (`rtt_spinning / 2`: the loopback and the system calls on one side). No model can
/// pass it; how close the best one comes is what its design leaves on the table. `floor`
/// (no fib) has fib(n) = 0. `None` without a calibration that timed fib(n).
pub fn machine_limit(r: &BenchReport, regime: &str, n: u32, floor: bool) -> Option<f64> {
    let c = r.calibration.as_ref()?;
    let fib = match floor {
        true => 0.0,
        false => c.fib_us(n)?,
    };
    let socket = c.rtt_spinning.or(c.rtt_same_cpu)?.median_us / 2.0;
    let cpus = r
        .regimes
        .iter()
        .find(|p| p.name == regime)
        .map_or(0, |p| p.server_cpus.len());
    let cpus = match cpus {
        0 => r.machine.cpus.max(1),
        pinned => pinned,
    };
    Some(cpus as f64 * 1e6 / (fib + socket).max(1e-3))
}

/// What one fit says, in one sentence computed from its coefficients and their
/// intervals: a coefficient counts only where even its interval's low end changes the
/// curve by 1% at the most clients measured (σ(N−1) or κN(N−1) ≥ 0.01).
pub fn reading(m: &ModelFit) -> String {
    let f = match &m.fit {
        Err(e) => return format!("no fit: {e}"),
        Ok(f) => f,
    };
    let max_clients = m.points.iter().map(|p| p.0).fold(1.0, f64::max);
    let (at, off) = f.worst;
    if !f.fits() {
        let why = if m.client_limited.contains(&at) {
            " (there a load generator thread was over 90% busy: the client's limit, not the server's)"
        } else if rises_after_flat(&m.points) {
            " (a flat stretch, then a step up: a placement change or a limit that lifts, which the law cannot make)"
        } else {
            " (a curve shaped by something else than contention and crosstalk: the load generator's limit, or a placement step)"
        };
        return format!(
            "the USL does not follow this curve: at {at:.0} clients it measures {:+.0}% off the fitted one{why}; read the points, not the coefficients",
            off * 100.0
        );
    }
    let u = f.usl;
    let kappa_counts = f.kappa.ci_low * max_clients * (max_clients - 1.0) >= 0.01;
    let peak = u.peak_clients().filter(|_| kappa_counts);
    if u.sigma >= SERIAL {
        let who = match m.work_cpus {
            1 if is_loop(&m.variant) => "one loop serializes the work",
            1 => "the server's one CPU serializes the work",
            _ => "most of the work is serialized",
        };
        return format!(
            "σ = {:.2}: {who}; more clients only queue (at most about {} req/s{})",
            u.sigma,
            thousands(u.peak_throughput()),
            match peak {
                Some(p) if p < max_clients => format!(", falling past {p:.0} clients"),
                _ => String::new(),
            }
        );
    }
    match peak {
        Some(p) if p < max_clients => format!(
            "κ = {}: crosstalk; throughput peaks at about {p:.0} clients ({} req/s) and falls beyond",
            sig(u.kappa),
            thousands(u.peak_throughput())
        ),
        Some(p) => format!(
            "σ = {:.3}, κ = {}: contention and some crosstalk; the peak (about {p:.0} clients, {} req/s) lies beyond the clients measured",
            u.sigma,
            sig(u.kappa),
            thousands(u.peak_throughput())
        ),
        None => {
            let limit = u.lambda / u.sigma;
            format!(
                "σ = {:.3}: contention {}; it levels off near λ/σ = {}",
                u.sigma,
                match u.sigma < 0.1 {
                    true => "small: close to linear while clients find free CPUs",
                    false => "shares the work out only in part",
                },
                match limit.is_finite() {
                    true => format!("{} req/s", thousands(limit)),
                    false => "no limit in sight".into(),
                }
            )
        }
    }
}

/// Whether `variant`'s work runs on one thread whatever the CPUs (a one-thread loop, or
/// one process per client: `single`-like designs).
fn is_loop(variant: &str) -> bool {
    crate::models::parse_variant(variant)
        .ok()
        .and_then(|v| crate::models::find(&v.model).map(|m| (m, v.offload)))
        .is_some_and(|(m, offload)| m.work_cpus(offload, 64) == 1)
}

/// Whether the curve is flat (within 10%) over its first points and then steps up by
/// more than half: a shape no USL curve has.
fn rises_after_flat(points: &[(f64, f64)]) -> bool {
    let mut p = points.to_vec();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    p.windows(3)
        .any(|w| (w[1].1 / w[0].1 - 1.0).abs() < 0.10 && w[2].1 > 1.5 * w[1].1)
}

/// A coefficient with two significant digits (κ is often 1e-4).
fn sig(x: f64) -> String {
    match x {
        0.0 => "0".into(),
        x if x.abs() >= 0.01 => format!("{x:.3}"),
        x => format!("{x:.1e}"),
    }
}

impl Experiment for Scale {
    fn name(&self) -> &'static str {
        "scale (the USL fitted to the seed tables)"
    }

    fn steps(&self, _scenario: &Scenario, _rows: &[Row]) -> usize {
        0
    }

    fn measure(&self, _run: &mut Run<'_>, _report: &mut BenchReport) -> io::Result<()> {
        Ok(())
    }

    fn tables(&self, r: &BenchReport) -> (Vec<Table>, Vec<String>) {
        let all = fits(r);
        if all.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let ci = |i: &crate::stats::Interval, f: &dyn Fn(f64) -> String| i.text(f);
        let rows = all
            .iter()
            .map(|m| {
                let mut row = vec![format!("`{}`", m.variant), m.n.to_string()];
                match &m.fit {
                    Ok(f) => row.extend([
                        ci(&f.lambda, &|x| thousands(x)),
                        ci(&f.sigma, &|x| format!("{x:.3}")),
                        ci(&f.kappa, &sig),
                        f.peak_clients.as_ref().map_or("none".into(), |p| {
                            // Beyond a thousand times the clients measured: no peak in
                            // sight, whatever the digits.
                            let far = 1000.0 * m.points.iter().map(|p| p.0).fold(1.0, f64::max);
                            ci(p, &|x| match x > far {
                                true => "∞".into(),
                                false => format!("{x:.0}"),
                            })
                        }),
                        ci(&f.peak_throughput, &|x| match x.is_finite() {
                            true => thousands(x),
                            false => "∞".into(),
                        }),
                        format!("{:+.0}% at {:.0}", f.worst.1 * 100.0, f.worst.0),
                    ]),
                    Err(_) => row.extend(std::iter::repeat_n("–".to_string(), 6)),
                }
                row.push(match (m.best, m.limit) {
                    (Some(best), Some(limit)) => {
                        format!(
                            "{} of {}",
                            best.map(|x| x / limit).text(|x| format!("{x:.2}")),
                            thousands(limit)
                        )
                    }
                    _ => "–".into(),
                });
                row.push(reading(m));
                row
            })
            .collect();
        let table = Table {
            title: "How each model scales: the Universal Scalability Law fitted per model".into(),
            intro: format!(
                "X(N) = λN / (1 + σ(N−1) + κN(N−1)) (Gunther; Schwartz, \"Practical Scalability Analysis with the USL\"), fitted by least squares on relative errors (levenberg-marquardt) to each model's closed-loop throughput against clients; in brackets the {}% percentile-bootstrap interval over the repetitions. λ: one client's req/s; σ: contention, the serialized share (throughput levels off at λ/σ); κ: crosstalk between clients (throughput peaks at N* = √((1−σ)/κ), then falls). \"worst\": the point farthest from the curve; beyond ±{:.0}% the law does not follow the curve and the reading says so. The machine's limit: the server's CPUs over one request's own cost, fib(n) plus the server's socket calls (half the calibrated round trip with nobody asleep); no model can pass it, and the best cell's share of it (with its interval) is what the design leaves on the table.",
                (crate::stats::LEVEL * 100.0).round(),
                usl::FITS_WITHIN * 100.0
            ),
            header: [
                "model",
                "n",
                "λ req/s",
                "σ",
                "κ",
                "N*",
                "peak req/s",
                "worst",
                "best measured: share of the machine's limit",
                "reading",
            ]
            .map(String::from)
            .into(),
            left: 1,
            text_last: true,
            rows,
        };
        let mut notes = Vec::new();
        let one_cpu = match r.regimes.as_slice() {
            [] => r.machine.cpus <= 2,
            plans => plans.iter().any(|p| {
                p.server_cpus.len() == 1 || (p.server_cpus.is_empty() && r.machine.cpus <= 2)
            }),
        };
        if one_cpu {
            notes.push(format!(
                "The server had {} here: no model can scale past one CPU's work, so these curves cannot show scaling; σ says how each model queues on it, κ what more clients cost it. A machine with more CPUs shows what the seeds ask (`fiblab bench scale` there; docs/SCALE.md draws a 16-core run).",
                match r.machine.cpus <= 2 && r.regimes.iter().all(|p| p.server_cpus.len() <= 1) {
                    true => format!("one CPU of this machine's {}", r.machine.cpus),
                    false => "one CPU".into(),
                }
            ));
        }
        (vec![table], notes)
    }

    fn plots(&self, r: &BenchReport) -> Result<Vec<Plot>, PlotError> {
        let all = fits(r);
        let mut keys: Vec<(String, u32)> = Vec::new();
        for m in &all {
            if !keys.contains(&(m.regime.clone(), m.n)) {
                keys.push((m.regime.clone(), m.n));
            }
        }
        keys.iter()
            .map(|(regime, n)| {
                let these: Vec<&ModelFit> = all
                    .iter()
                    .filter(|m| &m.regime == regime && m.n == *n)
                    .collect();
                plot(regime, *n, &these)
            })
            .collect()
    }

    fn findings(&self, _r: &BenchReport) -> Vec<Finding> {
        Vec::new()
    }
}

/// Measured medians (points) and fitted curves (lines; dotted where the law does not
/// follow the curve) against clients, log-log.
fn plot(regime: &str, n: u32, fits: &[&ModelFit]) -> Result<Plot, PlotError> {
    let suffix = match regime.is_empty() {
        true => String::new(),
        false => format!(", regime {regime}"),
    };
    let title = format!(
        "fib({n}): req/s against clients, measured (points), the USL fitted (lines; dotted: the law does not follow) and the machine's limit (dashed){suffix}"
    );
    let max_clients = fits
        .iter()
        .flat_map(|m| m.points.iter().map(|p| p.0))
        .fold(2.0, f64::max);
    // The machine's limit for fib(n) (the floor's, with no fib, is higher and not drawn).
    let limit = fits
        .iter()
        .find(|m| m.variant != crate::bench::FLOOR)
        .and_then(|m| m.limit);
    let (lo, hi) = fits
        .iter()
        .flat_map(|m| m.points.iter().map(|p| p.1))
        .chain(limit)
        .filter(|x| *x > 0.0)
        .fold((f64::MAX, 1.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 560)).into_drawing_area();
        let mut chart = crate::bench::canvas::clients_chart(
            &root,
            &title,
            1.0..max_clients,
            (lo / 2.0).max(1.0)..hi * 2.0,
        )?;
        if let Some(limit) = limit {
            chart
                .draw_series(DashedLineSeries::new(
                    [(1.0, limit), (max_clients, limit)],
                    8,
                    4,
                    BLACK.stroke_width(1),
                ))
                .map_err(err)?
                .label("the machine's limit: server CPUs / (fib(n) + socket calls)")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
        }
        for (i, m) in fits.iter().enumerate() {
            let color = crate::bench::canvas::series_color(i + 1);
            let mut points = m.points.clone();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.1 > 0.0)
                        .map(|&p| Circle::new(p, 3, color.filled())),
                )
                .map_err(err)?
                .label(m.variant.clone())
                .legend(move |(x, y)| Circle::new((x + 9, y), 3, color.filled()));
            if let Ok(f) = &m.fit {
                let curve: Vec<(f64, f64)> = (0..=60)
                    .map(|k| {
                        let c = max_clients.powf(k as f64 / 60.0);
                        (c, f.usl.throughput(c).max(1.0))
                    })
                    .collect();
                match f.fits() {
                    true => {
                        chart
                            .draw_series(LineSeries::new(curve, color.stroke_width(2)))
                            .map_err(err)?;
                    }
                    false => {
                        chart
                            .draw_series(DashedLineSeries::new(curve, 2, 4, color.stroke_width(1)))
                            .map_err(err)?;
                    }
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 11))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    let file = match regime.is_empty() {
        true => format!("scale-n{n}.svg"),
        false => format!("scale-n{n}-{regime}.svg"),
    };
    Ok(Plot { file, title, svg })
}

#[cfg(test)]
mod tests;
