//! `fiblab perf2` — the seeds' `perf2.py`: requests per second, printed once a second.
//!
//! Each of `--conns` connections runs on its own thread, one request in flight at a
//! time (a closed loop), like running perf2.py `--conns` times. A monitor prints
//! `N reqs/sec` every second, as the seed does, and a summary at the end with the
//! count per connection: against `single` the second connection's count is 0,
//! which is the seeds' "cannot serve".
//!
//! It stops by itself (`--duration` or `--count`); at the end it shuts its sockets
//! down so that a connection still waiting for a reply (a server that never answers
//! it) cannot keep it running.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{LineClient, Workload};

/// When a client run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// After this many requests in all.
    Count(u64),
    /// After this long.
    Duration(Duration),
}

impl Bound {
    pub fn reached(&self, requests: u64, elapsed: Duration) -> bool {
        match *self {
            Bound::Count(n) => requests >= n,
            Bound::Duration(d) => elapsed >= d,
        }
    }
}

/// What one perf2 run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Perf2Report {
    /// Correct replies in each whole second of the run.
    pub per_second: Vec<u64>,
    /// Correct replies on each connection over the whole run.
    pub per_connection: Vec<u64>,
    pub wrong: u64,
    pub elapsed: Duration,
    /// The first error of each connection that failed, as text.
    pub errors: Vec<String>,
}

impl Perf2Report {
    pub fn total(&self) -> u64 {
        self.per_connection.iter().sum()
    }

    pub fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.total() as f64 / secs
        } else {
            0.0
        };
        let per_conn: Vec<String> = self.per_connection.iter().map(u64::to_string).collect();
        format!(
            "total: {} requests in {:.2} s = {:.0} reqs/sec over {} connections (per connection: {}); {} wrong replies, {} failed connections",
            self.total(),
            secs,
            rate,
            self.per_connection.len(),
            per_conn.join(", "),
            self.wrong,
            self.errors.len()
        )
    }
}

/// State shared by the connection threads and the monitor.
struct Shared {
    stop: AtomicBool,
    total: AtomicU64,
    wrong: AtomicU64,
    per_connection: Vec<AtomicU64>,
    running: AtomicUsize,
    errors: Mutex<Vec<String>>,
    /// A clone of each connected socket, so the monitor can unblock every thread at
    /// the end by shutting the sockets down.
    sockets: Mutex<Vec<TcpStream>>,
}

/// Runs perf2 and prints one `N reqs/sec` line per second to `out`, then a summary.
pub fn run(
    addr: SocketAddr,
    workload: &Workload,
    conns: usize,
    bound: Bound,
    out: &mut impl Write,
) -> io::Result<Perf2Report> {
    let conns = conns.max(1);
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        total: AtomicU64::new(0),
        wrong: AtomicU64::new(0),
        per_connection: (0..conns).map(|_| AtomicU64::new(0)).collect(),
        running: AtomicUsize::new(conns),
        errors: Mutex::new(Vec::new()),
        sockets: Mutex::new(Vec::new()),
    });
    let started = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|i| {
            let (shared, workload) = (shared.clone(), workload.clone());
            std::thread::Builder::new()
                .name(format!("perf2-conn-{i}"))
                .spawn(move || {
                    if let Err(e) = drive(addr, &workload, i, bound, &shared) {
                        if !shared.stop.load(Ordering::SeqCst) {
                            lock(&shared.errors).push(format!("connection {i}: {e}"));
                        }
                    }
                    shared.running.fetch_sub(1, Ordering::SeqCst);
                })
        })
        .collect::<io::Result<_>>()?;

    let mut per_second = Vec::new();
    let mut counted = 0;
    let mut next_tick = started + Duration::from_secs(1);
    loop {
        let done = bound.reached(shared.total.load(Ordering::Relaxed), started.elapsed())
            || shared.running.load(Ordering::SeqCst) == 0;
        if Instant::now() >= next_tick {
            let total = shared.total.load(Ordering::Relaxed);
            per_second.push(total - counted);
            writeln!(out, "{} reqs/sec", total - counted)?;
            out.flush()?;
            counted = total;
            next_tick += Duration::from_secs(1);
        }
        if done {
            break;
        }
        std::thread::sleep(
            next_tick
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(5)),
        );
    }
    let elapsed = started.elapsed();
    shared.stop.store(true, Ordering::SeqCst);
    for socket in lock(&shared.sockets).iter() {
        let _ = socket.shutdown(Shutdown::Both);
    }
    for t in threads {
        let _ = t.join();
    }
    let report = Perf2Report {
        per_second,
        per_connection: shared
            .per_connection
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect(),
        wrong: shared.wrong.load(Ordering::Relaxed),
        elapsed,
        errors: std::mem::take(&mut *lock(&shared.errors)),
    };
    writeln!(out, "{}", report.summary())?;
    for e in &report.errors {
        writeln!(out, "error: {e}")?;
    }
    out.flush()?;
    Ok(report)
}

/// One connection's closed loop: request, reply, count, until the run stops.
fn drive(
    addr: SocketAddr,
    workload: &Workload,
    index: usize,
    bound: Bound,
    shared: &Shared,
) -> io::Result<()> {
    let mut client = LineClient::connect(addr, Duration::from_secs(5))?;
    lock(&shared.sockets).push(client.try_clone_stream()?);
    while !shared.stop.load(Ordering::Relaxed) {
        let reply = client.call(&workload.request)?;
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        if workload.is_correct(reply) {
            shared.per_connection[index].fetch_add(1, Ordering::Relaxed);
            let total = shared.total.fetch_add(1, Ordering::Relaxed) + 1;
            if let Bound::Count(n) = bound {
                if total >= n {
                    shared.stop.store(true, Ordering::SeqCst);
                }
            }
        } else {
            shared.wrong.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is one push or one read: a panic cannot leave it torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(Bound::Count(3).reached(3, Duration::ZERO));
        assert!(!Bound::Count(3).reached(2, Duration::from_secs(99)));
        assert!(Bound::Duration(Duration::from_secs(1)).reached(0, Duration::from_secs(1)));
    }

    #[test]
    fn summary_counts_connections() {
        let report = Perf2Report {
            per_second: vec![10, 20],
            per_connection: vec![30, 0],
            wrong: 0,
            elapsed: Duration::from_secs(2),
            errors: vec![],
        };
        assert_eq!(
            report.summary(),
            "total: 30 requests in 2.00 s = 15 reqs/sec over 2 connections (per connection: 30, 0); 0 wrong replies, 0 failed connections"
        );
    }
}
