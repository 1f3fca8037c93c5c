//! The `fiblab` command line: the edge where typed library errors become messages.

use std::io::{self, IsTerminal, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fiblab::client::{parse_duration, perf1, perf2};
use fiblab::load::mix::{Class, Mix};
use fiblab::load::report::{render_csv, render_json, render_text};
use fiblab::load::{self, Hooks, LoadSpec, Stop};
use fiblab::models::{self, MODELS};
use fiblab::server::{self, Config};
use fiblab::service::{DEFAULT_MAX_LINE, DEFAULT_MAX_N, Service, ServiceKind};
use fiblab::shutdown::Shutdown;
use fiblab::{fib, seeds};

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
    Serve(ServeArgs),
    /// List the concurrency models.
    Models {
        /// Print the table as markdown (as in the README).
        #[arg(long)]
        markdown: bool,
    },
    /// Benchmark every model: the seeds' tables, measured on this machine.
    Bench(Box<BenchArgs>),
    /// Load generator: closed or open loop, mixes, latency percentiles, JSON/CSV.
    Load(Box<LoadArgs>),
    /// The seeds' perf1: one connection, the latency of every request.
    Perf1(Perf1Args),
    /// The seeds' perf2: requests per second, once a second, over --conns connections.
    Perf2(Perf2Args),
    /// A long run of mixed load against one model: every reply checked, in order;
    /// exits 1 unless nothing was lost or wrong and the server stopped cleanly.
    Soak(SoakArgs),
    /// The seeds' own programs (perf1.py, server.go, ...), extracted from the seed documents.
    Seeds {
        #[command(subcommand)]
        command: SeedsCommand,
    },
    /// A procpool worker process: fib requests on stdin, replies on stdout.
    #[command(hide = true)]
    Worker,
}

#[derive(Args)]
struct ServeArgs {
    /// The concurrency model (see `fiblab models`).
    #[arg(short, long, default_value = "threads", value_parser = clap::builder::PossibleValuesParser::new(MODELS.iter().map(|m| m.name)))]
    model: String,
    /// What each request line means.
    #[arg(long, value_enum, default_value_t = ServiceKind::Fib)]
    service: ServiceKind,
    /// Address to listen on; anything but loopback exposes the server to the network.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port to listen on; 0 picks a free one (printed at start).
    #[arg(short, long, default_value_t = 25000)]
    port: u16,
    /// Connections served at once; past it a new connection gets `ERR server busy` and
    /// is closed (it is accepted to be told, rather than left waiting in the backlog).
    #[arg(long, default_value_t = server::DEFAULT_MAX_CONNS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_conns: usize,
    /// A connection silent this long (or not reading its replies) is closed; 0: never.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Largest n a request may ask for (at most 93, where u64 ends).
    #[arg(long, default_value_t = DEFAULT_MAX_N)]
    max_n: u32,
    /// Longest request line in bytes, terminator excluded.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE)]
    max_line: usize,
    /// Pool size (threadpool workers, tokio runtime threads). Default: CPUs.
    #[arg(short, long)]
    workers: Option<usize>,
    /// threadpool: connections that may wait for a worker before new ones get `ERR server busy`.
    #[arg(long, default_value_t = Config::default().queue)]
    queue: usize,
    /// Run fib in a bounded pool of --workers threads (at most --queue waiting) so the
    /// event loop stays free; for the models that have one (see `fiblab models`).
    #[arg(long)]
    offload: bool,
    /// prefork: one port per process (the seed's form), from --port up, instead of one
    /// shared SO_REUSEPORT port.
    #[arg(long)]
    ports: bool,
    /// Serve on the listening socket passed as standard input (how prefork starts its
    /// processes) instead of binding one.
    #[arg(long, hide = true)]
    inherited_listener: bool,
    /// On SIGINT/SIGTERM, how long open connections get to finish (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    grace: Duration,
}

