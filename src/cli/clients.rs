//! `fiblab perf1`, `perf2` and `soak`: the seeds' clients and the long mixed run.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use fiblab::calibrate::work::parse_cpu;
use fiblab::client::{perf1 as perf1_client, perf2 as perf2_client, soak as soak_client};
use fiblab::load::Stop;
use fiblab::load::mix::Class;
use fiblab::load::mix::parse_n;
use fiblab::shutdown::interrupt_flag;
use fiblab::units::{parse_addr, parse_duration, parse_share};

use super::connect_hint;

#[derive(Args)]
pub struct Target {
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
    /// Exit 1 when more than this share of requests failed (e.g. 1% or 0.01). A run in
    /// which no request succeeded always exits 1.
    #[arg(long, value_parser = parse_share, value_name = "SHARE")]
    max_error_rate: Option<f64>,
}

impl Target {
    fn class(&self, n: u32) -> Result<Class> {
        Ok(Class::checked_fib(n, 1, !self.no_newline)?)
    }

    fn stop(&self, default: Stop) -> Stop {
        match (self.count, self.duration) {
            (Some(n), _) => Stop::Requests(n),
            (None, Some(d)) => Stop::After(d),
            (None, None) => default,
        }
    }
}

#[derive(Args)]
pub struct Perf1Args {
    /// fib(n) to ask for, 0 to 93.
    #[arg(short, long, default_value = "30", allow_negative_numbers = true, value_parser = parse_n)]
    n: u32,
    /// CPU work per request instead of n, e.g. 300us or 2ms (at most 10s): the fib(n)
    /// nearest that on one core here, timed at start (n steps are 1.62x apart).
    #[arg(long, conflicts_with = "n", value_parser = parse_cpu)]
    cpu: Option<Duration>,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct Perf2Args {
    /// fib(n) to ask for, 0 to 93.
    #[arg(short, long, default_value = "1", allow_negative_numbers = true, value_parser = parse_n)]
    n: u32,
    /// CPU work per request instead of n, e.g. 300us or 2ms (at most 10s): the fib(n)
    /// nearest that on one core here, timed at start (n steps are 1.62x apart).
    #[arg(long, conflicts_with = "n", value_parser = parse_cpu)]
    cpu: Option<Duration>,
    /// Connections, each on its own thread with one request in flight.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct SoakArgs {
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

pub fn perf1(args: Perf1Args) -> Result<()> {
    let class = args.target.class(super::n_or_cpu(args.n, args.cpu))?;
    let stop = args.target.stop(Stop::Requests(10));
    let report = perf1_client::run(
        args.target.addr,
        class,
        stop,
        interrupt_flag()?,
        io::stdout(),
    )
    .with_context(|| connect_hint(args.target.addr))?;
    Ok(report.verdict(args.target.max_error_rate)?)
}

pub fn perf2(args: Perf2Args) -> Result<()> {
    let class = args.target.class(super::n_or_cpu(args.n, args.cpu))?;
    let stop = args.target.stop(Stop::After(Duration::from_secs(5)));
    let report = perf2_client::run(
        args.target.addr,
        class,
        args.conns,
        stop,
        interrupt_flag()?,
        &mut io::stdout().lock(),
    )?;
    Ok(report.verdict(args.target.max_error_rate)?)
}

pub fn soak(args: SoakArgs) -> Result<()> {
    let variant = fiblab::models::parse_variant(&args.model)?;
    let exe = std::env::current_exe()
        .context("cannot find the fiblab binary to start the server with")?;
    let interrupt = interrupt_flag()?;
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
    let report = soak_client::run(
        &exe,
        &variant,
        args.duration,
        args.conns,
        args.pipeline,
        interrupt,
        &mut on_second,
    )?;
    super::print(&soak_client::render(&report))?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if !report.passed() {
        bail!("the soak found lost or wrong replies, or an unclean exit (above)");
    }
    Ok(())
}
