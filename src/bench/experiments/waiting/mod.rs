//! I/O-bound work that waits (issue 29; seeds 000 and 003: "the CPU is mostly waiting"):
//! every request asks a downstream (`fiblab backend`, a fixed delay) before its fib(n),
//! and closed loops of 1 to a thousand clients measure how far each model overlaps the
//! waits.
//!
//! The rule every cell is held to is Little's law: N clients each waiting W per request
//! cannot get more than X = N / W. A model that lets at most `cap` requests wait at once
//! by its design (`single` 1, a pool its workers) gets `min(N, cap) / W`; and no model gets
//! more than its CPUs allow, `cpus / (CPU per reply)` (a one-thread loop has one CPU). The
//! table prints each cell's share of that bound, with its interval over the measured
//! seconds, and which limit it is; what each waiting request costs the server (threads,
//! resident memory) comes from `/proc`, what it cost the downstream from its thread.
//!
//! ```text
//! load (N clients) ──► server (model M, --downstream) ──► backend (delay W)
//!                       waits in its own style              answers after W
//! ```

pub mod records;
mod render;
pub mod settings;

use std::io::{self, BufRead as _, Write as _};
use std::time::Duration;

use super::{Experiment, Row, Run};
use crate::bench::canvas::PlotError;
use crate::bench::results::{BenchReport, Finding, Plot, Table};
use crate::bench::scenario::Scenario;
use crate::downstream::{DEFAULT_TIMEOUT, DownstreamConfig};
use crate::load::mix::{Class, Mix};
use crate::load::{Edge, Hooks, LoadSpec, Stop};
use crate::models::{Clients, Model, Workers};
use crate::process::Usage;
use crate::server::Variant;
use crate::stats::Interval;
pub use records::{WaitingRecord, WaitingRecords};

/// The waiting experiment; see the module docs.
pub struct Waiting;

/// A row of the experiment: a model, with or without `--gil`.
struct Subject {
    label: String,
    variant: Variant,
    gil: bool,
}

fn subjects(w: &settings::Waiting) -> Vec<Subject> {
    let mut out: Vec<Subject> = w
        .models
        .iter()
        .map(|variant| Subject {
            label: variant.label(),
            variant: variant.clone(),
            gil: false,
        })
        .collect();
    out.extend(w.gil.iter().map(|model| Subject {
        label: format!("{model} --gil"),
        variant: Variant::plain(model),
        gil: true,
    }));
    out
}

impl Experiment for Waiting {
    fn name(&self) -> &'static str {
        "waiting (I/O-bound work)"
    }

    fn steps(&self, scenario: &Scenario, _rows: &[Row]) -> usize {
        scenario
            .waiting
            .as_ref()
            .map_or(0, |w| subjects(w).len() * w.delays.len() * w.clients.len())
    }

    fn runs_in(&self, scenario: &Scenario, regime: &str, regimes: &[String]) -> bool {
        scenario
            .waiting
            .as_ref()
            .is_some_and(|x| crate::bench::scenario::runs_in(&x.regimes, regimes, regime))
    }

    fn measure(&self, run: &mut Run<'_>, report: &mut BenchReport) -> io::Result<()> {
        let Some(w) = run.scenario.waiting.clone() else {
            return Ok(());
        };
        if !self.runs_in(run.scenario, &run.regime.name, &run.regimes) {
            return Ok(());
        }
        crate::server::raise_descriptor_limit();
        let records = report.waiting.get_or_insert_with(|| WaitingRecords {
            n: w.n,
            duration_s: w.duration.as_secs_f64(),
            jitter: w.jitter,
            records: Vec::new(),
        });
        for subject in subjects(&w) {
            for &delay in &w.delays {
                for &clients in &w.clients {
                    if run.interrupted() {
                        return Ok(());
                    }
                    run.step(&format!(
                        "waiting: {}, {} ms downstream, {clients} clients",
                        subject.label,
                        delay.as_secs_f64() * 1e3
                    ));
                    let mut record = measure_one(run, &w, &subject, delay, clients)?;
                    record.regime = run.regime.name.clone();
                    records.records.push(record);
                }
            }
        }
        Ok(())
    }

    fn tables(&self, r: &BenchReport) -> (Vec<Table>, Vec<String>) {
        match &r.waiting {
            Some(w) if !w.records.is_empty() => render::tables(w),
            _ => (Vec::new(), Vec::new()),
        }
    }

    fn plots(&self, r: &BenchReport) -> Result<Vec<Plot>, PlotError> {
        match &r.waiting {
            Some(w) if !w.records.is_empty() => render::plots(r, w),
            _ => Ok(Vec::new()),
        }
    }

    fn findings(&self, r: &BenchReport) -> Vec<Finding> {
        render::findings(r)
    }
}

