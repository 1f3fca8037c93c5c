//! `fiblab bench`: the seeds' tables, measured on this machine, for every model.
//!
//! ```text
//! scenario (+ --target peers) -> rows: floor, each model, each peer
//! calibrate the machine (crate::calibrate)
//! for each regime (shared; pinned-spinning: client busy-polling on CPU 0, server on the rest)
//!     for each experiment (seed tables, starvation):   experiments::EXPERIMENTS
//!         measure: start `fiblab serve` per row as its own process, load it, stop it by PID
//! report (results) -> predictions (predict) -> each experiment's tables, plots, findings
//!     (per regime, merged) -> export (md, html, json, svg)
//! ```
//!
//! `--target NAME=HOST:PORT` adds servers started by someone else (the seeds' Python
//! servers, the Go server: `scripts/seed-peers.sh`; redis with `/ping`) as rows of the
//! same tables, measured in the same interleaved loop; fiblab neither starts nor stops
//! them.
//!
//! The `floor` row is the `threads` model serving `--service lookup` (fib from a table,
//! no work): what this machine's loopback and a plain blocking server allow. Every
//! model's throughput is also shown as a ratio to it.
//!
//! The client runs in this process on its own threads; the server is a separate
//! process, so the two compete for the CPUs exactly as the seeds' perf2.py and server
//! did. Machine facts and pinning head every report.
//!
//! Layers, bottom up (each reads only those below it):
//!
//! - [`results`] — the records: samples, cells, each experiment's results, the report;
//! - [`scenario`] — what to run, as data; [`rules`] and [`canvas`] — the shapes of a
//!   finding and of a plot; [`predict`] — each cell's throughput from the calibration;
//! - [`experiments`] — one module per experiment (measure, tables, plots, findings);
//! - [`export`] — one renderer per format; this module — the runner.

pub mod canvas;
pub mod experiments;
pub mod export;
pub mod measure;
pub mod predict;
pub mod records;
pub mod results;
pub mod rules;
pub mod scenario;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use measure::Step;
pub use results::{BenchReport, FLOOR, Machine, Sample, StarvationResult, Target};

use experiments::EXPERIMENTS;
use measure::{Row, Run};
use scenario::Scenario;

/// The pool settings each of the scenario's models serves with, taken from the config
/// each regime starts it with ([`measure::server_config`]: pinned, its workers follow
/// the server's CPUs), so the report prints what ran. Where regimes differ, each line
/// names its regime.
fn settings(scenario: &Scenario, plans: &[scenario::RegimePlan]) -> Vec<String> {
    let mut variants: Vec<&crate::server::Variant> = Vec::new();
    let lists = [
        Some(&scenario.models),
        scenario.knee.as_ref().map(|k| &k.models),
        scenario.python.as_ref().map(|p| &p.models),
        scenario.connections.as_ref().map(|c| &c.models),
        scenario.waiting.as_ref().map(|w| &w.models),
    ];
    for v in lists.into_iter().flatten().flatten() {
        if !variants.contains(&v) {
            variants.push(v);
        }
    }
    settings_of(&variants, plans)
}

/// The settings line of a report read back: its rows' variants under its regimes, as
/// [`measure()`] starts them today. A report taken before the lines followed the pinned
/// CPUs printed the unpinned defaults; `--replot` prints what ran.
pub fn settings_of_report(r: &BenchReport) -> Vec<String> {
    let mut variants: Vec<crate::server::Variant> = Vec::new();
    // Every experiment's rows, not only the seed tables' cells (a knee report's models
    // are in its sweeps); rows that name no registry variant (the floor, a peer) are
    // not servers of fiblab's own.
    let names = r
        .cells
        .iter()
        .map(|c| c.variant.as_str())
        .chain(
            r.knee
                .iter()
                .flat_map(|k| k.sweeps.iter().map(|s| s.row.as_str())),
        )
        .chain(
            r.python
                .iter()
                .flat_map(|p| p.samples.iter().map(|s| s.row.as_str())),
        )
        .chain(
            r.connections
                .iter()
                .flat_map(|c| c.records.iter().map(|x| x.model.as_str())),
        )
        .chain(
            r.waiting
                .iter()
                .flat_map(|w| w.records.iter().map(|x| x.model.as_str())),
        );
    for name in names {
        if let Ok(v) = crate::models::parse_variant(name)
            && !variants.contains(&v)
        {
            variants.push(v);
        }
    }
    let refs: Vec<&crate::server::Variant> = variants.iter().collect();
    settings_of(&refs, &r.regimes)
}

fn settings_of(
    variants: &[&crate::server::Variant],
    plans: &[scenario::RegimePlan],
) -> Vec<String> {
    use crate::models::{Workers, find};
    let lines_for = |cpus: &[usize]| -> Vec<String> {
        variants
            .iter()
            .filter_map(|variant| {
                let model = find(&variant.model)?;
                let config =
                    measure::server_config(variant, crate::service::ServiceKind::Fib, cpus);
                let pooled = model.workers.used(variant.offload);
                let queue = matches!(model.workers, Workers::ThreadPoolExecutor) || variant.offload;
                pooled.then(|| match queue {
                    true => format!(
                        "`{variant}` {} workers, queue {}",
                        config.workers, config.queue
                    ),
                    false => format!("`{variant}` {} workers", config.workers),
                })
            })
            .collect()
    };
    let per_plan: Vec<(String, Vec<String>)> = match plans {
        [] => vec![(String::new(), lines_for(&[]))],
        plans => plans
            .iter()
            .map(|p| (p.name.clone(), lines_for(&p.server_cpus)))
            .collect(),
    };
    match per_plan.iter().all(|(_, l)| l == &per_plan[0].1) {
        true => per_plan
            .into_iter()
            .next()
            .map(|(_, l)| l)
            .unwrap_or_default(),
        false => per_plan
            .into_iter()
            .flat_map(|(regime, lines)| {
                lines
                    .into_iter()
                    .map(move |l| format!("{l} (regime `{regime}`)"))
            })
            .collect(),
    }
}

