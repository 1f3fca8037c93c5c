//! The seeds' Python results, reproduced: seed 000's tables and seed 004's heavy
//! request, for fiblab's models without and with an emulated GIL (`--gil`,
//! [`crate::gil`]), next to the seeds' own Python servers measured in the same run.
//!
//! ```text
//! size the CPU-bound n: time the seeds' fib(20) in python3, pick fiblab's n that costs
//!     as much natively (in Rust fib(20) is ~50x cheaper: it would be I/O-bound)
//! for each repetition, each row (model, model+gil, each Python peer):
//!     start the server (`--gil --gil-stats FILE` for +gil), for n in (light, CPU), clients:
//!         a closed loop, and the lock's counters before and after (the mechanism)
//! for each row: seed 004's heavy request among light ones
//! tables: throughput and the CPU-bound gain from a second client, the lock's waits and
//!     forced switches; findings: each GIL claim without --gil, with it, and for the
//!     Python server the seeds measured
//! ```
//!
//! It runs when the scenario has a `[python]` section (`scenarios/python.toml`).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::{Experiment, Row, Run, Served};
use crate::bench::canvas::PlotError;
use crate::bench::measure::heavy::{calibrate_heavy_n, calibrate_remote, heavy_among_light};
use crate::bench::results::{
    BenchReport, Finding, Plot, PythonRecords, PythonSample, Table, Verdict, plural, thousands,
};
use crate::bench::rules::{finding, ratio};
use crate::bench::scenario::{self, Scenario};
use crate::gil::{GilCounts, GilMode, read_published};
use crate::load::Hooks;
use crate::load::mix::{Class, Mix};
use crate::server::Variant;

/// See the module docs.
pub struct Python;

/// Each fiblab model and the seed server that is its Python original.
const PYTHON_ORIGINALS: &[(&str, &str)] = &[
    ("threads", "py-thread_server"),
    ("threadpool", "py-thread_server"),
    ("procpool", "py-multiprocess"),
    ("coroutines", "py-aserver"),
    ("isolates", "py-subinterpreters"),
    ("single", "py-one_server"),
];

/// One row of the experiment's tables.
#[derive(Debug, Clone)]
enum PyRow {
    Model { variant: Variant, gil: bool },
    Peer(crate::bench::results::Target),
}

impl PyRow {
    fn label(&self) -> String {
        match self {
            PyRow::Model { variant, gil } => {
                format!("{variant}{}", if *gil { "+gil" } else { "" })
            }
            PyRow::Peer(t) => t.name.clone(),
        }
    }
}

fn rows(py: &scenario::Python, rows: &[Row]) -> Vec<PyRow> {
    let mut out: Vec<PyRow> = py
        .models
        .iter()
        .flat_map(|v| {
            [false, true].map(|gil| PyRow::Model {
                variant: v.clone(),
                gil,
            })
        })
        .collect();
    out.extend(rows.iter().filter_map(|r| match r {
        Row::Target(t) if !t.ping => Some(PyRow::Peer(t.clone())),
        _ => None,
    }));
    out
}

