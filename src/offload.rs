//! `--offload`: fib runs in a bounded pool of worker threads, and the result wakes the
//! event loop that asked for it.
//!
//! This is aserver.py's `pool.submit(fib, n)` plus its `future_notify` socketpair. The
//! loop must never block, so it hands the CPU-bound work away and goes on serving other
//! connections; when a worker finishes, it wakes the loop:
//! - async models await [`Offload::fib`], a future whose waker the worker calls (the
//!   hand-built executor turns that into an eventfd write, tokio into its own wake-up);
//! - the `epoll` state machine passes a callback to [`Offload::submit`] that queues the
//!   result and writes the loop's eventfd (a `mio::Waker`).
//!
//! The pool is bounded twice: `--workers` threads, and at most `--queue` jobs waiting
//! beyond the idle workers. A job past that is refused at once with `ERR server busy`,
//! the honest answer when every core is already computing (an unbounded queue only
//! turns overload into unbounded latency and memory). Each connection has at most one
//! job in the pool (its session waits for the reply before framing its next request),
//! so the queue bound is a bound on busy connections.
//!
//! Why not tokio's `spawn_blocking`? Its pool grows to 512 threads and its queue is
//! unbounded: under a flood it oversubscribes the CPUs and queues without limit. The
//! same bounded pool serves every async model here, tokio included. Measured with
//! `cargo run --release --example offload_choice -- 2000 28` (2000 fib(28) jobs at once,
//! 2 vCPUs): `spawn_blocking` peaked at 518 threads and took 1.4 s to answer them all
//! (a light job behind them: 20 ms); this pool stayed at 6 threads, computed what it
//! had room for and refused 1931 jobs at once, the light one included. Refusing is the
//! point: a server that accepts every job answers all of them late.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

use crate::fib::{fib, fib_until};
use crate::pool::WorkQueue;
use crate::probe::Gone;
use crate::server::Config;
use crate::service::Rejection;

type Job = Box<dyn FnOnce() + Send>;

/// A bounded pool of fib workers. Dropping it stops the workers: queued jobs are
/// discarded and running ones finish first.
pub struct Offload {
    queue: Arc<WorkQueue<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Offload {
    /// Starts `workers` threads that take jobs from a queue of `capacity` slots.
    pub fn start(workers: usize, capacity: usize) -> io::Result<Offload> {
        let queue = Arc::new(WorkQueue::<Job>::new(capacity));
        let workers = (0..workers.max(1))
            .map(|id| {
                let queue = queue.clone();
                std::thread::Builder::new()
                    .name(format!("offload-{id}"))
                    .spawn(move || {
                        while let Some(job) = queue.take() {
                            job();
                        }
                    })
            })
            .collect::<io::Result<Vec<_>>>()?;
        queue.wait_until_idle(workers.len());
        Ok(Offload { queue, workers })
    }

    /// The pool `config` asks for: `--workers` threads and `--queue` waiting jobs with
    /// `--offload`, none without. Every event-loop model starts its pool here.
    ///
    /// # Errors
    /// A worker thread cannot be started.
    pub fn from_config(config: &Config) -> io::Result<Option<Offload>> {
        match config.offload {
            true => Offload::start(config.workers, config.queue).map(Some),
            false => Ok(None),
        }
    }

    /// Computes fib(n) on a worker and calls `done` there with the result; when the pool
    /// is full, calls `done(Err(ServerBusy))` at once on the caller's thread. With
    /// `gone` (see [`crate::probe::gone_probe`]) the work stops once the client
    /// has gone, and `done` gets `Err(ClientGone)`: nobody is left to read a reply.
    pub fn submit(
        &self,
        n: u32,
        gone: Option<Gone>,
        done: impl FnOnce(Result<u64, Rejection>) + Send + 'static,
    ) {
        let done = Arc::new(Mutex::new(Some(done)));
        let on_worker = done.clone();
        let job: Job = Box::new(move || {
            crate::metrics::offload_queued(-1);
            let started = crate::metrics::get().map(|_| std::time::Instant::now());
            // A pool thread runs interpreter code too: under `--gil` it computes with
            // the lock held, and hands it over when asked.
            let held = crate::gil::process().map(crate::gil::Gil::hold);
            let value = match (gone, &held) {
                (None, None) => Ok(fib(n)),
                (mut gone, held) => fib_until(n, &mut || {
                    if let Some(held) = held {
                        held.check();
                    }
                    gone.as_mut().is_some_and(|gone| gone())
                })
                .ok_or(Rejection::ClientGone),
            };
            drop(held);
            if let Some(started) = started {
                crate::metrics::served(started.elapsed());
            }
            if let Some(done) = lock(&on_worker).take() {
                done(value);
            }
        });
        // Counted before it is offered: a worker may take it at once.
        crate::metrics::offload_queued(1);
        if self.queue.offer(job).is_err() {
            crate::metrics::offload_queued(-1);
            if let Some(done) = lock(&done).take() {
                done(Err(Rejection::ServerBusy));
            }
        }
    }

    /// fib(n) on a worker, as a future for async connection loops; `gone` as in
    /// [`submit`](Self::submit).
    pub fn fib(&self, n: u32, gone: Option<Gone>) -> FibFuture {
        let slot = Arc::new(Mutex::new(Slot::default()));
        let filled_by_worker = slot.clone();
        self.submit(n, gone, move |result| {
            let mut slot = lock(&filled_by_worker);
            slot.result = Some(result);
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
        });
        FibFuture { slot }
    }
}

impl Drop for Offload {
    fn drop(&mut self) {
        self.queue.close(true);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[derive(Default)]
struct Slot {
    result: Option<Result<u64, Rejection>>,
    /// The waker of the task awaiting the result, stored by its last poll.
    waker: Option<Waker>,
}

/// The result of [`Offload::fib`]; completes when a worker has computed it.
pub struct FibFuture {
    slot: Arc<Mutex<Slot>>,
}

impl Future for FibFuture {
    type Output = Result<u64, Rejection>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = lock(&self.slot);
        match slot.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Critical sections are single assignments; a panic cannot leave them torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn submit_computes_on_a_worker() {
        let pool = Offload::start(2, 4).unwrap();
        let (tx, rx) = mpsc::channel();
        pool.submit(20, None, move |r| tx.send(r).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), Ok(6765));
    }

    #[test]
    fn full_pool_refuses_at_once() {
        let pool = Offload::start(1, 0).unwrap();
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        // Occupies the only worker for about 0.2 s, far longer than the pause below
        // stretches on a loaded machine (fib(32) took 9 ms: a 5 ms sleep that ran late
        // let the worker finish first, one run in many under parallel tests).
        pool.submit(38, None, move |r| tx.send(r).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        pool.submit(1, None, move |r| tx2.send(r).unwrap());
        assert_eq!(rx.recv().unwrap(), Err(Rejection::ServerBusy));
        assert_eq!(rx.recv().unwrap(), Ok(39_088_169));
    }

    #[test]
    fn future_completes_under_tokio() {
        let pool = Offload::start(1, 4).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(pool.fib(25, None)), Ok(75025));
        let gone: Gone = Box::new(|| true);
        assert_eq!(
            rt.block_on(pool.fib(30, Some(gone))),
            Err(Rejection::ClientGone)
        );
    }
}