/// Runs every experiment of `scenario` against fiblab's models (started from `exe`)
/// and `targets`, and returns the report: the records, the machine, and the findings.
/// `progress` hears of each step; once `interrupt` is set, the experiments stop and the
/// report holds what was measured so far. `command` is recorded as the run's command.
///
/// # Errors
/// A server of fiblab's own cannot be started, or the load cannot run.
pub fn measure(
    scenario: &Scenario,
    targets: &[Target],
    exe: &Path,
    interrupt: Arc<AtomicBool>,
    progress: &mut dyn FnMut(Step<'_>),
    command: String,
) -> io::Result<BenchReport> {
    let rows = Row::all(scenario, targets);
    let (plans, skipped) = scenario.plans(&crate::calibrate::allowed_cpus());
    let mut report = BenchReport {
        scenario: scenario.name.clone(),
        about: scenario.about.clone(),
        date: results::today(),
        command,
        machine: Machine::detect(&plans),
        duration_s: scenario.duration.as_secs_f64(),
        warmup_s: scenario.warmup.as_secs_f64(),
        repetitions: scenario.repetitions,
        agents: scenario.agents,
        rate: scenario.rate,
        cells: Vec::new(),
        samples: Vec::new(),
        starvation: Vec::new(),
        findings: Vec::new(),
        peers: targets.to_vec(),
        notes: skipped,
        settings: settings(scenario, &plans),
        calibration: None,
        regimes: plans.clone(),
        python: None,
        connections: None,
        knee: None,
        waiting: None,
        scaleout: None,
        race: None,
    };
    let started = std::time::Instant::now();
    progress(Step {
        done: 0,
        total: 1,
        label: "calibrating the machine (round trips, wake-ups, pipes, fib)",
    });
    // Every n a cell computes: the seed tables' and the scale-out's.
    let mut timed = scenario.workloads.clone();
    timed.extend(
        scenario
            .scaleout
            .iter()
            .flat_map(|s| s.workloads.iter().copied()),
    );
    timed.sort_unstable();
    timed.dedup();
    report.calibration = Some(crate::calibrate::Calibration::measure(exe, &timed));
    let names: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
    let steps: usize = names
        .iter()
        .flat_map(|name| EXPERIMENTS.iter().map(move |e| (name, e)))
        .filter(|(name, e)| e.runs_in(scenario, name, &names))
        .map(|(_, e)| e.steps(scenario, &rows))
        .sum();
    let mut run = Run::new(scenario, &rows, exe, interrupt, progress, steps);
    run.regimes = names;
    for (i, plan) in plans.clone().into_iter().enumerate() {
        if i > 0
            && let Some(calibration) = &mut report.calibration
        {
            // The round trips drift with the host's load: measured again between
            // regimes and at the end, the predictions use the median of every run.
            calibration.measure_round_trips_again();
        }
        run.regime = plan;
        for experiment in EXPERIMENTS {
            if run.interrupted() {
                break;
            }
            experiment.measure(&mut run, &mut report)?;
        }
    }
    // The race: with a time budget or an indifference zone, the time left after the
    // interleaved rounds goes to the cells that decide the report's questions.
    if (scenario.precision.is_some() || scenario.time_budget.is_some()) && !run.interrupted() {
        let budget = scenario
            .time_budget
            .unwrap_or_else(|| scenario.estimate(targets.len()) * 2);
        experiments::seed_tables::race::race(
            &mut run,
            &mut report,
            &plans,
            scenario.precision.unwrap_or(0.0),
            started + budget,
        )?;
    }
    if !run.interrupted()
        && let Some(calibration) = &mut report.calibration
    {
        calibration.measure_round_trips_again();
    }
    report.findings = experiments::findings(&report);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_only_the_pools_in_use() {
        let quick = Scenario::parse(scenario::QUICK).unwrap();
        let lines = settings(&quick, &[]);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("`threadpool` ") && l.contains("queue 64")),
            "{lines:?}"
        );
        for unpooled in ["`threads` ", "`epoll` ", "`select` ", "`tokio-current` "] {
            assert!(!lines.iter().any(|l| l.starts_with(unpooled)), "{lines:?}");
        }
        // Issue 30: pinned to 3 CPUs, the pools run with workers for 3 CPUs, and the
        // report says so, whatever this machine's own count.
        let pinned = scenario::RegimePlan {
            name: "pinned".into(),
            server_cpus: vec![1, 2, 3],
            client_cpus: vec![0],
            spin: false,
        };
        let lines = settings(&quick, std::slice::from_ref(&pinned));
        let tokio = crate::models::find("tokio").unwrap().workers.default_for(3);
        assert!(
            lines
                .iter()
                .any(|l| l == &format!("`tokio` {tokio} workers")),
            "{lines:?}"
        );
        let epoll = crate::models::find("epoll").unwrap().workers;
        assert!(
            epoll.used(true) && !epoll.used(false),
            "epoll's pool is --offload's"
        );
    }
}
