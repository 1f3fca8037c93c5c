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
    Serve(Box<cli::serve::ServeArgs>),
    /// A downstream to wait on (PROTOCOL.md, "Waiting on a downstream"): answers each
    /// line with itself after --delay (plus --jitter), in order per connection.
    Backend(cli::backend::BackendArgs),
    /// The page in the browser where a server runs, switches models and takes load
    /// while you watch (http://127.0.0.1:8025/).
    Lab(cli::lab::LabArgs),
    /// List the concurrency models.
    Models {
        /// Print the table as markdown (as in the README).
        #[arg(long)]
        markdown: bool,
    },
    /// Benchmark every model: the seeds' tables, measured on this machine.
    Bench(Box<cli::bench::BenchArgs>),
    /// What changed between two bench (or load) reports, with intervals; a CI gate.
    Compare(cli::compare::CompareArgs),
    /// Which model for a service described in its own terms (--cpu 2ms --wait 20ms
    /// --clients 500): every model predicted from the calibration, tiered, advised.
    Advise(cli::advise::AdviseArgs),
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
        Command::Serve(args) => cli::serve::run(*args),
        Command::Backend(args) => cli::backend::run(args),
        Command::Lab(args) => cli::lab::run(args),
        Command::Models { markdown } => cli::print(&match markdown {
            true => fiblab::models::markdown_table(),
            false => fiblab::models::text_table(),
        }),
        Command::Bench(args) => cli::bench::run(*args),
        Command::Load(args) => cli::load::run(*args),
        Command::Calibrate(args) => cli::calibrate::run(args),
        Command::Advise(args) => cli::advise::run(args),
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