/// One cell: a backend, a fresh server waiting on it, and the load.
fn measure_one(
    run: &Run<'_>,
    w: &settings::Waiting,
    subject: &Subject,
    delay: Duration,
    clients: usize,
) -> io::Result<WaitingRecord> {
    let spread = delay.mul_f64(w.jitter.clamp(0.0, 2.0));
    let downstream = run.downstream(delay.saturating_sub(spread / 2), spread)?;
    let mut workers = 1;
    let server = run.serve_with(&Row::Model(subject.variant.clone()), |config| {
        config.max_conns = clients + 64;
        config.downstream = Some(DownstreamConfig {
            addr: downstream.addr,
            timeout: DEFAULT_TIMEOUT,
        });
        if subject.gil {
            config.gil = Some(crate::gil::GilMode::Shared);
        }
        workers = config.workers;
    })?;
    let pid = server.pid;
    // One request first: a pool, a runtime, a downstream connection started lazily are
    // in the baseline.
    first_reply(server.addr)?;
    let before = pid.and_then(|p| Usage::of_tree(p).ok());
    let mix = Mix::new(vec![Class::fib(w.n, 1, true)]).map_err(io::Error::other)?;
    let spec = LoadSpec {
        stop: Stop::After(w.duration),
        warmup: w.warmup,
        // A client the model never serves shows within the run.
        timeout: w.duration,
        ..run.spec(server.addr, mix, clients)
    };
    let mut edges = crate::process::WindowWork::default();
    let mut at_end = None;
    let mut on_window = |edge: Edge, ok: u64| {
        if let Some(pid) = pid {
            edges.read(pid, ok);
        }
        if edge == Edge::End {
            at_end = pid.and_then(|p| Usage::of_tree(p).ok());
        }
    };
    let report = run.load(
        &spec,
        Hooks {
            on_window: Some(&mut on_window),
            ..Hooks::default()
        },
    )?;
    server.stop();
    let used = downstream.stop()?;
    let server_cpu_us = edges
        .between()
        .filter(|(_, replies)| *replies > 0)
        .map(|(work, replies)| work.cpu_ns as f64 / 1e3 / replies as f64);
    let model = crate::models::find(&subject.variant.model);
    let latency = report
        .classes
        .first()
        .map(|c| c.latency_us.clone())
        .unwrap_or_default();
    let server_cpus = match run.regime.server_cpus.len() {
        0 => crate::cpu::allowed_cpus().len().max(1),
        pinned => pinned,
    };
    Ok(WaitingRecord {
        regime: String::new(),
        row: subject.label.clone(),
        model: subject.variant.model.clone(),
        delay_ms: delay.as_secs_f64() * 1e3,
        clients,
        throughput_rps: report.throughput_rps,
        per_second: report
            .per_second
            .iter()
            .filter(|s| s.span_s >= 0.999)
            .map(|s| s.classes.iter().map(|c| c.requests_ok).sum::<u64>() as f64 / s.span_s)
            .collect(),
        p50_us: latency.p50,
        p99_us: latency.p99,
        errors: report.errors.timeout
            + report.errors.connect
            + report.errors.reset
            + report.errors.wrong,
        err_replies: report.errors.err_reply,
        waited_ms: used
            .mean_wait
            .map_or(delay.as_secs_f64() * 1e3, |w| w.as_secs_f64() * 1e3),
        most_waiting: used.most_waiting,
        backend_cpu_us: used
            .cpu
            .filter(|_| used.answered > 0)
            .map(|c| c.as_secs_f64() * 1e6 / used.answered as f64),
        concurrency_cap: model.and_then(|m| concurrency_cap(m, workers)),
        cpus: model.map_or(server_cpus, |m| {
            m.work_cpus(subject.variant.offload, server_cpus)
        }),
        server_cpu_us,
        client_cpu_us: report.client.cpu_us_per_request,
        shared_cpus: (run.regime.server_cpus.is_empty() && run.regime.client_cpus.is_empty())
            .then(|| crate::cpu::allowed_cpus().len().max(1)),
        threads: before.zip(at_end).map(|(b, e)| (b.threads, e.threads)),
        rss_kib: before.zip(at_end).map(|(b, e)| (b.rss_kib, e.rss_kib)),
    })
}

