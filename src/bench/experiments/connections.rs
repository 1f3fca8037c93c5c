//! Connections at scale, the C10K problem: every model holding 100 to 15,000 idle
//! clients, each after one fib(1), and what that costs it and the clients that are
//! active meanwhile. Seed 003 walks from a non-blocking loop to `select` to
//! `selectors` (epoll) without saying why; this is why.
//!
//! ```text
//! for each model (and `threads` with each extra stack size):
//!   for each idle count N (rising; a model that cannot hold N is not tried past it):
//!     fresh server ─► one fib(1) (warm) ─► usage before (/proc: the server's tree)
//!     hold N idle connections (load/hold.rs: 256 opening at once, each answered once)
//!     usage after ─► per connection: descriptors, resident KiB, address space, threads
//!     with the N still open: 1 active client, then 16, closed loops of fib(1)
//!     reset the N, stop the server
//! ```
//!
//! What it shows: `select` cannot watch a descriptor past `FD_SETSIZE` (1024) and turns
//! the rest away; the non-blocking loop makes one `read` per connection per round, so
//! its reply time grows with the idle clients; epoll and tokio stay flat; a thread per
//! connection costs a stack's touched pages and a kernel thread where an event loop
//! costs a few hundred bytes. Each figure has its rule beside it: the added reply time
//! per idle connection predicted from the calibration (`select_1000`, `read_idle`), the
//! address space a thread's stack reserves, and the resident-memory targets the
//! event-loop models are held to.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use plotters::prelude::*;

use super::{Experiment, Row, Run};
use crate::bench::canvas::{
    PlotError, WIDTH, err, height_for, legend, log_ticks, regime_suffix, short, titled, with_legend,
};
use crate::bench::predict::THRESHOLD;
use crate::bench::results::{
    ActiveLoad, BenchReport, ConnectionRecord, ConnectionRecords, Finding, Plot, Table, Verdict,
    thousands,
};
use crate::bench::rules::{finding, missing};
use crate::bench::scenario::{self, Scenario};
use crate::calibrate::Calibration;
use crate::load::hold::{HoldSpec, hold};
use crate::load::mix::{Class, Mix};
use crate::load::{Hooks, LoadSpec, Stop};
use crate::models::cost::{CostModel, Readiness};
use crate::process::Usage;
use crate::server::Variant;

/// The connections experiment; see the module docs.
pub struct Connections;

/// Resident memory an idle connection may cost an event-loop model, KiB: a loop needs
/// a few bytes of state per connection and no buffer while it is idle (issue 15's
/// targets; tokio's task and its registration take a little more).
pub const IDLE_TARGET_KIB: &[(&str, f64)] = &[
    ("epoll", 1.0),
    ("coroutines", 1.0),
    ("nonblocking", 1.0),
    ("select", 1.0),
    ("tokio", 3.0),
    ("tokio-current", 3.0),
    ("per-core", 1.0),
];

/// A guard page below each thread's stack, KiB.
const GUARD_KIB: f64 = 4.0;
/// Rust's default stack for a spawned thread, bytes.
const DEFAULT_STACK: usize = 2 << 20;

/// One row of the experiment: a model, perhaps with a stack size.
#[derive(Debug, Clone)]
struct Subject {
    label: String,
    variant: Variant,
    stack_size: Option<usize>,
}

fn subjects(c: &scenario::Connections) -> Vec<Subject> {
    let mut out: Vec<Subject> = c
        .models
        .iter()
        .map(|v| Subject {
            label: v.label(),
            variant: v.clone(),
            stack_size: None,
        })
        .collect();
    for &bytes in &c.thread_stacks {
        out.push(Subject {
            label: format!("threads ({} stacks)", crate::units::format_bytes(bytes)),
            variant: Variant::plain("threads"),
            stack_size: Some(bytes),
        });
    }
    out
}

impl Experiment for Connections {
    fn name(&self) -> &'static str {
        "connections (C10K)"
    }

    fn steps(&self, scenario: &Scenario, _rows: &[Row]) -> usize {
        scenario
            .connections
            .as_ref()
            .map_or(0, |c| subjects(c).len() * c.idle.len())
    }

    fn measure(&self, run: &mut Run<'_>, report: &mut BenchReport) -> io::Result<()> {
        let Some(c) = &run.scenario.connections else {
            return Ok(());
        };
        crate::server::raise_descriptor_limit();
        let records = report.connections.get_or_insert_with(|| ConnectionRecords {
            n: c.n,
            duration_s: c.duration.as_secs_f64(),
            limits: limits(),
            records: Vec::new(),
        });
        for subject in subjects(c) {
            let mut held_all = true;
            for &idle in &c.idle {
                if run.interrupted() {
                    return Ok(());
                }
                if !held_all {
                    run.step(&format!(
                        "connections: {}, {idle} idle: not tried (it held fewer before)",
                        subject.label
                    ));
                    continue;
                }
                run.step(&format!("connections: {}, {idle} idle", subject.label));
                let mut record = measure_one(run, c, &subject, idle)?;
                record.regime = run.regime.name.clone();
                held_all = record.held >= idle;
                records.records.push(record);
            }
        }
        Ok(())
    }

    fn tables(&self, r: &BenchReport) -> (Vec<Table>, Vec<String>) {
        match &r.connections {
            Some(c) if !c.records.is_empty() => tables(r, c),
            _ => (Vec::new(), Vec::new()),
        }
    }

    fn plots(&self, r: &BenchReport) -> Result<Vec<Plot>, PlotError> {
        match &r.connections {
            Some(c) if !c.records.is_empty() => plots(r, c),
            _ => Ok(Vec::new()),
        }
    }

    fn findings(&self, r: &BenchReport) -> Vec<Finding> {
        findings(r)
    }
}

