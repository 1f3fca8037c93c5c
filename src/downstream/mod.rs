//! Waiting on a downstream (`fiblab serve --downstream ADDR`, PROTOCOL.md "Waiting on a
//! downstream"): each valid request line goes to another service first, and the request
//! is answered only once that service's one-line reply is back. This is what I/O-bound
//! means in the seeds ("the CPU is mostly waiting"), and what makes a model choose how
//! to wait:
//!
//! ```text
//! client ── "20\n" ──► model ── "20\n" ──► downstream (fiblab backend: answers after --delay)
//!                        │   ◄── "20\n" ──┘
//!                        └── fib(20) ──► "6765\n" ──► client
//! ```
//!
//! Three ways to wait, one per family of models, all with the same rules:
//! - [`Blocking`]: a blocking call on the connection's thread (`single`, `threads`,
//!   `threadpool`, `prefork`, `procpool`, `isolates`); the thread sleeps in `recv`.
//! - [`Nonblocking`]: a non-blocking socket and a per-request state machine
//!   (connecting, sending, receiving), driven by the readiness loops (`nonblocking`,
//!   `select`, `epoll`, `per-core`, `uring`), which register its descriptor beside the
//!   client's.
//! - [`call_async`]: an async call that yields on the downstream's `recv`, on whatever
//!   executor runs the task (`tokio`, `tokio-current`, `coroutines`).
//!
//! The rules: each client connection has at most one downstream connection, opened
//! when its first waiting request comes and reused for the next ones (a connection's
//! requests wait one after another, so replies keep their order, pipelining included).
//! A call that fails — refused, closed, reset, or no reply within
//! [`DownstreamConfig::timeout`] — makes that request's reply `ERR downstream <reason>`,
//! and the downstream connection is dropped (a late reply must not answer the next
//! request), to be opened again by the next request. The reply's content is not used:
//! the wait is the point. With `--gil` the lock is not held while waiting, as CPython
//! releases it around blocking socket calls.

mod blocking;
mod nonblocking;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

pub use blocking::Blocking;
pub use nonblocking::{Interest, Nonblocking, connect_nonblocking};

/// `--downstream-timeout`'s default: how long a request waits for the downstream before
/// it is answered `ERR downstream timed out` (PROTOCOL.md).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of one read of the downstream's reply. Replies are one short line; a longer
/// one is read in pieces and thrown away up to its newline.
pub const REPLY_CHUNK: usize = 256;

/// Where the downstream is and how long a request may wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownstreamConfig {
    pub addr: SocketAddr,
    /// The whole call's limit: connecting, sending the line and reading the reply.
    pub timeout: Duration,
}

/// Why a call to the downstream failed; the reason on the wire, `ERR downstream <reason>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Nothing listens there (`ECONNREFUSED`).
    #[error("refused")]
    Refused,
    /// It closed the connection before replying.
    #[error("closed")]
    Closed,
    /// It reset the connection.
    #[error("reset")]
    Reset,
    /// No reply within `--downstream-timeout`.
    #[error("timed out")]
    TimedOut,
    /// Out of descriptors or ports: the server could not open a connection to it.
    #[error("unavailable")]
    Unavailable,
    /// Anything else the socket reported (unreachable, ...).
    #[error("failed")]
    Failed,
}

impl Failure {
    /// The failure a socket error means.
    pub fn from_io(e: &io::Error) -> Failure {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => Failure::Refused,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Failure::Reset,
            io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof => Failure::Closed,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Failure::TimedOut,
            _ if matches!(
                e.raw_os_error(),
                Some(
                    nix::libc::EMFILE
                        | nix::libc::ENFILE
                        | nix::libc::ENOBUFS
                        | nix::libc::ENOMEM
                        | nix::libc::EADDRNOTAVAIL
                )
            ) =>
            {
                Failure::Unavailable
            }
            _ => Failure::Failed,
        }
    }
}

/// The outcome of one call: `Ok` once the reply's line has come back.
pub type Outcome = Result<(), Failure>;

/// Reads of a reply: true once the bytes seen so far hold its newline.
#[derive(Debug, Default)]
struct ReplyLine {
    done: bool,
}

impl ReplyLine {
    fn saw(&mut self, bytes: &[u8]) -> bool {
        self.done |= bytes.contains(&b'\n');
        self.done
    }
}

/// The operations [`call_async`] needs of an executor's downstream socket.
#[allow(async_fn_in_trait)] // implemented in this crate for concrete types only
pub trait AsyncDownstream: Sized {
    /// Waits for bytes; `Ok(0)` is end of input.
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
}

/// What an executor gives [`call_async`]: a way to connect and a clock.
#[allow(async_fn_in_trait)]
pub trait AsyncNet {
    type Conn: AsyncDownstream;
    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Conn>;
    /// Sleeps without blocking the executor.
    async fn sleep(&self, duration: Duration);
}

/// One call on an executor: connects if `conn` is `None`, sends `line` (terminator
/// included), and yields until the reply's newline or the timeout. On failure `conn` is
/// dropped, so a late reply never answers the next request.
pub async fn call_async<N: AsyncNet>(
    net: &N,
    conn: &mut Option<N::Conn>,
    config: DownstreamConfig,
    line: &[u8],
) -> Outcome {
    let outcome = {
        let call = pin!(async {
            if conn.is_none() {
                *conn = Some(net.connect(config.addr).await?);
            }
            let Some(open) = conn.as_mut() else {
                return Err(io::ErrorKind::NotConnected.into());
            };
            open.write_all(line).await?;
            let mut reply = ReplyLine::default();
            let mut buf = [0u8; REPLY_CHUNK];
            loop {
                match open.read(&mut buf).await? {
                    0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                    n if reply.saw(&buf[..n]) => return Ok(()),
                    _ => {}
                }
            }
        });
        let limit = pin!(net.sleep(config.timeout));
        first_of(call, limit).await
    };
    let outcome = match outcome {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(Failure::from_io(&e)),
        None => Err(Failure::TimedOut),
    };
    if outcome.is_err() {
        *conn = None;
    }
    outcome
}

/// `Some(work's output)`, or `None` if `limit` finished first: a timeout on any executor.
async fn first_of<T>(
    mut work: std::pin::Pin<&mut impl Future<Output = T>>,
    mut limit: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<T> {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        match limit.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

impl fmt::Display for DownstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (timeout {:?})", self.addr, self.timeout)
    }
}

#[cfg(test)]
mod tests;
