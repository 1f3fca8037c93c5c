//! Latency against offered load: each model's knee. The seeds measure closed loops, in
//! which a slow server slows its own load and never shows its tail; a user choosing an
//! architecture asks instead what latency their request rate will see, and where it
//! falls apart. An open loop answers that (wrk2's method: requests sent on a schedule,
//! latency counted from when each was due, so a stall is not hidden by coordinated
//! omission), swept over offered rates.
//!
//! ```text
//! for each row (model or --target peer) and workload (n=1, n=20, a heavy-tailed mix):
//!   rate = start: step(rate) ─► sustained? ─► rate x factor ─► ... ─► first step that is not
//!   (a step failed by its tail alone is measured once more; a tail while the server was
//!   under half a CPU busy does not end the climb; a first rate that fails otherwise
//!   is followed by lower ones, twice at most)
//!   then `refine` steps between the last sustained rate and the first that was not
//!   a step where the load generator itself was saturated ends the sweep, said as such
//! ```
//!
//! Each step also reads the server's CPU time and its threads' sleeps (voluntary
//! context switches) from `/proc` at the edges of its measured window, per request: the
//! measured reason for a tail. On a small VM the worst tail is often at the *lowest*
//! rates: every reply wakes a sleeping thread on an idle vCPU (one sleep per request),
//! and the host takes its time; at higher rates the loop finds the next request
//! waiting and the tail shrinks. Such a step is kept and reported below the knee, and
//! the climb goes on.
//!
//! The floor (`threads` answering from a table: no work) is swept first. It is the
//! machine's own tail with this client: where a model breaks at a rate the floor did
//! not sustain either, the table says the machine broke, not the model.
//!
//! A step is *sustained* when the achieved rate is at least 99% of the offered one, no
//! more than 0.1% of requests failed, and p99 is under the workload's SLO. The knee is
//! the highest sustained rate. The tables say where and why each sweep broke; a
//! computed ranking per workload adds the other measured facts that decide a choice.

mod distribution;
mod render;
mod step;
mod sweep;

pub mod records;
pub mod settings;

use distribution::*;
pub use render::*;
use step::*;
pub use sweep::*;

use std::io;
use std::time::Duration;

use plotters::prelude::*;

use super::{Experiment, Row, Run, Served};
use crate::bench::canvas::{
    PlotError, Series, WIDTH, err, height_for, legend, log_ticks, regime_suffix, short, titled,
    with_legend,
};
use crate::bench::results::{
    BenchReport, FLOOR, Finding, KneeRecords, KneeStep, KneeSweep, KneeWorkloadRecord, Plot,
    RequestCost, StepVerdict, Table, merged_histogram, thousands,
};
use crate::bench::scenario::{self, Scenario};
use crate::load::mix::{Class, Mix};
use crate::load::{LoadSpec, Stop};

/// The knee experiment; see the module docs.
pub struct Knee;

/// `1` -> `n=1`, `1:99,30:1` -> `mix 1:99,30:1`.
fn workload_label(mix: &str) -> String {
    match mix.contains(',') || mix.contains(':') {
        true => format!("mix {mix}"),
        false => format!("n={mix}"),
    }
}

/// The rows a sweep runs: the floor (`threads` answering from a table: the machine's
/// and the client's own limit, the reference every other sweep is read against), the
/// knee's own models, then the peers.
fn subjects(k: &scenario::Knee, rows: &[Row]) -> Vec<Row> {
    std::iter::once(Row::Floor)
        .chain(k.models.iter().cloned().map(Row::Model))
        .chain(rows.iter().filter(|r| matches!(r, Row::Target(_))).cloned())
        .collect()
}

/// A PING peer answers only the I/O-bound workload.
fn serves(subject: &Row, mix: &str) -> bool {
    match subject {
        Row::Target(t) if t.ping => mix.trim() == "1",
        _ => true,
    }
}

/// One round: every row's sweep of every workload, each row on a server process of its
/// own. False when the run was interrupted.
fn measure_round(
    run: &mut Run<'_>,
    k: &scenario::Knee,
    round: usize,
    rounds: usize,
    records: &mut KneeRecords,
    only: Option<&[(String, String)]>,
) -> io::Result<bool> {
    let wanted = |row: &str, workload: &str| {
        only.is_none_or(|pairs| pairs.iter().any(|(r, w)| r == row && w == workload))
    };
    for subject in subjects(k, run.rows) {
        let label = subject.label();
        if !k
            .workloads
            .iter()
            .any(|w| wanted(&label, &workload_label(&w.mix)))
        {
            continue;
        }
        let served = run.serve(&subject)?;
        let label = served.label.clone();
        for w in k
            .workloads
            .iter()
            .filter(|w| serves(&subject, &w.mix) && wanted(&label, &workload_label(&w.mix)))
        {
            if run.interrupted() {
                served.stop();
                return Ok(false);
            }
            let workload = workload_label(&w.mix);
            run.step(&format!(
                "knee: {label}, {workload}, sweep {}/{rounds}",
                round + 1
            ));
            let mix = match served.ping {
                true => Mix::new(vec![Class::text("PING", true)]),
                false => Mix::parse_fib(&w.mix, true),
            }
            .map_err(io::Error::other)?;
            let slo_us = w.slo.as_micros() as u64;
            let (steps, ended) = sweep(Plan::of(k), |rate| {
                measure_step(run, k, &served, &mix, rate, slo_us)
            })?;
            records.sweeps.push(KneeSweep {
                regime: run.regime.name.clone(),
                row: label.clone(),
                workload,
                round,
                steps,
                ended,
                set_aside: false,
            });
        }
        served.stop();
    }
    Ok(true)
}

