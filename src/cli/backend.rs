//! `fiblab backend`: the downstream a waiting request waits on, until SIGINT/SIGTERM.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;

use fiblab::backend::{self, BackendConfig, BackendStats};
use fiblab::shutdown::{self, Shutdown};
use fiblab::units::{parse_addr, parse_duration};

#[derive(Args)]
pub struct BackendArgs {
    /// Address to listen on (port 0 picks a free one, printed at start).
    #[arg(short, long, default_value = "127.0.0.1:25001", value_parser = parse_addr)]
    addr: SocketAddr,
    /// How long each line waits before it is answered (e.g. 5ms, 10ms, 1s).
    #[arg(long, default_value = "5ms", value_parser = parse_duration)]
    delay: Duration,
    /// Plus a uniform random share of this (0s: every line waits exactly --delay).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    jitter: Duration,
    /// Seed of the jitter's draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Close a connection that sends no whole line for this long (a line held open
    /// without its newline, a silent client); 0: never.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    idle_timeout: Duration,
}

pub fn run(args: BackendArgs) -> Result<()> {
    fiblab::server::raise_descriptor_limit();
    // Before any thread exists: only the signal thread sees SIGINT/SIGTERM.
    let shutdown = Shutdown::new().context("cannot set up shutdown handling")?;
    let trigger = shutdown.clone();
    shutdown::on_signals(move || trigger.trigger()).context("cannot handle SIGINT/SIGTERM")?;
    let listener = std::net::TcpListener::bind(args.addr).with_context(|| {
        format!(
            "cannot listen on {}; is another server using the port? Pick another with --addr",
            args.addr
        )
    })?;
    let local = listener.local_addr()?;
    writeln!(
        io::stdout(),
        "fiblab backend on {local}: each line answered with itself after {:?}{}",
        args.delay,
        match args.jitter.is_zero() {
            true => String::new(),
            false => format!(" plus up to {:?} at random", args.jitter),
        }
    )?;
    io::stdout().flush()?;
    let stats = Arc::new(BackendStats::default());
    let (started, cpu) = (Instant::now(), backend::process_cpu_s());
    let config = BackendConfig {
        delay: args.delay,
        jitter: args.jitter,
        seed: args.seed,
        idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
    };
    backend::serve(listener, config, shutdown, stats.clone()).context("the backend failed")?;
    // Its own cost, so whoever used it can tell whether the downstream was a limit.
    let answered = stats.answered.load(Ordering::Relaxed);
    let spent = backend::process_cpu_s()
        .zip(cpu)
        .map(|(end, begin)| end - begin);
    eprintln!(
        "fiblab backend: answered {answered} lines over {} connections in {:.1} s, at most {} waiting at once, each {}; CPU {}",
        stats.connections.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        stats.most_waiting.load(Ordering::Relaxed),
        stats.mean_wait().map_or("-".into(), |w| format!(
            "waiting {:.2} ms on average (asked {:?}; the timers fire on a 1 ms grid)",
            w.as_secs_f64() * 1e3,
            args.delay
        )),
        match spent {
            Some(s) if answered > 0 =>
                format!("{s:.2} s ({:.1} µs per line)", s * 1e6 / answered as f64),
            Some(s) => format!("{s:.2} s"),
            None => "unknown".into(),
        }
    );
    Ok(())
}
