//! `procpool` — the seeds' `multiprocess_server.py` (seeds 000, 001, 004).
//!
//! A thread per connection, as in `threads`, but fib itself runs in a pool of
//! `--workers` worker **processes**. Each worker is the fiblab binary started again
//! (`fiblab worker`, a hidden subcommand) and talks to the server over its stdin and
//! stdout pipes with a tiny binary message format ([`wire`]).
//!
//! ```text
//! conn thread A ─┐ take an idle worker ─► write [F n] ─► worker process 1: fib(n)
//! conn thread B ─┤ (wait if none idle)  ◄─ read [R value] ◄┘
//!                └─ give the worker back
//! supervisor thread: starts the workers, reaps and replaces dead ones
//! ```
//!
//! Faults: a worker killed while it holds a request is noticed by the connection
//! thread (its pipe breaks). That request gets `ERR worker died` (fiblab does not
//! retry: a request that kills its worker would only kill the next one too); the
//! connection stays usable, the dead worker is reaped and replaced, and the other
//! clients see nothing. A worker found dead while idle is replaced before anyone uses
//! it. A client that resets its connection while its request is in a worker has that
//! worker killed and replaced (the connection thread waits on the worker's pipe *and*
//! the client's socket), so its work stops too. Workers die with the server: each asks the kernel to SIGKILL it when the
//! server's supervisor thread dies (`PR_SET_PDEATHSIG`), and the pool kills and reaps
//! them at shutdown, so no orphan runs on or holds the port.
//!
//! Primitives (docs/PRIMITIVES.md): a process pool: worker processes (data isolated)
//! fed over pipes (IPC), reaped by a supervisor (no zombies), killed with their parent
//! (no orphans).
//!
//! Waiting (`--downstream`): a blocking call on the connection's thread in the parent;
//! only the fib after the wait goes to a worker process.
//!
//! Good at: what it was for in Python, running CPU-bound work on every core despite a
//! GIL, and isolating the work: a crash or a leak in fib takes down one worker, not
//! the server. Bad at: everything else, since Rust has no GIL to escape. Each request
//! crosses two pipes and wakes another process, and at most `--workers` requests run
//! at once. Prediction: far below `threads` at n=1 (the seeds saw 3,500 against
//! 12,000), close to it at n=20, where fib's cost hides the pipe round trip.
//!
//! Cost model (`CostModel::ProcessPool`, `src/models/cost.rs`):
//! `X = min(c / (cross + pipe + fib(n)), workers / (socket calls + pipe + fib(n)))`: client,
//! connection thread and worker process are three threads, so no client/server pair shares
//! a CPU and every request keeps paying the cross-CPU round trip. Pinned apart from the
//! clients, each hop also wakes a blocked thread on the server's CPUs (the connection's
//! thread, the worker, the connection's thread again, and with more clients than workers
//! a thread waiting for a worker): `+ 3 or 4 wake-ups` in the capacity term.
//!
//! One connection costs: one descriptor (the worker watches the same socket, shared,
//! not duplicated) and one thread; the worker processes are per pool, not per
//! connection.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd as _, BorrowedFd};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::connection::serve_blocking_with;
use crate::fib::{MAX_N_FITS_U64, fib};
use crate::pool::WorkQueue;
use crate::process::{die_with_parent, fiblab_child};
use crate::server::Config;
use crate::service::Rejection;
use crate::shutdown::Shutdown;

pub fn serve(
    listener: std::net::TcpListener,
    config: &Config,
    shutdown: Shutdown,
) -> io::Result<()> {
    let pool = Arc::new(ProcessPool::start(config.workers)?);
    let serving = pool.clone();
    // The `threads` model, with fib computed by a worker process.
    super::threads::serve_with(
        listener,
        config,
        shutdown,
        1,
        move |stream, peer, config| {
            // The connection's own socket, shared, to see the client go while a worker
            // computes: no duplicate descriptor.
            let watch = stream.clone();
            let mut compute = |n| serving.fib(n, Some(watch.as_fd()));
            serve_blocking_with(stream, peer, config, Some(&mut compute));
        },
    )?;
    drop(pool); // the last reference: stops the supervisor, kills and reaps the workers
    Ok(())
}

/// `fiblab worker`: the worker process's whole life. Reads requests from stdin,
/// writes replies to stdout, exits when stdin closes.
pub fn worker_main() -> io::Result<()> {
    die_with_parent()?;
    let (mut requests, mut replies) = (io::stdin().lock(), io::stdout().lock());
    while let Some(n) = wire::read_request(&mut requests)? {
        if n > MAX_N_FITS_U64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("fib({n}) does not fit in u64"),
            ));
        }
        wire::write_reply(&mut replies, fib(n))?;
        replies.flush()?;
    }
    Ok(())
}

