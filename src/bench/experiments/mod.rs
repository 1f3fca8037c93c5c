//! The benchmark's experiments, behind one interface: each one measures, keeps its
//! records in the [`BenchReport`], and turns them into its own tables, plots and
//! findings. The runner ([`super::measure`]), the progress bar and every exporter walk
//! [`EXPERIMENTS`] and know nothing of any one experiment.
//!
//! ```text
//! scenario ──> runner ──> for each experiment: measure(run, report)
//!                            report (results.rs) ──> for each experiment:
//!                                                     tables, plots, findings
//!                                                       ──> export: markdown, HTML, JSON, SVG
//! ```
//!
//! Adding an experiment is one module here and one entry in [`EXPERIMENTS`] (and, if it
//! keeps new records, a field in [`BenchReport`]); no other experiment's file changes.

pub mod seed_tables;
pub mod starvation;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::process::ServerProcess;
use crate::server::{Config, Variant};
use crate::service::{Service, ServiceKind};

use super::canvas::PlotError;
use super::results::{BenchReport, FLOOR, Finding, Plot, Table, Target};
use super::scenario::Scenario;

/// One benchmark experiment. See the module docs.
pub trait Experiment: Sync {
    /// How progress lines and the docs name it.
    fn name(&self) -> &'static str;
    /// How many progress steps [`measure`](Self::measure) will report for these rows.
    fn steps(&self, scenario: &Scenario, rows: &[Row]) -> usize;
    /// Measures, and keeps the records in `report`. Stops early, keeping what it has,
    /// once the run is interrupted.
    ///
    /// # Errors
    /// A server of fiblab's own cannot be started or the load cannot run.
    fn measure(&self, run: &mut Run<'_>, report: &mut BenchReport) -> io::Result<()>;
    /// Its tables, and the footnotes they need.
    fn tables(&self, report: &BenchReport) -> (Vec<Table>, Vec<String>);
    /// Its plots; none when the report holds none of its records.
    ///
    /// # Errors
    /// plotters could not draw one.
    fn plots(&self, report: &BenchReport) -> Result<Vec<Plot>, PlotError>;
    /// The seeds' claims its records decide.
    fn findings(&self, report: &BenchReport) -> Vec<Finding>;
}

/// Every experiment, in the order they run and appear in a report.
pub const EXPERIMENTS: &[&dyn Experiment] = &[&seed_tables::SeedTables, &starvation::Starvation];

/// Every experiment's findings, in the order the seeds state the claims (by source;
/// claims of one source in the order their experiment gives them).
pub fn findings(report: &BenchReport) -> Vec<Finding> {
    let mut all: Vec<Finding> = EXPERIMENTS
        .iter()
        .flat_map(|e| e.findings(report))
        .collect();
    all.sort_by_key(|f| f.source);
    all
}

/// Every experiment's plots, in report order.
///
/// # Errors
/// plotters could not draw one.
pub fn plots(report: &BenchReport) -> Result<Vec<Plot>, PlotError> {
    let mut all = Vec::new();
    for experiment in EXPERIMENTS {
        all.extend(experiment.plots(report)?);
    }
    Ok(all)
}

/// One row of the tables: what serves it, and how it is started.
#[derive(Debug, Clone)]
pub enum Row {
    /// `threads` answering from a table: the loopback's and a blocking server's cost.
    Floor,
    Model(Variant),
    Target(Target),
}

impl Row {
    pub fn label(&self) -> String {
        match self {
            Row::Floor => FLOOR.to_string(),
            Row::Model(v) => v.label(),
            Row::Target(t) => t.name.clone(),
        }
    }

    /// The floor first, then the scenario's models, then the targets.
    pub fn all(scenario: &Scenario, targets: &[Target]) -> Vec<Row> {
        std::iter::once(Row::Floor)
            .chain(scenario.models.iter().cloned().map(Row::Model))
            .chain(targets.iter().cloned().map(Row::Target))
            .collect()
    }
}

/// Where a running benchmark is, for progress bars.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// Steps finished.
    pub done: usize,
    pub total: usize,
    pub label: &'a str,
}

/// What a run gives an experiment: the scenario and its rows, servers to start, the
/// interrupt flag, and a progress line to report each step on.
pub struct Run<'a> {
    pub scenario: &'a Scenario,
    pub rows: &'a [Row],
    exe: &'a Path,
    interrupt: Arc<AtomicBool>,
    progress: &'a mut dyn FnMut(Step<'_>),
    done: usize,
    total: usize,
}

