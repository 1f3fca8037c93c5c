//! The connection loops every model shares. They only move bytes between a socket and
//! a [`Session`], so the wire behaviour cannot drift between models:
//!
//! - [`serve_blocking`]: a blocking socket on its own thread (`single`, `threads`,
//!   `threadpool`, and `isolates`, which computes through its isolate);
//! - [`serve_async`]: an async socket in a task, for any executor that implements
//!   [`AsyncStream`] (tokio, and the hand-built one of `coroutines`);
//! - [`PollConn`]: a non-blocking socket as a state machine driven by readiness
//!   (`nonblocking`, `select`, `epoll`).
//!
//! All three answer every request one read completes, and write the replies before
//! waiting for more input. That bounds memory (one read's worth of replies) and gives
//! back-pressure for free: a client that stops reading stops being read.
//!
//! The seeds' unterminated clients: when a read leaves bytes without a newline, the
//! loop reads again *without waiting*. If the socket has nothing more right now, the
//! pending bytes are one request ([`Session::on_idle`]).

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd as _, AsRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::socket::{MsgFlags, recv};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::fib::fib;
use crate::offload::{Offload, gone_for};
use crate::server::Config;
use crate::service::{Rejection, Session, Work};
use crate::shutdown::{Shutdown, ShutdownWatch};

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
}

/// A blocking read or write that failed with `WouldBlock` ran into `SO_RCVTIMEO` /
/// `SO_SNDTIMEO`: the idle timeout, reported as `TimedOut`.
fn idle_as_timeout(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock => io::Error::new(io::ErrorKind::TimedOut, "idle timeout"),
        _ => e,
    }
}

/// How a blocking connection computes the fib requests its session hands over.
pub type Compute<'a> = &'a mut dyn FnMut(u32) -> Result<u64, Rejection>;

/// A probe for [`Session::set_probe`] on a client's socket: true once the socket was
/// reset or broke (`POLLERR`/`POLLHUP`: the client closed with replies unread, was
/// killed with data in flight, or a reply was written to a client that had closed).
/// A plain end of input is *not* "gone": a client that half-closes still reads its
/// replies, and TCP cannot tell it from one that closed, until a reply is written.
/// It polls its own duplicate of the descriptor, so a pool thread may hold it safely.
pub fn gone_probe(
    socket: std::os::fd::BorrowedFd<'_>,
) -> Option<impl FnMut() -> bool + Send + 'static> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let socket = dup_above_select_range(socket).ok()?;
    Some(move || {
        let mut fds = [PollFd::new(socket.as_fd(), PollFlags::empty())];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1..))
            && fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
    })
}

/// A duplicate of `fd` numbered 1024 or more where the descriptor limit allows, so
/// duplicates never take the low numbers that `select(2)` can watch.
fn dup_above_select_range(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    match nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(1024)) {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) just created this descriptor and returned it
        // to us alone; the OwnedFd becomes its only owner and closes it once.
        Ok(raw) => Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) }),
        Err(_) => fd.try_clone_to_owned(),
    }
}

/// Serves one connection on the calling thread until the client leaves or shutdown
/// shuts the socket's read side. Logs the outcome; never panics on client input.
pub fn serve_blocking(stream: TcpStream, peer: SocketAddr, config: &Config) {
    serve_blocking_with(stream, peer, config, None);
}

/// [`serve_blocking`], with fib computed by `compute` instead of inline.
pub fn serve_blocking_with(
    stream: TcpStream,
    peer: SocketAddr,
    config: &Config,
    compute: Option<Compute<'_>>,
) {
    tracing::debug!(%peer, "connected");
    match blocking_loop(stream, config, compute) {
        Ok(()) => tracing::debug!(%peer, "closed"),
        Err(e) => log_connection_error(peer, &e),
    }
}

