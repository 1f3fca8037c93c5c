//! `fiblab bench`: the flags, the progress bar, and where the report goes.

use std::io::{self, IsTerminal as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use fiblab::bench::export::{self, Outputs};
use fiblab::bench::scenario::{self, Overrides};
use fiblab::bench::{self, BenchReport, Step, Target};

#[derive(Args)]
pub struct BenchArgs {
    /// A shipped scenario (quick, seeds, full, python, c10k, knee, cores, waiting, scale, scaleout)
    /// or a scenario TOML file.
    #[arg(default_value = "quick")]
    scenario: String,
    /// A server someone else started, as a row of the same tables: NAME=HOST:PORT for a
    /// fib server, NAME=HOST:PORT/ping for redis (PING). Repeatable. The seeds' servers:
    /// `scripts/seed-peers.sh start DIR` prints these flags.
    #[arg(long = "target", value_name = "NAME=HOST:PORT")]
    targets: Vec<Target>,
    #[command(flatten)]
    overrides: Overrides,
    /// Write report.md, report.json, report.html and the SVG plots into this folder.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Also write the tables as markdown to this file (linking the plots in --out); -
    /// for stdout.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Write everything (every sample, every cell, the machine) as JSON to this file; -
    /// for stdout (the tables are then not printed).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write one self-contained HTML page (tables and plots inline) to this file; - for
    /// stdout.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Measure nothing: draw the tables, plots and pages again from a report.json that
    /// an earlier run wrote (its command, date and machine are kept).
    #[arg(long, value_name = "REPORT_JSON", conflicts_with = "targets")]
    replot: Option<PathBuf>,
    /// Measure nothing: print what the run would do (regimes, models, experiments,
    /// steps) and about how long it would take, then exit.
    #[arg(long, conflicts_with = "replot")]
    dry_run: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let outputs = Outputs {
        dir: args.out.clone(),
        markdown: args.markdown.clone(),
        json: args.json.clone(),
        html: args.html.clone(),
    };
    if outputs.stdout_count() > 1 {
        bail!("only one of --markdown, --json and --html can be - (standard output)");
    }
    if args.dry_run {
        let (scenario, notes) = args
            .overrides
            .apply_noting(scenario::load(&args.scenario)?)?;
        for note in notes {
            eprintln!("note: {note}");
        }
        return super::print(&dry_run(&scenario, &args.targets));
    }
    // Before measuring: a report that cannot be written is known now, not after the run.
    if let Some(dir) = &outputs.dir {
        fiblab::output::check_dir(dir).with_context(|| {
            format!(
                "cannot write the report into --out {}; give a writable folder",
                dir.display()
            )
        })?;
    }
    super::check_outputs(&[
        ("--markdown", &outputs.markdown),
        ("--json", &outputs.json),
        ("--html", &outputs.html),
    ])?;
    let (report, interrupted) = match &args.replot {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mut report = export::json::parse(&text)
                .with_context(|| format!("{} is not a fiblab bench report.json", path.display()))?;
            // Pinned servers ran with workers for their CPUs; a report from before the
            // settings line said so printed the unpinned defaults. Unpinned regimes'
            // defaults were the measuring machine's, which this one cannot know.
            if !report.regimes.is_empty()
                && report.regimes.iter().all(|r| !r.server_cpus.is_empty())
            {
                report.settings = fiblab::bench::settings_of_report(&report);
            }
            // One such note: a replot of a replot replaces it.
            report.notes.retain(|n| !n.starts_with("Drawn again by "));
            report.notes.push(format!(
                "Drawn again by `fiblab bench --replot {}` on {} from the run of {} (command: `{}`): the measurements are that run's; predictions, fits and readings follow today's rules.",
                path.display(),
                fiblab::bench::results::today(),
                report.date,
                report.command
            ));
            (report, false)
        }
        None => measure(&args)?,
    };
    // Standard output carries one format: the one given `-`, else the tables.
    if outputs.to_stdout().is_none() {
        super::print(&export::markdown::render(&report, &[]))?;
    }
    let plots = export::write(&report, &outputs)?;
    if let Some(dir) = &outputs.dir {
        eprintln!(
            "wrote {}: report.md, report.json, report.html and {plots} plots",
            dir.display(),
        );
    }
    if interrupted {
        eprintln!("interrupted: the tables hold the cells measured so far");
    }
    Ok(())
}