#[derive(Args)]
struct Target {
    /// Server address.
    #[arg(short, long, default_value = "127.0.0.1:25000", value_parser = parse_addr)]
    addr: SocketAddr,
    /// Send the request with no newline, as Beazley's clients do (b'30').
    #[arg(long)]
    no_newline: bool,
    /// Stop after exactly this many requests in all.
    #[arg(short, long, conflicts_with = "duration")]
    count: Option<u64>,
    /// Stop after this long (e.g. 3s, 500ms, 1m).
    #[arg(short, long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

#[derive(Args)]
struct Perf1Args {
    /// fib(n) to ask for.
    #[arg(short, long, default_value_t = 30)]
    n: u32,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
struct Perf2Args {
    /// fib(n) to ask for.
    #[arg(short, long, default_value_t = 1)]
    n: u32,
    /// Connections, each on its own thread with one request in flight.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
struct SoakArgs {
    /// The model, `+offload` for the variant (e.g. epoll+offload).
    #[arg(short, long, default_value = "epoll")]
    model: String,
    /// How long to run, e.g. 10m.
    #[arg(short, long, default_value = "1m", value_parser = parse_duration)]
    duration: Duration,
    /// Connections.
    #[arg(short, long, default_value_t = 8)]
    conns: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 4)]
    pipeline: usize,
    /// Also write the verdict as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct BenchArgs {
    /// A shipped scenario (quick, seeds, full) or a scenario TOML file.
    #[arg(default_value = "quick")]
    scenario: String,
    /// A server someone else started, as a row of the same tables: NAME=HOST:PORT for a
    /// fib server, NAME=HOST:PORT/ping for redis (PING). Repeatable. The seeds' servers:
    /// `scripts/seed-peers.sh start DIR` prints these flags.
    #[arg(long = "target", value_name = "NAME=HOST:PORT")]
    targets: Vec<fiblab::bench::Target>,
    #[command(flatten)]
    overrides: fiblab::bench::scenario::Overrides,
    /// Write report.md, report.json, report.html and the SVG plots into this folder.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Also write the tables as markdown to this file (linking the plots in --out).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Write everything (every sample, every cell, the machine) as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write one self-contained HTML page (tables and plots inline) to this file.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Measure nothing: draw the tables, plots and pages again from a report.json that
    /// an earlier run wrote (its command, date and machine are kept).
    #[arg(long, value_name = "REPORT_JSON", conflicts_with = "targets")]
    replot: Option<PathBuf>,
}

#[derive(Args)]
struct LoadArgs {
    /// Server address.
    #[arg(short, long, default_value = "127.0.0.1:25000", value_parser = parse_addr)]
    addr: SocketAddr,
    /// Ask for fib(n) (the default is n = 1).
    #[arg(short, long, conflicts_with_all = ["mix", "request"])]
    n: Option<u32>,
    /// A weighted mix of fib requests, e.g. 1:99,36:1 (n:weight,...); statistics per n.
    #[arg(long, conflicts_with = "request")]
    mix: Option<String>,
    /// Send this line instead: any protocol with one reply line per request (PING for
    /// redis; not memcached's multi-line `get`).
    #[arg(long)]
    request: Option<String>,
    /// Send requests with no newline, as Beazley's clients do.
    #[arg(long)]
    no_newline: bool,
    /// Connections.
    #[arg(short, long, default_value_t = 1)]
    conns: usize,
    /// Requests in flight per connection (open loop: at most this many; later ones
    /// wait and are measured from when they were due).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Open loop: send this many requests per second in all, on schedule, and measure
    /// latency from when each was due (coordinated-omission corrected).
    #[arg(long)]
    rate: Option<f64>,
    /// Measure for this long (after the warm-up). Default: 10s.
    #[arg(short, long, value_parser = parse_duration, conflicts_with = "requests")]
    duration: Option<Duration>,
    /// Measure exactly this many requests (after the warm-up).
    #[arg(long)]
    requests: Option<u64>,
    /// Run this long first without measuring.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,
    /// A request without a reply for this long is a timeout error.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Client threads (connections are spread over them). Default: CPUs.
    #[arg(short, long)]
    threads: Option<usize>,
    /// Busy-poll the sockets instead of sleeping (no wake-up latency; a core per thread).
    #[arg(long)]
    spin: bool,
    /// Pin client threads to these CPUs, e.g. 0,1 or 2-3.
    #[arg(long, value_parser = parse_cpus)]
    cpus: Option<Vec<usize>>,
    /// Seed of the random class choice in a mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the whole report as JSON to this file (- for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the per-second series as CSV to this file (- for stdout).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// No live progress line on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// A live full-screen view (throughput and p99 per class, per second) while it
    /// runs; q or Ctrl-C stops early. The report follows.
    #[arg(long)]
    tui: bool,
}

#[derive(Subcommand)]
enum SeedsCommand {
    /// List the programs found in the seed documents.
    List {
        /// Folder of the seed documents (default: $FIBLAB_SEEDS or ../shared/seeds).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Write every program to OUT/<seed>/<name>.
    Extract {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
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

fn run(command: Command) -> Result<()> {
    match command {
        Command::Serve(args) => serve(args),
        Command::Models { markdown } => {
            let table = if markdown {
                models::markdown_table()
            } else {
                models::text_table()
            };
            io::stdout().write_all(table.as_bytes())?;
            Ok(())
        }
        Command::Bench(args) => bench_command(*args),
        Command::Load(args) => load_command(*args),
        Command::Perf1(args) => {
            let class = fib_class(args.n, &args.target)?;
            let stop = stop(&args.target, Stop::Requests(10));
            let report = perf1::run(
                args.target.addr,
                class,
                stop,
                interrupt_on_ctrl_c()?,
                io::stdout(),
            )
            .with_context(|| connect_hint(args.target.addr))?;
            ensure_correct(report.errors.wrong)
        }
        Command::Perf2(args) => {
            let class = fib_class(args.n, &args.target)?;
            let stop = stop(&args.target, Stop::After(Duration::from_secs(5)));
            let interrupt = interrupt_on_ctrl_c()?;
            let report = perf2::run(
                args.target.addr,
                class,
                args.conns,
                stop,
                interrupt,
                &mut io::stdout().lock(),
            )?;
            if report.requests_ok == 0 && report.errors.connect > 0 {
                bail!(
                    "every connection failed; {}",
                    connect_hint(args.target.addr)
                );
            }
            ensure_correct(report.errors.wrong)
        }
        Command::Soak(args) => soak_command(args),
        Command::Worker => {
            fiblab::models::procpool::worker_main().context("procpool worker failed")
        }
        Command::Seeds { command } => match command {
            SeedsCommand::List { dir } => {
                for p in seeds::load(&dir.unwrap_or_else(seeds::default_dir))? {
                    println!("{}/{}  ({} lines)", p.seed, p.name, p.code.lines().count());
                }
                Ok(())
            }
            SeedsCommand::Extract { out, dir } => {
                for p in seeds::load(&dir.unwrap_or_else(seeds::default_dir))? {
                    let folder = out.join(&p.seed);
                    std::fs::create_dir_all(&folder)
                        .with_context(|| format!("cannot create {}", folder.display()))?;
                    let path = folder.join(&p.name);
                    // A document may show a program twice (a fix, then the fixed one): keep the first.
                    if !path.exists() {
                        std::fs::write(&path, &p.code)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                        println!("{}", path.display());
                    }
                }
                Ok(())
            }
        },
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    let model = models::find(&args.model).context("unknown model (see `fiblab models`)")?;
    if args.max_n > fib::MAX_N_FITS_U64 {
        bail!(
            "--max-n {} is too large: fib(n) fits in 64 bits only up to n = {}",
            args.max_n,
            fib::MAX_N_FITS_U64
        );
    }
    if args.offload && !model.offload {
        bail!(
            "model {} cannot --offload: it has no event loop to keep free (its connections already run on their own threads). Models that can: {}",
            model.name,
            models::offload_models().join(", ")
        );
    }
    if args.ports && !model.ports {
        bail!(
            "model {} has no --ports: only prefork runs one process per port",
            model.name
        );
    }
    if args.workers == Some(0) {
        bail!("--workers must be at least 1");
    }
    let config = Config {
        service: Service {
            kind: args.service,
            max_n: args.max_n,
        },
        max_line: args.max_line.max(1),
        workers: args.workers.unwrap_or_else(server::default_workers),
        queue: args.queue,
        max_conns: args.max_conns,
        idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
        grace: args.grace,
        offload: args.offload,
        ports: args.ports,
        free_ports: args.port == 0,
    };
    raise_descriptor_limit();
    let addr = SocketAddr::new(args.bind, args.port);
    // Before any thread exists, so that every thread inherits the mask and only the
    // signal thread ever sees SIGINT/SIGTERM.
    let shutdown = Shutdown::new().context("cannot set up shutdown handling")?;
    shutdown.set_max_connections(config.max_conns);
    spawn_signal_thread(shutdown.clone())?;
    let listener = if args.inherited_listener {
        inherited_listener()?
    } else {
        server::bind_with(addr, model.reuse_port).with_context(|| {
            format!("cannot listen on {addr}; is another server using the port? Pick another with --port")
        })?
    };
    let local = listener.local_addr()?;
    if !args.bind.is_loopback() {
        tracing::warn!(
            %local,
            max_conns = config.max_conns,
            idle_timeout = ?config.idle_timeout,
            max_n = config.service.max_n,
            max_line = config.max_line,
            "listening beyond loopback: anyone who can reach this address can load the server, within these limits"
        );
        if config.idle_timeout.is_none() {
            tracing::warn!(
                "--idle-timeout 0 beyond loopback: silent connections hold their slots for good"
            );
        }
    }
    println!(
        "fiblab serve: model={}{} service={} max-n={} workers={} listening on {local}",
        model.name,
        if config.offload { " (offload)" } else { "" },
        config.service.kind,
        config.service.max_n,
        config.workers
    );
    io::stdout().flush()?;
    (model.serve)(listener, &config, shutdown)
        .with_context(|| format!("model {} failed", model.name))?;
    tracing::info!("stopped");
    Ok(())
}

/// The listening socket a parent process passed as our standard input.
fn inherited_listener() -> Result<std::net::TcpListener> {
    use std::os::fd::AsFd;
    fiblab::process::die_with_parent()?;
    let fd = io::stdin().as_fd().try_clone_to_owned()?;
    let listening = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::AcceptConn);
    if !matches!(listening, Ok(true)) {
        bail!("--inherited-listener: standard input is not a listening socket");
    }
    Ok(std::net::TcpListener::from(fd))
}

/// A server holds one descriptor per client; the usual soft limit of 1024 would refuse
/// clients long before the machine runs out. Raise it to the hard limit, as most
/// servers do.
fn raise_descriptor_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, "cannot raise the descriptor limit");
            }
        }
    }
}