/// Sends one fib(1) and waits for its reply.
fn first_reply(addr: std::net::SocketAddr) -> io::Result<()> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(DEFAULT_TIMEOUT + Duration::from_secs(1)))?;
    stream.write_all(b"1\n")?;
    let mut line = String::new();
    io::BufReader::new(stream).read_line(&mut line)?;
    Ok(())
}

/// How many requests a model lets wait at once by its design, whatever the clients:
/// one (`single`), one per process (`prefork`), one per worker (`threadpool`, whose
/// workers each hold a connection); `None`: one per client.
pub fn concurrency_cap(model: &Model, workers: usize) -> Option<usize> {
    match model.clients {
        Clients::OneAtATime => Some(1),
        Clients::Sharded => Some(workers),
        Clients::Concurrent => (model.workers == Workers::ThreadPoolExecutor).then_some(workers),
    }
}

/// Which bound a cell is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Little's law with every client waiting: N / W.
    Waits,
    /// Little's law with the model's cap on waiting requests: cap / W.
    Cap,
    /// The model's CPUs: cpus / (its CPU per reply).
    Cpu,
    /// The machine's CPUs, shared by server, load generator and downstream: CPUs / (all
    /// three's CPU per reply).
    Machine,
}

impl Limit {
    pub fn label(self) -> &'static str {
        match self {
            Limit::Waits => "N / W",
            Limit::Cap => "cap / W",
            Limit::Cpu => "model's CPUs",
            Limit::Machine => "machine's CPUs",
        }
    }
}

/// A cell's bound, req/s, and which limit gives it, the least of:
/// - Little's law, X = N / W (every queueing text; Gunther), with the model's cap on
///   requests waiting at once: `min(N, cap) / W`, W the wait the downstream gave;
/// - the model's CPUs: `cpus / server CPU per reply`;
/// - where nothing is pinned, the machine's CPUs, which server, load generator and
///   downstream share: `CPUs / (server + client + downstream CPU per reply)`.
pub fn bound(r: &WaitingRecord) -> (f64, Limit) {
    let wait_s = (r.waited_ms / 1e3).max(1e-6);
    let (waiting, limit) = match r.concurrency_cap {
        Some(cap) if cap < r.clients => (cap, Limit::Cap),
        _ => (r.clients, Limit::Waits),
    };
    let mut best = (waiting as f64 / wait_s, limit);
    let positive = |x: Option<f64>| x.filter(|&c| c > 0.0);
    if let Some(server) = positive(r.server_cpu_us) {
        let model = r.cpus as f64 * 1e6 / server;
        if model < best.0 {
            best = (model, Limit::Cpu);
        }
        if let Some(cpus) = r.shared_cpus {
            let all = server + r.client_cpu_us.unwrap_or(0.0) + r.backend_cpu_us.unwrap_or(0.0);
            let machine = cpus as f64 * 1e6 / all;
            if machine < best.0 {
                best = (machine, Limit::Machine);
            }
        }
    }
    best
}

/// The cell's share of its bound, with its interval over the measured seconds.
pub fn share(r: &WaitingRecord) -> Interval {
    let (bound, _) = bound(r);
    let point = r.throughput_rps / bound;
    match r.per_second.len() {
        0 | 1 => Interval::point(point),
        _ => {
            let i = Interval::of(&r.per_second).map(|x| x / bound);
            Interval {
                estimate: point,
                ci_low: i.ci_low.min(point),
                ci_high: i.ci_high.max(point),
                ..i
            }
        }
    }
}

#[cfg(test)]
mod tests;