/// The pool: idle workers wait in a queue; a supervisor thread starts and replaces them.
pub struct ProcessPool {
    idle: Arc<WorkQueue<Worker>>,
    /// Dead workers go to the supervisor to be reaped and replaced.
    replace: Mutex<Option<mpsc::Sender<Worker>>>,
    supervisor: Option<JoinHandle<()>>,
}

impl ProcessPool {
    /// Starts `size` workers; fails if the first ones cannot start.
    pub fn start(size: usize) -> io::Result<ProcessPool> {
        let size = size.max(1);
        let idle = Arc::new(WorkQueue::new(size));
        let (replace, dead) = mpsc::channel::<Worker>();
        let (started, first_start) = mpsc::channel::<io::Result<()>>();
        let supervised = idle.clone();
        // Workers are started from this one long-lived thread: PR_SET_PDEATHSIG fires
        // when the *thread* that started a child exits.
        let supervisor = std::thread::Builder::new()
            .name("procpool-supervisor".into())
            .spawn(move || {
                let first: io::Result<()> = (0..size).try_for_each(|_| {
                    let _ = supervised.offer(Worker::start()?);
                    Ok(())
                });
                let failed = first.is_err();
                let _ = started.send(first);
                if failed {
                    return;
                }
                for mut dead in dead {
                    let status = dead.child.wait();
                    if dead.retired {
                        tracing::debug!(pid = dead.child.id(), "worker stopped; starting a replacement");
                    } else {
                        tracing::warn!(
                            pid = dead.child.id(),
                            ?status,
                            "worker process died; starting a replacement"
                        );
                    }
                    drop(dead);
                    // Keep trying: a pool that silently shrinks would end with every
                    // request waiting for a worker that never comes.
                    let mut backoff = std::time::Duration::from_millis(50);
                    for attempt in 1..=10 {
                        match Worker::start() {
                            Ok(worker) => {
                                let _ = supervised.offer(worker);
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, attempt, "cannot start a replacement worker; retrying");
                                std::thread::sleep(backoff);
                                backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
                            }
                        }
                    }
                }
            })?;
        first_start
            .recv()
            .map_err(|_| io::Error::other("the pool supervisor stopped"))??;
        Ok(ProcessPool {
            idle,
            replace: Mutex::new(Some(replace)),
            supervisor: Some(supervisor),
        })
    }

    /// fib(n) in a worker process; waits for an idle worker if all are busy. With
    /// `client`, a reset of that socket (see [`crate::probe::gone_probe`]) stops
    /// the work: the worker is killed and replaced, and the result is `ClientGone`.
    pub fn fib(&self, n: u32, client: Option<BorrowedFd<'_>>) -> Result<u64, Rejection> {
        loop {
            let mut worker = self.idle.take().ok_or(Rejection::ServerBusy)?;
            if !matches!(worker.child.try_wait(), Ok(None)) {
                self.replace(worker); // died while idle: nobody was waiting on it
                continue;
            }
            return match worker.call(n, client) {
                Ok(Some(value)) => {
                    let _ = self.idle.offer(worker);
                    Ok(value)
                }
                Ok(None) => {
                    // Its client is gone: stop the work by stopping the worker.
                    let _ = worker.child.kill();
                    worker.retired = true;
                    self.replace(worker);
                    Err(Rejection::ClientGone)
                }
                Err(e) => {
                    tracing::warn!(pid = worker.child.id(), error = %e, "worker failed during a request");
                    self.replace(worker);
                    Err(Rejection::WorkerDied)
                }
            };
        }
    }

    fn replace(&self, worker: Worker) {
        let replace = self.replace.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(replace) = replace.as_ref() {
            let _ = replace.send(worker);
        }
    }
}

impl Drop for ProcessPool {
    fn drop(&mut self) {
        self.idle.close(true); // drops the idle workers: each is killed and reaped
        self.replace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.join();
        }
    }
}

/// One worker process and its two pipes.
pub struct Worker {
    child: Child,
    requests: ChildStdin,
    replies: ChildStdout,
    /// Killed on purpose (its client went), not died: replaced without a warning.
    retired: bool,
}

impl Worker {
    /// Starts `fiblab worker` as a child of this process.
    ///
    /// # Errors
    /// The binary cannot be started, or its pipes are missing.
    pub fn start() -> io::Result<Worker> {
        let mut command = fiblab_child()?;
        command
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Forked by the process's spawner thread: a worker started from a connection's
        // thread must not die when that thread ends.
        let mut child = crate::process::spawn_tied(command)?;
        let (Some(requests), Some(replies)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(io::Error::other("worker started without its pipes"));
        };
        Ok(Worker {
            child,
            requests,
            replies,
            retired: false,
        })
    }

    /// fib(n) computed by the worker: one round trip over its pipes (what the
    /// calibration times as procpool's cost per request).
    ///
    /// # Errors
    /// The worker died or its pipes broke.
    pub fn fib(&mut self, n: u32) -> io::Result<u64> {
        self.call(n, None)?
            .ok_or_else(|| io::Error::other("the worker gave no reply"))
    }