impl<'a> Run<'a> {
    pub fn new(
        scenario: &'a Scenario,
        rows: &'a [Row],
        exe: &'a Path,
        interrupt: Arc<AtomicBool>,
        progress: &'a mut dyn FnMut(Step<'_>),
    ) -> Run<'a> {
        let total = EXPERIMENTS.iter().map(|e| e.steps(scenario, rows)).sum();
        Run {
            scenario,
            rows,
            exe,
            interrupt,
            progress,
            done: 0,
            total,
        }
    }

    /// Ctrl-C (or SIGTERM) asked the run to stop.
    pub fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::SeqCst)
    }

    /// The flag, for the load generator to stop on too.
    pub fn interrupt(&self) -> Arc<AtomicBool> {
        self.interrupt.clone()
    }

    /// Reports that the step `label` starts.
    pub fn step(&mut self, label: &str) {
        (self.progress)(Step {
            done: self.done,
            total: self.total,
            label,
        });
        self.done += 1;
    }

    /// The CPUs the load generator is pinned to, if any.
    pub fn client_cpus(&self) -> Option<Vec<usize>> {
        self.scenario
            .pinning
            .as_ref()
            .map(|p| p.client.clone())
            .filter(|cpus| !cpus.is_empty())
    }

    /// Starts a fiblab server for `variant`, serving `kind`, pinned as the scenario says.
    ///
    /// # Errors
    /// As [`ServerProcess::start`].
    pub fn start(&self, variant: &Variant, kind: ServiceKind) -> io::Result<ServerProcess> {
        let cpus = self
            .scenario
            .pinning
            .as_ref()
            .map_or(&[][..], |p| p.server.as_slice());
        let base = Config {
            service: Service {
                kind,
                ..Service::default()
            },
            ..Config::default()
        };
        // Each model with its own defaults, as `fiblab serve --model M` would run.
        let config = crate::models::find(&variant.model)
            .map_or(base, |model| crate::models::defaults_for(model, base));
        ServerProcess::start(self.exe, variant, &config, cpus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::{Sample, StarvationResult, Verdict};

    fn report(cells: &[(&str, u32, usize, f64)], kept: &[(&str, f64)]) -> BenchReport {
        let samples: Vec<Sample> = cells
            .iter()
            .map(|&(variant, n, clients, rps)| Sample {
                variant: variant.into(),
                n,
                clients,
                repetition: 0,
                throughput_rps: rps,
                p50_us: 1,
                p99_us: 1,
                per_connection: vec![1; clients],
                errors: 0,
                histogram: String::new(),
            })
            .collect();
        let mut report = crate::bench::results::tests::report_of(samples);
        report.starvation = kept
            .iter()
            .map(|&(variant, kept)| StarvationResult {
                variant: variant.into(),
                heavy_n: 40,
                heavy_s: Some(1.0),
                light_before_rps: 100.0,
                light_during_rps: 100.0 * kept,
                kept,
                timeline: vec![],
                heavy_at_s: 1.0,
            })
            .collect();
        report
    }

    fn verdicts(r: &BenchReport) -> Vec<Verdict> {
        findings(r).into_iter().map(|f| f.verdict).collect()
    }

    #[test]
    fn nothing_measured_means_nothing_claimed() {
        assert!(
            verdicts(&report(&[], &[]))
                .iter()
                .all(|v| *v == Verdict::NotMeasured)
        );
    }

    #[test]
    fn python_like_figures_reproduce_the_seeds() {
        // The seeds' own numbers, shaped as fiblab cells.
        let r = report(
            &[
                ("threads", 1, 2, 19_000.0),
                ("tokio", 1, 2, 20_000.0),
                ("threads", 20, 1, 400.0),
                ("threads", 20, 2, 400.0),
                ("tokio", 20, 2, 11_000.0),
                ("procpool", 1, 1, 1_000.0),
                ("procpool", 1, 2, 4_300.0),
                ("procpool", 20, 1, 400.0),
                ("procpool", 20, 2, 700.0),
                ("coroutines", 1, 2, 14_000.0),
                ("isolates", 20, 1, 150.0),
                ("threads", 1, 1, 12_000.0),
            ],
            &[
                ("threads", 0.9),
                ("epoll", 0.01),
                ("coroutines", 0.01),
                ("procpool", 0.9),
            ],
        );
        let v = verdicts(&r);
        assert_eq!(v[0], Verdict::Reproduces, "threads ~ Go at n=1");
        assert_eq!(v[1], Verdict::DoesNotApply, "no GIL");
        assert_eq!(v[2], Verdict::Reproduces, "procpool slower at I/O");
        assert_eq!(v[3], Verdict::Reproduces, "threads flat, processes gain");
        assert_eq!(v[4], Verdict::Reproduces, "coroutines");
        assert_eq!(v[5], Verdict::Reproduces, "isolates slow");
        assert_eq!(v[6], Verdict::Reproduces, "collapse");
        assert_eq!(v[7], Verdict::Reproduces, "pool removes it at a cost");
    }

    #[test]
    fn rust_like_figures_contradict_the_gil_claims() {
        let r = report(
            &[
                ("threads", 20, 1, 20_000.0),
                ("threads", 20, 2, 44_000.0),
                ("procpool", 20, 1, 15_000.0),
                ("procpool", 20, 2, 26_000.0),
            ],
            &[],
        );
        let f = findings(&r);
        assert_eq!(f[3].verdict, Verdict::Contradicts);
        assert!(f[3].evidence.contains("threads x2.20"), "{}", f[3].evidence);
        assert!(
            crate::bench::rules::table(&f)
                .rows
                .iter()
                .any(|row| row[0] == "seed 000, 总结 4")
        );
    }

    #[test]
    fn a_ratio_reads_the_same_in_the_table_and_the_findings() {
        let r = report(&[], &[("threads", 1.0946), ("tokio-current", 0.0)]);
        let (tables, _) = starvation::Starvation.tables(&r);
        let row = &tables[0].rows[0];
        assert_eq!(row[4], "1.09");
        let evidence = starvation::Starvation
            .findings(&r)
            .into_iter()
            .map(|f| f.evidence)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(evidence.contains("threads 1.09"), "{evidence}");
        assert!(!evidence.contains('%'), "{evidence}");
    }

    /// `(height, [y of every text])` of an SVG plotters wrote.
    fn text_rows(svg: &str) -> (f64, Vec<f64>) {
        let number = |from: &str, attr: &str| -> Option<f64> {
            let start = from.find(&format!("{attr}=\""))? + attr.len() + 2;
            from[start..].split('"').next()?.parse().ok()
        };
        let height = number(svg, "height").unwrap();
        let ys = svg
            .split("<text")
            .skip(1)
            .filter_map(|t| number(t, "y"))
            .collect();
        (height, ys)
    }

    #[test]
    fn many_series_stay_inside_the_canvas_and_axes_can_be_read() {
        let histogram = crate::bench::results::tests::fixture_with_cdf().samples[0]
            .histogram
            .clone();
        let samples = (0..32)
            .flat_map(|i| {
                let histogram = histogram.clone();
                [1usize, 2].map(move |clients| Sample {
                    variant: format!("row-{i}"),
                    n: 1,
                    clients,
                    repetition: 0,
                    throughput_rps: 1000.0 * (i + 1) as f64 * clients as f64,
                    p50_us: 10,
                    p99_us: 20,
                    per_connection: vec![1; clients],
                    errors: 0,
                    histogram: histogram.clone(),
                })
            })
            .collect();
        let report = crate::bench::results::tests::report_of(samples);
        let plots = plots(&report).unwrap();
        for plot in &plots {
            let (height, ys) = text_rows(&plot.svg);
            assert!(
                ys.iter().all(|&y| y < height),
                "{}: text past the canvas",
                plot.file
            );
            for i in 0..32 {
                assert!(
                    plot.svg.contains(&format!(">row-{i}<"))
                        || plot.svg.contains(&format!("\nrow-{i}\n")),
                    "{} lacks row-{i}",
                    plot.file
                );
            }
        }
        let latency = plots
            .iter()
            .find(|p| p.file.starts_with("latency"))
            .unwrap();
        assert!(
            latency.svg.contains("99.99%"),
            "a percentile-spectrum axis up to p99.99"
        );
        let throughput = &plots[0].svg;
        let ticks = ["2k", "5k", "10k", "20k", "50k"];
        assert!(
            ticks
                .iter()
                .filter(|t| throughput.contains(&format!(">{t}<"))
                    || throughput.contains(&format!("\n{t}\n")))
                .count()
                >= 3,
            "a log axis labelled more often than once a decade"
        );
    }

    #[test]
    fn svg_has_every_series_and_panel() {
        let report = crate::bench::results::tests::fixture_with_cdf();
        let plots = plots(&report).unwrap();
        let files: Vec<&str> = plots.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "throughput-n1.svg",
                "latency-n1-c1.svg",
                "latency-n1-c2.svg",
                "starvation.svg"
            ]
        );
        for p in &plots {
            assert!(
                p.svg.starts_with("<svg") || p.svg.starts_with("<?xml"),
                "{}",
                p.file
            );
            assert!(p.svg.trim_end().ends_with("</svg>"), "{}", p.file);
        }
        assert!(
            plots[0].svg.contains("\nthreads\n"),
            "legend names the models"
        );
        assert!(plots[3].svg.contains("threads: kept 0.75"));
    }
}
