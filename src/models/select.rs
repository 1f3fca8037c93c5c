//! `select` — seed 003's select server: one thread asks the kernel which sockets are
//! ready with `select(2)`, then serves exactly those.
//!
//! ```text
//! loop {
//!     read set  = listener + shutdown + clients that want to read
//!     write set = clients with replies still to write
//!     select(read set, write set)            (sleeps until something is ready)
//!     accept if the listener is ready; read/answer/write the ready clients
//! }
//! ```
//!
//! Unlike `nonblocking`, an idle server sleeps in the kernel. Unlike `epoll`, every
//! call hands the kernel the whole interest set and scans it again on return, so each
//! round costs O(highest descriptor), however few sockets are ready.
//!
//! The ceiling: an `fd_set` is a bitmap of `FD_SETSIZE` (1024) bits, and a descriptor
//! at or past it cannot be watched at all (writing it would corrupt memory; `nix`
//! refuses). fiblab's choice: a connection whose descriptor is past the ceiling is
//! accepted, told `ERR server busy`, and closed; the listener, the shutdown socket and
//! the earlier clients keep working, and new clients are admitted again once
//! descriptors below the ceiling are free. With 3 descriptors for stdio, one for the
//! listener and two for the shutdown socket pair, about 1015 clients fit at once.
//! (`poll(2)` has no such ceiling; that is the `epoll` model's family.)
//!
//! `--downstream`: a waiting request's socket to the downstream goes into the same sets
//! (write while connecting or sending, read for the reply), and the earliest call's
//! deadline bounds `select`'s timeout. A downstream descriptor past `FD_SETSIZE` cannot
//! be watched: that request is answered `ERR downstream unavailable`.
//!
//! Primitives (docs/PRIMITIVES.md): I/O multiplexing with select(2).
//!
//! Good at: a handful to a few hundred connections on one thread with no spinning, and
//! portability (select is everywhere). Bad at: many connections (O(n) per round, and
//! the ceiling), and, like every single-threaded loop, CPU-bound requests, which block
//! all other clients until they finish. Prediction: close to `epoll` for 1 and 2
//! clients; it falls behind only with hundreds of connections.
//!
//! Cost model (`CostModel::EventLoop(Readiness::Select)`, `src/models/cost.rs`):
//! `X = min(c / (cross + select + fib(n)), 1 / (socket calls + select + fib(n)))`: every
//! client waits out a cross-CPU round trip (one thread cannot sit beside two clients), up
//! to what the one thread can do. With a busy-polling client and 2+ clients the loop never
//! sleeps and `cross` becomes the spinning round trip.
//!
//! One connection costs: one descriptor (and at most FD_SETSIZE, 1,024, of them) and
//! its small connection state. Per round: the descriptor set is built and scanned in
//! full, by the loop and by the kernel: O(connections), idle ones included.

use std::io::{self, Write as _};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Instant;

use nix::sys::select::{FD_SETSIZE, FdSet, select};
use nix::sys::time::{TimeVal, TimeValLike};

use crate::connection::Turns;
use crate::connection::{PollConn, READ_CHUNK, accept_pending};
use crate::downstream::{Failure, Interest};
use crate::server::Config;
use crate::service::{Rejection, Work};
use crate::shutdown::{ConnectionGuard, DrainStep, Shutdown};

