//! `fiblab soak`: a long run of mixed load against one model, with exact accounting.
//!
//! It starts `fiblab serve --model M` as its own process (as the benchmark does), drives
//! it for `--duration` with a mix of fib requests (mostly I/O-bound, some CPU-bound)
//! over several pipelined connections, and checks every reply against the oracle, in
//! order: a reply that went missing, came twice or came out of order shows up as a
//! wrong value or a timeout, because consecutive requests ask for different n. At the
//! end the server gets SIGTERM and must exit 0 within its grace period. The verdict:
//! answered, lost, wrong, and the server's resident memory at the start and the end.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::Serialize;

use crate::load::mix::Mix;
use crate::load::{Hooks, LoadSpec, Stop, Tick};
use crate::process::ServerProcess;
use crate::server::{Config, Variant};

/// The request mix: fib(1) mostly, the seeds' CPU-bound n=20 often, heavier ones rarely.
pub const MIX: &str = "1:60,10:20,20:15,25:4,30:1";

/// What a soak run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoakReport {
    pub model: String,
    pub duration_s: f64,
    pub connections: usize,
    pub pipeline: usize,
    pub mix: String,
    /// Correct replies.
    pub answered: u64,
    /// Requests with no reply (timeouts, resets) or an unexpected `ERR`.
    pub lost: u64,
    /// Replies with the wrong value: a wrong fib, a duplicate or a reordering.
    pub wrong: u64,
    /// In flight when the run ended: neither answered nor lost.
    pub in_flight_at_end: u64,
    pub rss_start_kb: u64,
    pub rss_end_kb: u64,
    /// The server exited 0 within its grace period after SIGTERM.
    pub clean_exit: bool,
}

impl SoakReport {
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.wrong == 0 && self.answered > 0 && self.clean_exit
    }
}

/// Runs one soak; `on_second` hears the replies of every second, for progress.
pub fn run(
    exe: &Path,
    variant: &Variant,
    duration: Duration,
    connections: usize,
    pipeline: usize,
    interrupt: Arc<AtomicBool>,
    on_second: &mut dyn FnMut(&Tick),
) -> io::Result<SoakReport> {
    let mix = Mix::parse_fib(MIX, true).map_err(io::Error::other)?;
    let spec = |addr| LoadSpec {
        pipeline,
        threads: connections.min(crate::server::default_workers()),
        ..LoadSpec::closed_loop(addr, mix.clone(), connections, Stop::After(duration))
    };
    // Checked before a server is started for it.
    spec(SocketAddr::from(([127, 0, 0, 1], 0)))
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let config = crate::models::find(&variant.model).map_or(Config::default(), |model| {
        crate::models::defaults_for(model, Config::default())
    });
    let server = ServerProcess::start(exe, variant, &config, &[])?;
    let rss = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    };
    let rss_start_kb = rss(server.pid());
    let report = crate::load::run(
        &spec(server.addr),
        interrupt,
        Hooks {
            on_second: Some(on_second),
            ..Hooks::default()
        },
    )?;
    let rss_end_kb = rss(server.pid());
    let clean_exit = server.stop_status().is_some_and(|s| s.success());
    Ok(SoakReport {
        model: variant.label(),
        duration_s: report.measured_s,
        connections,
        pipeline,
        mix: MIX.to_string(),
        answered: report.requests_ok,
        lost: report.errors.timeout + report.errors.reset + report.errors.err_reply,
        wrong: report.errors.wrong,
        in_flight_at_end: report.unfinished,
        rss_start_kb,
        rss_end_kb,
        clean_exit,
    })
}

/// The verdict as a few lines of text.
pub fn render(r: &SoakReport) -> String {
    format!(
        "soak {}: {:.0} s, {} connections x pipeline {}, mix {}\n  answered {}, lost {}, wrong {}, in flight at the end {}\n  server RSS {} KiB -> {} KiB; {}\n  {}\n",
        r.model,
        r.duration_s,
        r.connections,
        r.pipeline,
        r.mix,
        r.answered,
        r.lost,
        r.wrong,
        r.in_flight_at_end,
        r.rss_start_kb,
        r.rss_end_kb,
        if r.clean_exit {
            "exited 0 after SIGTERM"
        } else {
            "did NOT exit cleanly after SIGTERM"
        },
        if r.passed() { "PASS" } else { "FAIL" }
    )
}
