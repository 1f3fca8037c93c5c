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

/// A load-generator thread busier than this (without `--spin`) may be the limit.
pub const CLIENT_BUSY: f64 = 0.9;
/// Share of a step's requests that may fail and the step still count as sustained.
pub const FAILED_SHARE: f64 = 0.001;
/// Share of the offered rate a sustained step achieves.
pub const ACHIEVED_SHARE: f64 = 0.99;
/// Lower rates tried when the first step is not sustained.
const DOWN_STEPS: usize = 2;
/// A server busy for less than this share of one CPU in a step is lightly loaded: a
/// tail there is the machine waking it (each request wakes a sleeping thread, and on a
/// VM an idle vCPU), not the server running out of capacity, so the climb goes on.
pub const LIGHT_LOAD: f64 = 0.5;

/// The server's busy share of one CPU in `s` (CPU per request x requests per second),
/// where it was measured.
pub fn server_busy(s: &KneeStep) -> Option<f64> {
    s.server.map(|c| c.cpu_us * s.achieved_rps / 1e6)
}

/// The step failed by its tail alone while the server was lightly loaded.
fn idle_tail(s: &KneeStep) -> bool {
    s.verdict == StepVerdict::Tail && server_busy(s).is_some_and(|busy| busy < LIGHT_LOAD)
}

/// How a sweep runs: its rates and when it stops.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub start: f64,
    pub factor: f64,
    pub refine: usize,
    pub max: f64,
}

impl Plan {
    fn of(k: &scenario::Knee) -> Plan {
        Plan {
            start: k.start_rate,
            factor: k.factor,
            refine: k.refine,
            max: k.max_rate,
        }
    }
}

/// Runs a sweep: `step(rate)` measures one offered rate. Returns the steps in order and
/// why the sweep ended.
///
/// # Errors
/// A step's error, as it came.
pub fn sweep(
    plan: Plan,
    mut step: impl FnMut(f64) -> io::Result<KneeStep>,
) -> io::Result<(Vec<KneeStep>, String)> {
    let mut steps: Vec<KneeStep> = Vec::new();
    let client_limit = |s: &KneeStep| {
        format!(
            "the load generator was saturated at {} req/s offered (a thread {:.0}% busy): the server's knee is above what this client can show",
            thousands(s.offered_rps),
            s.client_busy * 100.0
        )
    };
    // A step whose only fault is its tail is measured once more: on a small VM a
    // lightly loaded machine has the worse tail (idle CPUs to wake, the host's own
    // scheduling), and one stall in a second is not the knee. It fails only if the
    // second measurement fails too; both are kept. Falling behind, failing requests or
    // a saturated client count at once.
    let mut measure = |rate: f64, steps: &mut Vec<KneeStep>| -> io::Result<StepVerdict> {
        let first = step(rate)?;
        let verdict = first.verdict;
        steps.push(first);
        if verdict != StepVerdict::Tail {
            return Ok(verdict);
        }
        let again = step(rate)?;
        let verdict = again.verdict;
        steps.push(again);
        Ok(verdict)
    };
    // Up from the start.
    let mut rate = plan.start;
    let mut good: Option<f64> = None;
    loop {
        match measure(rate, &mut steps)? {
            StepVerdict::Sustained => {
                good = Some(rate);
                if rate * plan.factor > plan.max {
                    return Ok((
                        steps,
                        format!("sustained the sweep's top rate, {} req/s", thousands(rate)),
                    ));
                }
                rate *= plan.factor;
            }
            StepVerdict::ClientLimit => {
                let why = client_limit(steps.last().unwrap_or_else(|| unreachable!()));
                return Ok((steps, why));
            }
            // A tail while the server idles: the machine's wake-ups, not the knee.
            StepVerdict::Tail
                if steps.last().is_some_and(idle_tail) && rate * plan.factor <= plan.max =>
            {
                rate *= plan.factor;
            }
            _ => break,
        }
    }
    // Not even the start: lower, so a slow server still gets a knee (not where the
    // start failed only by an idle server's tail: lower rates are idler still).
    let idle_start = steps
        .iter()
        .find(|s| s.offered_rps >= plan.start)
        .is_some_and(idle_tail);
    if good.is_none() && !idle_start {
        let mut rate = plan.start;
        for _ in 0..DOWN_STEPS {
            rate /= plan.factor;
            if measure(rate, &mut steps)? == StepVerdict::Sustained {
                good = Some(rate);
                break;
            }
        }
    }
    // Between the knee and the first rate above it that was not sustained.
    let bad_above = |steps: &[KneeStep], good: f64| {
        steps
            .iter()
            .filter(|s| s.verdict != StepVerdict::Sustained && s.offered_rps > good)
            .map(|s| s.offered_rps)
            .fold(f64::MAX, f64::min)
    };
    if let Some(mut low) = good {
        let mut high = bad_above(&steps, low);
        for _ in 0..plan.refine {
            if high == f64::MAX {
                break;
            }
            let mid = (low * high).sqrt();
            match measure(mid, &mut steps)? {
                StepVerdict::Sustained => low = mid,
                StepVerdict::ClientLimit => {
                    let why = client_limit(steps.last().unwrap_or_else(|| unreachable!()));
                    return Ok((steps, why));
                }
                _ => high = mid,
            }
        }
    }
    let knee = steps
        .iter()
        .filter(|s| s.verdict == StepVerdict::Sustained)
        .map(|s| s.offered_rps)
        .fold(0.0, f64::max);
    let broke = steps
        .iter()
        .filter(|s| s.verdict != StepVerdict::Sustained && s.offered_rps > knee)
        .min_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps));
    let below: Vec<String> = steps
        .iter()
        .filter(|s| s.verdict != StepVerdict::Sustained && s.offered_rps < knee)
        .map(|s| format!("{} at {} req/s", detail(s), thousands(s.offered_rps)))
        .collect();
    let mut why = match broke {
        Some(s) => format!(
            "at {} req/s offered: {} ({})",
            thousands(s.offered_rps),
            s.verdict.label(),
            detail(s)
        ),
        None => "every step sustained".into(),
    };
    if !below.is_empty() {
        why.push_str(&format!(
            "; below the knee, not sustained: {}",
            below.join(", ")
        ));
        let idle: Vec<&KneeStep> = steps
            .iter()
            .filter(|s| s.offered_rps < knee && idle_tail(s))
            .collect();
        if !idle.is_empty() {
            let most = |f: fn(&KneeStep) -> f64| idle.iter().map(|s| f(s)).fold(0.0, f64::max);
            let least =
                |f: fn(&KneeStep) -> f64| idle.iter().map(|s| f(s)).fold(f64::INFINITY, f64::min);
            why.push_str(&format!(
                " (there the server was at most {:.0}% busy and slept {:.2}-{:.2} times per request: each reply waited for a thread, and on a VM an idle vCPU, to wake)",
                most(|s| server_busy(s).unwrap_or(0.0)) * 100.0,
                least(|s| s.server.map_or(0.0, |c| c.sleeps)),
                most(|s| s.server.map_or(0.0, |c| c.sleeps)),
            ));
        }
    }
    Ok((steps, why))
}