/// A fresh server for `subject` holding `idle` connections, measured.
fn measure_one(
    run: &Run<'_>,
    c: &scenario::Connections,
    subject: &Subject,
    idle: usize,
) -> io::Result<ConnectionRecord> {
    let most =
        c.idle.iter().max().copied().unwrap_or(idle) + c.active.iter().max().copied().unwrap_or(1);
    let server = run.serve_with(&Row::Model(subject.variant.clone()), |config| {
        // Room for every client the experiment brings, so the model's own limits show.
        config.max_conns = most + 64;
        config.stack_size = subject.stack_size;
    })?;
    let addr = server.addr;
    let pid = server
        .pid
        .ok_or_else(|| io::Error::other("the server's process is gone"))?;
    // One request first: a pool, a runtime or a worker started lazily is in the baseline.
    drop(hold(&HoldSpec::fib1(addr, 1))?);
    std::thread::sleep(Duration::from_millis(200));
    let before = Usage::of_tree(pid)?;
    let held = hold(&HoldSpec::fib1(addr, idle))?;
    // Let the server settle: buffers returned, tasks parked, threads asleep.
    std::thread::sleep(Duration::from_millis(300));
    let after = Usage::of_tree(pid)?;
    let open = held.open();
    let idle_read_us = held.read_sweep_us(9).map(round3);
    let per = |after: f64, before: f64| {
        (open > 0).then(|| round3((after - before).max(0.0) / open as f64))
    };
    let mut active = Vec::new();
    for &clients in &c.active {
        if run.interrupted() {
            break;
        }
        active.push(active_load(run, c, addr, clients)?);
    }
    let record = ConnectionRecord {
        regime: String::new(),
        row: subject.label.clone(),
        model: subject.variant.model.clone(),
        stack_size: subject.stack_size,
        idle,
        held: held.answered,
        waiting: held.unanswered,
        outcome: held.describe(),
        stopped: held.stopped.clone(),
        open_s: round3(held.took.as_secs_f64()),
        descriptors: per(after.descriptors as f64, before.descriptors as f64),
        rss_kib: per(after.rss_kib as f64, before.rss_kib as f64),
        vsz_kib: per(after.vsz_kib as f64, before.vsz_kib as f64),
        threads: per(after.threads as f64, before.threads as f64),
        idle_read_us,
        active,
    };
    drop(held);
    server.stop();
    Ok(record)
}

/// `clients` closed loops of fib(n) for the scenario's duration, among the idle ones.
fn active_load(
    run: &Run<'_>,
    c: &scenario::Connections,
    addr: SocketAddr,
    clients: usize,
) -> io::Result<ActiveLoad> {
    let mix = Mix::new(vec![Class::fib(c.n, 1, true)]).map_err(io::Error::other)?;
    let spec = LoadSpec {
        stop: Stop::After(c.duration),
        warmup: c.warmup,
        // A model that answers nobody more shows it within the run.
        timeout: c.duration,
        ..run.spec(addr, mix, clients)
    };
    let report = run.load(&spec, Hooks::default())?;
    let latency = report
        .classes
        .first()
        .map(|class| class.latency_us.clone())
        .unwrap_or_default();
    Ok(ActiveLoad {
        clients,
        throughput_rps: report.throughput_rps.round(),
        requests_ok: report.requests_ok,
        p50_us: latency.p50,
        p99_us: latency.p99,
        p99_9_us: latency.p99_9,
        timeouts: report.errors.timeout,
        err_replies: report.errors.err_reply,
        failed: report.errors.connect + report.errors.reset + report.errors.wrong,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The limits the experiment runs under, one line each, read from this machine.
fn limits() -> Vec<String> {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join("-"))
            .unwrap_or_else(|_| "unknown".into())
    };
    let descriptors = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or("unknown".to_string(), |(soft, hard)| {
            format!(
                "{} (hard {})",
                thousands(soft as f64),
                thousands(hard as f64)
            )
        });
    vec![
        format!(
            "descriptors per process: {descriptors}, for the bench's client and each server alike (both raise their soft limit to the hard one)"
        ),
        format!(
            "loopback ephemeral ports: {} (`net.ipv4.ip_local_port_range`; one per client connection)",
            read("/proc/sys/net/ipv4/ip_local_port_range")
        ),
        format!(
            "accept backlog: the servers ask 1024, the kernel caps it at `net.core.somaxconn` {}",
            read("/proc/sys/net/core/somaxconn")
        ),
        format!(
            "threads: `kernel.threads-max` {}; memory maps per process: `vm.max_map_count` {} (a thread takes four: its stack and its signal stack, each with a guard page)",
            read("/proc/sys/kernel/threads-max"),
            read("/proc/sys/vm/max_map_count")
        ),
    ]
}

/// The records of `row`, by idle count.
fn of_row<'a>(c: &'a ConnectionRecords, row: &str) -> Vec<&'a ConnectionRecord> {
    c.records.iter().filter(|r| r.row == row).collect()
}

/// Every row, in measured order.
fn row_names(c: &ConnectionRecords) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    for r in &c.records {
        if !rows.contains(&r.row) {
            rows.push(r.row.clone());
        }
    }
    rows
}

/// Every idle count, rising.
fn idle_counts(c: &ConnectionRecords) -> Vec<usize> {
    let mut idle: Vec<usize> = c.records.iter().map(|r| r.idle).collect();
    idle.sort_unstable();
    idle.dedup();
    idle
}

fn cell<'a>(c: &'a ConnectionRecords, row: &str, idle: usize) -> Option<&'a ConnectionRecord> {
    c.records.iter().find(|r| r.row == row && r.idle == idle)
}

fn load(record: &ConnectionRecord, clients: usize) -> Option<&ActiveLoad> {
    record.active.iter().find(|a| a.clients == clients)
}

