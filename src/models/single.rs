//! `single` — the seeds' `one_server.py` (seeds 000, 001, 004).
//!
//! One thread does everything: accept a client, serve it until it leaves, accept the
//! next.
//!
//! ```text
//! main thread:  accept ─► serve client A ... until A closes ─► accept ─► serve B ...
//! client B:     connect (kernel backlog takes it) ─► send ─► ............ reply
//! ```
//!
//! Primitives (docs/PRIMITIVES.md): a blocking socket and nothing shared: one client at
//! a time is the price.
//!
//! Waiting (`--downstream`): a blocking call on the one thread; while it waits for the
//! downstream, no other client is even accepted: X = 1 / (wait + fib), the seeds' lesson
//! in its purest form.
//!
//! Good at: nothing but simplicity; with one client it is as fast as anything, since
//! no thread hands work to another (no cross-CPU wake-up on the reply path).
//! Bad at: a second client. It connects (the kernel's accept backlog completes the
//! handshake) and then waits unanswered until the first client leaves. The seeds'
//! tables write "cannot serve" in its 2-client cells; fiblab's benchmark shows 0 req/s
//! for the second connection.
//!
//! Prediction: the best single-client figures at n=1 (no hand-off between threads), the
//! same total with 2 clients, all of it on the first connection and 0 on the second.
//!
//! Cost model (`CostModel::OneAtATime`, `src/models/cost.rs`): `X = 1 / (cross + fib(n))`,
//! whatever the client count: one client is served and the others wait. `cross` is the
//! calibrated round trip across two CPUs with both sides asleep, since the kernel puts the
//! one client and the one server thread on different CPUs of an idle machine.
//!
//! One connection costs: one descriptor while it is served; the others wait in the
//! kernel's backlog and cost the server nothing. No per-round work: one blocking
//! `read`.

use std::io;
use std::net::TcpListener;

use crate::connection::serve_blocking;
use crate::server::Config;
use crate::shutdown::Shutdown;

pub fn serve(listener: TcpListener, config: &Config, shutdown: Shutdown) -> io::Result<()> {
    // The only thread is the one serving, so the grace period is kept by a watchdog:
    // once shutdown starts, it cuts the client after the grace (a client that stops
    // reading would otherwise hold the server in `write` for ever).
    let watchdog = {
        let (shutdown, grace) = (shutdown.clone(), config.grace);
        std::thread::Builder::new()
            .name("grace-watchdog".into())
            .spawn(move || {
                while !shutdown.wait_timeout(std::time::Duration::from_secs(1)) {}
                shutdown.wait_drained(grace);
            })?
    };
    let served = (|| {
        while let Some((stream, peer, _live)) = shutdown.accept(&listener, config.max_conns)? {
            serve_blocking(stream, peer, config);
        }
        Ok(())
    })();
    shutdown.trigger(); // also on an accept error, so the watchdog ends
    let _ = watchdog.join();
    served
}
