//! `fiblab perf2` — the seeds' `perf2.py`: requests per second, printed once a second.
//!
//! Each of `--conns` connections has its own thread and one request in flight (a
//! closed loop), like running perf2.py `--conns` times. It prints `N reqs/sec` every
//! second, as the seed does, then a summary with the count per connection: against
//! `single` the second connection's count is 0, which is the seeds' "cannot serve".
//! It is a preset of [`crate::load`], so it stops by itself and checks every reply.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::load::mix::{Class, Mix};
use crate::load::report::Report;
use crate::load::{Hooks, LoadSpec, Stop, run as run_load};

/// Runs perf2 and prints one `N reqs/sec` line per second to `out`, then a summary.
pub fn run(
    addr: SocketAddr,
    class: Class,
    conns: usize,
    stop: Stop,
    interrupt: Arc<AtomicBool>,
    out: &mut impl Write,
) -> io::Result<Report> {
    let conns = conns.max(1);
    let spec = LoadSpec {
        threads: conns,
        ..LoadSpec::closed_loop(
            addr,
            Mix::new(vec![class]).map_err(io::Error::other)?,
            conns,
            stop,
        )
    };
    let mut failed = None;
    let mut on_second = |tick: &crate::load::Tick| {
        if let Err(e) = writeln!(out, "{} reqs/sec", tick.ok).and_then(|()| out.flush()) {
            failed.get_or_insert(e);
        }
    };
    let report = run_load(
        &spec,
        interrupt,
        Hooks {
            on_second: Some(&mut on_second),
            on_reply: None,
            should_stop: None,
            on_window: None,
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    writeln!(out, "{}", summary(&report))?;
    out.flush()?;
    Ok(report)
}

/// `total: N requests in T s = R reqs/sec over C connections (per connection: ...)`.
pub fn summary(r: &Report) -> String {
    let per_conn: Vec<String> = r.per_connection.iter().map(u64::to_string).collect();
    let wrong = r.errors.wrong;
    format!(
        "total: {} requests in {:.2} s = {:.0} reqs/sec over {} connections (per connection: {}); {} wrong replies, {} errors",
        r.requests_ok,
        r.measured_s,
        r.throughput_rps,
        r.connections,
        per_conn.join(", "),
        wrong,
        r.errors.total() - wrong
    )
}