/// What one active load got, in a table cell: `p50 / p99 / p99.9` µs, or what the
/// client got instead.
fn latency_cell(a: &ActiveLoad) -> String {
    match a.requests_ok {
        0 => failure(a),
        _ => format!(
            "{} / {} / {} ({}/s)",
            thousands(a.p50_us as f64),
            thousands(a.p99_us as f64),
            thousands(a.p99_9_us as f64),
            thousands(a.throughput_rps)
        ),
    }
}

fn failure(a: &ActiveLoad) -> String {
    let mut parts = Vec::new();
    if a.err_replies > 0 {
        parts.push(format!("{} ERR replies", thousands(a.err_replies as f64)));
    }
    if a.timeouts > 0 {
        parts.push(format!("{} timed out", thousands(a.timeouts as f64)));
    }
    if a.failed > 0 {
        parts.push(format!("{} reset or refused", thousands(a.failed as f64)));
    }
    match parts.is_empty() {
        true => "no answer".into(),
        false => format!("no answer: {}", parts.join(", ")),
    }
}

/// µs a request of one active client pays per idle connection, from the calibration,
/// and the rule in words. `None`: the model's cost model has no such term.
pub fn per_idle_us(model: &str, calibration: &Calibration) -> Option<(f64, String)> {
    let cost = crate::models::find(model)?.cost;
    match cost {
        CostModel::SpinLoop => calibration.read_idle.map(|m| {
            (
                m.median_us,
                format!(
                    "one round of the loop reads every connection ({:.3} µs per idle read, calibrated), and a request waits about one round",
                    m.median_us
                ),
            )
        }),
        CostModel::EventLoop(Readiness::Select) => calibration.select_idle_1000.map(|m| {
            let per = m.median_us / 1000.0;
            (
                per,
                format!(
                    "each request passes one blocking select, which registers on every watched descriptor, sleeps, scans them all again and unregisters: {per:.3} µs per idle descriptor (calibrated)"
                ),
            )
        }),
        _ => Some((
            0.0,
            // Every cost model named: a new one must say what an idle connection costs.
            match cost {
                CostModel::EventLoop(Readiness::Epoll)
                | CostModel::WorkStealing
                | CostModel::PerCore => {
                    "epoll reports only the ready connections: an idle one costs a request nothing".to_string()
                }
                CostModel::EventLoop(Readiness::Completion) => {
                    "an idle connection is one armed multishot receive in the kernel, which completes only when bytes arrive: it costs a request nothing".to_string()
                }
                CostModel::OneAtATime
                | CostModel::ThreadPerConnection
                | CostModel::Isolated
                | CostModel::ProcessPool
                | CostModel::Prefork
                | CostModel::EventLoop(Readiness::Select)
                | CostModel::SpinLoop => {
                    "each connection's thread sleeps in its own read: the kernel wakes only the one with data".to_string()
                }
            },
        )),
    }
}

/// The reply time of one active client at the largest idle count `row` held, predicted
/// from its time at the smallest: `(idle, predicted p50, measured p50, why)`. A loop
/// that tries every socket pays a round of reads, each at the cost measured at that
/// count (the caches hold fewer sockets' state as they grow); the others pay the
/// calibrated cost per idle connection, or none.
fn predicted_p50(
    r: &BenchReport,
    c: &ConnectionRecords,
    row: &str,
) -> Option<(usize, f64, u64, String)> {
    let (first, last) = answered_span(c, row)?;
    let base = load(first, 1)?.p50_us as f64;
    let measured = load(last, 1)?.p50_us;
    let cost = crate::models::find(&first.model)?.cost;
    if cost == CostModel::SpinLoop
        && let (Some(a), Some(b)) = (first.idle_read_us, last.idle_read_us)
    {
        let round = |x: &ConnectionRecord, us: f64| x.held as f64 * us;
        let predicted = base - round(first, a) + round(last, b);
        return Some((
            last.idle,
            predicted,
            measured,
            format!(
                "a request waits about one round of the loop, a read of every connection: {a:.3} µs per idle read over {} sockets, {b:.3} over {} (measured at each count)",
                thousands(first.held as f64),
                thousands(last.held as f64)
            ),
        ));
    }
    let (per, why) = per_idle_us(&first.model, r.calibration.as_ref()?)?;
    // The idle connections the loop holds, not those asked for (select stops at 1024).
    let grown = last.held.saturating_sub(first.held) as f64;
    Some((last.idle, base + per * grown, measured, why))
}

/// The address space a connection's threads reserve, KiB: their stacks and guard pages.
fn predicted_vsz(record: &ConnectionRecord) -> Option<f64> {
    let threads = record.threads?;
    (threads >= 0.5).then(|| {
        let stack = record.stack_size.unwrap_or(DEFAULT_STACK) as f64 / 1024.0;
        // `isolates` runs a second thread per connection with the default stack.
        let first = stack + GUARD_KIB;
        let others = (threads - 1.0).max(0.0) * (DEFAULT_STACK as f64 / 1024.0 + GUARD_KIB);
        first + others
    })
}

/// glibc's malloc gives new threads arenas of their own, up to 8 per CPU, each
/// reserving 64 MiB of address space (`M_ARENA_MAX`, `HEAP_MAX_SIZE` on 64-bit): at
/// most this much more per connection, KiB, when `open` connections brought them.
fn arena_share_kib(cpus: usize, open: usize) -> f64 {
    (8 * cpus.max(1)) as f64 * 65536.0 / open.max(1) as f64
}

/// The address space per connection predicted for `record`, KiB: its threads' stacks,
/// and up to a share of the allocator's arenas. `None` without a thread per connection.
fn predicted_vsz_range(r: &BenchReport, record: &ConnectionRecord) -> Option<(f64, f64)> {
    let stacks = predicted_vsz(record)?;
    let cpus = r.calibration.as_ref().map_or(1, |c| c.machine.cpus);
    Some((
        stacks,
        stacks + arena_share_kib(cpus, record.held + record.waiting),
    ))
}

