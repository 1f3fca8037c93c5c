//! `fiblab load`: the load generator's flags, and its reports to files or stdout.

use std::io::{self, IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use fiblab::calibrate::work::parse_cpu;
use fiblab::load::mix::parse_n;
use fiblab::load::mix::{Class, Expected, Mix, Protocol};
use fiblab::load::report::{render_csv, render_json, render_text};
use fiblab::load::{self, Agent, Hooks, LoadSpec, Segment, Stop};
use fiblab::units::{CpuList, parse_addr, parse_duration, parse_share};

#[derive(Args)]
pub struct LoadArgs {
    /// Server address.
    #[arg(short, long, default_value = "127.0.0.1:25000", value_parser = parse_addr)]
    addr: SocketAddr,
    /// Ask for fib(n), 0 to 93 (the default is n = 1).
    #[arg(short, long, conflicts_with_all = ["mix", "request"], allow_negative_numbers = true, value_parser = parse_n)]
    n: Option<u32>,
    /// CPU work per request instead of n, e.g. 300us or 2ms (at most 10s): the fib(n)
    /// nearest that on one core here, timed at start (n steps are 1.62x apart).
    #[arg(long, conflicts_with_all = ["n", "mix", "request"], value_parser = parse_cpu)]
    cpu: Option<Duration>,
    /// A weighted mix of fib requests, e.g. 1:99,36:1 (n:weight,...), each n also as CPU
    /// time (300us:99,5ms:1); statistics per n.
    #[arg(long, conflicts_with = "request")]
    mix: Option<String>,
    /// Send this line instead: any protocol with one reply line per request (PING for
    /// redis; not memcached's multi-line `get`).
    #[arg(long)]
    request: Option<String>,
    /// The protocol driven, which says which replies are errors: fiblab (`ERR ...`),
    /// resp (redis: `-...`), memcached (`ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`),
    /// or auto (any of them).
    #[arg(long, value_enum, default_value_t = Protocol::Auto)]
    protocol: Protocol,
    /// With --request: the exact reply a correct server sends (e.g. +PONG); any other
    /// reply counts as wrong.
    #[arg(long, requires = "request", conflicts_with = "expect_prefix")]
    expect: Option<String>,
    /// With --request: the start of a correct reply (e.g. VERSION for memcached).
    #[arg(long, requires = "request")]
    expect_prefix: Option<String>,
    /// Send requests with no newline, as Beazley's clients do.
    #[arg(long)]
    no_newline: bool,
    /// Connections.
    #[arg(short, long, default_value_t = 1)]
    conns: usize,
    /// First open this many more connections, each sending one fib(1) and then
    /// staying idle, and hold them while the load runs (the C10K question: what do
    /// idle clients cost the active ones?). The descriptor limit is raised to the
    /// hard limit; see `ulimit -Hn`.
    #[arg(long, default_value_t = 0)]
    idle: usize,
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
    /// A request without a reply this long after it was due is a timeout error. 5s:
    /// longer than any request up to the servers' default --max-n takes.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Client threads (connections are spread over them). Default: CPUs.
    #[arg(short, long)]
    threads: Option<usize>,
    /// Busy-poll the sockets instead of sleeping (no wake-up latency; a core per thread).
    #[arg(long)]
    spin: bool,
    /// Open loop: act on a grid of this period (e.g. 50us) instead of at each request's
    /// due time: at most one wake-up per tick instead of about one per request, replies
    /// timed by the kernel's arrival stamp; a request is sent up to one tick late (and
    /// measured from when it was due). 0: exact schedule.
    #[arg(long, default_value = "0s", value_parser = parse_duration, requires = "rate")]
    tick: Duration,
    /// Pin client threads to these CPUs, e.g. 0,1 or 2-3.
    #[arg(long)]
    cpus: Option<CpuList>,
    /// Seed of the random class choice in a mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Exit 1 when more than this share of requests failed (e.g. 1% or 0.01). A run in
    /// which no request succeeded always exits 1.
    #[arg(long, value_parser = parse_share, value_name = "SHARE")]
    max_error_rate: Option<f64>,
    /// Write the whole report as JSON to this file (- for stdout: the text report then
    /// goes to stderr).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the per-second series as CSV to this file (- for stdout: the text report
    /// then goes to stderr).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Read this process (its threads and children) at the measured window's edges and
    /// report the server's CPU per request beside the client's. By default, for a
    /// loopback target, the process listening on its port is read where this user may.
    #[arg(long, value_name = "PID", conflicts_with = "segment")]
    server_pid: Option<u32>,
    /// No live progress line on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// A live full-screen view (throughput and p99 per class, per second) while it
    /// runs; q or Ctrl-C stops early. The report follows.
    #[arg(long)]
    tui: bool,
    /// Run agent I of N of a load split across processes or hosts (an execution
    /// segment, as k6 calls it): every Nth of the --conns connections, starting with
    /// the Ith, with their share of --rate, each on the whole load's schedule, so N
    /// agents together offer exactly the load asked. Give every agent the same flags
    /// and --start-at; merge their --json reports with `fiblab load merge`.
    #[arg(long, value_name = "I/N", value_parser = parse_segment)]
    segment: Option<Segment>,
    /// With --segment: start the warm-up at this wall-clock time, seconds since the Unix
    /// epoch (e.g. `$(( $(date +%s) + 3 ))`), so that all agents start together.
    #[arg(long, value_name = "UNIX_SECONDS", requires = "segment", value_parser = parse_start_at)]
    start_at: Option<f64>,
    #[command(subcommand)]
    command: Option<LoadCommand>,
}

#[derive(clap::Subcommand)]
pub enum LoadCommand {
    /// Merge the --json reports of the agents of one split load into the report of the
    /// whole load: histograms added (exact percentiles), counts summed, seconds lined
    /// up on the wall clock.
    Merge {
        /// The agents' JSON reports.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Write the merged report as JSON to this file (- for stdout).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the merged per-second series as CSV to this file (- for stdout).
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Merge an incomplete set of agents (one host failed); the report says which
        /// agents are missing. Without it every agent of the split must be given.
        #[arg(long)]
        partial: bool,
    },
}

fn parse_segment(text: &str) -> Result<Segment, String> {
    Segment::parse(text).map_err(|e| e.to_string())
}

/// `--start-at`: seconds since the Unix epoch, finite, and at most a day from now (an
/// agent that waits longer was given a wrong time). A time past is allowed: the agent
/// is late, and its report says so.
pub(super) fn parse_start_at(text: &str) -> Result<f64, String> {
    let at: f64 = text.parse().map_err(|_| {
        format!(
            "'{text}' is not a number of seconds since the Unix epoch (e.g. $(( $(date +%s) + 3 )))"
        )
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    match at {
        at if !at.is_finite() || at < 0.0 => Err(format!(
            "'{text}' is not a time: give seconds since the Unix epoch (e.g. $(( $(date +%s) + 3 )))"
        )),
        at if at > now + 86_400.0 => Err(format!(
            "'{text}' is more than a day from now ({now:.0}): give the agents a start a few seconds ahead"
        )),
        at => Ok(at),
    }
}

impl LoadArgs {
    fn spec(&self) -> Result<LoadSpec> {
        let newline = !self.no_newline;
        let mix = match (&self.request, &self.mix, self.n) {
            (Some(text), _, _) => {
                let class = Class::text(text, newline);
                let class = match (&self.expect, &self.expect_prefix) {
                    (Some(e), _) => class.expecting(Expected::Exact(e.clone().into_bytes())),
                    (None, Some(p)) => class.expecting(Expected::Prefix(p.clone().into_bytes())),
                    (None, None) => class,
                };
                Mix::new(vec![class])?
            }
            (None, Some(mix), _) => Mix::parse_fib(&super::mix_in_n(mix)?, newline)?,
            (None, None, n) => Mix::new(vec![Class::checked_fib(
                super::n_or_cpu(n.unwrap_or(1), self.cpu),
                1,
                newline,
            )?])?,
        };
        let spec = LoadSpec {
            addr: self.addr,
            mix,
            connections: self.conns,
            pipeline: self.pipeline,
            rate: self.rate,
            stop: match (self.requests, self.duration) {
                (Some(n), _) => Stop::Requests(n),
                (None, d) => Stop::After(d.unwrap_or(Duration::from_secs(10))),
            },
            warmup: self.warmup,
            timeout: self.timeout,
            threads: self.threads.unwrap_or_else(fiblab::server::default_workers),
            spin: self.spin,
            tick: self.tick,
            cpus: self.cpus.clone().map(|c| c.0),
            seed: self.seed,
            agent: self.segment.map(|segment| Agent {
                segment,
                start_at: self
                    .start_at
                    .map(|t| std::time::UNIX_EPOCH + Duration::from_secs_f64(t.max(0.0))),
            }),
            protocol: self.protocol,
        };
        spec.validate()?;
        Ok(spec)
    }
}

pub fn run(args: LoadArgs) -> Result<()> {
    let dash = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str() == "-");
    if let Some(LoadCommand::Merge {
        reports,
        json,
        csv,
        partial,
    }) = &args.command
    {
        if dash(json) && dash(csv) {
            bail!("--json - and --csv - both want standard output: send one of them to a file");
        }
        let read = |path: &PathBuf| -> Result<load::report::Report> {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a fiblab load JSON report; write one with `fiblab load --json FILE`",
                    path.display()
                )
            })
        };
        let parts = reports.iter().map(read).collect::<Result<Vec<_>>>()?;
        let names: Vec<String> = reports.iter().map(|p| p.display().to_string()).collect();
        let merged = load::merge::merge_named(&names, &parts, *partial)?;
        return write_report(&merged, json, csv);
    }
    if dash(&args.json) && dash(&args.csv) {
        bail!("--json - and --csv - both want standard output: send one of them to a file");
    }
    let spec = args.spec()?;
    // Before measuring: a report that cannot be written is known now, not after the run.
    super::check_outputs(&[("--json", &args.json), ("--csv", &args.csv)])?;
    let interrupt = fiblab::shutdown::interrupt_flag()?;
    // Held until the report is written: the idle clients stay connected throughout.
    let _idle = match args.idle {
        0 => None,
        n => {
            let held = load::hold::hold(&load::hold::HoldSpec::fib1(spec.addr, n))
                .context("cannot open the idle connections")?;
            eprintln!(
                "idle connections: {} of {n} held ({}) in {:.2} s{}",
                held.answered,
                held.describe(),
                held.took.as_secs_f64(),
                held.stopped
                    .as_deref()
                    .map_or(String::new(), |why| format!("; {why}"))
            );
            Some(held)
        }
    };
    let report = if args.tui {
        if !io::stdout().is_terminal() {
            bail!("--tui needs a terminal on standard output; leave it out to get the text report");
        }
        load::tui::run(&spec, interrupt)?
    } else {
        let quiet = args.quiet;
        // The server's side of a request's cost, read at the window's edges while the
        // connections are open (as the bench does).
        let server_pid = args.server_pid.or_else(|| {
            (spec.addr.ip().is_loopback() && args.segment.is_none())
                .then(|| fiblab::process::listener_pid(spec.addr.port()))
                .flatten()
        });
        let mut server_work = fiblab::process::WindowWork::default();
        let mut on_window = |_: load::Edge, ok: u64| {
            if let Some(pid) = server_pid {
                server_work.read(pid, ok);
            }
        };
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
        let mut report = load::run(
            &spec,
            interrupt,
            Hooks {
                on_second: Some(&mut live),
                on_window: Some(&mut on_window),
                ..Hooks::default()
            },
        )?;
        if let (Some(pid), Some((work, replies))) = (server_pid, server_work.between()) {
            report.server = load::report::ServerCost::new(
                pid,
                (work.cpu_ns, work.sleeps, work.preempted),
                replies,
                &report.client,
            );
        } else if let Some(pid) = args.server_pid {
            report.notes.push(format!(
                "--server-pid {pid}: its /proc could not be read at both edges of the measured window (gone, or another user's), so the server's cost is not reported"
            ));
        }
        report
    };
    write_report(&report, &args.json, &args.csv)?;
    Ok(report.verdict(args.max_error_rate)?)
}

/// The text report, and the JSON and CSV where asked. Standard output carries one
/// format: a machine format given `-`, else the text.
fn write_report(
    report: &load::report::Report,
    json: &Option<PathBuf>,
    csv: &Option<PathBuf>,
) -> Result<()> {
    let to_stdout = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str() == "-");
    match to_stdout(json) || to_stdout(csv) {
        true => io::stderr().write_all(render_text(report).as_bytes())?,
        false => io::stdout().write_all(render_text(report).as_bytes())?,
    }
    for (path, text) in [
        (json, render_json(report) + "\n"),
        (csv, render_csv(report)),
    ] {
        match path {
            Some(p) if p.as_os_str() == "-" => io::stdout().write_all(text.as_bytes())?,
            Some(p) => {
                std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?
            }
            None => {}
        }
    }
    Ok(())
}
