//! `tokio-current` — the peer of the seeds' gevent server (seeds 002, 003).
//!
//! gevent runs green threads, one per connection, on a single OS thread: a greenlet
//! that would block on a socket yields to the hub (an event loop on epoll), which
//! resumes whichever greenlet's socket is ready. A tokio current-thread runtime is
//! the same machine: one OS thread, a task per connection, an epoll reactor.
//!
//! ```text
//! one thread:  poll epoll ─► run ready tasks one by one (A, then B, ...) ─► poll ...
//!              each task runs until it would wait for its socket, then yields
//! ```
//!
//! Primitives (docs/PRIMITIVES.md): coroutines (async tasks) on one thread; with
//! `--offload`, a thread pool whose done-callback completes a future.
//!
//! Waiting (`--downstream`): an `.await` on a tokio socket to the downstream; the task
//! parks and the one thread serves others, the way gevent's monkey-patched sockets yield.
//!
//! Good at: many mostly idle connections on one core with no locks, no thread
//! wake-ups across CPUs, and no preemption surprises. Bad at: CPU-bound work. While
//! one task computes fib(36), the only thread is busy and every other client waits:
//! exactly the collapse seed 004 shows for one heavy request. It also uses one core
//! however many the machine has.
//!
//! Prediction: close to `tokio` at n=1 with 1 client; with 2 clients at n=20 no better
//! than 1 client, since one thread computes every fib, unless `--offload` is given.
//!
//! Cost model (`CostModel::EventLoop(Readiness::Epoll)`, `src/models/cost.rs`): as
//! `epoll`.
//!
//! One connection costs: as `tokio`, one descriptor and one task waiting with a 64-byte
//! read; one thread polls them all.

use std::io;
use std::net::TcpListener;

use super::accept_loop;
use crate::server::Config;
use crate::shutdown::Shutdown;

pub fn serve(listener: TcpListener, config: &Config, shutdown: Shutdown) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(accept_loop(listener, config.clone(), shutdown))
}