/// How far this machine's round trip wandered during the run, µs: the spread of the
/// unpinned round trips the calibration measured at its start, between regimes and at
/// its end. A reply time predicted flat is kept within it.
fn drift_us(r: &BenchReport) -> f64 {
    let runs = r
        .calibration
        .as_ref()
        .map(|c| c.round_trips.unpinned.clone())
        .unwrap_or_default();
    let hi = runs.iter().copied().fold(f64::MIN, f64::max);
    let lo = runs.iter().copied().fold(f64::MAX, f64::min);
    if runs.len() >= 2 { hi - lo } else { 0.0 }
}

/// The descriptors per open connection `record`'s model should hold, and why.
fn predicted_descriptors(record: &ConnectionRecord) -> (f64, &'static str) {
    use crate::models::Clients;
    let open = (record.held + record.waiting).max(1) as f64;
    match crate::models::find(&record.model).map(|m| m.clients) {
        Some(Clients::OneAtATime | Clients::Sharded) => (
            record.held as f64 / open,
            "only the clients it serves are accepted; the others wait in the kernel's backlog and hold none of its descriptors",
        ),
        _ => (
            1.0,
            "the connection's own socket; a duplicate for a probe or a tracker would make it 2 or 3",
        ),
    }
}

fn tables(r: &BenchReport, c: &ConnectionRecords) -> (Vec<Table>, Vec<String>) {
    let idle = idle_counts(c);
    let rows = row_names(c);
    let head = |first: &str, extra: &[&str]| -> Vec<String> {
        std::iter::once(first.to_string())
            .chain(
                idle.iter()
                    .map(|n| format!("{} idle", thousands(*n as f64))),
            )
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    // A row's name and its value at every idle count: the start of every table's row.
    let grid = |value: &dyn Fn(&ConnectionRecord) -> String, row: &str| -> Vec<String> {
        std::iter::once(format!("`{row}`"))
            .chain(idle.iter().map(|&n| match cell(c, row, n) {
                Some(x) => value(x),
                None => "not tried".into(),
            }))
            .collect()
    };
    let per_conn = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let mut tables = Vec::new();

    tables.push(Table {
        title: "Idle connections held, and the time to open them".into(),
        intro: format!(
            "Each model, a fresh server per count: that many clients connect (256 at once), each sends fib(1) and stays idle once answered. A cell: the connections answered and held, and the time from the first connect to the last reply (the server's accept path under a stream of new clients); where it held fewer, what the clients got instead. A model that held fewer is not tried at larger counts. Limits in force: {}.",
            c.limits.join("; ")
        ),
        header: head("model", &["what a client past the limit gets"]),
        left: 1,
        text_last: true,
        rows: rows
            .iter()
            .map(|row| {
                let mut cells = grid(
                    &|x| match x.held >= x.idle {
                        true => format!("{} in {:.2} s", thousands(x.held as f64), x.open_s),
                        false => x.outcome.clone(),
                    },
                    row,
                );
                cells.push(
                    of_row(c, row)
                        .iter()
                        .find(|x| x.held < x.idle)
                        .map_or("every client held".to_string(), |x| {
                            x.stopped
                                .clone()
                                .unwrap_or_else(|| limit_reason(&x.model).to_string())
                        }),
                );
                cells
            })
            .collect(),
    });

    tables.push(Table {
        title: "Descriptors per idle connection".into(),
        intro: "Open descriptors of the server's processes after the idle connections, minus before, per connection held open (answered, or waiting in the backlog or a queue). Predicted at the largest count tried, from the model's registry entry.".into(),
        header: head("model", &["predicted", "why"]),
        left: 1,
        text_last: true,
        rows: rows
            .iter()
            .map(|row| {
                let mut cells = grid(&|x| per_conn(x.descriptors), row);
                match of_row(c, row).last() {
                    Some(last) => {
                        let (p, why) = predicted_descriptors(last);
                        let off = last.descriptors.is_some_and(|d| (d - p).abs() > 0.05);
                        cells.push(format!("{p:.2}{}", if off { " ‡" } else { "" }));
                        cells.push(why.into());
                    }
                    None => cells.extend(["-".to_string(), String::new()]),
                }
                cells
            })
            .collect(),
    });

    tables.push(Table {
        title: "Resident memory per idle connection, KiB".into(),
        intro: "The server's resident memory (VmRSS, all its processes) after the idle connections, minus before, per connection. Kernel memory (socket buffers, a thread's kernel stack) is not in it. The event-loop models are held to a target: an idle connection needs a few bytes of state and no buffer; a thread per connection costs its stack's touched pages, which no target bounds.".into(),
        header: head("model", &["target", "met at every count"]),
        left: 1,
        text_last: true,
        rows: rows
            .iter()
            .map(|row| {
                let mut cells = grid(&|x| per_conn(x.rss_kib), row);
                let model = of_row(c, row).first().map(|x| x.model.clone()).unwrap_or_default();
                match IDLE_TARGET_KIB.iter().find(|(m, _)| *m == model) {
                    Some((_, target)) => {
                        let measured: Vec<f64> =
                            of_row(c, row).iter().filter_map(|x| x.rss_kib).collect();
                        cells.push(format!("<= {target}"));
                        cells.push(match measured.iter().all(|v| v <= target) {
                            true => "yes".into(),
                            false => format!(
                                "no ‡ (up to {:.2} KiB)",
                                measured.iter().copied().fold(0.0, f64::max)
                            ),
                        });
                    }
                    None => cells.extend([
                        "none".to_string(),
                        rss_rule(&model).to_string(),
                    ]),
                }
                cells
            })
            .collect(),
    });

    tables.push(Table {
        title: "Address space per idle connection, KiB".into(),
        intro: "The server's address space (VmSize) after the idle connections, minus before, per connection. Predicted for a thread per connection, at the largest count held: its stack and guard page (Rust's default 2 MiB, or `--stack-size`) per thread, plus up to a share of the allocator's arenas (glibc gives new threads their own, up to 8 per CPU, 64 MiB each: a large share over few connections, little over many). Reserved, not resident: a smaller stack changes this table and hardly the one above.".into(),
        header: head("model", &["threads per connection", "predicted", "why"]),
        left: 1,
        text_last: true,
        rows: rows
            .iter()
            .map(|row| {
                let mut cells = grid(&|x| per_conn(x.vsz_kib), row);
                let records = of_row(c, row);
                let last = records.iter().rev().find(|x| x.held > 0);
                cells.push(last.and_then(|x| x.threads).map_or("-".into(), |t| format!("{t:.2}")));
                match last.and_then(|x| predicted_vsz_range(r, x).map(|p| (p, x))) {
                    Some(((lo, hi), x)) => {
                        let off = x
                            .vsz_kib
                            .is_some_and(|v| v < lo * (1.0 - THRESHOLD) || v > hi * (1.0 + THRESHOLD));
                        cells.push(format!("{lo:.0}–{hi:.0}{}", if off { " ‡" } else { "" }));
                        cells.push("a stack and a guard page per connection thread, and up to a share of the allocator's arenas".into());
                    }
                    None => cells.extend(["-".to_string(), "no thread per connection: the heap's growth only".into()]),
                }
                cells
            })
            .collect(),
    });

    let predicted = r.calibration.is_some();
    let drift = drift_us(r);
    tables.push(Table {
        title: format!("One active client among the idle ones: fib({}) reply time p50 / p99 / p99.9, µs (requests per second)", c.n),
        intro: format!(
            "A closed loop of one client for {:.1} s while the idle connections stay open. Predicted: the p50 at the largest count with replies, from the p50 at the smallest plus the model's cost per idle connection held (its rule, from the calibration); ‡ where the measurement is off by more than {:.0}% or the {} µs this machine's round trip wandered during the run (its unpinned round trips, measured at the start and the end), whichever is more.",
            c.duration_s,
            THRESHOLD * 100.0,
            thousands(drift)
        ),
        header: match predicted {
            true => head("model", &["predicted p50 at the largest", "why"]),
            false => head("model", &[]),
        },
        left: 1,
        text_last: predicted,
        rows: rows
            .iter()
            .map(|row| {
                let mut cells = grid(&|x| load(x, 1).map_or("-".into(), latency_cell), row);
                if predicted {
                    match predicted_p50(r, c, row) {
                        Some((idle, p, measured, why)) => {
                            let off = (measured as f64 - p).abs() > (THRESHOLD * p).max(drift);
                            cells.push(format!(
                                "{} at {} idle{}",
                                thousands(p),
                                thousands(idle as f64),
                                if off { " ‡" } else { "" }
                            ));
                            cells.push(why);
                        }
                        None => cells.extend(["-".to_string(), "no reply to predict from".into()]),
                    }
                }
                cells
            })
            .collect(),
    });

    let most = c
        .records
        .iter()
        .flat_map(|x| x.active.iter().map(|a| a.clients))
        .max()
        .unwrap_or(1);
    if most > 1 {
        tables.push(Table {
            title: format!("{most} active clients among the idle ones: fib({}) reply time p50 / p99 / p99.9, µs (requests per second)", c.n),
            intro: format!(
                "{most} closed loops of fib({}) for {:.1} s while the idle connections stay open. A loop that scans every connection per round serves the active ones once per round; one that is told which are ready does not notice the idle ones.",
                c.n, c.duration_s
            ),
            header: head("model", &[]),
            left: 1,
            text_last: false,
            rows: rows
                .iter()
                .map(|row| grid(&|x| load(x, most).map_or("-".into(), latency_cell), row))
                .collect(),
        });
    }
    (tables, Vec::new())
}

/// Why a model holds no more clients than it does, from the registry.
fn limit_reason(model: &str) -> &'static str {
    use crate::models::Clients;
    if crate::models::find(model).is_some_and(|m| m.cost == CostModel::EventLoop(Readiness::Select))
    {
        return "select's FD_SETSIZE: a descriptor past 1024 cannot be watched, so the client is told `ERR server busy` and closed";
    }
    if let Some(CostModel::ThreadPerConnection | CostModel::Isolated | CostModel::ProcessPool) =
        crate::models::find(model).map(|m| m.cost)
    {
        return "memory maps: each connection thread takes four of `vm.max_map_count` (see the limits above), so the server caps `--max-conns` below it and tells the rest `ERR server busy` (a thread that cannot map its signal stack would abort the process)";
    }
    match crate::models::find(model).map(|m| m.clients) {
        Some(Clients::OneAtATime) => {
            "one client at a time: the others wait in the accept backlog, unanswered"
        }
        Some(Clients::Sharded) => {
            "one client at a time per process: the others wait behind the busy ones"
        }
        _ => "its own limit (see the model's docs)",
    }
}