/// The figures behind a step's verdict, in words.
fn detail(s: &KneeStep) -> String {
    match s.verdict {
        StepVerdict::Tail => format!("p99 {} µs", thousands(s.p99_us as f64)),
        StepVerdict::Errors => format!(
            "{} failed, {} timed out",
            thousands(s.failed as f64),
            thousands(s.timeouts as f64)
        ),
        StepVerdict::Behind => format!(
            "served {} req/s, {:.0}% of it{}",
            thousands(s.achieved_rps),
            100.0 * s.achieved_rps / s.offered_rps.max(1.0),
            match s.missed {
                0 => String::new(),
                m => format!(
                    "; {} due but never sent, their connections full",
                    thousands(m as f64)
                ),
            }
        ),
        StepVerdict::ClientLimit => format!("a client thread {:.0}% busy", s.client_busy * 100.0),
        StepVerdict::Sustained => format!("p99 {} µs", thousands(s.p99_us as f64)),
    }
}

/// A step's verdict from its figures. The client's own saturation comes first: a
/// step the load generator could not drive says nothing about the server.
/// `failed` counts failed and timed-out requests; `missed`, requests that fell due but
/// could not be sent (their connection's pipeline full): the server not keeping up.
#[allow(
    clippy::too_many_arguments,
    reason = "one figure each, named at the call"
)]
pub fn judge(
    offered: f64,
    achieved: f64,
    requests: f64,
    failed: u64,
    missed: u64,
    p99_us: u64,
    client_busy: f64,
    slo_us: u64,
) -> StepVerdict {
    let share = |n: u64| n as f64 > FAILED_SHARE * requests.max(1.0);
    if client_busy >= CLIENT_BUSY {
        StepVerdict::ClientLimit
    } else if share(failed) {
        StepVerdict::Errors
    } else if achieved < ACHIEVED_SHARE * offered || share(missed) {
        StepVerdict::Behind
    } else if p99_us > slo_us {
        StepVerdict::Tail
    } else {
        StepVerdict::Sustained
    }
}

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

