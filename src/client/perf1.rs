//! `fiblab perf1` — the seeds' `perf1.py`: one connection, one request at a time,
//! the latency of every request printed as it completes.
//!
//! Seed 000's perf1.py sends `n\n`; Beazley's (seed 004) sends `30` with no newline.
//! Both forms are here (`--no-newline`). Unlike the seeds' loop it stops by itself,
//! checks every reply against the true fib(n), and ends with a summary. It is a preset
//! of [`crate::load`]: one connection, one thread, a closed loop.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::load::mix::{Class, Mix, Protocol};
use crate::load::report::Report;
use crate::load::{Hooks, LoadSpec, Stop, run as run_load};

/// Runs perf1, printing one line per reply to `out` as it arrives, then a summary.
pub fn run<W: Write + Send + 'static>(
    addr: SocketAddr,
    class: Class,
    stop: Stop,
    interrupt: Arc<AtomicBool>,
    out: W,
) -> io::Result<Report> {
    let mix = Mix::new(vec![class]).map_err(io::Error::other)?;
    let spec = LoadSpec::closed_loop(addr, mix, 1, stop);
    let out = Arc::new(Mutex::new(io::BufWriter::new(out)));
    let printer = out.clone();
    let on_reply = Arc::new(
        move |latency: Duration, reply: &[u8], correct: bool, _: usize| {
            let mut out = printer.lock().unwrap_or_else(|p| p.into_inner());
            let mark = match (correct, Protocol::Fiblab.is_error(reply)) {
                (true, _) => "",
                (false, true) => "   <- ERR",
                (false, false) => "   <- WRONG",
            };
            let _ = writeln!(
                out,
                "{:>10.1} µs  {}{mark}",
                latency.as_secs_f64() * 1e6,
                String::from_utf8_lossy(reply)
            );
        },
    );
    // Flush a few times a second rather than per line: printing must not be what
    // limits the request rate.
    let flusher = out.clone();
    let mut on_second = |_: &crate::load::Tick| {
        let _ = flusher.lock().unwrap_or_else(|p| p.into_inner()).flush();
    };
    let report = run_load(
        &spec,
        interrupt,
        Hooks {
            on_second: Some(&mut on_second),
            on_reply: Some(on_reply),
            should_stop: None,
            on_window: None,
        },
    )?;
    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
    writeln!(out, "{}", summary(&report))?;
    out.flush()?;
    if report.requests_ok == 0 && report.errors.connect > 0 {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "could not connect",
        ));
    }
    Ok(report)
}

/// `N requests: min, p50, mean, max; W wrong replies`.
pub fn summary(report: &Report) -> String {
    let Some(class) = report.classes.first() else {
        return "0 requests".into();
    };
    let l = &class.latency_sent_us;
    format!(
        "{} requests: min {} µs, p50 {} µs, mean {:.1} µs, max {} µs; {} wrong replies, {} errors",
        class.requests_ok,
        l.min,
        l.p50,
        l.mean,
        l.max,
        class.wrong,
        report.errors.total() - report.errors.wrong
    )
}