pub fn serve(listener: TcpListener, config: &Config, shutdown: Shutdown) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut clients: Vec<(PollConn, ConnectionGuard)> = Vec::new();
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut turns = Turns::new(config.grace, config.idle_timeout);
    // Clients turned away since the last one admitted: logged once per episode, as a
    // flood past the ceiling would otherwise write a line per client.
    let mut turned_away = 0usize;
    loop {
        let stopping = shutdown.is_triggered();
        let now = Instant::now();
        if let Some(limit) = turns.sweep_due(now) {
            clients.retain(|(conn, _)| !conn.idle_expired(now, Some(limit)));
        }
        let (step, wait) = turns.step(&shutdown, clients.len(), now, None);
        match step {
            DrainStep::Serving => {}
            DrainStep::Draining { first, .. } => {
                if first {
                    clients.iter_mut().for_each(|(conn, _)| conn.stop_reading());
                }
            }
            DrainStep::Over => return Ok(()),
        }
        let mut timeout =
            wait.map(|w| TimeVal::microseconds(w.as_micros().try_into().unwrap_or(i64::MAX)));

        let mut readable = FdSet::new();
        let mut writable = FdSet::new();
        if !stopping {
            // After a failed accept (out of descriptors), the listener is left out until
            // the pause is over: it stays readable, and watching it would spin.
            match shutdown.accept_paused_for(now) {
                Some(pause) => {
                    let pause =
                        TimeVal::microseconds(pause.as_micros().try_into().unwrap_or(i64::MAX));
                    timeout = Some(timeout.map_or(pause, |t| t.min(pause)));
                }
                None => readable.insert(listener.as_fd()),
            }
            readable.insert(shutdown.wake_fd());
        }
        // The earliest downstream deadline bounds the wait; past-ceiling downstream
        // sockets fail their call (answered by the drive below, which runs every turn).
        let mut deadline: Option<Instant> = None;
        let mut unwatchable = false;
        for (conn, _) in &mut clients {
            if conn
                .downstream_interest()
                .is_some_and(|(fd, _)| fd.as_raw_fd() as usize >= FD_SETSIZE)
            {
                conn.fail_downstream(Failure::Unavailable);
                unwatchable = true;
            }
            if let Some(at) = conn.downstream_deadline() {
                deadline = Some(deadline.map_or(at, |d| d.min(at)));
            }
        }
        if let Some(at) = deadline {
            let left = at.saturating_duration_since(now);
            let left = TimeVal::microseconds(left.as_micros().try_into().unwrap_or(i64::MAX));
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        if unwatchable {
            timeout = Some(TimeVal::zero());
        }
        for (conn, _) in &clients {
            // Every client descriptor is below FD_SETSIZE: admission checked it.
            if conn.wants_read() {
                readable.insert(conn.stream().as_fd());
            }
            if conn.wants_write() {
                writable.insert(conn.stream().as_fd());
            }
            match conn.downstream_interest() {
                Some((fd, Interest::Read)) => readable.insert(fd),
                Some((fd, Interest::Write)) => writable.insert(fd),
                None => {}
            }
        }
        match select(None, &mut readable, &mut writable, None, timeout.as_mut()) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }

        // The sets borrow the clients' descriptors: read them out, then serve.
        let ready: Vec<(bool, bool)> = clients
            .iter()
            .map(|(conn, _)| {
                let fd = conn.stream().as_fd();
                (readable.contains(fd), writable.contains(fd))
            })
            .collect();
        let accept_now = !stopping && readable.contains(listener.as_fd());

        for ((conn, _), (can_read, can_write)) in clients.iter_mut().zip(ready) {
            if can_read {
                conn.readable();
            }
            if can_write {
                conn.writable();
            }
        }
        clients.retain_mut(|(conn, _)| !conn.drive_inline(&mut scratch));
        if accept_now {
            // A transient failure is retried at the next select: the listener stays readable.
            let _ = accept_pending(
                &listener,
                &shutdown,
                config.max_conns,
                |mut stream, peer, live| {
                    if stream.as_raw_fd() as usize >= FD_SETSIZE {
                        if turned_away == 0 {
                            tracing::warn!(%peer, fd = stream.as_raw_fd(), "descriptor past select's FD_SETSIZE; turning clients away until one leaves");
                        }
                        turned_away += 1;
                        let _ = stream.write_all(Rejection::ServerBusy.reply_line().as_bytes());
                        return;
                    }
                    if turned_away > 0 {
                        tracing::warn!(
                            turned_away,
                            "admitting clients again after turning some away past FD_SETSIZE"
                        );
                        turned_away = 0;
                    }
                    match PollConn::new(stream, peer, config, Work::Inline) {
                        // Counted only: this loop stops its own clients' reads at shutdown.
                        Ok(mut conn) => {
                            // Serve what may already be there; select reports the rest.
                            if !conn.drive_inline(&mut scratch) {
                                clients.push((conn, live));
                            }
                        }
                        Err(e) => tracing::warn!(%peer, error = %e, "cannot set up the connection"),
                    }
                },
            )?;
        }
    }
}