impl Experiment for Knee {
    fn name(&self) -> &'static str {
        "knee (latency against offered load)"
    }

    fn steps(&self, scenario: &Scenario, rows: &[Row]) -> usize {
        scenario.knee.as_ref().map_or(0, |k| {
            subjects(k, rows)
                .iter()
                .map(|s| k.workloads.iter().filter(|w| serves(s, &w.mix)).count())
                .sum()
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
        for subject in subjects(k, run.rows) {
            let served = run.serve(&subject)?;
            let label = served.label.clone();
            for w in k.workloads.iter().filter(|w| serves(&subject, &w.mix)) {
                if run.interrupted() {
                    return Ok(());
                }
                let workload = workload_label(&w.mix);
                run.step(&format!("knee: {label}, {workload}"));
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
                    steps,
                    ended,
                });
            }
            served.stop();
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

/// One step of the open loop at `rate`.
fn measure_step(
    run: &Run<'_>,
    k: &scenario::Knee,
    served: &Served,
    mix: &Mix,
    rate: f64,
    slo_us: u64,
) -> io::Result<KneeStep> {
    let spec = LoadSpec {
        pipeline: k.pipeline,
        rate: Some(rate),
        stop: Stop::After(k.step),
        warmup: k.warmup,
        timeout: Duration::from_secs(2),
        protocol: served.protocol(),
        ..run.spec(served.addr, mix.clone(), k.connections)
    };
    // The server's counters at the edges of the measured window, with the replies so
    // far: read while the step's connections are open.
    let measured = run.load_costed(&spec, served.pid)?;
    let server = measured
        .server
        .and_then(|(work, replies)| RequestCost::of(&work, replies));
    let report = measured.report;
    let merged = merged_histogram(report.classes.iter().map(|c| c.histogram.as_str()));
    let at = |q: f64| merged.as_ref().map_or(0, |h| h.value_at_quantile(q));
    let (p50_us, p99_us, p99_9_us) = (at(0.5), at(0.99), at(0.999));
    let e = &report.errors;
    let failed = e.connect + e.reset + e.err_reply + e.wrong;
    let requests = rate * report.measured_s;
    let client_busy = match spec.spin {
        // A spinning client is always busy; it says nothing of saturation.
        true => 0.0,
        false => report
            .client
            .thread_busy
            .iter()
            .copied()
            .fold(0.0, f64::max),
    };
    Ok(KneeStep {
        offered_rps: rate.round(),
        achieved_rps: report.throughput_rps.round(),
        p50_us,
        p99_us,
        p99_9_us,
        failed,
        timeouts: e.timeout,
        client_busy: (client_busy * 1000.0).round() / 1000.0,
        missed: report.missed,
        server,
        verdict: judge(
            rate,
            report.throughput_rps,
            requests,
            failed + e.timeout,
            report.missed,
            p99_us,
            client_busy,
            slo_us,
        ),
        histogram: merged
            .as_ref()
            .map_or(String::new(), crate::load::encode_histogram),
    })
}

fn rows_in_order(k: &KneeRecords) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    for s in &k.sweeps {
        if !rows.contains(&s.row) {
            rows.push(s.row.clone());
        }
    }
    rows
}

fn sweep_of<'a>(k: &'a KneeRecords, row: &str, workload: &str) -> Option<&'a KneeSweep> {
    k.sweeps
        .iter()
        .find(|s| s.row == row && s.workload == workload)
}

/// The rate `row` can serve at most on workload `w`, from the calibration and its cost
/// model: its closed-loop throughput with as many clients as the open loop has
/// connections. The knee lies below it: past the capacity a queue grows without
/// bound, and the tail crosses any SLO before that. `None` for a peer, a mix, or a
/// workload the calibration did not time.
pub fn capacity(
    r: &BenchReport,
    k: &KneeRecords,
    sweep: &KneeSweep,
    w: &KneeWorkloadRecord,
) -> Option<f64> {
    let n: u32 = w.mix.trim().parse().ok()?;
    let (model, costs) =
        crate::bench::predict::inputs_for(r, &sweep.regime, &sweep.row, n, k.connections)?;
    let p = model.predict(&costs);
    Some(p.rps.unwrap_or(p.high))
}

fn slo_text(w: &KneeWorkloadRecord) -> String {
    match w.slo_us {
        us if us >= 1000 && us % 1000 == 0 => format!("{} ms", us / 1000),
        us => format!("{us} µs"),
    }
}

/// The rows of one workload ranked by their knee (none last, in report order).
fn ranked<'a>(k: &'a KneeRecords, w: &KneeWorkloadRecord) -> Vec<&'a KneeSweep> {
    // The floor is the reference, not a choice.
    let mut sweeps: Vec<&KneeSweep> = rows_in_order(k)
        .iter()
        .filter(|row| *row != FLOOR)
        .filter_map(|row| sweep_of(k, row, &w.label))
        .collect();
    sweeps.sort_by(|a, b| {
        let rate = |s: &KneeSweep| s.knee().map_or(-1.0, |x| x.offered_rps);
        rate(b).total_cmp(&rate(a))
    });
    sweeps
}

