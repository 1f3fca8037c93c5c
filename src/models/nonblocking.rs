//! `nonblocking` — seed 003's non-blocking server: one thread, non-blocking sockets,
//! and a loop that tries every socket in turn, with no readiness API at all.
//!
//! ```text
//! loop {
//!     accept() every waiting client          (WouldBlock: none waiting)
//!     for each client: write what is owed, read what is there, answer it
//!                                            (WouldBlock: nothing there, next client)
//! }
//! ```
//!
//! The loop never sleeps while it has clients, so it burns a whole core even when
//! they are all idle: every `read` that finds nothing is a wasted system call. That is
//! the cost. The benefit is latency: a reply is read the moment it lands, by a thread
//! that is already running. Blocking models pay a wake-up on every request instead:
//! the kernel must notice the sleeping thread is runnable and, on a small VM, wake an
//! idle vCPU to run it; a blocking ping-pong across two vCPUs costs about 74 µs here,
//! on one vCPU about 15 µs. Spinning skips that, which is why latency-critical systems
//! (DPDK, sockperf's busy-poll mode, the kernel's own `SO_BUSY_POLL`) spin too.
//! With no client at all it blocks in `accept`, so an idle server costs nothing.
//!
//! Primitives (docs/PRIMITIVES.md): non-blocking sockets polled in a loop: busy waiting
//! instead of a wake-up.
//!
//! Waiting (`--downstream`): the downstream's socket is one more non-blocking socket the
//! loop tries on every pass ([`crate::downstream::Nonblocking`], a per-request state
//! machine); waits overlap, and the loop spins through them.
//!
//! Good at: one or two clients on a machine with a spare core: the lowest latency of
//! all the models. Bad at: everything else. It takes a core from the clients (on 2
//! vCPUs the client and the spinning server fight for CPU), scales linearly worse with
//! idle connections, and a CPU-bound request blocks every client (one thread).
//! Prediction: near the top at n=1 with one client when a core is free, and a fall
//! on 2 vCPUs with 2 clients, where the spinner steals the clients' CPU.
//!
//! Cost model (`CostModel::SpinLoop`, `src/models/cost.rs`):
//! `X = min(c / (spin + client wake-up + fib(n)), 1 / (socket calls + fib(n)))`: the server
//! is never woken, so each request pays one wake-up (the client's) instead of two; with a
//! busy-polling client, none.
//!
//! One connection costs: one descriptor and its small connection state. Per round: one
//! `read` (and perhaps a `write`) per connection, idle ones included: O(connections)
//! system calls, which is what the spinning loop burns its core on.

use std::io;
use std::net::TcpListener;
use std::time::Instant;

use crate::connection::Turns;
use crate::connection::{PollConn, READ_CHUNK, accept_pending};
use crate::server::Config;
use crate::service::Work;
use crate::shutdown::{ConnectionGuard, DrainStep, Shutdown};

pub fn serve(listener: TcpListener, config: &Config, shutdown: Shutdown) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut clients: Vec<(PollConn, ConnectionGuard)> = Vec::new();
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut turns = Turns::new(config.grace, config.idle_timeout);
    let admit = |clients: &mut Vec<_>, stream, peer, live| match PollConn::new(
        stream,
        peer,
        config,
        Work::Inline,
    ) {
        // Counted only: this loop stops its own clients' reads at shutdown.
        Ok(conn) => clients.push((conn, live)),
        Err(e) => tracing::warn!(%peer, error = %e, "cannot set up the connection"),
    };
    loop {
        // No wait to bound: this loop never sleeps while it has clients.
        let (step, _) = turns.step(&shutdown, clients.len(), Instant::now(), None);
        match step {
            DrainStep::Over => return Ok(()),
            DrainStep::Draining { first, .. } => {
                if first {
                    clients.iter_mut().for_each(|(conn, _)| conn.stop_reading());
                }
            }
            DrainStep::Serving if clients.is_empty() => {
                // Nothing to spin for: sleep in accept until a client comes.
                match shutdown.accept_unwatched(&listener, config.max_conns)? {
                    Some((stream, peer, live)) => admit(&mut clients, stream, peer, live),
                    None => continue,
                }
            }
            DrainStep::Serving => {
                // A transient failure is retried on the next turn of this loop anyway.
                let _ = accept_pending(
                    &listener,
                    &shutdown,
                    config.max_conns,
                    |stream, peer, live| admit(&mut clients, stream, peer, live),
                )?;
            }
        }
        clients.retain_mut(|(conn, _)| {
            // No readiness API: assume every socket is ready and let WouldBlock say no.
            conn.readable();
            conn.writable();
            !conn.drive_inline(&mut scratch)
        });
        let now = Instant::now();
        if let Some(limit) = turns.sweep_due(now) {
            clients.retain(|(conn, _)| !conn.idle_expired(now, Some(limit)));
        }
    }
}
