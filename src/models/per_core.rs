//! `per-core` — thread-per-core, shared nothing: no seed program (the seeds stop at one
//! scheduler per process). Seastar/ScyllaDB, glommio and monoio run this way, and
//! nginx's workers are its process form.
//!
//! `--workers` threads, each pinned to its own CPU, each with its own listening socket
//! on the one shared port (`SO_REUSEPORT`) and its own single-threaded `epoll` loop (the
//! `epoll` model's, unchanged: the scheduling is the point here, not a third loop). The
//! kernel hashes each new connection onto one of the listeners; a connection lives and
//! dies on that core. Nothing is shared between the loops but the shutdown signal.
//!
//! ```text
//! port P ── SO_REUSEPORT hash of the client's address ──┬─► listener 0 ─► loop on CPU 0
//!                                                       ├─► listener 1 ─► loop on CPU 1
//!                                                       └─► ...
//! each loop: epoll_wait ─► read ─► fib ─► write, for its own connections only
//! ```
//!
//! Against `tokio` (a work-stealing pool over one listener): no cross-core hand-off, no
//! shared queue, no lock, a connection's data stays in one core's cache, and a loop
//! never wakes a thread on another core. The price is balance: the hash spreads
//! *connections*, not load. Two busy clients hashed onto one core share its loop while
//! another core idles, and nothing moves them (`prefork`'s known case, with a loop in
//! place of a one-client server: both clients are served, at half the speed each). A
//! CPU-bound request blocks every connection of its core, as in `epoll`, but only
//! those.
//!
//! Primitives (docs/PRIMITIVES.md): threads pinned to CPUs with nothing shared but the
//! shutdown event; joined at the end.
//!
//! Waiting (`--downstream`): as in `epoll`, the downstream's socket registered in the
//! loop of the core that holds the connection.
//!
//! Good at: many connections spread evenly, short requests, predictable per-core
//! caches. Bad at: few connections (a hash collision halves the throughput of the two
//! that collide), skewed load, long requests.
//!
//! Prediction: one client, as `epoll`; from two clients, a range between `epoll` (every
//! client hashed onto one core) and one loop per CPU each serving its share.
//!
//! Cost model (`CostModel::PerCore`, `src/models/cost.rs`): between the event loop's
//! `X = min(c / (cross + fib + wait), 1 / (socket calls + fib + wait))` and the same with
//! `min(c, cores)` loops' capacity: the kernel's `SO_REUSEPORT` hash decides.
//!
//! One connection costs: as in `epoll` (one descriptor, a few hundred bytes of state),
//! on the core it was hashed to. Per round: that core's ready connections only.

use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use crate::server::{Config, bind_with};
use crate::shutdown::Shutdown;

pub fn serve(listener: TcpListener, config: &Config, shutdown: Shutdown) -> io::Result<()> {
    let addr = listener.local_addr()?;
    let cpus = crate::cpu::allowed_cpus();
    // The first listener is the one `serve` bound (with SO_REUSEPORT, as the registry
    // asks); one more per further core, on the same port.
    let mut listeners = vec![listener];
    for _ in 1..config.workers.max(1) {
        listeners.push(bind_with(addr, true)?);
    }
    // No loop accepts before every loop holds its own descriptors (epoll, waker): a
    // flood taken by the first must not leave the others none to start with.
    let all_ready = Arc::new(Barrier::new(listeners.len()));
    let loops: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let cpu = cpus.get(i % cpus.len().max(1)).copied();
            let (config, shutdown, all_ready) =
                (config.clone(), shutdown.clone(), all_ready.clone());
            std::thread::Builder::new()
                .name(format!("core-{i}"))
                .spawn(move || {
                    if let Some(cpu) = cpu
                        && let Err(e) = crate::cpu::pin_current_thread(cpu)
                    {
                        // Unpinned it still serves; only the cache locality is lost.
                        tracing::warn!(core = i, cpu, error = %e, "cannot pin the loop");
                    }
                    let waited = AtomicBool::new(false);
                    let stop = shutdown.clone();
                    let result =
                        super::epoll::serve_when_ready(listener, &config, shutdown, || {
                            waited.store(true, Ordering::SeqCst);
                            all_ready.wait();
                        });
                    if !waited.load(Ordering::SeqCst) {
                        // Set-up failed: release the others.
                        all_ready.wait();
                    }
                    if result.is_err() {
                        // One loop failing stops them all: the server exits with its error
                        // rather than serving on with some cores' clients unanswered.
                        stop.trigger();
                    }
                    result
                })
        })
        .collect::<io::Result<_>>()?;
    tracing::info!(
        loops = loops.len(),
        cpus = cpus.len(),
        "one epoll loop per core on one SO_REUSEPORT port"
    );
    let mut first_error = None;
    for handle in loops {
        let result = handle
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("a core's loop panicked")));
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
