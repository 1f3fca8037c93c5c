//! Past one process (issue 46): one process using every server CPU against N copies of
//! it sharing clients three ways, and a copy killed under load.
//!
//! ```text
//! process      clients ──────────────────────────► one process, all server CPUs
//! reuseport    clients ──► kernel hash ──► accept queue i ──► copy i     (SO_REUSEPORT)
//! one-queue    clients ──► one accept queue ──► whichever copy accepts first
//! haproxy-*    clients ──► HAProxy (leastconn | roundrobin) ──► copy i on its own port
//! ```
//!
//! The copies are the same model, each on its share of the server's CPUs
//! ([`crate::bench::measure::copies`]). Every cell is a closed loop of persistent
//! clients, so a way that spreads *connections* evenly spreads load evenly: each copy's
//! own count says how it went. A request behind HAProxy crosses one more process each
//! way; `predict.rs` prices that hop from the calibration (the balancer's CPU: one round
//! trip on one CPU; its latency: one round trip across CPUs) and predicts every cell.
//!
//! The kill (`kill.rs`): SIGKILL to one copy mid-cell; every request the clients sent
//! is accounted for (answered, error, lost, timed out, unfinished), with how long
//! replies stopped, how long until they recovered, and behind HAProxy how long its
//! health checks took to take the copy out.

mod kill;
pub mod predict;
pub mod records;
mod render;
pub mod settings;

use std::io;

use super::{Experiment, Row, Run};
use crate::balancer::Way;
use crate::bench::canvas::PlotError;
use crate::bench::results::{BenchReport, Finding, Plot, Table};
use crate::bench::scenario::Scenario;
use crate::load::mix::{Class, Mix};
use crate::load::{Edge, Hooks, LoadSpec, Stop};
use crate::server::Variant;
pub use records::{KillRecord, ScaleOutRecord, ScaleOutRecords};

/// The scale-out experiment; see the module docs.
pub struct ScaleOut;

/// The server's CPUs in the run's regime: its pinned ones, else the machine's.
fn server_cpus(run: &Run<'_>) -> usize {
    match run.regime.server_cpus.len() {
        0 => crate::cpu::allowed_cpus().len().max(1),
        pinned => pinned,
    }
}