impl Experiment for Knee {
    fn name(&self) -> &'static str {
        "knee (latency against offered load)"
    }

    fn steps(&self, scenario: &Scenario, rows: &[Row]) -> usize {
        scenario.knee.as_ref().map_or(0, |k| {
            k.sweeps.max(1)
                * subjects(k, rows)
                    .iter()
                    .map(|s| k.workloads.iter().filter(|w| serves(s, &w.mix)).count())
                    .sum::<usize>()
        })
    }

    fn measure(&self, run: &mut Run<'_>, report: &mut BenchReport) -> io::Result<()> {
        let Some(k) = &run.scenario.knee else {
            return Ok(());
        };
        let records = report.knee.get_or_insert_with(|| KneeRecords {
            connections: k.connections,
            pipeline: k.pipeline,
            step_s: k.step.as_secs_f64(),
            tick_us: k.tick.as_secs_f64() * 1e6,
            workloads: k
                .workloads
                .iter()
                .map(|w| KneeWorkloadRecord {
                    label: workload_label(&w.mix),
                    mix: w.mix.clone(),
                    slo_us: w.slo.as_micros() as u64,
                })
                .collect(),
            sweeps: Vec::new(),
        });
        // Round by round, every row once per round: drift lands on every row alike, and
        // each sweep meets a server process of its own.
        let rounds = k.sweeps.max(1);
        for round in 0..rounds {
            if !measure_round(run, k, round, rounds, records, None)? {
                return Ok(());
            }
        }
        // A round in which every row fell at once is the machine's, not the models':
        // set aside and measured once more (its sweeps stay in the records).
        let regime = run.regime.name.clone();
        let in_regime: Vec<KneeSweep> = records
            .sweeps
            .iter()
            .filter(|s| s.regime == regime)
            .cloned()
            .collect();
        if let Some((round, effect)) = records::disturbed_round(&in_regime) {
            for s in records.sweeps.iter_mut() {
                if s.regime == regime && s.round == round {
                    s.set_aside = true;
                }
            }
            report.notes.push(format!(
                "Knee round {} of {rounds}{} set aside: in it every row's knee fell together, to a median {:.0}% of its other rounds (the machine moved, not the models), and it was measured again as round {}.",
                round + 1,
                match regime.is_empty() {
                    true => String::new(),
                    false => format!(" (regime `{regime}`)"),
                },
                effect * 100.0,
                rounds + 1
            ));
            let records = report.knee.as_mut().unwrap_or_else(|| unreachable!());
            run.add_steps(self.steps(run.scenario, run.rows) / rounds);
            if !measure_round(run, k, rounds, rounds + 1, records, None)? {
                return Ok(());
            }
        }
        // The race: more sweeps only where a workload's tier 1 is still open.
        let indifference = run.scenario.precision.unwrap_or(0.05);
        let mut raced = 0;
        for _ in 0..k.race {
            let records = report.knee.as_mut().unwrap_or_else(|| unreachable!());
            let view = KneeRecords {
                sweeps: records
                    .sweeps
                    .iter()
                    .filter(|s| s.regime == regime)
                    .cloned()
                    .collect(),
                ..records.clone()
            };
            let open = contenders(&view, indifference);
            if open.is_empty() {
                break;
            }
            let round = view.sweeps.iter().map(|s| s.round + 1).max().unwrap_or(0);
            run.add_steps(open.len());
            raced += open.len();
            if !measure_round(run, k, round, round + 1, records, Some(&open))? {
                return Ok(());
            }
        }
        if raced > 0 {
            report.notes.push(format!(
                "Knee race{}: {raced} more sweeps of the rows still in a tier 1 they might leave (slower than its leader by more than {:.0}%, not a lower bound) and of that leader, at most {} each.",
                match regime.is_empty() {
                    true => String::new(),
                    false => format!(" (regime `{regime}`)"),
                },
                indifference * 100.0,
                k.race
            ));
        }
        Ok(())
    }

    fn tables(&self, r: &BenchReport) -> (Vec<Table>, Vec<String>) {
        match &r.knee {
            Some(k) if !k.sweeps.is_empty() => (tables(r, k), Vec::new()),
            _ => (Vec::new(), Vec::new()),
        }
    }

    fn plots(&self, r: &BenchReport) -> Result<Vec<Plot>, PlotError> {
        match &r.knee {
            Some(k) if !k.sweeps.is_empty() => k
                .workloads
                .iter()
                .filter(|w| k.sweeps.iter().any(|s| s.workload == w.label))
                .enumerate()
                .map(|(i, w)| curve(r, k, w, i))
                .collect(),
            _ => Ok(Vec::new()),
        }
    }

    fn findings(&self, _r: &BenchReport) -> Vec<Finding> {
        // The knee answers "which model", not a seed's claim: its ranking is a table.
        Vec::new()
    }
}

#[cfg(test)]
pub(crate) mod tests;