fn measure(args: &BenchArgs) -> Result<(BenchReport, bool)> {
    let (scenario, notes) = args
        .overrides
        .apply_noting(scenario::load(&args.scenario)?)?;
    for note in notes {
        eprintln!("note: {note}");
    }
    let exe =
        std::env::current_exe().context("cannot find the fiblab binary to start servers with")?;
    for t in &args.targets {
        std::net::TcpStream::connect_timeout(&t.addr, Duration::from_secs(2)).with_context(
            || {
                format!(
                    "target {} at {} does not answer: start it first",
                    t.name, t.addr
                )
            },
        )?;
    }
    let interrupt = fiblab::shutdown::interrupt_flag()?;
    let estimate = scenario.estimate(args.targets.len()).as_secs_f64();
    eprintln!(
        "fiblab bench {}: {} cells x {} repetitions, about {estimate:.0} s{}",
        scenario.name,
        scenario.cells(args.targets.len()),
        scenario.repetitions,
        match scenario.time_budget {
            Some(budget) => format!(
                ", then a race for the open questions: the whole command within {:.0} s",
                budget.as_secs_f64().max(estimate)
            ),
            None => String::new(),
        }
    );
    let command = format!(
        "fiblab {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let report = with_progress(|progress| {
        bench::measure(
            &scenario,
            &args.targets,
            &exe,
            interrupt.clone(),
            progress,
            command,
        )
    })??;
    Ok((report, interrupt.load(std::sync::atomic::Ordering::SeqCst)))
}

/// Runs `f` with a progress callback: a bar on a terminal, a line per step elsewhere
/// (a log, CI).
pub fn with_progress<T>(f: impl FnOnce(&mut dyn FnMut(Step<'_>)) -> T) -> Result<T> {
    let bar = indicatif::ProgressBar::new(0);
    let terminal = io::stderr().is_terminal();
    if terminal {
        bar.set_style(indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} cells, {elapsed} spent, eta {eta}  {msg}",
        )?);
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut progress = |step: Step<'_>| {
        bar.set_length(step.total as u64);
        bar.set_position(step.done as u64);
        bar.set_message(step.label.to_string());
        if !terminal {
            eprintln!("[{:>3}/{}] {}", step.done + 1, step.total, step.label);
        }
    };
    let out = f(&mut progress);
    bar.finish_and_clear();
    Ok(out)
}

/// What a run of `scenario` would do, in words: its regimes on this machine, its rows,
/// each experiment's steps where it runs, the race, and the time it would take.
fn dry_run(scenario: &fiblab::bench::scenario::Scenario, targets: &[Target]) -> String {
    use fiblab::bench::experiments::{EXPERIMENTS, Row};
    use std::fmt::Write as _;
    let mut out = String::new();
    let (plans, skipped) = scenario.plans(&fiblab::calibrate::allowed_cpus());
    let rows = Row::all(scenario, targets);
    let names: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
    let _ = writeln!(
        out,
        "fiblab bench {} (dry run: nothing is measured)\n  {}",
        scenario.name, scenario.about
    );
    let _ = writeln!(out, "regimes:");
    for plan in &plans {
        let _ = writeln!(out, "  {}", plan.describe());
    }
    for note in skipped {
        let _ = writeln!(out, "  left out: {note}");
    }
    let _ = writeln!(
        out,
        "rows: {} (the floor, {} models{})",
        rows.len(),
        scenario.models.len(),
        match targets.len() {
            0 => String::new(),
            n => format!(", {n} targets"),
        }
    );
    let _ = writeln!(
        out,
        "seed tables: n = {:?} x clients {:?}, {} interleaved repetitions of {} s after {} s of warm-up, each a server process",
        scenario.workloads,
        scenario.clients,
        scenario.repetitions,
        scenario.duration.as_secs_f64(),
        scenario.warmup.as_secs_f64()
    );
    let _ = writeln!(out, "steps, per experiment and regime:");
    for e in EXPERIMENTS {
        let steps = e.steps(scenario, &rows);
        if steps == 0 {
            continue;
        }
        let regimes: Vec<&str> = names
            .iter()
            .filter(|n| e.runs_in(scenario, n, &names))
            .map(String::as_str)
            .collect();
        let _ = writeln!(out, "  {}: {steps} in {}", e.name(), regimes.join(", "));
    }
    if let Some(k) = scenario.knee.as_ref().filter(|k| k.race > 0) {
        let _ = writeln!(
            out,
            "knee: {} sweeps of every row, then up to {} more of each row still in a tier 1 it might leave (a race)",
            k.sweeps, k.race
        );
    }
    let estimate = scenario.estimate(targets.len());
    match (scenario.time_budget, scenario.precision) {
        (Some(budget), precision) => {
            let _ = writeln!(
                out,
                "then a race for the cells that decide the report's questions (indifference zone {:.0}%) until {:.0} s from the start",
                precision.unwrap_or(0.0) * 100.0,
                budget.as_secs_f64()
            );
            let _ = writeln!(
                out,
                "time: about {:.0} s before the race; the whole command within {:.0} s",
                estimate.as_secs_f64(),
                budget.as_secs_f64().max(estimate.as_secs_f64())
            );
        }
        (None, Some(precision)) => {
            let _ = writeln!(
                out,
                "then a race (indifference zone {:.0}%) for up to {:.0} s more\ntime: about {:.0} s before the race",
                precision * 100.0,
                estimate.as_secs_f64(),
                estimate.as_secs_f64()
            );
        }
        (None, None) => {
            let _ = writeln!(out, "time: about {:.0} s", estimate.as_secs_f64());
        }
    }
    out
}
