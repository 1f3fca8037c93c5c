//! Seed 000's tables, on this machine: requests per second per model and client
//! count, for an I/O-bound (n=1) and a CPU-bound (n=20) request, each cell a closed
//! loop (or an open one at the scenario's rate) repeated and interleaved across models.
//!
//! ```text
//! for each repetition:                       (interleaved, so drift hits every model alike)
//!     for floor + each model + each target:
//!         start `fiblab serve --model M --port 0` as its own process (not a target's)
//!         for each workload n, each client count c:
//!             c connections, --warmup then --duration  (crate::load)
//!         stop it by PID (SIGTERM), never leaving it behind
//! then: median and spread of each cell over the repetitions (results::aggregate)
//! ```
//!
//! Its plots: throughput against clients per workload, and the latency distribution
//! per (n, clients), all repetitions merged. Its findings: seed 000's 总结 1-4 and 6.

mod findings;
pub mod race;
mod render;

use render::*;
use std::io;

use plotters::prelude::*;

use super::{Experiment, Row, Run};
use crate::bench::canvas::{
    PlotError, Series, WIDTH, draw_line, err, height_for, legend, log_ticks, regime_suffix,
    series_colors, short, spectrum, spectrum_label, titled, with_legend,
};
use crate::bench::predict::{Check, THRESHOLD, label, predict, score};
use crate::bench::results::{
    BenchReport, ClientUse, FLOOR, Finding, Plot, Sample, Table, Verdict, aggregate, plural,
    thousands,
};
use crate::bench::rules::{
    Ratio, all, decide, finding, missing, ratio, ratio_ci, rps, undecided_why, verdict, versus,
};
use crate::bench::scenario::Scenario;
use crate::load::mix::{Class, Mix};
use crate::load::{Hooks, LoadSpec};
use crate::server::Variant;

/// One repetition of `row`'s cells in the run's regime: a fresh server process, every
/// workload and client count (`only` those (n, clients) where given: the race's), the
/// samples added to `report`. False when the run was interrupted before the repetition
/// ended (its samples so far are kept).
fn repetition_of(
    run: &mut Run<'_>,
    report: &mut BenchReport,
    row: &Row,
    repetition: usize,
    only: Option<&[(u32, usize)]>,
) -> io::Result<bool> {
    let scenario = run.scenario;
    let label = row.label();
    // Room for the most clients a cell brings (an advice of 10,000 clients), so a
    // model's own limits show, not the server's default cap on connections.
    let most = scenario.clients.iter().max().copied().unwrap_or(1);
    let served = run.serve_with(row, |config| {
        config.max_conns = config.max_conns.max(most + 64);
    })?;
    for &n in &scenario.workloads {
        for &clients in &scenario.clients {
            if only.is_some_and(|cells| !cells.contains(&(n, clients))) {
                continue;
            }
            if run.interrupted() {
                served.stop();
                return Ok(false);
            }
            run.step(&format!(
                "{label} n={n} clients={clients} repetition {}{}",
                repetition + 1,
                match repetition < scenario.repetitions {
                    true => format!("/{}", scenario.repetitions),
                    false => " (racing)".to_string(),
                },
            ));
            let class = match served.ping {
                true => Class::text("PING", true),
                false => Class::fib(n, 1, true),
            };
            let mix = Mix::new(vec![class]).map_err(io::Error::other)?;
            let spec = LoadSpec {
                // Open loop: room for requests to queue when the server falls
                // behind, so the lateness shows in the latency, not in the schedule.
                pipeline: if scenario.rate.is_some() { 64 } else { 1 },
                rate: scenario.rate,
                protocol: served.protocol(),
                ..run.spec(served.addr, mix, clients)
            };
            let r = run.load(&spec, Hooks::default())?;
            let gone = format!("`{label}` stopped accepting connections");
            if r.requests_ok == 0
                && r.errors.connect > 0
                && !report.notes.iter().any(|n| n.starts_with(&gone))
            {
                report.notes.push(format!(
                    "{gone} from repetition {}, n={n}, {clients} clients on: its later cells are 0.",
                    repetition + 1
                ));
            }
            let class = r.classes.first();
            report.samples.push(Sample {
                regime: run.regime.name.clone(),
                variant: label.clone(),
                n,
                clients,
                repetition,
                throughput_rps: r.throughput_rps,
                p50_us: class.map_or(0, |c| c.latency_us.p50),
                p99_us: class.map_or(0, |c| c.latency_us.p99),
                per_connection: r.per_connection.clone(),
                errors: r.errors.total(),
                histogram: class.map(|c| c.histogram.clone()).unwrap_or_default(),
                // A spinning client is busy by design and burns CPU while it waits:
                // its cost says nothing of what a request costs it.
                client: r
                    .client
                    .cpu_us_per_request
                    .filter(|_| !spec.spin)
                    .map(|cpu| ClientUse {
                        cpu_us_per_request: cpu,
                        busiest: r.client.thread_busy.iter().copied().fold(0.0, f64::max),
                    }),
            });
        }
    }
    served.stop();
    Ok(true)
}

/// No cell is measured more often than this, whatever the race still asks: a cell that
/// sometimes serves nothing never narrows.
pub const MOST_REPETITIONS: usize = 30;

/// True when `variant` serves clients concurrently from a pool: a starved client of
/// such a model waited in its queue, it was not refused by design.
fn queues_clients(variant: &str) -> bool {
    crate::models::find(&Variant::split(variant).model)
        .is_some_and(|m| m.clients == crate::models::Clients::Concurrent)
}

/// Seed 000's tables; see the module docs.
pub struct SeedTables;

impl Experiment for SeedTables {
    fn name(&self) -> &'static str {
        "seed tables"
    }

    fn steps(&self, scenario: &Scenario, rows: &[Row]) -> usize {
        rows.len() * scenario.workloads.len() * scenario.clients.len() * scenario.repetitions
    }

    fn measure(&self, run: &mut Run<'_>, report: &mut BenchReport) -> io::Result<()> {
        let (scenario, rows) = (run.scenario, run.rows);
        for repetition in 0..scenario.repetitions {
            for row in rows {
                let done = repetition_of(run, report, row, repetition, None)?;
                report.cells = aggregate(&report.samples);
                if !done {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn tables(&self, r: &BenchReport) -> (Vec<Table>, Vec<String>) {
        render::tables(r)
    }

    fn plots(&self, r: &BenchReport) -> Result<Vec<Plot>, PlotError> {
        let mut plots = Vec::new();
        let (workloads, clients) = axes(r);
        for &n in &workloads {
            plots.push(match clients.len() {
                // Two points per row make no line worth following: bars, by model.
                0..=2 => throughput_bars(r, n, &clients)?,
                _ => throughput(r, n, &clients)?,
            });
            for &c in &clients {
                if let Some(plot) = latency_cdf(r, n, c)? {
                    plots.push(plot);
                }
            }
        }
        Ok(plots)
    }

    fn findings(&self, r: &BenchReport) -> Vec<Finding> {
        findings::findings(r)
    }
}
