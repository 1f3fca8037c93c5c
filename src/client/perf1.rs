//! `fiblab perf1` — the seeds' `perf1.py`: one connection, one request at a time,
//! the latency of every request printed as it completes.
//!
//! Seed 000's perf1.py sends `n\n`; Beazley's (seed 004) sends `30` with no newline.
//! Both forms are here (`--no-newline`). Unlike the seeds' loop this one stops by
//! itself (`--count` or `--duration`), checks every reply against the true fib(n),
//! and ends with a summary.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{LineClient, Workload};
use crate::client::perf2::Bound;

/// What one perf1 run saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Perf1Report {
    /// Latency of every request, in order.
    pub latencies: Vec<Duration>,
    pub wrong: u64,
}

/// Runs perf1 and prints one line per request to `out`, then a summary.
pub fn run(
    addr: SocketAddr,
    workload: &Workload,
    bound: Bound,
    out: &mut impl Write,
) -> io::Result<Perf1Report> {
    let mut client = LineClient::connect(addr, Duration::from_secs(5))?;
    let mut report = Perf1Report {
        latencies: Vec::new(),
        wrong: 0,
    };
    let started = Instant::now();
    let mut last_flush = started;
    while !bound.reached(report.latencies.len() as u64, started.elapsed()) {
        let sent = Instant::now();
        let reply = client.call(&workload.request)?;
        let latency = sent.elapsed();
        let mark = if workload.is_correct(reply) {
            ""
        } else {
            report.wrong += 1;
            "   <- WRONG"
        };
        writeln!(
            out,
            "{:>10.1} µs  {}{mark}",
            latency.as_secs_f64() * 1e6,
            String::from_utf8_lossy(reply)
        )?;
        report.latencies.push(latency);
        // Printing each line with its own write would make the client, not the server,
        // the bottleneck at ~10 µs per request; flush a few times a second instead.
        if last_flush.elapsed() > Duration::from_millis(100) {
            out.flush()?;
            last_flush = Instant::now();
        }
    }
    writeln!(out, "{}", report.summary())?;
    out.flush()?;
    Ok(report)
}

impl Perf1Report {
    pub fn summary(&self) -> String {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let Some((&min, &max)) = sorted.first().zip(sorted.last()) else {
            return "0 requests".into();
        };
        let mean = sorted.iter().sum::<Duration>() / sorted.len() as u32;
        let p50 = sorted[sorted.len() / 2];
        format!(
            "{} requests: min {:.1} µs, p50 {:.1} µs, mean {:.1} µs, max {:.1} µs; {} wrong replies",
            sorted.len(),
            us(min),
            us(p50),
            us(mean),
            us(max),
            self.wrong
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_figures() {
        let report = Perf1Report {
            latencies: [30, 10, 20].map(Duration::from_micros).to_vec(),
            wrong: 1,
        };
        assert_eq!(
            report.summary(),
            "3 requests: min 10.0 µs, p50 20.0 µs, mean 20.0 µs, max 30.0 µs; 1 wrong replies"
        );
    }
}