/// What an idle connection's resident memory is, for models without a target.
fn rss_rule(model: &str) -> &'static str {
    match crate::models::find(model).map(|m| m.cost) {
        Some(CostModel::ThreadPerConnection | CostModel::ProcessPool) => {
            "a thread: the stack pages it touched, and its share of the allocator"
        }
        Some(CostModel::Isolated) => {
            "two threads (connection and interpreter) and the interpreter's instance"
        }
        Some(CostModel::EventLoop(Readiness::Completion)) => {
            "a few hundred bytes of state; the kernel-provided receive buffers (one 2 MiB ring for all) become resident as they cycle: a fixed cost, spread thin at large counts"
        }
        _ => "the connections it holds: few or none past its limit",
    }
}

/// The lines of one measure, one per row: `(row, its place among every row (its
/// colour, the same in every plot), [(idle connections, value)])`.
type Lines = Vec<(String, usize, Vec<(f64, f64)>)>;

fn lines(c: &ConnectionRecords, value: &dyn Fn(&ConnectionRecord) -> Option<f64>) -> Lines {
    row_names(c)
        .into_iter()
        .enumerate()
        .map(|(k, row)| {
            let points = of_row(c, &row)
                .into_iter()
                .filter(|x| x.held > 0)
                .filter_map(|x| value(x).map(|v| (x.idle as f64, v)))
                .collect();
            (row, k, points)
        })
        .filter(|(_, _, points): &(String, usize, Vec<(f64, f64)>)| !points.is_empty())
        .collect()
}

