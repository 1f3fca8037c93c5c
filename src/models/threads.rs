//! `threads` — the seeds' `thread_server.py` (seeds 000, 001, 002, 004).
//!
//! The accept loop spawns one OS thread per connection; each thread runs the blocking
//! connection loop and ends with its client.
//!
//! ```text
//! main thread:  accept ─► spawn ─► accept ─► spawn ─► ...
//! thread A:               read ─► fib ─► write ─► read ...   (blocks in read)
//! thread B:                                 read ─► fib ─► write ...
//! ```
//!
//! Primitives (docs/PRIMITIVES.md): a thread per connection, never joined (a daemon
//! thread in the seeds' words: the shutdown drain counts them instead,
//! src/shutdown.rs), and a Mutex-guarded table of live connections.
//!
//! Waiting (`--downstream`): a blocking call on the connection's thread, which sleeps in
//! `recv` and costs no CPU while it waits; waits overlap as far as there are threads, each
//! with its stack (and with `--gil`, the lock is released while waiting, as CPython does).
//!
//! Good at: being obviously correct; a blocking read costs nothing while it waits,
//! and without a GIL the kernel runs CPU-bound requests of different clients on
//! different cores (the seeds' 400 -> 400 req/s at n=20 was Python's GIL, not threads).
//! Bad at: very many connections (a stack and a kernel thread each, a spawn per
//! connection) and nothing bounds how many threads a connection flood creates. Each
//! reply wakes a sleeping thread, which on a small VM costs tens of microseconds.
//!
//! Prediction: with 2 clients it roughly doubles at n=1 and n=20 on 2 cores (no GIL:
//! the seeds' 400 -> 400 at n=20 becomes about 2x), the reference row the others are
//! compared with.
//!
//! Cost model (`CostModel::ThreadPerConnection`, `src/models/cost.rs`): one client,
//! `X = 1 / (cross + fib(n))`; once clients >= CPUs, each client and its thread share a
//! CPU and the loop runs at `X = CPUs / (local + fib(n))`, the one-CPU round trip. On a VM
//! where a wake-up across CPUs costs 30-100 µs that is why a second client multiplies the
//! throughput: the wake-ups stop, not the work that doubles. Pinned apart from its
//! clients (no pair can share a CPU) each thread blocks in `read` between requests and
//! is woken for every one, on the server's CPUs: `X = min(c / (cross + fib(n)), CPUs /
//! (socket calls + wake-up + fib(n)))` (16 cores split 8 + 8: 0.90M predicted, 0.78-0.83M
//! measured; without the wake-up 1.64M).
//!
//! One connection costs: one descriptor (shared with the shutdown tracker, not
//! duplicated) and one thread, whose stack is mostly untouched virtual memory, so a
//! thread's resident cost is the pages it touched. No per-round work: each thread
//! blocks in its own `read`; the kernel wakes only the one whose socket has data.
//! What stops it: each thread takes four of the kernel's memory maps (stack, guard
//! page, signal stack and its guard), and `vm.max_map_count` (65,530 by default) caps
//! them per process, so about 15,000 connections; past that `--max-conns` is capped
//! and clients are told `ERR server busy` (a thread that cannot map its signal stack
//! would abort the process). `--stack-size` sets the stack each connection thread reserves (Rust's default: 2 MiB
//! plus a guard page): it moves the address space per connection by that much, and the
//! resident memory hardly at all. The `connections` bench experiment shows both.
//!
//! `--max-inflight K`: a counting semaphore (`pool::Semaphore`, the seeds'
//! `Semaphore(K)`) around each fib: at most K computations at once, the other threads
//! wait for a permit, so a burst of CPU-bound requests queues instead of
//! oversubscribing the CPUs. The most that ran at once is logged at shutdown
//! (`fiblab demo semaphore` reads it).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd as _;
use std::sync::Arc;

use crate::accept::{MAPS_PER_THREAD, thread_room};
use crate::connection::{serve_blocking, serve_blocking_with};
use crate::fib::fib_until;
use crate::pool::Semaphore;
use crate::probe::is_gone;
use crate::server::Config;
use crate::service::Rejection;
use crate::shutdown::Shutdown;

pub fn serve(listener: TcpListener, config: &Config, shutdown: Shutdown) -> io::Result<()> {
    let Some(permits) = config.max_inflight else {
        return serve_with(listener, config, shutdown, 1, serve_blocking);
    };
    // `--max-inflight K`: every connection's thread takes a permit for each fib it
    // computes; the K+1st waits (still connected, still read) until one is back.
    let gate = Arc::new(Semaphore::new(permits));
    let handle = {
        let gate = gate.clone();
        move |stream: Arc<TcpStream>, peer: SocketAddr, config: &Config| {
            let socket = stream.clone();
            let mut compute = |n: u32| {
                let _permit = gate.acquire();
                fib_until(n, &mut || is_gone(socket.as_fd())).ok_or(Rejection::ClientGone)
            };
            serve_blocking_with(stream, peer, config, Some(&mut compute));
        }
    };
    let served = serve_with(listener, config, shutdown, 1, handle);
    tracing::info!(
        max_inflight = permits,
        most_at_once = gate.most_held(),
        "at most {} fib computations ran at once (--max-inflight {permits})",
        gate.most_held()
    );
    served
}

/// The accept-and-spawn loop, with what each connection thread runs as a parameter:
/// `isolates` and `procpool` are this model with fib computed elsewhere;
/// `threads_per_connection` counts the connection thread and any it starts.
///
/// `--max-conns` is lowered to what the kernel's memory-map limit allows
/// ([`thread_room`]): past it a new thread cannot set itself up and Rust aborts the
/// process, so the clients past it are told `ERR server busy` instead.
pub fn serve_with(
    listener: TcpListener,
    config: &Config,
    shutdown: Shutdown,
    threads_per_connection: usize,
    handle: impl Fn(Arc<TcpStream>, SocketAddr, &Config) + Clone + Send + 'static,
) -> io::Result<()> {
    let mut limit = config.max_conns;
    if let Some((room, map_limit)) = thread_room(threads_per_connection)
        && room < config.max_conns
    {
        tracing::warn!(
            max_conns = config.max_conns,
            capped_at = room,
            vm_max_map_count = map_limit,
            "each connection's threads take {} memory maps: --max-conns is capped below vm.max_map_count (raise it with `sysctl vm.max_map_count=262144` for more)",
            MAPS_PER_THREAD * threads_per_connection
        );
        limit = room;
    }
    while let Some((stream, peer, live)) = shutdown.accept(&listener, limit)? {
        let (config, handle) = (config.clone(), handle.clone());
        let mut builder = std::thread::Builder::new().name(format!("conn-{peer}"));
        if let Some(bytes) = config.stack_size {
            builder = builder.stack_size(bytes);
        }
        let spawned = builder.spawn(move || {
            let _live = live;
            handle(stream, peer, &config);
        });
        if let Err(e) = spawned {
            // The stream and guard went down with the closure: the client sees a close.
            tracing::warn!(%peer, error = %e, "cannot spawn a thread; dropping the connection");
        }
    }
    shutdown.wait_drained(config.grace);
    Ok(())
}