fn tables(r: &BenchReport, k: &KneeRecords) -> Vec<Table> {
    let mut out = Vec::new();
    let peer = |row: &str| match r.is_peer(row) {
        true => " †",
        false => "",
    };
    for w in &k.workloads {
        let sweeps: Vec<&KneeSweep> = rows_in_order(k)
            .iter()
            .filter_map(|row| sweep_of(k, row, &w.label))
            .collect();
        if sweeps.is_empty() {
            continue;
        }
        out.push(Table {
            title: format!("{}: the highest rate sustained with p99 under {}", w.label, slo_text(w)),
            intro: format!(
                "An open loop of {} connections (at most {} in flight on each), each step {:.1} s, rates rising by a factor until a step is not sustained, then refined between. Sustained: at least {:.0}% of the offered rate served, at most {:.1}% of requests failed, p99 (from when each request was due, so a stall is not hidden) under {}. A step where the load generator was saturated ends the sweep as the client's limit, never as the server's knee; one that failed by its tail while the server was under {:.0}% of a CPU busy does not end the climb (the machine waking an idle server, said below the knee). Capacity predicted: the model's closed-loop throughput with {} clients from the calibration and its cost formula (docs/MODELS.md); the knee lies below it (‡ where it does not), and knee / capacity is how much of it the model can use before its tail crosses the SLO. Server per request: what the server's processes and threads spent at the knee step, read from /proc at the edges of its measured window and divided by the replies between (CPU time; sleeps, the times a thread blocked and had to be woken, each a wake-up that costs a VM tens of µs; preemptions).",
                k.connections,
                crate::bench::results::plural(k.pipeline, "request"),
                k.step_s,
                ACHIEVED_SHARE * 100.0,
                FAILED_SHARE * 100.0,
                slo_text(w),
                LIGHT_LOAD * 100.0,
                k.connections
            ) + &floor_noise(k, &w.label).map_or(String::new(), |n| format!(" {n}")),
            header: [
                "model",
                "sustained req/s",
                "p50 µs there",
                "p99 µs there",
                "p99.9 µs there",
                "capacity predicted, req/s",
                "knee / capacity",
                "server per request there",
                "steps",
                "where and why it broke",
            ]
            .map(String::from)
            .to_vec(),
            left: 1,
            text_last: true,
            rows: sweeps
                .iter()
                .map(|s| {
                    let knee = s.knee();
                    let figure = |f: fn(&KneeStep) -> f64| {
                        knee.map_or("-".to_string(), |x| thousands(f(x)))
                    };
                    let capacity = capacity(r, k, s, w);
                    let share = match (knee, capacity) {
                        (Some(x), Some(c)) if c > 0.0 => {
                            let share = x.offered_rps / c;
                            // Above the capacity (widened by the threshold) the rule fails.
                            let off = share > 1.0 + crate::bench::predict::THRESHOLD;
                            format!("{share:.2}{}", if off { " ‡" } else { "" })
                        }
                        _ => "-".into(),
                    };
                    let mut ended = s.ended.clone();
                    if let Some(why) = machine_share(k, s) {
                        ended.push_str(&format!("; {why}"));
                    }
                    vec![
                        format!("`{}`{}", s.row, peer(&s.row)),
                        knee.map_or("none".to_string(), |x| thousands(x.offered_rps)),
                        figure(|x| x.p50_us as f64),
                        figure(|x| x.p99_us as f64),
                        figure(|x| x.p99_9_us as f64),
                        capacity.map_or("-".into(), thousands),
                        share,
                        knee.and_then(|x| x.server)
                            .map_or("-".into(), |c| c.describe()),
                        s.steps.len().to_string(),
                        ended,
                    ]
                })
                .collect(),
        });
    }
    out.extend(ranking(r, k));
    out
}

/// Where `sweep` broke at a rate the floor (no work, only the loopback, the client and
/// the machine) did not sustain either: the machine's tail, not the model's. `None` for
/// the floor itself, where the floor sustained that rate, or where the load generator
/// ended the sweep.
pub fn machine_share(k: &KneeRecords, sweep: &KneeSweep) -> Option<String> {
    if sweep.row == FLOOR {
        return None;
    }
    let floor = sweep_of(k, FLOOR, &sweep.workload)?;
    // A sweep the client ended says nothing of the machine's tail.
    let broke = sweep
        .broke()
        .filter(|b| b.verdict != StepVerdict::ClientLimit)?;
    // The floor's verdict at the nearest rate it tried at or below the break.
    let near = floor
        .steps
        .iter()
        .filter(|s| s.offered_rps <= broke.offered_rps * 1.001)
        .max_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps))?;
    (near.verdict != StepVerdict::Sustained).then(|| {
        format!(
            "the floor failed there too ({} at {} req/s): the machine's tail, not the model's",
            detail(near),
            thousands(near.offered_rps)
        )
    })
}

/// What the floor's own sweep says of this machine on workload `workload`: the rates
/// below its knee where even it (no work at all) missed the SLO. On a small VM a lightly
/// loaded machine has the worse tail (idle CPUs to wake, the host's own scheduling), so
/// a model's knee below the floor's may be the machine's, not the model's. `None` when
/// the floor sustained every rate up to its knee.
pub fn floor_noise(k: &KneeRecords, workload: &str) -> Option<String> {
    let floor = sweep_of(k, FLOOR, workload)?;
    let knee = floor.knee()?.offered_rps;
    let missed: Vec<String> = floor
        .steps
        .iter()
        .filter(|s| s.verdict != StepVerdict::Sustained && s.offered_rps < knee)
        .map(|s| format!("{} at {} req/s", detail(s), thousands(s.offered_rps)))
        .collect();
    (!missed.is_empty()).then(|| {
        format!(
            "On this machine the floor itself (no work) missed the SLO below its own knee of {} req/s ({}): a p99 above the SLO at such rates is the machine's tail as much as the model's, and a knee below the floor's may be the machine's.",
            thousands(knee),
            missed.join(", ")
        )
    })
}