impl Experiment for ScaleOut {
    fn name(&self) -> &'static str {
        "scale-out (copies, SO_REUSEPORT, one queue, HAProxy)"
    }

    fn steps(&self, scenario: &Scenario, _rows: &[Row]) -> usize {
        scenario.scaleout.as_ref().map_or(0, |s| {
            let cpus = crate::cpu::allowed_cpus().len().max(1);
            s.cells(cpus) * s.repetitions + s.kill.as_ref().map_or(0, |k| k.ways.len())
        })
    }

    fn runs_in(&self, scenario: &Scenario, regime: &str, regimes: &[String]) -> bool {
        scenario
            .scaleout
            .as_ref()
            .is_some_and(|x| crate::bench::scenario::runs_in(&x.regimes, regimes, regime))
    }

    fn measure(&self, run: &mut Run<'_>, report: &mut BenchReport) -> io::Result<()> {
        let Some(s) = run.scenario.scaleout.clone() else {
            return Ok(());
        };
        if !self.runs_in(run.scenario, &run.regime.name, &run.regimes) {
            return Ok(());
        }
        crate::server::raise_descriptor_limit();
        if s.netns {
            // Said once, before any cell: not after minutes of measuring.
            crate::netns::Hosts::create(1).map_err(|e| {
                io::Error::other(format!(
                    "--netns needs root (CAP_NET_ADMIN) and iproute2's `ip`, and this machine refused a network namespace: {e}"
                ))
            })?;
        }
        let haproxy = crate::balancer::available();
        let records = report.scaleout.get_or_insert_with(|| ScaleOutRecords {
            duration_s: s.duration.as_secs_f64(),
            balancer: haproxy.clone().unwrap_or_else(|why| why.to_string()),
            balancer_ran: haproxy.is_ok(),
            netns: s.netns,
            ..ScaleOutRecords::default()
        });
        if let Err(why) = &haproxy {
            eprintln!("scaleout: {why}");
        }
        let cpus = server_cpus(run);
        let layouts: Vec<(Way, usize)> = s
            .layouts(cpus)
            .into_iter()
            .filter(|(way, _)| way.balance().is_none() || haproxy.is_ok())
            .collect();
        for variant in &s.models {
            for &n in &s.workloads {
                for &per_cpu in &s.clients_per_server_cpu {
                    let clients = per_cpu * cpus;
                    for _ in 0..s.repetitions {
                        for &(way, copies) in &layouts {
                            if run.interrupted() {
                                return Ok(());
                            }
                            run.step(&format!(
                                "scaleout: {variant}, {way} x{copies}, n={n}, {clients} clients"
                            ));
                            let cell = Cell {
                                variant,
                                way,
                                copies,
                                n,
                                clients,
                            };
                            measure_one(run, &s, &cell, records)?;
                        }
                    }
                }
            }
        }
        if let Some(k) = &s.kill {
            for &way in &k.ways {
                if way.balance().is_some() && haproxy.is_err() {
                    continue;
                }
                if run.interrupted() {
                    return Ok(());
                }
                run.step(&format!(
                    "scaleout: kill a copy of {} x{}, {way}",
                    k.model, k.copies
                ));
                let mut record = kill::measure(run, k, way, k.clients_per_server_cpu * cpus)?;
                record.regime = run.regime.name.clone();
                records.kills.push(record);
            }
        }
        Ok(())
    }

    fn tables(&self, r: &BenchReport) -> (Vec<Table>, Vec<String>) {
        match &r.scaleout {
            Some(s) if !s.records.is_empty() || !s.kills.is_empty() => render::tables(r, s),
            _ => (Vec::new(), Vec::new()),
        }
    }

    fn plots(&self, r: &BenchReport) -> Result<Vec<Plot>, PlotError> {
        match &r.scaleout {
            Some(s) if !s.kills.is_empty() => render::plots(s),
            _ => Ok(Vec::new()),
        }
    }

    fn findings(&self, r: &BenchReport) -> Vec<Finding> {
        render::findings(r)
    }

    fn summary(&self, r: &BenchReport) -> Vec<String> {
        match &r.scaleout {
            Some(s) => render::summary(r, s),
            None => Vec::new(),
        }
    }
}

/// How long after the load every copy has published its last count.
const PUBLISHED_WITHIN: std::time::Duration = std::time::Duration::from_millis(150);

/// One cell's coordinates.
struct Cell<'a> {
    variant: &'a Variant,
    way: Way,
    copies: usize,
    n: u32,
    clients: usize,
}

