//! `semaphore` — seed 002's 信号量 (Semaphore): a lock that lets K holders in at once.
//! The seed's example is a parking lot: N cars, K spaces, the rest wait at the gate.
//!
//! A counting semaphore is a number and a waiting room: `acquire` waits while the number
//! is 0, then takes one; `release` gives one back and wakes a waiter. With K = 1 it is a
//! mutex. Servers use one to cap how much expensive work runs at once (here: fib), so
//! that a burst queues instead of oversubscribing the CPUs: `fiblab serve --model
//! threads --max-inflight K` does (`crate::pool::Semaphore`), and the demo drives it
//! with more clients than K.

use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::pool::Semaphore;

/// What `threads` threads computing fib(`n`) under a semaphore of `permits` did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SemaphoreOutcome {
    pub threads: usize,
    pub permits: usize,
    /// The most computations that ran at once.
    pub most_at_once: usize,
    /// The longest and the mean wait for a permit.
    pub longest_wait: Duration,
    pub mean_wait: Duration,
    pub elapsed: Duration,
}

pub fn measure(threads: usize, permits: usize, n: u32) -> SemaphoreOutcome {
    let gate = Arc::new(Semaphore::new(permits));
    let (inside, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let start = Instant::now();
    let waits: Vec<Duration> = (0..threads)
        .map(|_| {
            let (gate, inside, most) = (gate.clone(), inside.clone(), most.clone());
            std::thread::spawn(move || {
                let asked = Instant::now();
                let permit = gate.acquire();
                let waited = asked.elapsed();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::hint::black_box(crate::fib::fib(n));
                inside.fetch_sub(1, Ordering::SeqCst);
                drop(permit);
                waited
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap_or_default())
        .collect();
    let total: Duration = waits.iter().sum();
    SemaphoreOutcome {
        threads,
        permits,
        most_at_once: most.load(Ordering::SeqCst),
        longest_wait: waits.iter().copied().max().unwrap_or_default(),
        mean_wait: total / threads.max(1) as u32,
        elapsed: start.elapsed(),
    }
}

/// What `fiblab serve --model threads --max-inflight K` did with `clients` clients
/// asking fib(`n`) at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerOutcome {
    pub permits: usize,
    pub clients: usize,
    /// Correct replies.
    pub answered: usize,
    /// The most computations at once, from the server's log at shutdown.
    pub most_at_once: Option<usize>,
    pub elapsed: Duration,
}

/// Starts `exe serve --model threads --max-inflight permits`, sends fib(`n`) from
/// `clients` connections at once, stops it and reads what it logged.
///
/// # Errors
/// The server cannot be started or reached.
pub fn measure_server(
    exe: &std::path::Path,
    permits: usize,
    clients: usize,
    n: u32,
) -> io::Result<ServerOutcome> {
    let mut server = Command::new(exe)
        .args([
            "serve",
            "--model",
            "threads",
            "--port",
            "0",
            "--max-inflight",
        ])
        .arg(permits.to_string())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    if let Some(out) = server.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let Some(addr) = crate::server::parse_listening_line(&line) else {
        let _ = server.kill();
        let _ = server.wait();
        return Err(io::Error::other("the server did not start"));
    };
    let start = Instant::now();
    let expected = crate::fib::fib(n).to_string();
    let answered = std::thread::scope(|s| {
        let askers: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| -> io::Result<bool> {
                    let mut stream = TcpStream::connect(addr)?;
                    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                    stream.write_all(format!("{n}\n").as_bytes())?;
                    let mut reply = String::new();
                    BufReader::new(&stream).read_line(&mut reply)?;
                    Ok(reply.trim() == expected)
                })
            })
            .collect();
        askers
            .into_iter()
            .map(|a| a.join())
            .filter(|answer| matches!(answer, Ok(Ok(true))))
            .count()
    });
    let elapsed = start.elapsed();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let mut log = String::new();
    if let Some(mut err) = server.stderr.take() {
        err.read_to_string(&mut log)?;
    }
    server.wait()?;
    let most_at_once = log
        .split("most_at_once=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|k| k.parse().ok());
    Ok(ServerOutcome {
        permits,
        clients,
        answered,
        most_at_once,
        elapsed,
    })
}

pub fn run(out: &mut dyn io::Write) -> io::Result<()> {
    let n = 30;
    for permits in [1, 3] {
        let r = measure(8, permits, n);
        writeln!(
            out,
            "8 threads compute fib({n}) behind Semaphore({permits}): at most {} at once (never more than {permits}); waits for a permit: mean {:.1} ms, longest {:.1} ms; all done in {:.1} ms",
            r.most_at_once,
            r.mean_wait.as_secs_f64() * 1000.0,
            r.longest_wait.as_secs_f64() * 1000.0,
            r.elapsed.as_secs_f64() * 1000.0
        )?;
    }
    writeln!(
        out,
        "with 1 permit it is a mutex: the threads take turns; with 3 on a machine of {} CPUs, more permits than CPUs only share them",
        crate::cpu::allowed_cpus().len()
    )?;
    let r = measure_server(&crate::process::fiblab_exe()?, 2, 6, 32)?;
    writeln!(
        out,
        "fiblab serve --model threads --max-inflight 2, {} clients each asking fib(32) at once: {} answered in {:.0} ms; the server logged at most {} computations at once",
        r.clients,
        r.answered,
        r.elapsed.as_secs_f64() * 1000.0,
        r.most_at_once.map_or("?".into(), |k| k.to_string())
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_permits_run_at_once() {
        for permits in [1, 2] {
            let r = measure(6, permits, 18);
            assert!(r.most_at_once <= permits, "{r:?}");
            assert!(r.most_at_once >= 1);
        }
    }
}
