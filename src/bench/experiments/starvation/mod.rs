//! Seed 004's experiment, once per model: a client hammers a light request while one
//! heavy request, sized to take about a second on this machine (calibrated at start),
//! arrives on another connection. How much light throughput a model keeps meanwhile is
//! the measure of its isolation; a single-threaded loop keeps none.
//!
//! Its table: light throughput before and during the heavy request, and the ratio
//! ("kept"). Its plot: the light replies per 100 ms over the run, one panel per model,
//! the heavy request shaded. Its findings: seed 004's two claims, and seed 000's 总结 5
//! (coroutines block on CPU-bound work), which needs a model's "kept".

pub mod settings;

use std::io;

use plotters::prelude::*;

use super::{Experiment, Row, Run};
use crate::bench::canvas::{PlotError, err, short};
use crate::bench::measure::heavy::{calibrate_heavy_n, calibrate_remote, heavy_among_light};
use crate::bench::predict::THRESHOLD;
use crate::bench::results::{BenchReport, Finding, Plot, Table, thousands};
use crate::bench::rules::{
    all, decide, finding, kept_interval, missing, ratio, ratio_ci, rps, undecided_why, verdict,
    versus,
};
use crate::bench::scenario::Scenario;
use crate::stats::Interval;

/// Seed 004's experiment; see the module docs.
pub struct Starvation;

/// The rows the experiment runs on: every model, and every fib target (a PING target
/// has no heavy request to send).
fn starves(row: &Row) -> bool {
    match row {
        Row::Floor => false,
        Row::Model(_) => true,
        Row::Target(t) => !t.ping,
    }
}