/// One repetition of a cell: the copies (and HAProxy) started, the load, each copy's
/// count and everyone's CPU over the window; added to the cell's record.
fn measure_one(
    run: &Run<'_>,
    s: &settings::ScaleOut,
    cell: &Cell<'_>,
    records: &mut ScaleOutRecords,
) -> io::Result<()> {
    let deployment = run.deploy(cell.variant, cell.way, cell.copies, cell.clients)?;
    let mix = Mix::new(vec![Class::fib(cell.n, 1, true)]).map_err(io::Error::other)?;
    let spec = LoadSpec {
        stop: Stop::After(s.duration),
        warmup: s.warmup,
        timeout: s.duration.max(std::time::Duration::from_secs(1)),
        ..run.spec(deployment.addr, mix, cell.clients)
    };
    let pids = deployment.pids().to_vec();
    let balancer_pid = deployment.balancer.as_ref().map(|b| b.pid());
    let mut copies_work: Vec<crate::process::WindowWork> =
        pids.iter().map(|_| Default::default()).collect();
    let mut balancer_work = crate::process::WindowWork::default();
    let mut on_window = |_: Edge, ok: u64| {
        for (work, &pid) in copies_work.iter_mut().zip(&pids) {
            work.read(pid, ok);
        }
        if let Some(pid) = balancer_pid {
            balancer_work.read(pid, ok);
        }
    };
    let report = run.load(
        &spec,
        Hooks {
            on_window: Some(&mut on_window),
            ..Hooks::default()
        },
    )?;
    let sessions = deployment
        .balancer
        .as_ref()
        .and_then(|b| b.stats().ok())
        .map(|stats| stats.iter().map(|c| c.sessions).collect::<Vec<u64>>())
        .unwrap_or_default();
    let per_reply = |work: Option<(crate::process::Work, u64)>| {
        work.filter(|(_, replies)| *replies > 0)
            .map(|(w, replies)| w.cpu_ns as f64 / 1e3 / replies as f64)
    };
    // Each copy's count over the whole cell, warm-up included: read once its last
    // publication is in (every 100 ms), never at the window's edges, where each copy's
    // file is up to 100 ms old on its own clock.
    std::thread::sleep(PUBLISHED_WITHIN);
    let per_copy = deployment.requests();
    let latency = report
        .classes
        .first()
        .map(|c| c.latency_us.clone())
        .unwrap_or_default();
    let one = ScaleOutRecord {
        regime: run.regime.name.clone(),
        model: cell.variant.label(),
        way: cell.way,
        copies: cell.copies,
        n: cell.n,
        clients: cell.clients,
        cpus_per_copy: deployment.cpus_per_copy,
        balancer: deployment.balancer.as_ref().map(|_| {
            (
                deployment.balancer_cpus.len().max(1),
                deployment.balancer_shares,
            )
        }),
        shared_cpus: (run.regime.server_cpus.is_empty() && run.regime.client_cpus.is_empty())
            .then(|| crate::cpu::allowed_cpus().len().max(1)),
        throughput_rps: vec![report.throughput_rps],
        p50_us: vec![latency.p50],
        p99_us: vec![latency.p99],
        errors: report.errors.total(),
        per_copy,
        sessions_per_copy: sessions,
        server_cpu_us: copies_work
            .iter()
            .map(|w| per_reply(w.between()))
            .sum::<Option<f64>>()
            .into_iter()
            .collect(),
        balancer_cpu_us: per_reply(balancer_work.between()).into_iter().collect(),
        client_cpu_us: report.client.cpu_us_per_request.into_iter().collect(),
    };
    deployment.stop();
    fold(records, one);
    Ok(())
}

/// Adds one repetition to its cell's record (the first makes it).
fn fold(records: &mut ScaleOutRecords, one: ScaleOutRecord) {
    let same = |r: &&mut ScaleOutRecord| {
        (&r.regime, &r.model, r.way, r.copies, r.n, r.clients)
            == (
                &one.regime,
                &one.model,
                one.way,
                one.copies,
                one.n,
                one.clients,
            )
    };
    let Some(record) = records.records.iter_mut().find(same) else {
        records.records.push(one);
        return;
    };
    record.throughput_rps.extend(one.throughput_rps);
    record.p50_us.extend(one.p50_us);
    record.p99_us.extend(one.p99_us);
    record.errors += one.errors;
    add(&mut record.per_copy, &one.per_copy);
    add(&mut record.sessions_per_copy, &one.sessions_per_copy);
    record.server_cpu_us.extend(one.server_cpu_us);
    record.balancer_cpu_us.extend(one.balancer_cpu_us);
    record.client_cpu_us.extend(one.client_cpu_us);
}

fn add(sum: &mut Vec<u64>, more: &[u64]) {
    if sum.len() < more.len() {
        sum.resize(more.len(), 0);
    }
    for (s, x) in sum.iter_mut().zip(more) {
        *s += x;
    }
}
