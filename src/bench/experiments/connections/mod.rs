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

mod findings;
mod fit;
mod measure;
mod predict;
mod render;

pub mod records;
pub mod settings;

use findings::*;
use fit::*;
use measure::*;
use predict::*;
use render::*;

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
    ActiveLoad, BenchReport, ConnectionRecord, ConnectionRecords, Finding, Plot, Table, thousands,
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
use crate::stats::Interval;

/// The connections experiment; see the module docs.
pub struct Connections;

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

    fn runs_in(&self, scenario: &Scenario, regime: &str, regimes: &[String]) -> bool {
        scenario
            .connections
            .as_ref()
            .is_some_and(|x| crate::bench::scenario::runs_in(&x.regimes, regimes, regime))
    }

    fn measure(&self, run: &mut Run<'_>, report: &mut BenchReport) -> io::Result<()> {
        let Some(c) = &run.scenario.connections else {
            return Ok(());
        };
        if !self.runs_in(run.scenario, &run.regime.name, &run.regimes) {
            return Ok(());
        }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bench::results::Verdict;

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
            histogram: String::new(),
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
    fn an_active_load_with_its_histogram_shows_the_percentiles_intervals() {
        let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for us in 1..=1000u64 {
            h.record(us).unwrap();
        }
        let a = ActiveLoad {
            p50_us: 500,
            p99_us: 990,
            p99_9_us: 999,
            histogram: crate::load::encode_histogram(&h),
            ..active(1, 500, 1000)
        };
        let cell = render::latency_cell(&a);
        // 1,000 replies: the p50's 95% interval is ranks 469-532, the p99's 983-997
        // (scipy's quantile_test, as in stats' tests).
        assert!(
            cell.starts_with("500 [469–532] / 990 [983–997] / 999"),
            "{cell}"
        );
        // Without a histogram (an older report): the figures alone.
        let old = ActiveLoad {
            histogram: String::new(),
            ..a
        };
        assert!(render::latency_cell(&old).starts_with("500 / 990 / 999"));
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
        assert!(
            f[1].evidence.contains("(29 times less)"),
            "{}",
            f[1].evidence
        );
        // A coroutine's memory that scatters over the counts: its slope's interval reaches
        // past a fifth of a thread's, and the claim is undecided, not decided.
        let mut scattered = c10k_like();
        for x in &mut scattered.connections.as_mut().unwrap().records {
            if x.row == "coroutines" {
                x.rss_kib = Some(match x.idle {
                    100 => 60.0,
                    1000 => 1.0,
                    _ => 5.5,
                });
            }
        }
        let f = findings(&scattered);
        assert_eq!(f[1].verdict, Verdict::Undecided, "{}", f[1].evidence);
        assert!(f[1].evidence.contains("straddles 5x"), "{}", f[1].evidence);
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