fn blocking_loop(
    mut stream: TcpStream,
    config: &Config,
    mut compute: Option<Compute<'_>>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    // A client silent for the idle timeout, or not reading its replies for as long,
    // makes the blocking read or write fail, which ends the connection.
    stream.set_read_timeout(config.idle_timeout)?;
    stream.set_write_timeout(config.idle_timeout)?;
    let work = if compute.is_some() {
        Work::Handed
    } else {
        Work::Inline
    };
    let mut session = Session::new(config.service, config.max_line, work);
    if work == Work::Inline
        && let Some(probe) = gone_probe(stream.as_fd())
    {
        session.set_probe(probe);
    }
    let mut input = vec![0u8; READ_CHUNK];
    let mut out = Vec::with_capacity(READ_CHUNK);
    let mut run = |n: u32| compute.as_mut().map_or_else(|| Ok(fib(n)), |c| c(n));
    loop {
        let read = if session.wants_idle_flush() {
            recv(stream.as_raw_fd(), &mut input, MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)
        } else {
            // About to block: the replies owed go out first.
            if !out.is_empty() {
                stream.write_all(&out).map_err(idle_as_timeout)?;
                out.clear();
            }
            stream.read(&mut input).map_err(idle_as_timeout)
        };
        let Some(event) = Input::from_read(read)? else {
            continue;
        };
        match event {
            Input::Bytes(n) => {
                let mut rest = &input[..n];
                loop {
                    let fed = session.feed(rest, &mut out);
                    rest = &rest[fed.consumed..];
                    let Some(k) = fed.handed else { break };
                    Session::write_reply(run(k), &mut out);
                }
            }
            Input::Idle => {
                if let Some(k) = session.on_idle(&mut out) {
                    Session::write_reply(run(k), &mut out);
                }
            }
            Input::Eof => {
                if let Some(k) = session.on_eof(&mut out) {
                    Session::write_reply(run(k), &mut out);
                }
                stream.write_all(&out)?;
                return Ok(());
            }
        }
    }
}

/// The socket operations [`serve_async`] needs, so one connection loop serves every
/// executor: tokio's ([`TokioStream`]) and the hand-built one of `coroutines`.
#[allow(async_fn_in_trait)] // implemented in this crate for concrete types only
pub trait AsyncStream {
    /// Waits for bytes; `Ok(0)` is end of input.
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Reads without waiting: `WouldBlock` when nothing is there right now.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// The socket, for [`gone_probe`].
    fn socket(&self) -> std::os::fd::BorrowedFd<'_>;
}

/// Serves one connection as an async task: the same steps as [`serve_blocking`],
/// awaiting instead of blocking. With `offload`, fib runs in the pool and the task
/// awaits the reply, so the executor's thread stays free for other connections.
pub async fn serve_async<S: AsyncStream>(
    stream: S,
    peer: SocketAddr,
    config: &Config,
    offload: Option<&Offload>,
) {
    tracing::debug!(%peer, "connected");
    match async_loop(stream, config, offload).await {
        Ok(()) => tracing::debug!(%peer, "closed"),
        Err(e) => log_connection_error(peer, &e),
    }
}

async fn async_loop<S: AsyncStream>(
    mut stream: S,
    config: &Config,
    offload: Option<&Offload>,
) -> io::Result<()> {
    let work = if offload.is_some() {
        Work::Handed
    } else {
        Work::Inline
    };
    let mut session = Session::new(config.service, config.max_line, work);
    if work == Work::Inline
        && let Some(probe) = gone_probe(stream.socket())
    {
        session.set_probe(probe);
    }
    let mut input = vec![0u8; READ_CHUNK];
    let mut out = Vec::with_capacity(READ_CHUNK);
    let run = async |n: u32, gone| match offload {
        Some(pool) => pool.fib(n, gone).await,
        None => Ok(fib(n)),
    };
    loop {
        let read = if session.wants_idle_flush() {
            stream.try_read(&mut input)
        } else {
            if !out.is_empty() {
                stream.write_all(&out).await?;
                out.clear();
            }
            stream.read(&mut input).await
        };
        let Some(event) = Input::from_read(read)? else {
            continue;
        };
        match event {
            Input::Bytes(n) => {
                let mut consumed = 0;
                loop {
                    let fed = session.feed(&input[consumed..n], &mut out);
                    consumed += fed.consumed;
                    let Some(k) = fed.handed else { break };
                    Session::write_reply(run(k, gone_for(k, stream.socket())).await, &mut out);
                }
            }
            Input::Idle => {
                if let Some(k) = session.on_idle(&mut out) {
                    Session::write_reply(run(k, gone_for(k, stream.socket())).await, &mut out);
                }
            }
            Input::Eof => {
                if let Some(k) = session.on_eof(&mut out) {
                    Session::write_reply(run(k, gone_for(k, stream.socket())).await, &mut out);
                }
                stream.write_all(&out).await?;
                return Ok(());
            }
        }
    }
}

