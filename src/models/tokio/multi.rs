//! `tokio` — the peer of the seeds' `server.go` (seeds 000, 001).
//!
//! Go serves each connection on a goroutine, multiplexed by its runtime over a few OS
//! threads with a netpoller (epoll) underneath. The tokio multi-thread runtime is the
//! same design: `--workers` OS threads, each with a run queue of tasks, work stealing
//! between them, and an epoll reactor that wakes a task when its socket is ready.
//!
//! ```text
//! accept task ─► spawn(conn task) per client
//! worker thread 1: [task A] [task C] ...  ┐ work stealing; epoll wakes tasks
//! worker thread 2: [task B] ...           ┘ whose sockets are ready
//! ```
//!
//! Primitives (docs/PRIMITIVES.md): coroutines (async tasks) on a work-stealing pool of
//! threads; with `--offload`, a thread pool whose done-callback completes a future.
//!
//! Waiting (`--downstream`): an `.await` on a tokio socket to the downstream
//! ([`crate::downstream::call_async`]); the task parks, the runtime's threads serve others.
//!
//! Good at: many connections (a task is a few hundred bytes, idle ones cost nothing),
//! and CPU-bound requests on different connections still run in parallel on
//! different workers, like goroutines. Bad at: a CPU-bound request runs inline on its
//! worker thread and blocks every task queued behind it on that thread until it ends
//! (Go preempts goroutines; tokio cannot preempt a task). Offloading the work to a
//! pool is a later option of this model.
//!
//! Prediction: a little below `threads` on 2 cores for 1 and 2 clients (the runtime's
//! reactor and task hand-offs cost more than a blocking read when there are so few
//! connections); it pays off with hundreds of connections, not two.
//!
//! Cost model (`CostModel::WorkStealing`, `src/models/cost.rs`): a range, not a
//! point, from 2 clients on: between a one-thread loop's `c / (cross + fib(n))` (every
//! request crosses CPUs) and `CPUs / (local + fib(n))` (each connection's task runs on its
//! client's CPU). Which worker wakes for a ready socket decides, and the formula cannot
//! know it.
//!
//! One connection costs: one descriptor and one task waiting with a 64-byte read (a 16
//! KiB chunk only while reads fill it). Per round: the runtime's epoll returns the
//! ready sockets and only their tasks run: O(ready).

use std::io;
use std::net::TcpListener;

use super::accept_loop;
use crate::server::Config;
use crate::shutdown::Shutdown;

pub fn serve(listener: TcpListener, config: &Config, shutdown: Shutdown) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers.max(1))
        .thread_name("tokio-worker")
        .enable_all()
        .build()?;
    runtime.block_on(accept_loop(listener, config.clone(), shutdown))
}
