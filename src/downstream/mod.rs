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
//! request), to be opened again by the next request. The reply must be the request
//! line's echo: anything else, or a line on an idle connection, is `ERR downstream
//! desync` (never pair a stale line with a later request), checked byte by byte so an
//! endless line fails at once (`Echo`). An idle connection the downstream closed
//! (the keep-alive race) is replaced before the request is written ([`idle_state`]).
//! With `--gil` the lock is not held while waiting, as CPython releases it around
//! blocking socket calls.

mod blocking;
mod nonblocking;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

pub use blocking::Blocking;
pub use nonblocking::{Interest, Nonblocking, connect_nonblocking};

/// `--downstream-timeout`'s default: how long a request waits for the downstream before
/// it is answered `ERR downstream timed out` (PROTOCOL.md).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of one read of the downstream's reply. Replies are one short line, the
/// request's echo; anything else fails at its first wrong byte (`Echo`).
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
    /// A reply that is not the request line's echo (another line, a longer one, bytes
    /// after it), or a line that came with no request outstanding (PROTOCOL.md).
    #[error("desync")]
    Desync,
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

/// A reply read against the request line it must echo (PROTOCOL.md: "the downstream's
/// reply is the request line echoed"), byte by byte as the pieces come: the first byte
/// that is not the echo's, a line longer than the echo, or a byte after its newline is a
/// desync at once, however fast or long the downstream streams. So one read of a
/// reply never takes more than the echo's length, and a loop's turn stays bounded.
#[derive(Debug, Default)]
struct Echo {
    /// The request line without its terminator (`\n` or `\r\n`).
    expected: Vec<u8>,
    /// Bytes of `expected` matched so far.
    matched: usize,
    /// A `\r` after the whole echo.
    carriage: bool,
    done: bool,
}

impl Echo {
    /// The echo of `line` (terminator included or not).
    fn of(line: &[u8]) -> Echo {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        Echo {
            expected: body.to_vec(),
            ..Echo::default()
        }
    }

    /// Ok(true) once the whole echo and its newline are in; Ok(false) while more may
    /// come; `Err(Desync)` at the first byte that cannot be the echo's.
    fn saw(&mut self, bytes: &[u8]) -> Result<bool, Failure> {
        for &b in bytes {
            match (self.done, self.matched < self.expected.len(), b) {
                (true, _, _) => return Err(Failure::Desync),
                (false, true, b) if b == self.expected[self.matched] => self.matched += 1,
                (false, false, b'\r') if !self.carriage => self.carriage = true,
                (false, false, b'\n') => self.done = true,
                _ => return Err(Failure::Desync),
            }
        }
        Ok(self.done)
    }
}

/// What an idle downstream connection holds before a new request is written on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Nothing: the request may go.
    Clean,
    /// Bytes no request asked for (a second answer, a greeting): a desync.
    Stale,
    /// Closed or reset by the downstream while idle (the keep-alive race): the request,
    /// not yet written, goes once more on a fresh connection.
    Closed,
}

/// Looks at an idle downstream connection without waiting or taking anything
/// (`recv(MSG_PEEK | MSG_DONTWAIT)`): PROTOCOL.md's desync and keep-alive rules.
pub fn idle_state(conn: std::os::fd::BorrowedFd<'_>) -> Idle {
    use nix::sys::socket::{MsgFlags, recv};
    use std::os::fd::AsRawFd as _;
    let mut byte = [0u8; 1];
    match recv(
        conn.as_raw_fd(),
        &mut byte,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(0) => Idle::Closed,
        Ok(_) => Idle::Stale,
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => Idle::Clean,
        Err(_) => Idle::Closed,
    }
}

/// The operations [`call_async`] needs of an executor's downstream socket (and its
/// descriptor, to look at it while idle: [`idle_state`]).
#[allow(async_fn_in_trait)] // implemented in this crate for concrete types only
pub trait AsyncDownstream: Sized + std::os::fd::AsFd {
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
            // An idle connection is looked at first: stale bytes are a desync, a close
            // while idle sends the request on a fresh connection (PROTOCOL.md).
            match conn.as_ref().map(|c| idle_state(c.as_fd())) {
                Some(Idle::Stale) => return Ok(Err(Failure::Desync)),
                Some(Idle::Closed) => *conn = None,
                Some(Idle::Clean) | None => {}
            }
            if conn.is_none() {
                *conn = Some(net.connect(config.addr).await?);
            }
            let Some(open) = conn.as_mut() else {
                return Err(io::ErrorKind::NotConnected.into());
            };
            open.write_all(line).await?;
            let mut reply = Echo::of(line);
            let mut buf = [0u8; REPLY_CHUNK];
            loop {
                match open.read(&mut buf).await? {
                    0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                    n => match reply.saw(&buf[..n]) {
                        Ok(true) => return Ok(Ok(())),
                        Ok(false) => {}
                        Err(failure) => return Ok(Err(failure)),
                    },
                }
            }
        });
        let limit = pin!(net.sleep(config.timeout));
        first_of(call, limit).await
    };
    let outcome = match outcome {
        Some(Ok(done)) => done,
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

/// `--downstream HOST:PORT`: an address as [`crate::units::parse_addr`] reads it, but
/// not port 0, which no service listens on.
///
/// # Errors
/// Not an address, or port 0.
pub fn parse_addr(text: &str) -> Result<SocketAddr, crate::units::ParseError> {
    let addr = crate::units::parse_addr(text)?;
    match addr.port() {
        0 => Err(crate::units::ParseError(format!(
            "'{text}': port 0 is no service's port; give the port your downstream listens on (`fiblab backend --addr 127.0.0.1:P`)"
        ))),
        _ => Ok(addr),
    }
}

/// A downstream that is the server itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "--downstream {downstream} is this server itself (it listens on {local}): every request would call itself again, without end; point --downstream at another service, such as `fiblab backend`"
)]
pub struct CallsItself {
    pub downstream: SocketAddr,
    pub local: SocketAddr,
}

/// Refuses a downstream that is this server itself, listening on `local`: the same
/// port on the same address, on loopback where the server listens on every address, or
/// on the unspecified address (PROTOCOL.md: refused at start, as a proxy refuses to
/// forward to itself). A loop through another hop cannot be seen here; the echo rule
/// ends it (an `ERR` line is not the echo).
///
/// # Errors
/// [`CallsItself`].
pub fn check_not_itself(
    downstream: Option<DownstreamConfig>,
    local: SocketAddr,
) -> Result<(), CallsItself> {
    let Some(DownstreamConfig { addr, .. }) = downstream else {
        return Ok(());
    };
    let (d, l) = (addr.ip(), local.ip());
    let same_host = d == l || d.is_unspecified() || (l.is_unspecified() && d.is_loopback());
    match addr.port() == local.port() && same_host {
        true => Err(CallsItself {
            downstream: addr,
            local,
        }),
        false => Ok(()),
    }
}

impl fmt::Display for DownstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (timeout {:?})", self.addr, self.timeout)
    }
}

#[cfg(test)]
mod tests;
