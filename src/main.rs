//! The `fiblab` command line: the edge where typed library errors become messages.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use fiblab::client::perf2::Bound;
use fiblab::client::{Workload, parse_duration, perf1, perf2};
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
    /// The seeds' perf1: one connection, the latency of every request.
    Perf1(Perf1Args),
    /// The seeds' perf2: requests per second, once a second, over --conns connections.
    Perf2(Perf2Args),
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
    /// Stop after this many requests in all.
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
        Command::Perf1(args) => {
            let workload = workload(args.n, &args.target)?;
            let bound = bound(&args.target, Bound::Count(10));
            let report = perf1::run(args.target.addr, &workload, bound, &mut io::stdout().lock())
                .with_context(|| connect_hint(args.target.addr))?;
            ensure_correct(report.wrong)
        }
        Command::Perf2(args) => {
            let workload = workload(args.n, &args.target)?;
            let bound = bound(&args.target, Bound::Duration(Duration::from_secs(5)));
            let report = perf2::run(
                args.target.addr,
                &workload,
                args.conns,
                bound,
                &mut io::stdout().lock(),
            )?;
            if report.errors.len() == report.per_connection.len() {
                bail!(
                    "every connection failed; {}",
                    connect_hint(args.target.addr)
                );
            }
            ensure_correct(report.wrong)
        }
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
        grace: args.grace,
        offload: args.offload,
        ports: args.ports,
    };
    raise_descriptor_limit();
    let addr = SocketAddr::new(args.bind, args.port);
    // Before any thread exists, so that every thread inherits the mask and only the
    // signal thread ever sees SIGINT/SIGTERM.
    let shutdown = Shutdown::new().context("cannot set up shutdown handling")?;
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
        tracing::warn!(%local, "listening beyond loopback: anyone who can reach this address can load the server");
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
                    tracing::info!(
                        ?signal,
                        "shutting down: no new connections, open ones get the grace period"
                    );
                    shutdown.trigger();
                } else {
                    tracing::warn!(?signal, "second signal: exiting now");
                    std::process::exit(1);
                }
            }
        })?;
    Ok(())
}

fn workload(n: u32, target: &Target) -> Result<Workload> {
    if n > fib::MAX_N_FITS_U64 {
        bail!(
            "n = {n} is too large: fib(n) fits in 64 bits only up to n = {}",
            fib::MAX_N_FITS_U64
        );
    }
    Ok(Workload::fib(n, !target.no_newline))
}

fn bound(target: &Target, default: Bound) -> Bound {
    match (target.count, target.duration) {
        (Some(n), _) => Bound::Count(n),
        (None, Some(d)) => Bound::Duration(d),
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
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}
