//! The `fiblab` command line: it parses and dispatches. Each subcommand's flags and the
//! glue from them to the library live in `cli/`; the rules that check a value live
//! beside the library type it fills; typed library errors become messages here.

mod cli;

use std::io::{self, IsTerminal as _};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fiblab",
    version,
    about = "One fib(n) microservice, every concurrency model, measured."
)]
struct Cli {
    /// More logging: -v for connections (debug), -vv for everything. RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve fib(n) (or upper) on TCP with one concurrency model.
    Serve(cli::serve::ServeArgs),
    /// List the concurrency models.
    Models {
        /// Print the table as markdown (as in the README).
        #[arg(long)]
        markdown: bool,
    },
    /// Benchmark every model: the seeds' tables, measured on this machine.
    Bench(Box<cli::bench::BenchArgs>),
    /// What changed between two runs: each cell of two bench (or load) reports, the
    /// change with its interval and p-value; `--fail-on-regression 5%` gates a CI job.
    Compare(cli::compare::CompareArgs),
    /// The machine's primitive costs: loopback round trips (one CPU, two, spinning),
    /// the cross-CPU wake-up, a pipe to a worker process, thread and process start,
    /// epoll and select, fib(n).
    Calibrate(cli::calibrate::CalibrateArgs),
    /// Load generator: closed or open loop, mixes, latency percentiles, JSON/CSV; split
    /// across agents (--segment) and merged (`fiblab load merge`).
    #[command(args_conflicts_with_subcommands = true)]
    Load(Box<cli::load::LoadArgs>),
    /// The seeds' perf1: one connection, the latency of every request.
    Perf1(cli::clients::Perf1Args),
    /// The seeds' perf2: requests per second, once a second, over --conns connections.
    Perf2(cli::clients::Perf2Args),
    /// A long run of mixed load against one model: every reply checked, in order;
    /// exits 1 unless nothing was lost or wrong and the server stopped cleanly.
    Soak(cli::clients::SoakArgs),
    /// The seeds' own programs (perf1.py, server.go, ...), extracted from the seed documents.
    Seeds {
        #[command(subcommand)]
        command: cli::seeds::SeedsCommand,
    },
    /// The seeds' concurrency primitives (locks, deadlock, semaphores, events, queues,
    /// pools, processes, scheduling), each shown running with measured figures.
    Demo(cli::demo::DemoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `fiblab completions bash > /etc/bash_completion.d/fiblab`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `fiblab manpage > fiblab.1 && man ./fiblab.1`.
    Manpage,
    /// A procpool worker process: fib requests on stdin, replies on stdout.
    #[command(hide = true)]
    Worker,
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli.command) {
        Ok(()) => {}
        // `fiblab perf1 | head` closing the pipe is a normal way to stop.
        Err(e) if is_broken_pipe(&e) => {}
        Err(e) => {
            eprintln!("fiblab: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    use anyhow::Context as _;
    match command {
        Command::Serve(args) => cli::serve::run(args),
        Command::Models { markdown } => cli::print(&match markdown {
            true => fiblab::models::markdown_table(),
            false => fiblab::models::text_table(),
        }),
        Command::Bench(args) => cli::bench::run(*args),
        Command::Load(args) => cli::load::run(*args),
        Command::Calibrate(args) => cli::calibrate::run(args),
        Command::Compare(args) => cli::compare::run(args),
        Command::Perf1(args) => cli::clients::perf1(args),
        Command::Perf2(args) => cli::clients::perf2(args),
        Command::Soak(args) => cli::clients::soak(args),
        Command::Seeds { command } => cli::seeds::run(command),
        Command::Demo(args) => cli::demo::run(args),
        // Generated from the same definitions as the parser, so they cannot drift.
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "fiblab", &mut io::stdout());
            Ok(())
        }
        Command::Manpage => {
            use clap::CommandFactory as _;
            clap_mangen::Man::new(Cli::command()).render(&mut io::stdout())?;
            Ok(())
        }
        Command::Worker => {
            fiblab::models::procpool::worker_main().context("procpool worker failed")
        }
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only for a person at a terminal, never into a pipe or a log file.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        // A log line that cannot be written (stderr closed) is dropped; the default
        // reports it with eprintln!, which panics the thread that was logging.
        .log_internal_errors(false)
        .init();
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// A value for every flag that takes one and has no default, with any flag it
    /// needs beside it. A new flag without a default fails the test below until it has
    /// a sample here: every flag is parsed, into its real type, at least once.
    fn sample(id: &str) -> Option<&'static [&'static str]> {
        Some(match id {
            "n" => &["7"],
            "mix" => &["1:99,30:1"],
            "request" => &["PING"],
            "expect" => &["+PONG", "--request", "PING"],
            "expect_prefix" => &["VERSION", "--request", "version"],
            "rate" => &["2000"],
            "duration" => &["1500ms"],
            "requests" => &["10"],
            "threads" | "workers" | "repetitions" | "count" | "agents" => &["2"],
            "cpus" | "server_cpus" | "client_cpus" => &["0-1"],
            "regimes" => &["shared,pinned-spinning"],
            "gil" => &["per-interpreter"],
            "gil_stats" => &["/tmp/fiblab-gil.json"],
            "stack_size" => &["256KiB"],
            "max_error_rate" => &["1%"],
            "json" | "csv" | "markdown" | "html" => &["-"],
            "out" | "dir" => &["/tmp/fiblab-flags"],
            "replot" => &["/tmp/fiblab-flags/report.json"],
            "targets" => &["peer=127.0.0.1:1"],
            "models" => &["threads,epoll+offload"],
            "workloads" => &["1,20"],
            "clients" => &["1,2,16"],
            "warmup" => &["100ms"],
            "child" => &["daemon"],
            "max_inflight" => &["2"],
            "segment" => &["2/2", "--conns", "2"],
            "start_at" => &["1", "--segment", "1/1"],
            _ => return None,
        })
    }

    #[test]
    fn every_flag_of_every_subcommand_parses() {
        use clap::CommandFactory;
        let mut missing = Vec::new();
        let mut checked = 0;
        let mut stack = vec![(Vec::<String>::new(), Cli::command())];
        while let Some((path, command)) = stack.pop() {
            if command.has_subcommands() {
                for sub in command.get_subcommands() {
                    let mut p = path.clone();
                    p.push(sub.get_name().to_string());
                    stack.push((p, sub.clone()));
                }
                continue;
            }
            let required: Vec<String> = command
                .get_arguments()
                .filter(|a| a.is_required_set())
                .flat_map(|a| {
                    let value = sample(a.get_id().as_str()).unwrap_or(&["x"]);
                    std::iter::once(format!("--{}", a.get_long().unwrap_or_default()))
                        .chain(value.iter().map(|v| v.to_string()))
                })
                .collect();
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                let Some(long) = arg.get_long() else {
                    continue; // the positional scenario: it has a default
                };
                if matches!(id, "help" | "version" | "verbose") {
                    continue;
                }
                let mut argv = vec!["fiblab".to_string()];
                argv.extend(path.iter().cloned());
                if !arg.is_required_set() {
                    argv.extend(required.iter().cloned());
                }
                argv.push(format!("--{long}"));
                if arg.get_action().takes_values() {
                    match (sample(id), arg.get_default_values().first()) {
                        (Some(value), _) => argv.extend(value.iter().map(|v| v.to_string())),
                        (None, Some(default)) => argv.push(default.to_string_lossy().into()),
                        (None, None) => {
                            missing.push(format!("{} --{long}", path.join(" ")));
                            continue;
                        }
                    }
                }
                if let Err(e) = Cli::try_parse_from(&argv) {
                    panic!("{argv:?} does not parse: {e}");
                }
                checked += 1;
            }
        }
        assert!(missing.is_empty(), "add a sample value for: {missing:?}");
        assert!(checked > 60, "only {checked} flags checked");
    }
}