/// An axis label that keeps small values readable: `0.05`, `0.2`, `3`, `25k`.
fn tick(value: f64) -> String {
    match value.abs() {
        v if v >= 1000.0 => short(value),
        v if v >= 1.0 => format!("{value:.0}"),
        _ => {
            let text = format!("{value:.2}");
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    }
}

fn plots(r: &BenchReport, c: &ConnectionRecords) -> Result<Vec<Plot>, PlotError> {
    let most = c
        .records
        .iter()
        .flat_map(|x| x.active.iter().map(|a| a.clients))
        .max()
        .unwrap_or(1);
    let ok = |a: &ActiveLoad| a.requests_ok > 0;
    let measures: Vec<(&str, String, &str, bool, Lines)> = vec![
        (
            "connections-open-time.svg",
            "Time to open and answer the idle connections".into(),
            "seconds (log)",
            true,
            lines(c, &|x| (x.held >= x.idle).then_some(x.open_s.max(0.001))),
        ),
        (
            "connections-descriptors.svg",
            "Descriptors per idle connection".into(),
            "descriptors",
            false,
            lines(c, &|x| x.descriptors),
        ),
        (
            "connections-memory.svg",
            "Resident memory per idle connection".into(),
            "KiB (log)",
            true,
            lines(c, &|x| x.rss_kib),
        ),
        (
            "connections-address-space.svg",
            "Address space per idle connection".into(),
            "KiB (log)",
            true,
            lines(c, &|x| x.vsz_kib),
        ),
        (
            "connections-latency-1.svg",
            format!("One active client: fib({}) reply time p50", c.n),
            "µs (log)",
            true,
            lines(c, &|x| {
                load(x, 1).filter(|a| ok(a)).map(|a| a.p50_us as f64)
            }),
        ),
        (
            "connections-latency-many.svg",
            format!("{most} active clients: fib({}) reply time p99", c.n),
            "µs (log)",
            true,
            lines(c, &|x| {
                load(x, most).filter(|a| ok(a)).map(|a| a.p99_us as f64)
            }),
        ),
        (
            "connections-throughput.svg",
            format!("{most} active clients: requests per second"),
            "req/s (log)",
            true,
            lines(c, &|x| {
                load(x, most).filter(|a| ok(a)).map(|a| a.throughput_rps)
            }),
        ),
    ];
    measures
        .into_iter()
        .map(|(file, title, unit, log_y, lines)| {
            // A log axis cannot show 0 (fewer bytes than a page over few connections).
            let lines: Lines = lines
                .into_iter()
                .map(|(row, k, points)| {
                    let points = points.into_iter().filter(|p| !log_y || p.1 > 0.0).collect();
                    (row, k, points)
                })
                .filter(|(_, _, points): &(String, usize, Vec<(f64, f64)>)| !points.is_empty())
                .collect();
            (file, title, unit, log_y, lines)
        })
        .filter(|m| !m.4.is_empty())
        .map(|(file, title, unit, log_y, lines)| {
            line_plot(
                r,
                file,
                &format!("{title}{}", regime_suffix(r)),
                unit,
                log_y,
                &lines,
            )
        })
        .collect()
}

/// One measure against the idle connections (log x), a line per row.
fn line_plot(
    r: &BenchReport,
    file: &str,
    title: &str,
    unit: &str,
    log_y: bool,
    lines: &Lines,
) -> Result<Plot, PlotError> {
    let xs: Vec<f64> = lines
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|q| q.0))
        .collect();
    let ys: Vec<f64> = lines
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|q| q.1))
        .collect();
    let x_lo = xs.iter().copied().fold(f64::MAX, f64::min) * 0.7;
    let x_hi = xs.iter().copied().fold(0.0, f64::max) * 1.4;
    let y_hi = ys.iter().copied().fold(0.0, f64::max);
    let y_lo = ys
        .iter()
        .copied()
        .filter(|y| *y > 0.0)
        .fold(f64::MAX, f64::min);
    let series: Vec<crate::bench::canvas::Series> = lines
        .iter()
        .map(|(row, k, points)| {
            let hue = ((k + 1) as f64 * 0.618_034) % 1.0;
            let lightness = [0.38, 0.52, 0.45][(k + 1) % 3];
            let c = HSLColor(hue, 0.8, lightness).to_rgba();
            (row.clone(), RGBColor(c.0, c.1, c.2), points.clone())
        })
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height_for(series.len())))
            .into_drawing_area();
        let (chart_area, legend_area) = with_legend(&root)?;
        let x_range = (x_lo..x_hi)
            .log_scale()
            .with_key_points(log_ticks(x_lo, x_hi));
        let x_desc = "idle connections (log)";
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(x_desc)
                    .y_desc(unit)
                    .x_label_formatter(&|x| short(*x))
                    .y_label_formatter(&|y| tick(*y))
                    .draw()
                    .map_err(err)?;
                for (_, color, points) in &series {
                    chart
                        .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                        .map_err(err)?;
                    chart
                        .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                        .map_err(err)?;
                }
            }};
        }
        if log_y && y_lo < f64::MAX {
            let (lo, hi) = (y_lo * 0.6, y_hi * 1.6);
            draw!(
                titled(&chart_area, title)
                    .build_cartesian_2d(
                        x_range,
                        (lo..hi).log_scale().with_key_points(log_ticks(lo, hi))
                    )
                    .map_err(err)?
            );
        } else {
            draw!(
                titled(&chart_area, title)
                    .build_cartesian_2d(x_range, 0.0..(y_hi * 1.25).max(1.0))
                    .map_err(err)?
            );
        }
        legend(&legend_area, r, &series)?;
        root.present().map_err(err)?;
    }
    Ok(Plot {
        file: file.into(),
        title: title.into(),
        svg,
    })
}

