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
    /// A shipped scenario (quick, seeds, full, python, c10k, knee, cores, waiting, scale)
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
    eprintln!(
        "fiblab bench {}: {} cells x {} repetitions, about {:.0} s",
        scenario.name,
        scenario.cells(args.targets.len()),
        scenario.repetitions,
        scenario.estimate(args.targets.len()).as_secs_f64()
    );
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
    let command = format!(
        "fiblab {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let report = bench::measure(
        &scenario,
        &args.targets,
        &exe,
        interrupt.clone(),
        &mut progress,
        command,
    )?;
    bar.finish_and_clear();
    Ok((report, interrupt.load(std::sync::atomic::Ordering::SeqCst)))
}
