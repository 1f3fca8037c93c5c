//! `fiblab backend`: the downstream a waiting request waits on (`PROTOCOL.md`, "Waiting
//! on a downstream"). It answers each line with the line itself after `delay`, plus a
//! uniform random `jitter`, in request order on each connection: the seeds'
//! `time.sleep(2)` standing for a database or another service (seed 003's I/O-bound
//! demo), as a server of its own.
//!
//! ```text
//! connection task (reader)                     connection task (writer)
//!   read a line ─► due = max(last due,           wait for the next (due, line)
//!                  now + delay + jitter)  ──►    sleep until due (the backend's timer)
//!   count it waiting                             write line, count it answered
//! ```
//!
//! One tokio current-thread runtime: each connection is two tasks and each waiting line
//! an entry in a channel and, at its head, in the backend's timer heap ([`timer`]); no
//! thread and no buffer per waiting request beyond the line, so a hundred thousand
//! waiting requests cost a few megabytes and little CPU. The timer is a `timerfd`, not
//! tokio's wheel: the wheel rounds every sleep up to the next millisecond, which answers
//! a loaded backend's lines in bursts and leaves the servers behind it idle between
//! them. A line still waits a little longer than `delay` (the kernel's timer slack, the
//! runtime's turn): the backend measures the waits it gave
//! ([`BackendStats::mean_wait`]) rather than promising `delay`. It is measured, not assumed: the backend counts
//! what it answered and what it spent ([`BackendStats`]), so a report that uses it can
//! say it was not the limit.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::shutdown::Shutdown;

pub mod timer;

use timer::Timer;

/// The longest line the backend takes; a longer one closes its connection (a
/// downstream's requests are short: the client's request line).
pub const MAX_LINE: usize = 4096;

/// Bytes each connection reads at a time: a few request lines.
const READ_BUFFER: usize = 256;

/// Lines one connection may have waiting at once. Past it the backend stops reading
/// that connection until one is answered (back-pressure, as the fib models stop
/// reading a client that does not read its replies): a client that sends without
/// reading fills its own socket buffers, not the backend's memory. A fiblab server
/// has one line waiting per connection; a pipelining client a few.
pub const MAX_WAITING_PER_CONNECTION: usize = 1024;

/// How long the backend waits before it answers each line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackendConfig {
    /// Every line waits at least this long.
    pub delay: Duration,
    /// Plus a uniform random share of this (0: a fixed delay).
    pub jitter: Duration,
    /// Seed of the jitter's draws (each connection draws its own sequence from it).
    pub seed: u64,
    /// A connection whose next whole line does not come within this is closed (a line
    /// held open without its newline, a silent client); `None`: never.
    pub idle_timeout: Option<Duration>,
}

/// What the backend did, updated as it runs: read it at any time (e.g. at the end of a
/// benchmark step) to say whether the downstream could have been the limit.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Lines answered.
    pub answered: AtomicU64,
    /// Lines read and not yet answered.
    pub waiting: AtomicU64,
    /// The most lines waiting at once.
    pub most_waiting: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Microseconds the answered lines waited in all, from read to written: over
    /// `answered`, the wait a client really got (`delay`, plus the timer's slack and
    /// whatever the backend's own thread was busy with).
    pub waited_us: AtomicU64,
}

impl BackendStats {
    fn started_waiting(&self) {
        let now = self.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        self.most_waiting.fetch_max(now, Ordering::Relaxed);
    }

    fn answered(&self, waited: Duration) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        self.answered.fetch_add(1, Ordering::Relaxed);
        self.waited_us
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
    }

    /// The mean wait of the answered lines; `None` before any.
    pub fn mean_wait(&self) -> Option<Duration> {
        let answered = self.answered.load(Ordering::Relaxed);
        (answered > 0)
            .then(|| Duration::from_micros(self.waited_us.load(Ordering::Relaxed) / answered))
    }
}

/// Serves `listener` until `shutdown` is triggered.
///
/// # Errors
/// The runtime could not start, or the listener could not be made non-blocking.
pub fn serve(
    listener: TcpListener,
    config: BackendConfig,
    shutdown: Shutdown,
    stats: Arc<BackendStats>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let timer = Timer::start()?;
        let mut stop = shutdown.watch();
        let mut next_seed = config.seed;
        loop {
            tokio::select! {
                () = stop.triggered() => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        stats.connections.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.set_nodelay(true);
                        next_seed = next_seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
                        tokio::spawn(connection(stream, config, next_seed, stats.clone(), timer.clone()));
                    }
                    // Out of descriptors, or a connection reset before it was taken:
                    // the listener stays; a short pause lets descriptors come back.
                    Err(e) => {
                        tracing::debug!(error = %e, "backend: accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            }
        }
    })
}

/// One client: its lines read as they come, each answered at its due time, in order.
async fn connection(
    stream: tokio::net::TcpStream,
    config: BackendConfig,
    seed: u64,
    stats: Arc<BackendStats>,
    timer: Timer,
) {
    let (read, mut write) = stream.into_split();
    // (when it was read, when it is due, the line)
    let (due_tx, mut due_rx) =
        mpsc::channel::<(Instant, Instant, Vec<u8>)>(MAX_WAITING_PER_CONNECTION);
    let writer_stats = stats.clone();
    let writer = tokio::spawn(async move {
        while let Some((read_at, due, mut line)) = due_rx.recv().await {
            timer.sleep_until(due).await;
            line.push(b'\n');
            let sent = write.write_all(&line).await;
            writer_stats.answered(read_at.elapsed());
            if sent.is_err() {
                break;
            }
        }
        // The lines still queued will not be answered: they wait no more.
        let left = due_rx.len() as u64;
        writer_stats.waiting.fetch_sub(left, Ordering::Relaxed);
    });
    let mut rng = fastrand::Rng::with_seed(seed);
    // A small buffer: a waiting connection holds it all the while (tokio's default, 8 KiB,
    // would be most of what a waiting connection costs).
    let mut reader = BufReader::with_capacity(READ_BUFFER, read).take(MAX_LINE as u64 + 1);
    let mut last_due = Instant::now();
    let mut line = Vec::new();
    loop {
        line.clear();
        reader.set_limit(MAX_LINE as u64 + 1);
        let read = reader.read_until(b'\n', &mut line);
        let read = match config.idle_timeout {
            Some(limit) => match tokio::time::timeout(limit, read).await {
                Ok(read) => read,
                Err(_) => break, // no whole line within the idle timeout
            },
            None => read.await,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) if line.last() != Some(&b'\n') => break, // too long, or cut off at the end
            Ok(_) => {}
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let jitter = match config.jitter.is_zero() {
            true => Duration::ZERO,
            false => config.jitter.mul_f64(rng.f64()),
        };
        // In request order: a line never overtakes the one before it.
        let now = Instant::now();
        last_due = last_due.max(now + config.delay + jitter);
        stats.started_waiting();
        // Waits (reads nothing more) while this connection has its most lines waiting.
        if due_tx.send((now, last_due, line.clone())).await.is_err() {
            stats.waiting.fetch_sub(1, Ordering::Relaxed);
            break;
        }
    }
    drop(due_tx);
    let _ = writer.await;
}

/// The CPU time this process has spent so far (user and system), seconds; `None` where
/// the kernel cannot say.
pub fn process_cpu_s() -> Option<f64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(seconds(usage.user_time()) + seconds(usage.system_time()))
}