/// SIGINT/SIGTERM start a graceful shutdown; a second one exits at once.
fn spawn_signal_thread(shutdown: Shutdown) -> Result<()> {
    on_signals(move || shutdown.trigger())
}

/// A flag that Ctrl-C (or SIGTERM) sets, for clients that then report what they
/// measured so far; a second signal exits at once.
fn interrupt_on_ctrl_c() -> Result<Arc<AtomicBool>> {
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    on_signals(move || flag.store(true, Ordering::SeqCst))?;
    Ok(interrupt)
}

/// Runs `first` on the first SIGINT/SIGTERM and exits on the second. Must be called
/// before any other thread starts: they inherit the blocked mask, so only the
/// signal thread ever sees these signals.
fn on_signals(mut first: impl FnMut() + Send + 'static) -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals
        .thread_block()
        .context("cannot block SIGINT/SIGTERM")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            while let Ok(signal) = signals.wait() {
                seen += 1;
                if seen == 1 {
                    first();
                    tracing::info!(?signal, "stopping: a second signal exits at once");
                } else {
                    tracing::warn!(?signal, "second signal: exiting now");
                    std::process::exit(1);
                }
            }
        })?;
    Ok(())
}

fn measure(args: &BenchArgs) -> Result<(fiblab::bench::report::BenchReport, bool)> {
    use fiblab::bench::{self, report};
    let scenario = bench::scenario::load(&args.scenario)
        .and_then(|s| args.overrides.apply(s))
        .map_err(anyhow::Error::msg)?;
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
    let interrupt = interrupt_on_ctrl_c()?;
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
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} cells, {elapsed} spent, eta {eta}  {msg}",
            )
            .map_err(anyhow::Error::msg)?,
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut progress = |step: bench::Step<'_>| {
        bar.set_length(step.total as u64);
        bar.set_position(step.done as u64);
        bar.set_message(step.label.to_string());
        if !terminal {
            eprintln!("[{:>3}/{}] {}", step.done + 1, step.total, step.label);
        }
    };
    let measured = bench::run(
        &scenario,
        &args.targets,
        &exe,
        interrupt.clone(),
        &mut progress,
    )?;
    bar.finish_and_clear();
    let mut command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    command.insert_str(0, "fiblab ");
    let mut bench_report = report::BenchReport {
        scenario: scenario.name.clone(),
        about: scenario.about.clone(),
        date: report::today(),
        command,
        machine: bench::Machine::detect(scenario.pinning.as_ref()),
        duration_s: scenario.duration.as_secs_f64(),
        warmup_s: scenario.warmup.as_secs_f64(),
        repetitions: scenario.repetitions,
        rate: scenario.rate,
        cells: report::aggregate(&measured.samples),
        samples: measured.samples,
        starvation: measured.starvation,
        findings: Vec::new(),
        peers: args.targets.clone(),
        notes: measured.notes,
    };
    bench_report.findings = bench::findings::findings(&bench_report);
    Ok((bench_report, interrupt.load(Ordering::SeqCst)))
}

