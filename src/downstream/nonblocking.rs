//! The non-blocking call: a per-request state machine for the loops that drive sockets
//! by readiness themselves. The loop registers the downstream's descriptor beside the
//! client's and calls [`Nonblocking::progress`] whenever either may have moved.
//!
//! ```text
//!  start(line) ─► Connecting ─writable─► Sending ─all sent─► Receiving ─newline─► Ok
//!                 (connect returned          (write until       (read until
//!                  EINPROGRESS)               WouldBlock)         WouldBlock)
//!  any state: an error, end of input, or the deadline ─► Err(reason), socket dropped
//! ```

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, RawFd};
use std::time::Instant;

use socket2::{Domain, Socket, Type};

use super::{DownstreamConfig, Echo, Failure, Idle, Outcome, REPLY_CHUNK, idle_state};

/// What the downstream's socket waits for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// The connect to finish, or room to send.
    Write,
    /// The reply.
    Read,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Sending,
    Receiving,
}

#[derive(Debug)]
struct Call {
    state: State,
    deadline: Instant,
    sent: usize,
    reply: Echo,
}

/// A connection's downstream as a state machine; see the module docs.
#[derive(Debug)]
pub struct Nonblocking {
    config: DownstreamConfig,
    conn: Option<TcpStream>,
    /// A socket opened since the loop last asked ([`take_opened`](Self::take_opened)).
    opened: bool,
    /// The request line being sent, terminator included (kept, not reallocated).
    line: Vec<u8>,
    call: Option<Call>,
    /// A call that failed as it started (refused at once): reported by the next
    /// [`progress`](Self::progress).
    failed: Option<Failure>,
}

impl Nonblocking {
    pub fn new(config: DownstreamConfig) -> Nonblocking {
        Nonblocking {
            config,
            conn: None,
            opened: false,
            line: Vec::new(),
            call: None,
            failed: None,
        }
    }

    /// A call is in progress (or has failed and not yet been reported).
    pub fn is_calling(&self) -> bool {
        self.call.is_some() || self.failed.is_some()
    }

    /// Starts a call for `line` (terminator included); connects first, without
    /// waiting, if there is no connection or the downstream closed it while idle. Stale
    /// bytes on the idle connection fail the call (`Desync`), reported by the next
    /// [`progress`](Self::progress).
    pub fn start(&mut self, line: &[u8], now: Instant) {
        self.line.clear();
        self.line.extend_from_slice(line);
        match self.conn.as_ref().map(|c| idle_state(c.as_fd())) {
            Some(Idle::Stale) => {
                self.conn = None;
                self.failed = Some(Failure::Desync);
                return;
            }
            Some(Idle::Closed) => self.conn = None,
            Some(Idle::Clean) | None => {}
        }
        let state = match self.conn {
            Some(_) => State::Sending,
            None => match connect_nonblocking(self.config.addr) {
                Ok(conn) => {
                    self.conn = Some(conn);
                    self.opened = true;
                    State::Connecting
                }
                Err(e) => {
                    self.failed = Some(Failure::from_io(&e));
                    return;
                }
            },
        };
        self.call = Some(Call {
            state,
            deadline: now + self.config.timeout,
            sent: 0,
            reply: Echo::of(line),
        });
    }

    /// Moves the call as far as the socket allows. `None`: still waiting (for
    /// [`interest`](Self::interest), or the deadline); `Some`: the call is over.
    pub fn progress(&mut self, now: Instant) -> Option<Outcome> {
        if let Some(failure) = self.failed.take() {
            return Some(Err(failure));
        }
        let outcome = match self.step() {
            Ok(Some(done)) => done,
            Ok(None) => match self.call.as_ref() {
                Some(call) if now >= call.deadline => Err(Failure::TimedOut),
                _ => return None,
            },
            Err(e) => Err(Failure::from_io(&e)),
        };
        self.call = None;
        if outcome.is_err() {
            // Dropped: a late reply must not answer the next request. An epoll
            // registration goes with the descriptor.
            self.conn = None;
        }
        Some(outcome)
    }

    /// Ok(Some(outcome)): the call is over (the echo is in, or it was not the echo);
    /// Ok(None): would block. Each read is bounded: a reply fails at its first byte that
    /// is not the echo's, so an endless line ends the call at once instead of holding the
    /// loop.
    fn step(&mut self) -> io::Result<Option<Outcome>> {
        let (Some(call), Some(conn)) = (self.call.as_mut(), self.conn.as_ref()) else {
            return Ok(None);
        };
        if call.state == State::Connecting {
            if let Some(e) = conn.take_error()? {
                return Err(e);
            }
            match conn.peer_addr() {
                Ok(_) => call.state = State::Sending,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        while call.state == State::Sending {
            match { conn }.write(&self.line[call.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    call.sent += n;
                    if call.sent == self.line.len() {
                        call.state = State::Receiving;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let mut buf = [0u8; REPLY_CHUNK];
        loop {
            match { conn }.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => match call.reply.saw(&buf[..n]) {
                    Ok(true) => return Ok(Some(Ok(()))),
                    Ok(false) => {}
                    Err(failure) => return Ok(Some(Err(failure))),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The socket and what the call waits for on it, while a call is in progress.
    pub fn interest(&self) -> Option<(BorrowedFd<'_>, Interest)> {
        let (call, conn) = (self.call.as_ref()?, self.conn.as_ref()?);
        let interest = match call.state {
            State::Connecting | State::Sending => Interest::Write,
            State::Receiving => Interest::Read,
        };
        Some((conn.as_fd(), interest))
    }

    /// When the call in progress times out.
    pub fn deadline(&self) -> Option<Instant> {
        self.call.as_ref().map(|c| c.deadline)
    }

    /// A socket opened since the last ask: the loop registers it (edge-triggered, both
    /// ways) once; closing it removes the registration.
    pub fn take_opened(&mut self) -> Option<RawFd> {
        let opened = std::mem::take(&mut self.opened);
        opened.then(|| self.conn.as_ref().map(|c| c.as_raw_fd()))?
    }

    /// Ends the call in progress with `failure` (a loop that cannot watch the socket,
    /// such as `select` past `FD_SETSIZE`).
    pub fn fail(&mut self, failure: Failure) {
        if self.call.take().is_some() {
            self.conn = None;
            self.failed = Some(failure);
        }
    }
}

/// A non-blocking TCP connect to `addr`: returns at once, the handshake going on
/// (`EINPROGRESS`); the socket turns writable when it is done, and `SO_ERROR` says how.
pub fn connect_nonblocking(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}