/// Why CPython's fib could not be timed.
#[derive(Debug, thiserror::Error)]
pub enum PythonTimingError {
    #[error(transparent)]
    Seeds(#[from] crate::seeds::SeedError),
    #[error("no seed program defines fib(n)")]
    NoFib,
    #[error("cannot run python3: {0}")]
    NoPython(std::io::Error),
    #[error("python3 failed: {0}")]
    Failed(String),
}

/// The seeds' fib(`n`) in python3, µs (the median of 5 batches).
///
/// # Errors
/// The seeds cannot be read, none defines fib, or python3 is missing or fails.
pub fn python_fib_us(n: u32) -> Result<f64, PythonTimingError> {
    let dir = crate::seeds::default_dir();
    let programs = crate::seeds::load(&dir)?;
    let code = programs
        .iter()
        .find_map(|p| fib_definition(&p.code))
        .ok_or(PythonTimingError::NoFib)?;
    let script = format!(
        "{code}\nimport time\nruns = []\nfor _ in range(5):\n    k = 0\n    t = time.perf_counter()\n    while time.perf_counter() - t < 0.05:\n        fib({n}); k += 1\n    runs.append((time.perf_counter() - t) / k)\nruns.sort()\nprint(runs[2] * 1e6)\n"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .map_err(PythonTimingError::NoPython)?;
    if !out.status.success() {
        return Err(PythonTimingError::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<f64>()
        .map_err(|e| PythonTimingError::Failed(format!("it printed no time: {e}")))
}

/// `def fib(n): ...` as a seed program writes it: the `def` line and its indented body.
fn fib_definition(code: &str) -> Option<String> {
    let mut lines = code.lines().skip_while(|l| !l.starts_with("def fib(n)"));
    let first = lines.next()?;
    let body: Vec<&str> = lines
        .take_while(|l| l.starts_with(' ') || l.starts_with('\t') || l.trim().is_empty())
        .collect();
    Some(
        std::iter::once(first)
            .chain(body)
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// fiblab's n whose native fib costs closest to `us` on this machine (log scale), and
/// its cost.
fn native_n_costing(us: f64) -> (u32, f64) {
    let mut best = (1, crate::calibrate::fib_time(1));
    for n in 10..=34 {
        let cost = crate::calibrate::fib_time(n);
        if (cost.ln() - us.ln()).abs() < (best.1.ln() - us.ln()).abs() {
            best = (n, cost);
        }
        if cost > us * 2.0 {
            break;
        }
    }
    best
}

/// Sizes the CPU-bound workload once per run.
fn sized(py: &scenario::Python) -> PythonRecords {
    let (python_us, how) = match python_fib_us(py.seed_n) {
        Ok(us) => (
            us,
            format!(
                "the seeds' own fib({}) timed in python3 here: {} µs",
                py.seed_n,
                thousands(us)
            ),
        ),
        Err(why) => {
            // CPython runs naive fib about 50x slower than native code (CPython 3.11
            // on these machines: ~570 µs against ~12 µs for fib(20)).
            let us = crate::calibrate::fib_time(py.seed_n) * 50.0;
            (
                us,
                format!(
                    "python3 could not be timed ({why}); assumed 50x fiblab's fib({}): {} µs",
                    py.seed_n,
                    thousands(us)
                ),
            )
        }
    };
    let (cpu_n, cpu_us) = native_n_costing(python_us);
    PythonRecords {
        seed_n: py.seed_n,
        light_n: py.light_n,
        // To the nanosecond, so that they read back from JSON bit for bit.
        python_fib_us: (python_us * 1000.0).round() / 1000.0,
        cpu_n,
        cpu_n_us: (cpu_us * 1000.0).round() / 1000.0,
        how_sized: how,
        switch_interval_ms: py.switch_interval.as_secs_f64() * 1000.0,
        samples: Vec::new(),
        starvation: Vec::new(),
    }
}

impl Experiment for Python {
    fn name(&self) -> &'static str {
        "python: the GIL emulated"
    }

    fn steps(&self, scenario: &Scenario, run_rows: &[Row]) -> usize {
        match &scenario.python {
            None => 0,
            Some(py) => {
                let rows = rows(py, run_rows).len();
                rows * 2 * scenario.clients.len() * scenario.repetitions + rows
            }
        }
    }

    fn measure(&self, run: &mut Run<'_>, report: &mut BenchReport) -> io::Result<()> {
        let Some(py) = &run.scenario.python else {
            return Ok(());
        };
        if report.python.is_none() {
            run.step("python: timing the seeds' fib in python3 to size the CPU-bound n");
            report.python = Some(sized(py));
        }
        let (cpu_n, seed_n) = report
            .python
            .as_ref()
            .map_or((py.seed_n, py.seed_n), |p| (p.cpu_n, p.seed_n));
        let stats_dir = std::env::temp_dir().join(format!("fiblab-gil-{}", std::process::id()));
        std::fs::create_dir_all(&stats_dir)?;
        let rows = rows(py, run.rows);
        let clients = run.scenario.clients.clone();
        let mut samples = Vec::new();
        for repetition in 0..run.scenario.repetitions {
            for row in &rows {
                let label = row.label();
                let stats = stats_dir.join(format!("{}.json", label.replace('+', "-")));
                let (served, cpu) = start(run, py, row, &stats, cpu_n, seed_n)?;
                for (workload, n) in [("io", py.light_n), ("cpu", cpu)] {
                    for &c in &clients {
                        if run.interrupted() {
                            break;
                        }
                        run.step(&format!(
                            "python: {label} fib({n}) clients={c} repetition {}/{}",
                            repetition + 1,
                            run.scenario.repetitions
                        ));
                        let before = counts(&stats);
                        let mix =
                            Mix::new(vec![Class::fib(n, 1, true)]).map_err(io::Error::other)?;
                        let r = run.load(&run.spec(served.addr, mix, c), Hooks::default())?;
                        let after = counts(&stats);
                        samples.push(PythonSample {
                            regime: run.regime.name.clone(),
                            row: label.clone(),
                            workload: workload.into(),
                            n,
                            clients: c,
                            repetition,
                            throughput_rps: r.throughput_rps,
                            requests: r.requests_ok,
                            gil: match (before, after) {
                                (Some(b), Some(a)) => Some(a.since(&b)),
                                _ => None,
                            },
                        });
                    }
                }
                served.stop();
            }
        }
        let mut starved = Vec::new();
        for row in &rows {
            if run.interrupted() {
                break;
            }
            let label = row.label();
            run.step(&format!(
                "python: {label}, one heavy request among light ones"
            ));
            let stats = stats_dir.join(format!("{}-starvation.json", label.replace('+', "-")));
            let (served, _) = start(run, py, row, &stats, cpu_n, seed_n)?;
            let heavy_n = match row {
                PyRow::Model { .. } => calibrate_heavy_n(1.0),
                PyRow::Peer(t) => match calibrate_remote(t.addr, 1.0) {
                    Ok(n) => n,
                    Err(e) => {
                        report.notes.push(format!(
                            "`{label}` did not answer when its heavy request was being sized ({e}); it has no heavy-request row."
                        ));
                        continue;
                    }
                },
            };
            let experiment = scenario::Starvation {
                light_n: py.light_n,
                heavy_seconds: 1.0,
                at: py.at,
                length: py.length,
            };
            let before = counts(&stats);
            let mut result = heavy_among_light(run, served.addr, &label, &experiment, heavy_n)?;
            let after = counts(&stats);
            result.regime = run.regime.name.clone();
            starved.push((result, before.zip(after).map(|(b, a)| a.since(&b))));
            served.stop();
        }
        let _ = std::fs::remove_dir_all(&stats_dir);
        if let Some(records) = &mut report.python {
            records.samples.extend(samples);
            records.starvation.extend(
                starved
                    .into_iter()
                    .map(|(s, gil)| crate::bench::results::PythonStarvation { result: s, gil }),
            );
        }
        Ok(())
    }

    fn tables(&self, r: &BenchReport) -> (Vec<Table>, Vec<String>) {
        let Some(py) = &r.python else {
            return (Vec::new(), Vec::new());
        };
        if py.samples.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let cells = cells(py);
        let mut labels: Vec<String> = Vec::new();
        for s in &py.samples {
            if !labels.contains(&s.row) {
                labels.push(s.row.clone());
            }
        }
        let mut clients: Vec<usize> = py.samples.iter().map(|s| s.clients).collect();
        clients.sort_unstable();
        clients.dedup();
        let widest = *clients.last().unwrap_or(&1);
        let mut header = vec!["server".to_string(), "lock".to_string()];
        for w in ["I/O", "CPU"] {
            for &c in &clients {
                header.push(format!("{w}, {}", plural(c, "client")));
            }
        }
        header.push(format!("CPU gain, 1 -> {widest}"));
        header.push(format!(
            "lock wait per CPU request, {}",
            plural(widest, "client")
        ));
        header.push("forced switches per s".into());
        let rows = labels
            .iter()
            .map(|label| {
                let mut row = vec![format!("`{label}`"), lock_of(r, label).into()];
                for w in ["io", "cpu"] {
                    for &c in &clients {
                        row.push(cells.rps(label, w, c).map_or(String::new(), thousands));
                    }
                }
                row.push(gain(&cells, label).map_or(String::new(), |g| format!("x{}", ratio(g))));
                let gil = cells.gil(label, "cpu", widest);
                row.push(gil.map_or(String::new(), |(counts, requests)| {
                    per_request_wait(&counts, requests)
                }));
                row.push(
                    cells
                        .gil_rate(label, "cpu", widest)
                        .map_or(String::new(), |rate| format!("{rate:.0}")),
                );
                row
            })
            .collect();
        let mut tables = vec![Table {
            title: "The GIL, emulated: seed 000's tables".into(),
            intro: format!(
                "Requests per second for the I/O-bound fib({}) and a CPU-bound request sized as the seeds' was: fib({}) in CPython for the Python servers, fib({}) for fiblab's ({} µs here; {}). Lock: none (Rust, or free-threaded Python), `--gil` (switch interval {} ms), or CPython's own. The lock's figures are the server's own counters (`--gil-stats`).",
                py.light_n,
                py.seed_n,
                py.cpu_n,
                thousands(py.cpu_n_us),
                py.how_sized,
                py.switch_interval_ms
            ),
            header,
            left: 2,
            text_last: false,
            rows,
        }];
        if !py.starvation.is_empty() {
            tables.push(Table {
                title: "The GIL, emulated: one heavy request among light ones (seed 004)".into(),
                intro: "As seed 004: a closed loop of light requests, and one request sized to take about a second arriving on another connection; \"kept\" is light throughput during it over before it. The lock's figures cover the whole run.".into(),
                header: ["server", "lock", "heavy n", "light req/s before", "during", "kept", "lock waits", "mean wait", "forced switches"]
                    .map(String::from)
                    .to_vec(),
                left: 2,
                text_last: false,
                rows: py
                    .starvation
                    .iter()
                    .map(|s| {
                        let res = &s.result;
                        vec![
                            format!("`{}`", res.variant),
                            lock_of(r, &res.variant).into(),
                            res.heavy_n.to_string(),
                            thousands(res.light_before_rps),
                            thousands(res.light_during_rps),
                            ratio(res.kept),
                            s.gil.map_or(String::new(), |g| thousands(g.contended as f64)),
                            s.gil.map_or(String::new(), |g| mean_wait(&g)),
                            s.gil.map_or(String::new(), |g| thousands(g.forced_switches as f64)),
                        ]
                    })
                    .collect(),
            });
        }
        tables.push(claims_table(r));
        (tables, Vec::new())
    }

    fn plots(&self, _: &BenchReport) -> Result<Vec<Plot>, PlotError> {
        Ok(Vec::new())
    }

    fn findings(&self, r: &BenchReport) -> Vec<Finding> {
        match &r.python {
            Some(py) if !py.samples.is_empty() => claims(r)
                .into_iter()
                .map(|c| {
                    finding(
                        c.source,
                        c.claim,
                        c.with_gil.unwrap_or(Verdict::NotMeasured),
                        c.evidence,
                    )
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Starts `row`'s server (none for a peer); returns where it serves and the CPU-bound
/// n it is measured at.
fn start(
    run: &Run<'_>,
    py: &scenario::Python,
    row: &PyRow,
    stats: &std::path::Path,
    cpu_n: u32,
    seed_n: u32,
) -> io::Result<(Served, u32)> {
    match row {
        PyRow::Model { variant, gil } => {
            let served = run.serve_with(&Row::Model(variant.clone()), |config| {
                if *gil {
                    config.gil = Some(GilMode::Shared);
                    config.switch_interval = py.switch_interval;
                    config.gil_stats = Some(PathBuf::from(stats));
                }
            })?;
            Ok((served, cpu_n))
        }
        PyRow::Peer(t) => Ok((run.serve(&Row::Target(t.clone()))?, seed_n)),
    }
}

/// The server's lock counters now: a moment for the file to be rewritten first.
fn counts(path: &std::path::Path) -> Option<GilCounts> {
    if !path.exists() {
        return None;
    }
    std::thread::sleep(Duration::from_millis(30));
    read_published(path)
}

fn lock_of(r: &BenchReport, label: &str) -> &'static str {
    if r.is_peer(label) {
        "CPython's"
    } else if label.ends_with("+gil") {
        "`--gil`"
    } else {
        "none"
    }
}

fn per_request_wait(g: &GilCounts, requests: u64) -> String {
    match requests {
        0 => String::new(),
        r => format!("{:.0} µs", g.wait_ns as f64 / 1000.0 / r as f64),
    }
}

fn mean_wait(g: &GilCounts) -> String {
    match g.contended {
        0 => "0".into(),
        c => format!("{:.0} µs", g.wait_ns as f64 / 1000.0 / c as f64),
    }
}

/// The samples, aggregated: medians of throughput, sums of the lock's counters.
struct Cells<'a> {
    py: &'a PythonRecords,
}

fn cells(py: &PythonRecords) -> Cells<'_> {
    Cells { py }
}

impl Cells<'_> {
    fn matching<'b>(
        &'b self,
        row: &'b str,
        workload: &'b str,
        clients: usize,
    ) -> impl Iterator<Item = &'b PythonSample> + 'b {
        self.py
            .samples
            .iter()
            .filter(move |s| s.row == row && s.workload == workload && s.clients == clients)
    }

    fn rps(&self, row: &str, workload: &str, clients: usize) -> Option<f64> {
        let mut v: Vec<f64> = self
            .matching(row, workload, clients)
            .map(|s| s.throughput_rps)
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().filter(|x| *x > 0.0)
    }

    fn gil(&self, row: &str, workload: &str, clients: usize) -> Option<(GilCounts, u64)> {
        let mut total: Option<(GilCounts, u64)> = None;
        for s in self.matching(row, workload, clients) {
            let Some(g) = s.gil else { continue };
            let (t, requests) = total.get_or_insert((GilCounts::default(), 0));
            t.acquisitions += g.acquisitions;
            t.contended += g.contended;
            t.wait_ns += g.wait_ns;
            t.drop_requests += g.drop_requests;
            t.forced_switches += g.forced_switches;
            *requests += s.requests;
        }
        total
    }

    /// Forced switches per second of measured time.
    fn gil_rate(&self, row: &str, workload: &str, clients: usize) -> Option<f64> {
        let (g, requests) = self.gil(row, workload, clients)?;
        let rps = self.rps(row, workload, clients)?;
        let seconds = requests as f64 / rps;
        (seconds > 0.0).then(|| g.forced_switches as f64 / seconds)
    }
}

fn gain(cells: &Cells<'_>, row: &str) -> Option<f64> {
    let mut clients: Vec<usize> = cells.py.samples.iter().map(|s| s.clients).collect();
    clients.sort_unstable();
    clients.dedup();
    let (&first, &last) = (clients.first()?, clients.last()?);
    if first == last {
        return None;
    }
    Some(cells.rps(row, "cpu", last)? / cells.rps(row, "cpu", first)?)
}

fn kept_of(r: &BenchReport, row: &str) -> Option<f64> {
    r.python
        .as_ref()?
        .starvation
        .iter()
        .find(|s| s.result.variant == row)
        .map(|s| s.result.kept)
}

/// One GIL claim, decided without the lock, with it, and for CPython.
struct Claim {
    source: &'static str,
    claim: &'static str,
    without: Option<Verdict>,
    with_gil: Option<Verdict>,
    python: Option<Verdict>,
    evidence: String,
}

fn verdict(holds: Option<bool>) -> Option<Verdict> {
    holds.map(|h| match h {
        true => Verdict::Reproduces,
        false => Verdict::Contradicts,
    })
}

fn original(model: &str) -> Option<&'static str> {
    PYTHON_ORIGINALS
        .iter()
        .find(|(m, _)| *m == model)
        .map(|(_, p)| *p)
}

fn claims(r: &BenchReport) -> Vec<Claim> {
    let Some(py) = &r.python else {
        return Vec::new();
    };
    let cells = cells(py);
    let peer = |model: &str| original(model).filter(|p| r.is_peer(p));
    let gain_of = |row: &str| gain(&cells, row);
    let show_gain =
        |row: &str| gain_of(row).map_or("not measured".to_string(), |g| format!("x{}", ratio(g)));
    let show_kept = |row: &str| kept_of(r, row).map_or("not measured".to_string(), ratio);
    let mut out = Vec::new();

    // With one CPU for the server no second client can gain on CPU-bound work, lock
    // or no lock: the scaling claims do not apply in such a regime.
    let one_cpu = r.regimes.first().is_some_and(|p| p.server_cpus.len() == 1);
    let scaling = |v: Option<Verdict>| match one_cpu {
        true => v.map(|_| Verdict::DoesNotApply),
        false => v,
    };
    let one_cpu_note = match one_cpu {
        true => {
            " (the server has one CPU in this regime: nothing can gain from a second client; the Python servers are not pinned by fiblab)"
        }
        false => "",
    };
    // "Does not gain": under 1.3x, or no more than one lock allows: with fib
    // serialized, a second client can only overlap its round trip with the other's
    // fib, so the gain is at most (one client's request time) / (fib's time).
    let serial_bound = |row: &str| {
        let work = match r.is_peer(row) {
            true => py.python_fib_us,
            false => py.cpu_n_us,
        };
        cells.rps(row, "cpu", 1).map(|rps| 1e6 / rps / work)
    };
    let holds = |row: &str| {
        gain_of(row).map(|g| g < 1.3 || serial_bound(row).is_some_and(|b| g <= b * 1.05))
    };
    let show_bound = |row: &str| {
        serial_bound(row).map_or(String::new(), |b| {
            format!(" (one lock allows x{})", ratio(b))
        })
    };
    let py_threads = peer("threads");
    out.push(Claim {
        source: "seed 000, 总结 4 (GIL)",
        claim: "CPU-bound, threads do not gain from a second client: the GIL lets one run at a time",
        without: scaling(verdict(holds("threads"))),
        with_gil: scaling(verdict(holds("threads+gil"))),
        python: py_threads.and_then(|p| scaling(verdict(holds(p)))),
        evidence: format!(
            "CPU-bound throughput, 1 -> 2 clients: threads {}{}, threads --gil {}{}{}{one_cpu_note}",
            show_gain("threads"),
            show_bound("threads"),
            show_gain("threads+gil"),
            show_bound("threads+gil"),
            py_threads.map_or(String::new(), |p| format!(
                ", CPython's {p} {}{}",
                show_gain(p),
                show_bound(p)
            ))
        ),
    });

    let gains = |g: Option<f64>| g.map(|g| g >= 1.2);
    let both = |a: Option<bool>, b: Option<bool>| match (a, b) {
        (Some(a), Some(b)) => Some(a && b),
        (a, None) => a,
        (None, b) => b,
    };
    let py_procs = peer("procpool");
    out.push(Claim {
        source: "seed 000, 总结 4 (GIL)",
        claim: "CPU-bound, processes gain from a second client: each has its own interpreter and lock",
        without: scaling(verdict(both(gains(gain_of("procpool")), gains(gain_of("prefork"))))),
        with_gil: scaling(verdict(both(
            gains(gain_of("procpool+gil")),
            gains(gain_of("prefork+gil")),
        ))),
        python: py_procs.and_then(|p| scaling(verdict(gains(gain_of(p))))),
        evidence: format!(
            "CPU-bound throughput, 1 -> 2 clients: procpool --gil {}, prefork --gil {}{}{one_cpu_note}",
            show_gain("procpool+gil"),
            show_gain("prefork+gil"),
            py_procs.map_or(String::new(), |p| format!(", CPython's {p} {}", show_gain(p)))
        ),
    });

    let collapses = |k: Option<f64>| k.map(|k| k < 0.1);
    out.push(Claim {
        source: "seed 004 (GIL)",
        claim: "one CPU-bound request collapses an I/O-bound thread's throughput (~100x): the light thread waits a switch interval for the lock at every request",
        without: verdict(collapses(kept_of(r, "threads"))),
        with_gil: verdict(collapses(kept_of(r, "threads+gil"))),
        python: py_threads.and_then(|p| verdict(collapses(kept_of(r, p)))),
        evidence: format!(
            "light throughput kept during the heavy request: threads {}, threads --gil {}{}",
            show_kept("threads"),
            show_kept("threads+gil"),
            py_threads.map_or(String::new(), |p| format!(", CPython's {p} {}", show_kept(p)))
        ),
    });

    let survives = |k: Option<f64>| k.map(|k| k > 0.5);
    out.push(Claim {
        source: "seed 004 (GIL)",
        claim: "a process pool removes the collapse: the heavy request holds a worker process's lock, not the server's",
        without: verdict(survives(kept_of(r, "procpool"))),
        with_gil: verdict(survives(kept_of(r, "procpool+gil"))),
        python: py_procs.and_then(|p| verdict(survives(kept_of(r, p)))),
        evidence: format!(
            "light throughput kept: procpool --gil {}{}",
            show_kept("procpool+gil"),
            py_procs.map_or(String::new(), |p| format!(", CPython's {p} {}", show_kept(p)))
        ),
    });
    out
}

fn claims_table(r: &BenchReport) -> Table {
    let label =
        |v: Option<Verdict>| v.map_or("not measured".to_string(), |v| v.label().to_string());
    Table {
        title: "The seeds' GIL conclusions, without the lock, with it, and in CPython".into(),
        intro: "Each claim decided three times by the same rule: on fiblab's models without a lock, with `--gil`, and on the seed's own Python server measured in the same run. \"agrees\": `--gil` and CPython give the same verdict.".into(),
        header: ["source", "claim", "no lock", "`--gil`", "CPython", "agrees", "evidence"]
            .map(String::from)
            .to_vec(),
        left: 2,
        text_last: true,
        rows: claims(r)
            .into_iter()
            .map(|c| {
                vec![
                    c.source.to_string(),
                    c.claim.to_string(),
                    label(c.without),
                    format!("**{}**", label(c.with_gil)),
                    label(c.python),
                    match (c.with_gil, c.python) {
                        (Some(a), Some(b)) if a == b => "yes".into(),
                        (Some(_), Some(_)) => "**no**".into(),
                        _ => "n/a".into(),
                    },
                    c.evidence,
                ]
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_fib_is_found_and_runs() {
        let code = "import x\n\ndef fib(n):\n    if n <= 2:\n        return 1\n    else:\n        return fib(n-1) + fib(n-2)\n\ndef other():\n    pass\n";
        let def = fib_definition(code).unwrap();
        assert!(def.starts_with("def fib(n):"));
        assert!(def.contains("return fib(n-1) + fib(n-2)"));
        assert!(!def.contains("other"));
        assert_eq!(fib_definition("print(1)"), None);
    }

    fn sample(row: &str, workload: &str, clients: usize, rps: f64) -> PythonSample {
        PythonSample {
            regime: String::new(),
            row: row.into(),
            workload: workload.into(),
            n: 1,
            clients,
            repetition: 0,
            throughput_rps: rps,
            requests: (rps / 2.0) as u64,
            gil: Some(GilCounts {
                acquisitions: 10,
                contended: 5,
                wait_ns: 5_000_000,
                drop_requests: 2,
                forced_switches: 2,
            }),
        }
    }

    fn kept(row: &str, kept: f64) -> crate::bench::results::PythonStarvation {
        crate::bench::results::PythonStarvation {
            result: crate::bench::results::tests::kept_by(row, kept),
            gil: None,
        }
    }

    #[test]
    fn python_like_figures_reproduce_with_the_lock_and_agree_with_cpython() {
        let mut r = crate::bench::results::tests::report_of(vec![]);
        r.peers = vec![
            "py-thread_server=127.0.0.1:1".parse().unwrap(),
            "py-multiprocess=127.0.0.1:2".parse().unwrap(),
        ];
        let mut samples = Vec::new();
        for (row, one, two) in [
            ("threads", 1000.0, 1900.0),
            ("threads+gil", 1000.0, 1010.0),
            ("procpool+gil", 900.0, 1700.0),
            ("prefork+gil", 1000.0, 1900.0),
            ("py-thread_server", 400.0, 400.0),
            ("py-multiprocess", 400.0, 700.0),
        ] {
            samples.push(sample(row, "cpu", 1, one));
            samples.push(sample(row, "cpu", 2, two));
        }
        r.python = Some(PythonRecords {
            seed_n: 20,
            light_n: 1,
            python_fib_us: 570.0,
            cpu_n: 27,
            cpu_n_us: 560.0,
            how_sized: "test".into(),
            switch_interval_ms: 5.0,
            samples,
            starvation: vec![
                kept("threads", 1.2),
                kept("threads+gil", 0.01),
                kept("procpool+gil", 0.9),
                kept("py-thread_server", 0.01),
                kept("py-multiprocess", 0.95),
            ],
        });
        let c = claims(&r);
        let verdicts: Vec<(Option<Verdict>, Option<Verdict>, Option<Verdict>)> = c
            .iter()
            .map(|c| (c.without, c.with_gil, c.python))
            .collect();
        use Verdict::*;
        assert_eq!(
            verdicts,
            [
                (Some(Contradicts), Some(Reproduces), Some(Reproduces)),
                (None, Some(Reproduces), Some(Reproduces)),
                (Some(Contradicts), Some(Reproduces), Some(Reproduces)),
                (None, Some(Reproduces), Some(Reproduces)),
            ]
        );
        assert!(
            c[0].evidence.contains("threads --gil x1.01"),
            "{}",
            c[0].evidence
        );
        assert!(
            c[0].evidence.contains("CPython's py-thread_server x1.00"),
            "{}",
            c[0].evidence
        );
        let table = claims_table(&r);
        assert!(
            table.rows.iter().all(|row| row[5] == "yes"),
            "{:?}",
            table.rows
        );
        let (tables, _) = Python.tables(&r);
        let lock = &tables[0].rows;
        let threads_gil = lock.iter().find(|row| row[0] == "`threads+gil`").unwrap();
        assert_eq!(threads_gil[1], "`--gil`");
        // 10 ms of waits over 1010 requests (two samples' counters, 505 requests each).
        assert!(
            threads_gil.iter().any(|c| c.ends_with(" µs")),
            "{threads_gil:?}"
        );
        assert_eq!(Python.findings(&r).len(), 4);

        // A gain over 1.3x that one lock still explains: fib (560 µs) serialized, each
        // client's round trip overlapped: 1 client at 1,000 req/s allows x1.79.
        let py = r.python.as_mut().unwrap();
        py.samples.retain(|s| s.row != "threads+gil");
        py.samples.push(sample("threads+gil", "cpu", 1, 1000.0));
        py.samples.push(sample("threads+gil", "cpu", 2, 1600.0));
        let c = claims(&r);
        assert_eq!(c[0].with_gil, Some(Reproduces), "{}", c[0].evidence);
        assert!(
            c[0].evidence.contains("one lock allows x1.79"),
            "{}",
            c[0].evidence
        );

        // A server with one CPU cannot show scaling, lock or not.
        r.regimes = vec![crate::bench::scenario::RegimePlan {
            name: "pinned-spinning".into(),
            server_cpus: vec![1],
            client_cpus: vec![0],
            spin: true,
        }];
        let c = claims(&r);
        assert_eq!(
            (c[0].with_gil, c[1].with_gil),
            (Some(DoesNotApply), Some(DoesNotApply))
        );
        assert_eq!(
            c[2].with_gil,
            Some(Reproduces),
            "the collapse needs no second CPU"
        );
        assert!(c[1].evidence.contains("one CPU in this regime"));
    }
}