fn bench_command(args: BenchArgs) -> Result<()> {
    use fiblab::bench::{plots, report};
    let (bench_report, interrupted) = match &args.replot {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let report = report::parse_json(&text).map_err(|e| {
                anyhow::anyhow!("{} is not a fiblab bench report.json: {e}", path.display())
            })?;
            (report, false)
        }
        None => measure(&args)?,
    };
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the output folder {}", dir.display()))?;
    }
    let plots = plots::all(&bench_report).map_err(anyhow::Error::msg)?;
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    let links = |from: Option<&Path>| -> Vec<report::PlotLink> {
        let Some(dir) = &args.out else {
            return Vec::new();
        };
        let base = from
            .and_then(|f| dir.strip_prefix(f).ok())
            .map_or(dir.clone(), Path::to_path_buf);
        plots
            .iter()
            .map(|p| report::PlotLink {
                title: p.title.clone(),
                href: base.join(&p.file).display().to_string(),
            })
            .collect()
    };
    io::stdout().write_all(report::render_markdown(&bench_report, &[]).as_bytes())?;
    if let Some(dir) = &args.out {
        write(
            &dir.join("report.md"),
            &report::render_markdown(&bench_report, &links(Some(dir))),
        )?;
        write(
            &dir.join("report.json"),
            &(report::render_json(&bench_report) + "\n"),
        )?;
        write(
            &dir.join("report.html"),
            &report::render_html(&bench_report, &plots),
        )?;
        for p in &plots {
            write(&dir.join(&p.file), &p.svg)?;
        }
        eprintln!(
            "wrote {}: report.md, report.json, report.html and {} plots",
            dir.display(),
            plots.len()
        );
    }
    if let Some(path) = &args.markdown {
        let here = path.parent().filter(|p| !p.as_os_str().is_empty());
        write(path, &report::render_markdown(&bench_report, &links(here)))?;
    }
    if let Some(path) = &args.json {
        write(path, &(report::render_json(&bench_report) + "\n"))?;
    }
    if let Some(path) = &args.html {
        write(path, &report::render_html(&bench_report, &plots))?;
    }
    if interrupted {
        eprintln!("interrupted: the tables hold the cells measured so far");
    }
    Ok(())
}