impl Experiment for Starvation {
    fn name(&self) -> &'static str {
        "starvation (seed 004)"
    }

    fn steps(&self, scenario: &Scenario, rows: &[Row]) -> usize {
        match scenario.starvation {
            Some(_) => rows.iter().filter(|r| starves(r)).count(),
            None => 0,
        }
    }

    fn measure(&self, run: &mut Run<'_>, report: &mut BenchReport) -> io::Result<()> {
        let (scenario, rows) = (run.scenario, run.rows);
        let Some(experiment) = &scenario.starvation else {
            return Ok(());
        };
        let heavy_n = calibrate_heavy_n(experiment.heavy_seconds);
        for row in rows.iter().filter(|r| starves(r)) {
            if run.interrupted() {
                break;
            }
            let label = row.label();
            let heavy_n = match row {
                Row::Target(t) => match calibrate_remote(t.addr, experiment.heavy_seconds) {
                    Ok(n) => n,
                    Err(e) => {
                        report.notes.push(format!(
                            "`{label}` did not answer when its heavy request was being sized ({e}); it has no starvation row."
                        ));
                        continue;
                    }
                },
                _ => heavy_n,
            };
            let served = run.serve(row)?;
            run.step(&format!(
                "starvation: {label}, fib({heavy_n}) among fib({})",
                experiment.light_n
            ));
            let mut result = heavy_among_light(run, served.addr, &label, experiment, heavy_n)?;
            result.regime = run.regime.name.clone();
            report.starvation.push(result);
            served.stop();
        }
        Ok(())
    }

    fn tables(&self, r: &BenchReport) -> (Vec<Table>, Vec<String>) {
        (starvation_table(r), Vec::new())
    }

    fn plots(&self, r: &BenchReport) -> Result<Vec<Plot>, PlotError> {
        match r.starvation.is_empty() {
            true => Ok(Vec::new()),
            false => Ok(vec![timeline(r)?]),
        }
    }

    fn findings(&self, r: &BenchReport) -> Vec<Finding> {
        let mut out = Vec::new();
        let (source, claim) = (
            "seed 000, 总结 5",
            "coroutines can replace threads for I/O-bound work, but block on CPU-bound work",
        );
        out.push(match (versus(r, ("coroutines", 1, 2), ("threads", 1, 2)), kept_interval(r, "coroutines")) {
            (Some(d), Some(k)) => {
                let (replaces, blocks) = (|x: f64| x >= 0.5, |x: f64| x < 0.1);
                let decided = all(&[decide(&d.ratio, replaces), decide(&k, blocks)]);
                finding(
                    source,
                    claim,
                    verdict(decided),
                    format!(
                        "n=1, 2 clients: coroutines {:.0} req/s vs threads {:.0} ({}x){}; during one heavy request coroutines kept {}{} of its light throughput",
                        rps(r, "coroutines", 1, 2).unwrap_or(0.0),
                        rps(r, "threads", 1, 2).unwrap_or(0.0),
                        ratio_ci(&d.ratio),
                        undecided_why(&d.ratio, replaces),
                        ratio_ci(&k),
                        undecided_why(&k, blocks),
                    ),
                )
                .reading(&[("coroutines", 1, 2), ("threads", 1, 2)])
            }
            _ => missing(source, claim, "coroutines and threads at n=1 with 2 clients, and the starvation experiment"),
        });

        let (source, claim) = (
            "seed 004",
            "one heavy request collapses a server's light throughput (~100x)",
        );
        let loops = [
            "tokio-current",
            "nonblocking",
            "select",
            "epoll",
            "coroutines",
        ];
        let collapse = |x: f64| x < 0.05;
        let measured: Vec<(&str, Interval)> = loops
            .iter()
            .filter_map(|m| kept_interval(r, m).map(|k| (*m, k)))
            .collect();
        out.push(match (measured.is_empty(), kept_interval(r, "threads")) {
            (false, Some(threads)) => {
                let decided = all(&measured.iter().map(|(_, k)| decide(k, collapse)).collect::<Vec<_>>());
                finding(
                    source,
                    claim,
                    verdict(decided),
                    format!(
                        "light throughput kept (during / before) while the heavy request ran: single-thread loops {}; threads {} (no GIL: the other core serves)",
                        measured
                            .iter()
                            .map(|(m, k)| format!("{m} {}{}", ratio_ci(k), undecided_why(k, collapse)))
                            .collect::<Vec<_>>()
                            .join(", "),
                        ratio_ci(&threads)
                    ),
                )
            }
            _ => missing(source, claim, "the starvation experiment for threads and the single-thread loops"),
        });

        let (source, claim) = (
            "seed 004",
            "a process pool removes the collapse, at about 10x the throughput cost",
        );
        out.push(match (kept_interval(r, "procpool"), versus(r, ("threads", 1, 1), ("procpool", 1, 1))) {
            (Some(k), Some(cost)) => {
                let (removes, costly) = (|x: f64| x >= 0.5, |x: f64| x >= 5.0);
                let decided = all(&[decide(&k, removes), decide(&cost.ratio, costly)]);
                finding(
                    source,
                    claim,
                    verdict(decided),
                    format!(
                        "procpool kept {}{} of its light throughput during the heavy request; its n=1 throughput is 1/{} of threads'{} ({:.0} vs {:.0} req/s)",
                        ratio_ci(&k),
                        undecided_why(&k, removes),
                        ratio_ci(&cost.ratio),
                        undecided_why(&cost.ratio, costly),
                        rps(r, "procpool", 1, 1).unwrap_or(0.0),
                        rps(r, "threads", 1, 1).unwrap_or(0.0),
                    ),
                )
                .reading(&[("procpool", 1, 1), ("threads", 1, 1)])
            }
            _ => missing(source, claim, "procpool and threads at n=1 with 1 client, and the starvation experiment"),
        });
        out
    }
}