/// "Which model for which workload": each workload's rows ranked by their knee, with
/// what else this report measured of them, and the best fiblab model against each peer.
fn ranking(r: &BenchReport, k: &KneeRecords) -> Option<Table> {
    let starvation = !r.starvation.is_empty();
    let connections = r
        .connections
        .as_ref()
        .is_some_and(|c| !c.records.is_empty());
    let mut header = vec![
        "workload",
        "rank",
        "model",
        "sustained req/s (knee table)",
        "p99 µs there",
        "server CPU µs per request there",
    ];
    if starvation {
        header.push("light throughput kept during a heavy request (seed 004 table)");
    }
    if connections {
        header.push("idle connections held, KiB each (connections tables)");
    }
    let mut rows = Vec::new();
    let mut versus = Vec::new();
    for w in &k.workloads {
        let ranked = ranked(k, w);
        for (i, s) in ranked.iter().enumerate() {
            let knee = s.knee();
            let mut row = vec![
                w.label.clone(),
                match knee {
                    Some(_) => (i + 1).to_string(),
                    None => "-".into(),
                },
                format!("`{}`{}", s.row, if r.is_peer(&s.row) { " †" } else { "" }),
                knee.map_or("none".into(), |x| thousands(x.offered_rps)),
                knee.map_or("-".into(), |x| thousands(x.p99_us as f64)),
                knee.and_then(|x| x.server)
                    .map_or("-".into(), |c| format!("{:.1}", c.cpu_us)),
            ];
            if starvation {
                row.push(
                    r.starvation
                        .iter()
                        .find(|x| x.variant == s.row)
                        .map_or("-".into(), |x| format!("{:.2}", x.kept)),
                );
            }
            if connections {
                row.push(
                    r.connections
                        .as_ref()
                        .and_then(|c| {
                            c.records
                                .iter()
                                .filter(|x| x.row == s.row && x.held > 0)
                                .max_by_key(|x| x.held)
                        })
                        .map_or("-".into(), |x| {
                            format!(
                                "{}{}",
                                thousands(x.held as f64),
                                x.rss_kib
                                    .map_or(String::new(), |kib| format!(", {kib:.2} KiB"))
                            )
                        }),
                );
            }
            rows.push(row);
        }
        let best = ranked
            .iter()
            .find(|s| !r.is_peer(&s.row) && s.knee().is_some());
        for peer in ranked.iter().filter(|s| r.is_peer(&s.row)) {
            if let (Some(best), Some(theirs)) = (best, peer.knee()) {
                let ours = best.knee().map_or(0.0, |x| x.offered_rps);
                let ratio = ours / theirs.offered_rps.max(1.0);
                versus.push(format!(
                    "{}: fiblab's best, `{}`, sustains {} req/s with p99 under {}; `{}` {} req/s: fiblab {} ({:.2}x){}",
                    w.label,
                    best.row,
                    thousands(ours),
                    slo_text(w),
                    peer.row,
                    thousands(theirs.offered_rps),
                    match ratio >= 1.0 {
                        true => "ahead",
                        false => "behind",
                    },
                    ratio,
                    cost_versus(best, peer),
                ));
            }
        }
    }
    if rows.is_empty() {
        return None;
    }
    let mut intro = "Each workload's models and peers (not the floor, the reference) ranked by the highest rate they sustain with p99 under its SLO (a row that sustains none is not ranked), beside what else this report measured of them; every figure is a cell of the table named in its column. The rank answers \"which model for this request rate\"; the other columns what it costs: how much a heavy request starves its neighbours, and what idle clients cost.".to_string();
    if !versus.is_empty() {
        intro.push_str(&format!(
            " Against the peers (same client, same run): {}.",
            versus.join("; ")
        ));
    }
    Some(Table {
        title: "Which model for which workload".into(),
        intro,
        header: header.into_iter().map(String::from).collect(),
        left: 3,
        text_last: false,
        rows,
    })
}

/// "; per request, `epoll` at 32,000 req/s against `redis` at 32,000: CPU 4.1 vs 9.0 µs,
/// ..." from each sweep's highest sustained step at or below the lower of the two
/// knees, so both costs are read at about one load (empty where either lacks one).
fn cost_versus(ours: &KneeSweep, theirs: &KneeSweep) -> String {
    let (Some(a), Some(b)) = (ours.knee(), theirs.knee()) else {
        return String::new();
    };
    let rate = a.offered_rps.min(b.offered_rps);
    let at = |s: &KneeSweep| -> Option<(f64, RequestCost)> {
        s.steps
            .iter()
            .filter(|x| x.verdict == StepVerdict::Sustained && x.offered_rps <= rate)
            .max_by(|x, y| x.offered_rps.total_cmp(&y.offered_rps))
            .and_then(|x| Some((x.offered_rps, x.server?)))
    };
    let (Some((rate_a, a)), Some((rate_b, b))) = (at(ours), at(theirs)) else {
        return String::new();
    };
    format!(
        "; per request, `{}` at {} req/s against `{}` at {}: CPU {:.1} vs {:.1} µs, sleeps {:.2} vs {:.2}",
        ours.row,
        thousands(rate_a),
        theirs.row,
        thousands(rate_b),
        a.cpu_us,
        b.cpu_us,
        a.sleeps,
        b.sleeps
    )
}