/// The smallest and the largest idle counts `row` held at which one active client got
/// replies; `None` unless they differ.
fn answered_span<'a>(
    c: &'a ConnectionRecords,
    row: &str,
) -> Option<(&'a ConnectionRecord, &'a ConnectionRecord)> {
    let records: Vec<&ConnectionRecord> = of_row(c, row)
        .into_iter()
        .filter(|x| x.held > 0 && load(x, 1).is_some_and(|a| a.requests_ok > 0))
        .collect();
    let (first, last) = (*records.first()?, *records.last()?);
    (first.idle != last.idle).then_some((first, last))
}

/// The reply time of one active client grows by this factor from the smallest idle
/// count a row held to the largest; `None` without both.
fn growth(c: &ConnectionRecords, row: &str) -> Option<(f64, u64, u64, usize, usize)> {
    let (first, last) = answered_span(c, row)?;
    let (a, b) = (load(first, 1)?.p50_us, load(last, 1)?.p50_us);
    Some((b as f64 / a.max(1) as f64, a, b, first.held, last.held))
}

/// The seeds' claims this experiment decides.
fn findings(r: &BenchReport) -> Vec<Finding> {
    let mut out = Vec::new();
    let records = r.connections.as_ref().filter(|c| !c.records.is_empty());

    let (source, claim) = (
        "seed 003",
        "from a non-blocking loop to select to selectors (epoll): each step stops paying for idle connections",
    );
    out.push(match records.map(|c| {
        (
            growth(c, "nonblocking"),
            growth(c, "select"),
            growth(c, "epoll"),
            of_row(c, "select").iter().map(|x| x.held).max(),
            c,
        )
    }) {
        Some((Some(spin), select, Some(epoll), select_most, c)) => {
            let flat = |g: f64| g <= 1.0 + THRESHOLD * 2.0;
            let say = |name: &str, g: (f64, u64, u64, usize, usize)| {
                format!(
                    "{name} p50 {} -> {} µs from {} to {} idle (x{:.1})",
                    thousands(g.1 as f64),
                    thousands(g.2 as f64),
                    thousands(g.3 as f64),
                    thousands(g.4 as f64),
                    g.0
                )
            };
            let tokio = growth(c, "tokio");
            let verdict = match spin.0 >= 2.0 && flat(epoll.0) && tokio.is_none_or(|t| flat(t.0)) {
                true => Verdict::Reproduces,
                false => Verdict::Contradicts,
            };
            let mut evidence = vec![say("nonblocking", spin)];
            if let Some(s) = select {
                evidence.push(say("select", s));
            }
            if let Some(most) = select_most {
                evidence.push(format!(
                    "select held at most {} (FD_SETSIZE 1024 minus its own descriptors; the rest were told `ERR server busy`)",
                    thousands(most as f64)
                ));
            }
            evidence.push(say("epoll", epoll));
            if let Some(t) = tokio {
                evidence.push(say("tokio", t));
            }
            finding(source, claim, verdict, evidence.join("; "))
        }
        _ => missing(source, claim, "the connections experiment for nonblocking and epoll"),
    });

    let (source, claim) = (
        "seed 000, 总结 5",
        "coroutines are lighter than threads: an idle connection costs a coroutine far less memory",
    );
    let largest = |row: &str| {
        records.and_then(|c| {
            of_row(c, row)
                .into_iter()
                .filter(|x| x.held >= x.idle)
                .filter_map(|x| x.rss_kib.map(|v| (x.idle, v)))
                .next_back()
        })
    };
    out.push(match (largest("threads"), largest("coroutines")) {
        (Some((tn, t)), Some((cn, co))) => {
            let times = t / co.max(0.01);
            let verdict = match times >= 5.0 {
                true => Verdict::Reproduces,
                false => Verdict::Contradicts,
            };
            let tokio = largest("tokio")
                .map(|(n, v)| format!("; tokio {v:.2} KiB at {}", thousands(n as f64)))
                .unwrap_or_default();
            finding(
                source,
                claim,
                verdict,
                format!(
                    "resident memory per idle connection: threads {t:.2} KiB at {} idle, coroutines {co:.2} KiB at {} ({times:.0}x less){tokio}",
                    thousands(tn as f64),
                    thousands(cn as f64)
                ),
            )
        }
        _ => missing(source, claim, "the connections experiment for threads and coroutines"),
    });
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn active(clients: usize, p50: u64, ok: u64) -> ActiveLoad {
        ActiveLoad {
            clients,
            throughput_rps: ok as f64,
            requests_ok: ok,
            p50_us: p50,
            p99_us: p50 * 2,
            p99_9_us: p50 * 3,
            timeouts: if ok == 0 { 5 } else { 0 },
            err_replies: 0,
            failed: 0,
        }
    }

    pub(crate) fn record(
        row: &str,
        idle: usize,
        held: usize,
        p50: u64,
        rss: f64,
    ) -> ConnectionRecord {
        ConnectionRecord {
            regime: String::new(),
            row: row.into(),
            model: row.split(' ').next().unwrap().into(),
            stack_size: None,
            idle,
            held,
            waiting: 0,
            outcome: format!("{held} answered"),
            stopped: None,
            open_s: 0.5,
            descriptors: Some(1.0),
            rss_kib: Some(rss),
            vsz_kib: Some(if row == "threads" { 2060.0 } else { rss }),
            threads: Some(if row == "threads" { 1.0 } else { 0.0 }),
            idle_read_us: Some(0.5),
            active: vec![active(1, p50, 1000), active(16, p50 * 4, 8000)],
        }
    }

    fn report(records: Vec<ConnectionRecord>) -> BenchReport {
        let mut r = crate::bench::results::tests::report_of(Vec::new());
        r.calibration = Some(crate::bench::predict::tests::calibration());
        r.connections = Some(ConnectionRecords {
            n: 1,
            duration_s: 1.0,
            limits: vec!["descriptors per process: 20,000".into()],
            records,
        });
        r
    }

    /// The shape seen on a 2-core VM: the spinning loop grows with N, epoll is flat,
    /// select stops at its ceiling, threads cost tens of KiB.
    fn c10k_like() -> BenchReport {
        let mut records = Vec::new();
        for (n, spin, select_held) in [(100, 80, 100), (1000, 300, 1000), (15000, 4000, 1015)] {
            records.push(record("nonblocking", n, n, spin, 0.3));
            if n <= 1000 || select_held < n {
                let mut s = record("select", n, select_held.min(n), 90, 0.3);
                if select_held < n {
                    s.outcome = "1,015 answered, 13,985 told `ERR server busy`".into();
                    s.active = vec![ActiveLoad {
                        err_replies: 40,
                        ..active(1, 0, 0)
                    }];
                }
                records.push(s);
            }
            records.push(record("epoll", n, n, 85, 0.35));
            records.push(record("tokio", n, n, 90, 1.8));
            records.push(record("threads", n, n, 80, 26.0));
            records.push(record("coroutines", n, n, 95, 0.9));
        }
        report(records)
    }

    #[test]
    fn the_select_epoll_lesson_is_computed_from_the_records() {
        let f = findings(&c10k_like());
        assert_eq!(f[0].verdict, Verdict::Reproduces, "{}", f[0].evidence);
        assert!(
            f[0].evidence.contains("nonblocking p50 80 -> 4,000 µs"),
            "{}",
            f[0].evidence
        );
        assert!(
            f[0].evidence.contains("select held at most 1,015"),
            "{}",
            f[0].evidence
        );
        assert_eq!(f[1].verdict, Verdict::Reproduces, "{}", f[1].evidence);
        assert!(f[1].evidence.contains("29x less"), "{}", f[1].evidence);
        // A flat spinning loop contradicts the claim.
        let mut flat = c10k_like();
        for x in &mut flat.connections.as_mut().unwrap().records {
            if x.row == "nonblocking" {
                x.active[0].p50_us = 90;
            }
        }
        assert_eq!(findings(&flat)[0].verdict, Verdict::Contradicts);
        let none = findings(&report(Vec::new()));
        assert!(none.iter().all(|f| f.verdict == Verdict::NotMeasured));
    }

    #[test]
    fn tables_say_what_a_client_gets_and_predict_each_measure() {
        let r = c10k_like();
        let (tables, _) = Connections.tables(&r);
        assert_eq!(tables.len(), 6);
        let held = &tables[0];
        assert!(held.intro.contains("descriptors per process: 20,000"));
        let select = held.rows.iter().find(|row| row[0] == "`select`").unwrap();
        assert!(select[3].contains("told `ERR server busy`"), "{select:?}");
        let rss = &tables[2];
        let epoll = rss.rows.iter().find(|row| row[0] == "`epoll`").unwrap();
        assert_eq!(epoll.last().unwrap(), "yes");
        let tokio = rss.rows.iter().find(|row| row[0] == "`tokio`").unwrap();
        assert_eq!(&tokio[tokio.len() - 2], "<= 3");
        let vsz = &tables[3];
        let threads = vsz.rows.iter().find(|row| row[0] == "`threads`").unwrap();
        // Its stack and guard, and up to 16 arenas of 64 MiB over 15,000 connections.
        assert_eq!(threads[threads.len() - 2], "2052–2122", "{threads:?}");
        let descriptors = &tables[1];
        let single_like = record("single", 100, 1, 0, 0.0);
        let waiting = ConnectionRecord {
            waiting: 99,
            ..single_like
        };
        assert_eq!(predicted_descriptors(&waiting).0, 0.01);
        assert!(
            descriptors
                .rows
                .iter()
                .all(|row| row[row.len() - 2] == "1.00")
        );
        let latency = &tables[4];
        let spin = latency
            .rows
            .iter()
            .find(|row| row[0] == "`nonblocking`")
            .unwrap();
        // 80 µs + 0.5 µs per idle read x 14,900 more connections.
        assert!(
            spin[spin.len() - 2].starts_with("7,530 at 15,000 idle ‡"),
            "{spin:?}"
        );
        let epoll = latency.rows.iter().find(|row| row[0] == "`epoll`").unwrap();
        assert_eq!(epoll[epoll.len() - 2], "85 at 15,000 idle");
        let select = latency
            .rows
            .iter()
            .find(|row| row[0] == "`select`")
            .unwrap();
        assert!(
            select[3].starts_with("no answer: 40 ERR replies"),
            "{select:?}"
        );
    }

    #[test]
    fn plots_draw_one_line_per_row_on_log_axes() {
        let plots = Connections.plots(&c10k_like()).unwrap();
        let files: Vec<&str> = plots.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(files.len(), 7, "{files:?}");
        for plot in &plots {
            assert!(plot.svg.contains("idle connections (log)"), "{}", plot.file);
            assert!(
                plot.svg.contains("\nepoll\n") || plot.svg.contains(">epoll<"),
                "{}",
                plot.file
            );
        }
    }

    #[test]
    fn stack_sizes_predict_the_address_space() {
        let mut x = record("threads (128KiB stacks)", 100, 100, 80, 20.0);
        x.stack_size = Some(128 << 10);
        x.threads = Some(1.0);
        assert_eq!(predicted_vsz(&x), Some(132.0));
        x.threads = Some(2.0);
        assert_eq!(predicted_vsz(&x), Some(132.0 + 2052.0));
        x.threads = Some(0.0);
        assert_eq!(predicted_vsz(&x), None);
    }
}