    /// Sends one request and waits for its reply, or (`Ok(None)`) for `client` to be
    /// reset, whichever comes first: one poll on the reply pipe and the client socket.
    fn call(&mut self, n: u32, client: Option<BorrowedFd<'_>>) -> io::Result<Option<u64>> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        wire::write_request(&mut self.requests, n)?;
        if let Some(client) = client {
            loop {
                let mut fds = [
                    PollFd::new(self.replies.as_fd(), PollFlags::POLLIN),
                    // No events asked: poll reports errors and hang-ups regardless.
                    PollFd::new(client, PollFlags::empty()),
                ];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
                if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                    break; // a reply, or the worker died: read_reply tells which
                }
                if fds[1]
                    .revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
                {
                    return Ok(None);
                }
            }
        }
        wire::read_reply(&mut self.replies).map(Some)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Kill rather than wait for it to notice its stdin closed: it may be computing.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server <-> worker message format: fixed-size frames, a tag byte then a
/// little-endian integer.
///
/// ```text
/// request  'F' n:u32      5 bytes
/// reply    'R' value:u64  9 bytes
/// ```
pub mod wire {
    use super::*;

    const REQUEST: u8 = b'F';
    const REPLY: u8 = b'R';

    pub fn write_request(w: &mut impl Write, n: u32) -> io::Result<()> {
        let mut frame = [REQUEST, 0, 0, 0, 0];
        frame[1..].copy_from_slice(&n.to_le_bytes());
        w.write_all(&frame)
    }

    /// The next request; `None` at a clean end of input (between frames).
    pub fn read_request(r: &mut impl Read) -> io::Result<Option<u32>> {
        let mut frame = [0u8; 5];
        match r.read(&mut frame[..1])? {
            0 => return Ok(None),
            _ => r.read_exact(&mut frame[1..])?,
        }
        expect_tag(frame[0], REQUEST)?;
        Ok(Some(u32::from_le_bytes([
            frame[1], frame[2], frame[3], frame[4],
        ])))
    }

    pub fn write_reply(w: &mut impl Write, value: u64) -> io::Result<()> {
        let mut frame = [REPLY, 0, 0, 0, 0, 0, 0, 0, 0];
        frame[1..].copy_from_slice(&value.to_le_bytes());
        w.write_all(&frame)
    }

    /// The reply; end of input here means the worker died.
    pub fn read_reply(r: &mut impl Read) -> io::Result<u64> {
        let mut frame = [0u8; 9];
        r.read_exact(&mut frame)?;
        expect_tag(frame[0], REPLY)?;
        let mut value = [0u8; 8];
        value.copy_from_slice(&frame[1..]);
        Ok(u64::from_le_bytes(value))
    }

    fn expect_tag(got: u8, want: u8) -> io::Result<()> {
        if got == want {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "expected a '{}' frame, got tag byte {got:#04x}",
                    want as char
                ),
            ))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn frames_round_trip() {
            let mut buf = Vec::new();
            write_request(&mut buf, 42).unwrap();
            write_request(&mut buf, 93).unwrap();
            assert_eq!(buf.len(), 10);
            let mut r = &buf[..];
            assert_eq!(read_request(&mut r).unwrap(), Some(42));
            assert_eq!(read_request(&mut r).unwrap(), Some(93));
            assert_eq!(
                read_request(&mut r).unwrap(),
                None,
                "clean end between frames"
            );

            let mut buf = Vec::new();
            write_reply(&mut buf, u64::MAX - 1).unwrap();
            assert_eq!(read_reply(&mut &buf[..]).unwrap(), u64::MAX - 1);
        }

        #[test]
        fn truncated_and_foreign_frames_are_errors() {
            let mut buf = Vec::new();
            write_reply(&mut buf, 7).unwrap();
            let err = read_reply(&mut &buf[..5]).unwrap_err();
            assert_eq!(
                err.kind(),
                io::ErrorKind::UnexpectedEof,
                "a worker that died mid-reply"
            );
            assert_eq!(
                read_reply(&mut &b""[..]).unwrap_err().kind(),
                io::ErrorKind::UnexpectedEof
            );
            let err = read_request(&mut &b"F\x01"[..]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
            let err = read_request(&mut &b"X\x01\x00\x00\x00"[..]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            let err = read_reply(&mut &b"F\x00\x00\x00\x00\x00\x00\x00\x00"[..]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        }

        #[test]
        fn request_split_across_reads() {
            let mut buf = Vec::new();
            write_request(&mut buf, 1_000_000).unwrap();
            // A reader that hands out one byte at a time.
            struct Trickle<'a>(&'a [u8]);
            impl Read for Trickle<'_> {
                fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                    let Some((first, rest)) = self.0.split_first() else {
                        return Ok(0);
                    };
                    out[0] = *first;
                    self.0 = rest;
                    Ok(1)
                }
            }
            assert_eq!(read_request(&mut Trickle(&buf)).unwrap(), Some(1_000_000));
        }
    }
}
