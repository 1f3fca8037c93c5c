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

mod claims;
mod sizing;

pub mod records;
pub mod settings;

use claims::*;
pub use sizing::*;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::{Experiment, Row, Run, Served};
use crate::bench::canvas::PlotError;
use crate::bench::measure::heavy::{calibrate_heavy_n, calibrate_remote, heavy_among_light};
use crate::bench::results::{
    BenchReport, Finding, Plot, PythonRecords, PythonSample, Table, Verdict, plural, thousands,
};
use crate::bench::rules::{all, decide, finding, ratio, ratio_ci};
use crate::bench::scenario::{self, Scenario};
use crate::gil::{GilCounts, GilMode, read_published};
use crate::load::Hooks;
use crate::load::mix::{Class, Mix};
use crate::server::Variant;
use crate::stats::{Difference, Interval};

/// See the module docs.
pub struct Python;

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
                        row.push(
                            cells
                                .throughput(label, w, c)
                                .map_or(String::new(), |i| i.text(thousands)),
                        );
                    }
                }
                row.push(
                    gain(&cells, label).map_or(String::new(), |g| format!("x{}", ratio_ci(&g))),
                );
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