/// One workload's curves: p99 against the achieved rate, one line per row, the SLO
/// drawn across.
fn curve(
    r: &BenchReport,
    k: &KneeRecords,
    w: &KneeWorkloadRecord,
    index: usize,
) -> Result<Plot, PlotError> {
    let title = format!(
        "{}: p99 against the rate served (SLO {}){}",
        w.label,
        slo_text(w),
        regime_suffix(r)
    );
    let rows = rows_in_order(k);
    let series: Vec<Series> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, row)| {
            let s = sweep_of(k, row, &w.label)?;
            let mut points: Vec<(f64, f64)> = s
                .steps
                .iter()
                .filter(|x| x.achieved_rps > 0.0 && x.p99_us > 0)
                .map(|x| (x.achieved_rps, x.p99_us as f64))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let hue = ((i + 1) as f64 * 0.618_034) % 1.0;
            let lightness = [0.38, 0.52, 0.45][(i + 1) % 3];
            let c = HSLColor(hue, 0.8, lightness).to_rgba();
            (!points.is_empty()).then(|| (row.clone(), RGBColor(c.0, c.1, c.2), points))
        })
        .collect();
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .chain(std::iter::once(w.slo_us as f64))
        .collect();
    let (x_lo, x_hi) = match xs.is_empty() {
        true => (100.0, 1000.0),
        false => (
            xs.iter().copied().fold(f64::MAX, f64::min) * 0.7,
            xs.iter().copied().fold(0.0, f64::max) * 1.4,
        ),
    };
    let y_lo = ys.iter().copied().fold(f64::MAX, f64::min).max(1.0) * 0.6;
    let y_hi = ys.iter().copied().fold(0.0, f64::max) * 1.6;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height_for(series.len())))
            .into_drawing_area();
        let (chart_area, legend_area) = with_legend(&root)?;
        let mut chart = titled(&chart_area, &title)
            .build_cartesian_2d(
                (x_lo..x_hi)
                    .log_scale()
                    .with_key_points(log_ticks(x_lo, x_hi)),
                (y_lo..y_hi)
                    .log_scale()
                    .with_key_points(log_ticks(y_lo, y_hi)),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("requests per second served (log)")
            .y_desc("p99 µs, from when each request was due (log)")
            .x_label_formatter(&|x| short(*x))
            .y_label_formatter(&|y| short(*y))
            .draw()
            .map_err(err)?;
        let slo = w.slo_us as f64;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x_lo, slo), (x_hi, slo)],
                8,
                6,
                BLACK.stroke_width(1),
            ))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("SLO {}", slo_text(w)),
                (x_lo * 1.05, slo * 1.12),
                ("sans-serif", 12),
            )))
            .map_err(err)?;
        for (name, color, points) in &series {
            crate::bench::canvas::draw_line(&mut chart, r, name, points, *color)?;
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(err)?;
        }
        legend(&legend_area, r, &series)?;
        root.present().map_err(err)?;
    }
    Ok(Plot {
        file: format!("knee-{}.svg", index + 1),
        title,
        svg,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn step(offered: f64, achieved: f64, p99: u64, verdict: StepVerdict) -> KneeStep {
        KneeStep {
            offered_rps: offered,
            achieved_rps: achieved,
            p50_us: p99 / 3,
            p99_us: p99,
            p99_9_us: p99 * 2,
            failed: 0,
            timeouts: 0,
            missed: 0,
            client_busy: 0.4,
            // A fixed cost whose sleeps grow with the tail, so rows differ.
            server: Some(RequestCost {
                cpu_us: 5.0,
                sleeps: p99 as f64 / 1200.0,
                preempted: 0.0,
            }),
            verdict,
            histogram: String::new(),
        }
    }

    /// A server that sustains up to `capacity` req/s with a p99 of 100 µs, and a client
    /// that saturates at `client` req/s.
    fn server(capacity: f64, client: f64) -> impl FnMut(f64) -> io::Result<KneeStep> {
        move |rate| {
            let achieved = rate.min(capacity);
            let busy = (rate / client).min(1.0);
            let p99 = if rate <= capacity { 100 } else { 5_000 };
            let verdict = judge(rate, achieved, rate, 0, 0, p99, busy, 1000);
            Ok(KneeStep {
                client_busy: busy,
                server: None,
                ..step(rate, achieved, p99, verdict)
            })
        }
    }

    const PLAN: Plan = Plan {
        start: 1000.0,
        factor: 2.0,
        refine: 2,
        max: 1_000_000.0,
    };

    #[test]
    fn a_tail_while_the_server_idles_does_not_end_the_climb() {
        // Every reply wakes the server below 4,000 req/s (a 3 ms p99 at 20 µs of CPU per
        // request: 2-6% busy); from there it stays awake and sustains up to 10,000.
        let server = |rate: f64| {
            let achieved = rate.min(10_000.0);
            let p99 = match rate {
                r if r < 4000.0 => 3_000,
                r if r <= 10_000.0 => 100,
                _ => 5_000,
            };
            let verdict = judge(rate, achieved, rate, 0, 0, p99, 0.3, 1000);
            Ok(KneeStep {
                server: Some(RequestCost {
                    cpu_us: 20.0,
                    sleeps: if rate < 4000.0 { 1.0 } else { 0.2 },
                    preempted: 0.0,
                }),
                ..step(rate, achieved, p99, verdict)
            })
        };
        let (steps, ended) = sweep(PLAN, server).unwrap();
        let swept = KneeSweep {
            regime: String::new(),
            row: "x".into(),
            workload: "n=1".into(),
            steps,
            ended: ended.clone(),
        };
        let knee = swept.knee().unwrap().offered_rps;
        assert!((8000.0..=10_000.0).contains(&knee), "{knee}: {ended}");
        // No lower rates tried: below the start the server idles even more.
        assert!(swept.steps.iter().all(|s| s.offered_rps >= 1000.0));
        assert!(
            ended.contains("below the knee, not sustained: p99 3,000 µs at 1,000 req/s"),
            "{ended}"
        );
        assert!(
            ended.contains("at most 4% busy and slept 1.00-1.00 times per request"),
            "{ended}"
        );
        // A busy server's tail still ends the climb.
        let busy = |rate: f64| {
            let verdict = judge(rate, rate, rate, 0, 0, 3_000, 0.3, 1000);
            Ok(KneeStep {
                server: Some(RequestCost {
                    cpu_us: 900.0,
                    sleeps: 0.0,
                    preempted: 0.0,
                }),
                ..step(rate, rate, 3_000, verdict)
            })
        };
        let (steps, _) = sweep(PLAN, busy).unwrap();
        assert!(steps.iter().all(|s| s.offered_rps <= 1000.0), "{steps:?}");
    }

    #[test]
    fn a_sweep_doubles_until_a_step_fails_then_refines_between() {
        let (steps, ended) = sweep(PLAN, server(10_000.0, 1e9)).unwrap();
        let offered: Vec<f64> = steps.iter().map(|s| s.offered_rps.round()).collect();
        // 1k, 2k, 4k, 8k sustained; 16k behind; refined at sqrt(8k x 16k) and between.
        assert_eq!(offered[..5], [1000.0, 2000.0, 4000.0, 8000.0, 16000.0]);
        assert_eq!(steps.len(), 7);
        let knee = KneeSweep {
            regime: String::new(),
            row: "x".into(),
            workload: "n=1".into(),
            steps,
            ended: ended.clone(),
        };
        let best = knee.knee().unwrap().offered_rps;
        assert!((8000.0..=10_000.0).contains(&best), "{best}");
        assert!(
            ended.starts_with("at 11,314 req/s offered: fell behind"),
            "{ended}"
        );
    }

    #[test]
    fn one_tail_at_a_low_rate_does_not_end_the_climb() {
        let mut noisy = server(10_000.0, 1e9);
        let mut stalled = false;
        let (steps, ended) = sweep(PLAN, move |rate| {
            let mut s = noisy(rate)?;
            // One stall, at 2,000 req/s: its second measurement is clean.
            if rate == 2000.0 && !stalled {
                stalled = true;
                s.p99_us = 1500;
                s.verdict = StepVerdict::Tail;
            }
            Ok(s)
        })
        .unwrap();
        let knee = steps
            .iter()
            .filter(|s| s.verdict == StepVerdict::Sustained)
            .map(|s| s.offered_rps)
            .fold(0.0, f64::max);
        assert!(knee >= 8000.0, "{knee}");
        assert!(
            ended.contains("below the knee, not sustained: p99 1,500 µs at 2,000 req/s"),
            "{ended}"
        );
    }

    #[test]
    fn a_saturated_client_ends_the_sweep_as_the_clients_limit() {
        let (steps, ended) = sweep(PLAN, server(1e9, 5000.0)).unwrap();
        assert_eq!(steps.last().unwrap().verdict, StepVerdict::ClientLimit);
        assert!(
            ended.starts_with("the load generator was saturated at 8,000 req/s offered"),
            "{ended}"
        );
        assert!(ended.contains("the server's knee is above"), "{ended}");
        // Never reported as the server's knee: the last sustained step is below it.
        assert_eq!(
            steps
                .iter()
                .filter(|s| s.verdict == StepVerdict::Sustained)
                .count(),
            3
        );
    }

    #[test]
    fn a_slow_server_is_tried_lower_and_a_fast_one_stops_at_the_top() {
        let (steps, _) = sweep(PLAN, server(300.0, 1e9)).unwrap();
        let offered: Vec<f64> = steps.iter().map(|s| s.offered_rps.round()).collect();
        assert_eq!(offered, [1000.0, 500.0, 250.0, 354.0, 297.0]);
        let (steps, ended) = sweep(
            Plan {
                max: 4000.0,
                ..PLAN
            },
            server(1e9, 1e9),
        )
        .unwrap();
        assert_eq!(steps.len(), 3);
        assert!(
            ended.starts_with("sustained the sweep's top rate"),
            "{ended}"
        );
    }

    #[test]
    fn judging_puts_the_client_first_then_errors_pace_and_tail() {
        let j = |achieved, failed, missed, p99, busy| {
            judge(1000.0, achieved, 1000.0, failed, missed, p99, busy, 100)
        };
        assert_eq!(j(1000.0, 0, 0, 10, 0.95), StepVerdict::ClientLimit);
        assert_eq!(j(1000.0, 2, 0, 10, 0.5), StepVerdict::Errors);
        assert_eq!(j(1000.0, 1, 1, 10, 0.5), StepVerdict::Sustained);
        assert_eq!(j(980.0, 0, 0, 10, 0.5), StepVerdict::Behind);
        assert_eq!(j(1000.0, 0, 5, 10, 0.5), StepVerdict::Behind);
        assert_eq!(j(995.0, 0, 0, 101, 0.5), StepVerdict::Tail);
    }

    pub(crate) fn records() -> KneeRecords {
        let sweep = |row: &str, workload: &str, knee: f64, broke: StepVerdict| KneeSweep {
            regime: String::new(),
            row: row.into(),
            workload: workload.into(),
            steps: vec![
                step(knee / 2.0, knee / 2.0, 200, StepVerdict::Sustained),
                step(knee, knee, 600, StepVerdict::Sustained),
                step(knee * 2.0, knee * 1.2, 9_000, broke),
            ],
            ended: format!(
                "at {} req/s offered: {}",
                thousands(knee * 2.0),
                broke.label()
            ),
        };
        KneeRecords {
            connections: 16,
            pipeline: 8,
            step_s: 1.0,
            workloads: vec![
                KneeWorkloadRecord {
                    label: "n=1".into(),
                    mix: "1".into(),
                    slo_us: 1000,
                },
                KneeWorkloadRecord {
                    label: "mix 1:99,30:1".into(),
                    mix: "1:99,30:1".into(),
                    slo_us: 10_000,
                },
            ],
            sweeps: vec![
                sweep("threads", "n=1", 64_000.0, StepVerdict::Tail),
                sweep("epoll", "n=1", 128_000.0, StepVerdict::Behind),
                sweep("redis", "n=1", 100_000.0, StepVerdict::Tail),
                sweep("threads", "mix 1:99,30:1", 16_000.0, StepVerdict::Behind),
                sweep("epoll", "mix 1:99,30:1", 2_000.0, StepVerdict::Tail),
            ],
        }
    }

    #[test]
    fn a_break_the_floor_shares_is_the_machines() {
        let mut k = records();
        let floor = KneeSweep {
            regime: String::new(),
            row: FLOOR.into(),
            workload: "n=1".into(),
            steps: vec![
                step(100_000.0, 100_000.0, 500, StepVerdict::Sustained),
                step(200_000.0, 200_000.0, 3_000, StepVerdict::Tail),
            ],
            ended: String::new(),
        };
        k.sweeps.push(floor);
        let threads = k
            .sweeps
            .iter()
            .find(|s| s.row == "threads" && s.workload == "n=1")
            .unwrap();
        // threads broke at 128,000: the floor sustained 100,000, the nearest below.
        assert_eq!(machine_share(&k, threads), None);
        let epoll = k
            .sweeps
            .iter()
            .find(|s| s.row == "epoll" && s.workload == "n=1")
            .unwrap();
        // epoll broke at 256,000: the floor failed at 200,000.
        let why = machine_share(&k, epoll).unwrap();
        assert!(
            why.starts_with("the floor failed there too (p99 3,000 µs at 200,000 req/s)"),
            "{why}"
        );
    }

    #[test]
    fn the_ranking_is_computed_and_names_the_peer_comparison() {
        let mut r = crate::bench::results::tests::report_of(Vec::new());
        r.peers.push(crate::bench::results::Target {
            name: "redis".into(),
            addr: "127.0.0.1:6379".parse().unwrap(),
            ping: true,
        });
        r.knee = Some(records());
        let tables = Knee.tables(&r).0;
        assert_eq!(tables.len(), 3);
        assert_eq!(tables[0].rows[1][1], "128,000");
        assert_eq!(tables[0].rows[1][5], "-", "no calibration, no capacity");
        assert_eq!(
            tables[0].rows[1][7],
            "5.0 µs CPU, 0.50 sleeps, 0.00 preempted"
        );
        r.calibration = Some(crate::bench::predict::tests::calibration());
        let tables = Knee.tables(&r).0;
        let threads = &tables[0].rows[0];
        assert_ne!(threads[5], "-", "{threads:?}");
        assert_eq!(
            tables[1].rows[0][5], "-",
            "a mix has no single n to predict"
        );
        let ranking = tables.last().unwrap();
        let order: Vec<(&str, &str)> = ranking
            .rows
            .iter()
            .map(|row| (row[0].as_str(), row[2].as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("n=1", "`epoll`"),
                ("n=1", "`redis` †"),
                ("n=1", "`threads`"),
                ("mix 1:99,30:1", "`threads`"),
                ("mix 1:99,30:1", "`epoll`")
            ]
        );
        assert!(
            ranking.intro.contains("n=1: fiblab's best, `epoll`, sustains 128,000 req/s with p99 under 1 ms; `redis` 100,000 req/s: fiblab ahead (1.28x); per request, `epoll` at 64,000 req/s against `redis` at 100,000: CPU 5.0 vs 5.0 µs, sleeps 0.17 vs 0.50"),
            "{}",
            ranking.intro
        );
        let plots = Knee.plots(&r).unwrap();
        assert_eq!(plots.len(), 2);
        assert!(plots[0].svg.contains("SLO 1 ms"));
    }
}