fn starvation_table(r: &BenchReport) -> Vec<Table> {
    let predicted = r.calibration.is_some();
    if let Some(first) = r.starvation.first() {
        let heavy: Vec<u32> = r.starvation.iter().map(|s| s.heavy_n).collect();
        let sized = if heavy.iter().all(|&h| h == first.heavy_n) {
            format!("fib({})", first.heavy_n)
        } else {
            "fib(n), n sized per server to take about as long".to_string()
        };
        return vec![Table {
            title: "One heavy request among light ones (seed 004)".into(),
            intro: format!(
                "A closed loop of light requests on one connection; {:.1} s in, one {sized} on another connection. \"kept\": light throughput while the heavy request was in the server, over light throughput before it.",
                first.heavy_at_s
            ),
            header: {
                let mut header = vec![
                    "model",
                    "heavy n",
                    "light req/s before",
                    "light req/s during",
                    "kept",
                    "heavy request took",
                ];
                if predicted {
                    header.extend(["predicted kept", "why"]);
                }
                header.into_iter().map(String::from).collect()
            },
            left: 1,
            text_last: predicted,
            rows: r
                .starvation
                .iter()
                .map(|s| {
                    let mut row = vec![
                        format!(
                            "`{}`{}",
                            s.variant,
                            if r.is_peer(&s.variant) { " †" } else { "" }
                        ),
                        s.heavy_n.to_string(),
                        thousands(s.light_before_rps),
                        thousands(s.light_during_rps),
                        kept_interval(r, &s.variant).map_or(ratio(s.kept), |k| ratio_ci(&k)),
                        s.heavy_s
                            .map_or("no reply in the run".to_string(), |t| format!("{t:.2} s")),
                    ];
                    if predicted {
                        match crate::bench::predict::kept(r, s) {
                            Some(k) => {
                                let near = |x: f64| (s.kept - x).abs() <= THRESHOLD * x.max(0.1);
                                let off = !near(k.ratio) && !k.or.is_some_and(near);
                                let predicted = match k.or {
                                    Some(or) => format!("{} or {}", ratio(k.ratio), ratio(or)),
                                    None => ratio(k.ratio),
                                };
                                row.push(format!("{predicted}{}", if off { " ‡" } else { "" }));
                                row.push(match off {
                                    true => format!("off the prediction: {}", k.why),
                                    false => k.why,
                                });
                            }
                            None => {
                                row.extend([String::new(), "a peer: no cost model".to_string()])
                            }
                        }
                    }
                    row
                })
                .collect(),
        }];
    }
    Vec::new()
}

/// Seed 004's timeline: light replies per second over the run, one panel per model,
/// the heavy request's time in the server shaded red.
fn timeline(r: &BenchReport) -> Result<Plot, PlotError> {
    const COLUMNS: usize = 3;
    let title = format!(
        "One heavy request among light ones: light replies per second (heavy request shaded){}",
        crate::bench::canvas::regime_suffix(r)
    );
    let panels = r.starvation.len();
    let rows = panels.div_ceil(COLUMNS);
    let (panel_w, panel_h) = (320u32, 190u32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(
            &mut svg,
            (panel_w * COLUMNS as u32, 40 + panel_h * rows as u32),
        )
        .into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(&title, ("sans-serif", 17)).map_err(err)?;
        let areas = root.split_evenly((rows, COLUMNS));
        for (s, area) in r.starvation.iter().zip(areas) {
            let length = s.timeline.len() as f64 / 10.0;
            let rates: Vec<(f64, f64)> = s
                .timeline
                .iter()
                .enumerate()
                .map(|(i, &count)| (i as f64 / 10.0 + 0.05, count as f64 * 10.0))
                .collect();
            let top = rates.iter().map(|p| p.1).fold(1.0, f64::max) * 1.15;
            let mut chart = ChartBuilder::on(&area)
                .caption(
                    format!("{}: kept {:.2}", s.variant, s.kept),
                    ("sans-serif", 13),
                )
                .margin(6)
                .x_label_area_size(22)
                .y_label_area_size(46)
                .build_cartesian_2d(0.0..length.max(0.1), 0.0..top)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_labels(6)
                .y_labels(4)
                .label_style(("sans-serif", 10))
                .x_label_formatter(&|x| format!("{x:.0} s"))
                .y_label_formatter(&|y| short(*y))
                .draw()
                .map_err(err)?;
            let heavy_end = s.heavy_s.map_or(length, |t| (s.heavy_at_s + t).min(length));
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [
                        (s.heavy_at_s, 0.0),
                        (heavy_end.max(s.heavy_at_s + 0.02), top),
                    ],
                    RED.mix(0.18).filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(LineSeries::new(rates, BLUE.stroke_width(1)))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(Plot {
        file: "starvation.svg".into(),
        title,
        svg,
    })
}