fn soak_command(args: SoakArgs) -> Result<()> {
    use fiblab::client::soak;
    let variant =
        fiblab::bench::scenario::Variant::parse(&args.model).map_err(anyhow::Error::msg)?;
    if args.conns == 0 || args.pipeline == 0 {
        bail!("--conns and --pipeline must be at least 1");
    }
    let exe = std::env::current_exe()
        .context("cannot find the fiblab binary to start the server with")?;
    let interrupt = interrupt_on_ctrl_c()?;
    let mut on_second = |tick: &fiblab::load::Tick| {
        if (tick.second + 1) % 10 == 0 {
            eprintln!(
                "{:>6} s  {} req/s  {} errors so far",
                tick.second + 1,
                tick.ok,
                tick.errors
            );
        }
    };
    let report = soak::run(
        &exe,
        &variant,
        args.duration,
        args.conns,
        args.pipeline,
        interrupt,
        &mut on_second,
    )?;
    print!("{}", soak::render(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if !report.passed() {
        bail!("the soak found lost or wrong replies, or an unclean exit (above)");
    }
    Ok(())
}

fn load_command(args: LoadArgs) -> Result<()> {
    let newline = !args.no_newline;
    let mix = match (&args.request, &args.mix, args.n) {
        (Some(text), _, _) => Mix::new(vec![Class::text(text, newline)]),
        (None, Some(mix), _) => Mix::parse_fib(mix, newline),
        (None, None, n) => Mix::new(vec![fib_class_of(n.unwrap_or(1), newline)?]),
    }
    .map_err(anyhow::Error::msg)?;
    if args.conns == 0 || args.pipeline == 0 {
        bail!("--conns and --pipeline must be at least 1");
    }
    if args.no_newline && args.pipeline > 1 {
        bail!(
            "--no-newline needs --pipeline 1: unterminated requests sent back to back run together (30 30 arrives as 3030)"
        );
    }
    if args.timeout.is_zero() {
        bail!("--timeout must be more than 0");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a positive number of requests per second");
    }
    let spec = LoadSpec {
        addr: args.addr,
        mix,
        connections: args.conns,
        pipeline: args.pipeline,
        rate: args.rate,
        stop: match (args.requests, args.duration) {
            (Some(n), _) => Stop::Requests(n),
            (None, d) => Stop::After(d.unwrap_or(Duration::from_secs(10))),
        },
        warmup: args.warmup,
        timeout: args.timeout,
        threads: args.threads.unwrap_or_else(server::default_workers),
        spin: args.spin,
        cpus: args.cpus,
        seed: args.seed,
    };
    let interrupt = interrupt_on_ctrl_c()?;
    let report = if args.tui {
        if !io::stdout().is_terminal() {
            bail!("--tui needs a terminal on standard output; leave it out to get the text report");
        }
        fiblab::load::tui::run(&spec, interrupt)?
    } else {
        let quiet = args.quiet;
        let mut live = |tick: &load::Tick| {
            if !quiet {
                eprintln!(
                    "  {:>4}s  {:>9} req/s  {} errors so far",
                    tick.second + 1,
                    tick.ok,
                    tick.errors
                );
            }
        };
        load::run(
            &spec,
            interrupt,
            Hooks {
                on_second: Some(&mut live),
                ..Hooks::default()
            },
        )?
    };
    io::stdout().write_all(render_text(&report).as_bytes())?;
    for (path, text) in [
        (&args.json, render_json(&report) + "\n"),
        (&args.csv, render_csv(&report)),
    ] {
        match path {
            Some(p) if p.as_os_str() == "-" => io::stdout().write_all(text.as_bytes())?,
            Some(p) => {
                std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?
            }
            None => {}
        }
    }
    if report.requests_ok == 0 && report.errors.connect > 0 {
        bail!("no reply at all; {}", connect_hint(args.addr));
    }
    ensure_correct(report.errors.wrong)
}

/// `0,1`, `2-3`, `0,2-3`.
fn parse_cpus(text: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("'{text}' is not a CPU list: try 0,1 or 2-3");
    let mut cpus = Vec::new();
    for part in text.split(',') {
        match part.trim().split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    Ok(cpus)
}

fn fib_class(n: u32, target: &Target) -> Result<Class> {
    fib_class_of(n, !target.no_newline)
}

fn fib_class_of(n: u32, newline: bool) -> Result<Class> {
    if n > fib::MAX_N_FITS_U64 {
        bail!(
            "n = {n} is too large: fib(n) fits in 64 bits only up to n = {}",
            fib::MAX_N_FITS_U64
        );
    }
    Ok(Class::fib(n, 1, newline))
}

fn stop(target: &Target, default: Stop) -> Stop {
    match (target.count, target.duration) {
        (Some(n), _) => Stop::Requests(n),
        (None, Some(d)) => Stop::After(d),
        (None, None) => default,
    }
}

fn ensure_correct(wrong: u64) -> Result<()> {
    if wrong > 0 {
        bail!("{wrong} replies were wrong: the server does not compute fib(n) correctly");
    }
    Ok(())
}

fn connect_hint(addr: SocketAddr) -> String {
    format!("talking to {addr} failed; is a server running there? Start one with `fiblab serve`")
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.to_socket_addrs()
        .map_err(|e| format!("'{text}' is not a host:port address: {e}"))?
        .next()
        .ok_or_else(|| format!("'{text}' resolves to no address"))
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
    fn cpu_lists() {
        assert_eq!(parse_cpus("0,1"), Ok(vec![0, 1]));
        assert_eq!(parse_cpus("2-4"), Ok(vec![2, 3, 4]));
        assert_eq!(parse_cpus("0, 2-3"), Ok(vec![0, 2, 3]));
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("x").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