/// A tokio socket that also ends its reads when shutdown is triggered.
pub struct TokioStream {
    stream: tokio::net::TcpStream,
    stop: ShutdownWatch,
    /// `--idle-timeout`: a read waiting this long, or a write, fails with `TimedOut`.
    idle: Option<std::time::Duration>,
}

impl AsyncStream for TokioStream {
    fn socket(&self) -> std::os::fd::BorrowedFd<'_> {
        self.stream.as_fd()
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let idle = idle_sleep(self.idle);
        tokio::select! {
            biased;
            read = self.stream.read(buf) => read,
            // Shutdown reads as end of input: the replies owed are written, then it closes.
            () = self.stop.triggered() => Ok(0),
            () = idle => Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
        }
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.try_read(buf)
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let idle = idle_sleep(self.idle);
        tokio::select! {
            written = self.stream.write_all(buf) => written,
            () = idle => Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
        }
    }
}

/// Sleeps for the idle timeout, or forever without one.
async fn idle_sleep(idle: Option<std::time::Duration>) {
    match idle {
        Some(idle) => tokio::time::sleep(idle).await,
        None => std::future::pending().await,
    }
}

/// The accept loop of the tokio models: a task per connection, until shutdown; then
/// up to `config.grace` for the tasks to finish.
pub async fn accept_loop_tokio(
    listener: std::net::TcpListener,
    config: Config,
    shutdown: Shutdown,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let config = Arc::new(config);
    let offload = match config.offload {
        true => Some(Arc::new(Offload::start(config.workers, config.queue)?)),
        false => None,
    };
    let mut stop = shutdown.watch();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = stop.triggered() => break,
            // Reap finished tasks as we go so the set holds only live connections.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if shutdown.is_full() => {
                    tracing::debug!(%peer, "at --max-conns; turning the connection away");
                    let _ = stream.try_write(Rejection::ServerBusy.reply_line().as_bytes());
                }
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let live = shutdown.track(None);
                    let stream = TokioStream {
                        stream,
                        stop: shutdown.watch(),
                        idle: config.idle_timeout,
                    };
                    let (config, offload) = (config.clone(), offload.clone());
                    tasks.spawn(async move {
                        serve_async(stream, peer, &config, offload.as_deref()).await;
                        drop(live);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(config.grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(left = tasks.len(), "grace period over; cutting connections");
        tasks.shutdown().await;
    }
    Ok(())
}

/// Accepts every connection a non-blocking listener has waiting, for the models that
/// drive the listener by readiness. A transient failure (out of descriptors) is
/// logged and ends this round with `Ok(true)`: the caller must try again soon by
/// itself, since an edge-triggered listener will not report the waiting clients again.
pub fn accept_pending(
    listener: &std::net::TcpListener,
    shutdown: &Shutdown,
    mut on_accept: impl FnMut(TcpStream, SocketAddr),
) -> io::Result<bool> {
    loop {
        match listener.accept() {
            Ok((mut stream, peer)) if shutdown.is_full() => {
                crate::shutdown::turn_away(&mut stream, peer);
            }
            Ok((stream, peer)) => on_accept(stream, peer),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if crate::shutdown::is_transient_accept_error(&e) => {
                tracing::warn!(error = %e, "accept failed; will retry");
                return Ok(true);
            }
            Err(e) => return Err(e),
        }
    }
}

/// When an event loop looks for connections idle past `--idle-timeout`: every quarter
/// of the timeout (between 10 ms and 1 s), so the sweep costs nothing per event.
#[derive(Debug)]
pub struct IdleSweep {
    limit: Option<Duration>,
    next: Instant,
}

impl IdleSweep {
    pub fn new(limit: Option<Duration>) -> IdleSweep {
        IdleSweep {
            limit,
            next: Instant::now(),
        }
    }

    pub fn limit(&self) -> Option<Duration> {
        self.limit
    }

    fn interval(limit: Duration) -> Duration {
        (limit / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// The longest the loop may wait before the next sweep is due (`None`: no limit).
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.limit.map(|_| self.next.saturating_duration_since(now))
    }

    /// `timeout`, or a shorter one the loop already had.
    pub fn shorten(&self, now: Instant, timeout: Option<Duration>) -> Option<Duration> {
        match (timeout, self.timeout(now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when a sweep is due now; schedules the next one.
    pub fn due(&mut self, now: Instant) -> bool {
        match self.limit {
            Some(limit) if now >= self.next => {
                self.next = now + Self::interval(limit);
                true
            }
            _ => false,
        }
    }
}

/// Replies that may pile up before a readiness-driven connection stops reading.
const OUT_HIGH_WATER: usize = 64 * 1024;

/// A non-blocking connection as a state machine, for the models that drive sockets by
/// readiness themselves (`nonblocking`, `select`, `epoll`).
///
/// The loop tells it what the socket became ([`readable`](Self::readable),
/// [`writable`](Self::writable)) and calls [`drive`](Self::drive), which does all it
/// can without blocking: write pending replies, read and answer requests, until the
/// socket would block both ways. It never relies on being told twice (edge-triggered
/// epoll tells once): a direction it stopped using for its own reasons (back-pressure,
/// a reply computed elsewhere) is resumed by `drive` itself.
///
/// With [`Work::Handed`] (`epoll --offload`), `drive` returns the `n` of a fib request
/// for the loop to compute elsewhere, and stops reading until the loop hands the reply
/// back with [`reply`](Self::reply).
pub struct PollConn {
    stream: TcpStream,
    pub peer: SocketAddr,
    session: Session,
    /// Bytes read but not yet framed: the rest of a read after a handed request.
    unfed: Vec<u8>,
    /// A handed request's reply has not come back yet.
    awaiting_reply: bool,
    out: Vec<u8>,
    written: usize,
    read_closed: bool,
    /// The last read or write hit `WouldBlock`; cleared when readiness is reported.
    read_blocked: bool,
    write_blocked: bool,
    /// When bytes last moved either way, for `--idle-timeout`.
    last_active: Instant,
}

impl PollConn {
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        config: &Config,
        work: Work,
    ) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        tracing::debug!(%peer, "connected");
        let mut session = Session::new(config.service, config.max_line, work);
        if work == Work::Inline
            && let Some(probe) = gone_probe(stream.as_fd())
        {
            session.set_probe(probe);
        }
        Ok(PollConn {
            stream,
            peer,
            session,
            unfed: Vec::new(),
            awaiting_reply: false,
            out: Vec::new(),
            written: 0,
            read_closed: false,
            read_blocked: false,
            write_blocked: false,
            last_active: Instant::now(),
        })
    }

    /// True when no byte has moved either way for `limit` (`--idle-timeout`) and no
    /// work of its own is in progress; logged, and the loop drops the connection.
    pub fn idle_expired(&self, now: Instant, limit: Option<Duration>) -> bool {
        let expired = limit.is_some_and(|limit| {
            !self.awaiting_reply && now.saturating_duration_since(self.last_active) >= limit
        });
        if expired {
            tracing::debug!(peer = %self.peer, "idle past --idle-timeout; closed");
        }
        expired
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The socket has bytes (or end of input) to read.
    pub fn readable(&mut self) {
        self.read_blocked = false;
    }

    /// The socket has room to write.
    pub fn writable(&mut self) {
        self.write_blocked = false;
    }

    /// Shutdown: stop taking requests. The socket's read side is shut, so the next
    /// read sees end of input: pending bytes are answered, replies owed are written,
    /// and the connection finishes.
    pub fn stop_reading(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Read);
        self.read_blocked = false;
    }

    /// Would read if the socket had bytes.
    pub fn wants_read(&self) -> bool {
        !self.read_closed
            && !self.awaiting_reply
            && self.unfed.is_empty()
            && self.out.len() - self.written < OUT_HIGH_WATER
    }

    /// Has replies to write.
    pub fn wants_write(&self) -> bool {
        self.written < self.out.len()
    }

    /// The client has closed its side and got every reply: drop the connection.
    pub fn is_finished(&self) -> bool {
        self.read_closed && !self.awaiting_reply && self.unfed.is_empty() && !self.wants_write()
    }

    /// The reply of a handed request.
    pub fn reply(&mut self, reply: Result<u64, Rejection>) {
        Session::write_reply(reply, &mut self.out);
        self.awaiting_reply = false;
    }

    /// Makes every step possible without blocking. Returns a request to compute
    /// elsewhere, if the session handed one; errors mean the connection is dead.
    pub fn drive(&mut self, scratch: &mut [u8]) -> io::Result<Option<u32>> {
        loop {
            if !self.awaiting_reply && !self.unfed.is_empty() {
                let fed = self.session.feed(&self.unfed, &mut self.out);
                self.unfed.drain(..fed.consumed);
                if let Some(n) = self.hand(fed.handed) {
                    self.flush()?;
                    return Ok(Some(n));
                }
                continue;
            }
            if self.wants_write() && !self.write_blocked {
                self.flush()?;
                continue;
            }
            if self.wants_read() && !self.read_blocked {
                let handed = match self.stream.read(scratch) {
                    Ok(0) => {
                        self.read_closed = true;
                        self.session.on_eof(&mut self.out)
                    }
                    Ok(n) => {
                        self.last_active = Instant::now();
                        let fed = self.session.feed(&scratch[..n], &mut self.out);
                        self.unfed.extend_from_slice(&scratch[fed.consumed..n]);
                        fed.handed
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.read_blocked = true;
                        self.session.on_idle(&mut self.out)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
                    Err(e) => return Err(e),
                };
                if let Some(n) = self.hand(handed) {
                    self.flush()?;
                    return Ok(Some(n));
                }
                continue;
            }
            return Ok(None);
        }
    }

    fn hand(&mut self, handed: Option<u32>) -> Option<u32> {
        self.awaiting_reply |= handed.is_some();
        handed
    }

    /// Writes pending replies until done or the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    self.last_active = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.written = 0;
        Ok(())
    }

    /// Drives an inline connection (nothing is ever handed) and says whether it is
    /// done: finished or failed, logged either way. The loop then drops it.
    pub fn drive_inline(&mut self, scratch: &mut [u8]) -> bool {
        match self.drive(scratch) {
            Ok(_) if self.is_finished() => {
                tracing::debug!(peer = %self.peer, "closed");
                true
            }
            Ok(_) => false,
            Err(e) => {
                log_connection_error(self.peer, &e);
                true
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_sweep_runs_every_quarter_timeout_within_bounds() {
        let mut off = IdleSweep::new(None);
        let mut sweep = IdleSweep::new(Some(Duration::from_secs(2)));
        let long = IdleSweep::new(Some(Duration::from_secs(300)));
        let now = Instant::now();
        assert!(!off.due(now));
        assert_eq!(off.timeout(now), None);
        assert_eq!(
            off.shorten(now, Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert!(sweep.due(now), "the first sweep is due at once");
        assert!(!sweep.due(now));
        assert_eq!(sweep.timeout(now), Some(Duration::from_millis(500)));
        assert!(sweep.due(now + Duration::from_millis(500)));
        assert_eq!(
            IdleSweep::interval(Duration::from_secs(300)),
            Duration::from_secs(1)
        );
        assert_eq!(
            long.shorten(now, Some(Duration::from_millis(5))),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn gone_probe_sees_a_reset_not_a_half_close() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let half = TcpStream::connect(addr).unwrap();
        let (served_half, _) = listener.accept().unwrap();
        let reset = TcpStream::connect(addr).unwrap();
        let (served_reset, _) = listener.accept().unwrap();
        let mut half_gone = gone_probe(served_half.as_fd()).unwrap();
        let mut reset_gone = gone_probe(served_reset.as_fd()).unwrap();
        assert!(!half_gone() && !reset_gone());
        half.shutdown(std::net::Shutdown::Write).unwrap();
        socket2::SockRef::from(&reset)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(reset);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!half_gone(), "a half-closed client is owed its replies");
        assert!(reset_gone());
    }
}
