//! The connection loops every model shares. They only move bytes between a socket and
//! a [`SessionDriver`], so the wire behaviour cannot drift between models:
//!
//! - [`serve_blocking`]: a blocking socket on its own thread (`single`, `threads`,
//!   `threadpool`, and `isolates`/`procpool`, which compute elsewhere);
//! - [`serve_async`]: an async socket in a task, for any executor that implements
//!   [`AsyncStream`] (tokio, and the hand-built one of `coroutines`);
//! - [`PollConn`]: a non-blocking socket as a state machine driven by readiness
//!   (`nonblocking`, `select`, `epoll`).
//!
//! ```text
//!             socket ── read ──> SessionDriver (driver.rs) ──> Session (framing + service)
//!  blocking.rs   blocks in read/write
//!  async_loop.rs awaits read/write                     the three differ only here
//!  readiness.rs  reads/writes until WouldBlock, told when to go on
//! ```
//!
//! All three answer every request one read completes, and write the replies before
//! waiting for more input. That bounds memory (one read's worth of replies) and gives
//! back-pressure for free: a client that stops reading stops being read.
//!
//! The seeds' unterminated clients: when a read leaves bytes without a newline, the
//! loop reads again *without waiting*. If the socket has nothing more right now, the
//! pending bytes are one request ([`SessionDriver::on_idle`]).
//!
//! `--idle-timeout` in the event loops is one mechanism ([`idle`]): an [`Activity`]
//! clock per connection and an [`IdleSweep`] that looks at them now and then.

mod async_loop;
mod blocking;
mod driver;
pub mod idle;
mod readiness;
mod turn;

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd as _;

pub use async_loop::{AsyncStream, serve_async};
pub use blocking::{Compute, serve_blocking, serve_blocking_with};
pub use driver::SessionDriver;
pub use idle::{Activity, IdleSweep};
pub use readiness::PollConn;
pub use turn::Turns;

use crate::shutdown::{ConnectionGuard, Shutdown};

/// Size of one socket read. 16 KiB holds thousands of pipelined requests.
pub const READ_CHUNK: usize = 16 * 1024;

/// What one step of a connection loop got from its socket.
enum Input {
    Bytes(usize),
    /// Nothing more to read right now (asked without waiting).
    Idle,
    Eof,
}

impl Input {
    /// What a read returned, as the loops see it; `Ok(None)` means "interrupted, read
    /// again". `WouldBlock` only comes from the reads that do not wait.
    fn from_read(read: io::Result<usize>) -> io::Result<Option<Input>> {
        match read {
            Ok(0) => Ok(Some(Input::Eof)),
            Ok(n) => Ok(Some(Input::Bytes(n))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Some(Input::Idle)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Hands the input to the driver; returns a request to compute elsewhere, if any.
    fn feed(
        self,
        driver: &mut SessionDriver,
        buffer: &[u8],
        socket: std::os::fd::BorrowedFd<'_>,
    ) -> Option<crate::service::Handoff> {
        match self {
            Input::Bytes(n) => driver.on_read(&buffer[..n], socket),
            Input::Idle => driver.on_idle(socket),
            Input::Eof => driver.on_eof(socket),
        }
    }
}

/// Accepts every connection a non-blocking listener has waiting, for the models that
/// drive the listener by readiness, and admits each ([`Shutdown::admit`] with `limit`,
/// `--max-conns`): `on_accept` gets those admitted with their guard; the rest are told
/// `ERR server busy` and closed. A transient failure (out of descriptors) pauses
/// accepting (`crate::accept::Backoff`) and ends this round with `Ok(true)`; so does a
/// call during the pause, without touching the listener. Then the caller must try again
/// after [`Shutdown::accept_paused_for`] by itself: an edge-triggered listener will not
/// report the waiting clients again.
///
/// # Errors
/// An accept error that is not transient.
pub fn accept_pending(
    listener: &std::net::TcpListener,
    shutdown: &Shutdown,
    limit: usize,
    mut on_accept: impl FnMut(TcpStream, SocketAddr, ConnectionGuard),
) -> io::Result<bool> {
    if shutdown
        .accept_paused_for(std::time::Instant::now())
        .is_some()
    {
        return Ok(true);
    }
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                shutdown.accept_recovered();
                if let Some(live) = shutdown.admit(stream.as_fd(), peer, limit, None) {
                    on_accept(stream, peer, live);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if crate::accept::is_transient(&e) => {
                shutdown.accept_failed(&e);
                return Ok(true);
            }
            Err(e) => return Err(e),
        }
    }
}

/// A client that resets or vanishes is ordinary life for a server: debug level. Anything
/// else is worth a warning.
pub fn log_connection_error(peer: SocketAddr, e: &io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => tracing::debug!(%peer, error = %e, "client went away"),
        io::ErrorKind::TimedOut => tracing::debug!(%peer, "idle past --idle-timeout; closed"),
        _ => tracing::warn!(%peer, error = %e, "connection failed"),
    }
}
