//! A non-blocking socket as a state machine, for the models that drive sockets by
//! readiness themselves (`nonblocking`, `select`, `epoll`). With `--downstream`, a
//! connection also owns its socket to the downstream ([`Nonblocking`]), which the loop
//! watches beside the client's: a request that waits is one more state, not a thread.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd as _, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use super::{Activity, SessionDriver, log_connection_error};
use crate::downstream::{Failure, Interest, Nonblocking};
use crate::server::Config;
use crate::service::{Handoff, Rejection, Work};

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
    driver: SessionDriver,
    /// The last read or write hit `WouldBlock`; cleared when readiness is reported.
    read_blocked: bool,
    write_blocked: bool,
    /// When bytes last moved either way, for `--idle-timeout`.
    activity: Activity,
    /// `--downstream`: this connection's calls to it.
    /// Boxed: a connection that never waits (no `--downstream`) carries one pointer,
    /// not the call's whole state (issue 45).
    downstream: Option<Box<Nonblocking>>,
}

impl PollConn {
    /// Makes `stream` non-blocking and wraps it.
    ///
    /// # Errors
    /// The socket's flags cannot be set.
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        config: &Config,
        work: Work,
    ) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        tracing::debug!(%peer, "connected");
        let driver = SessionDriver::for_connection(config, work);
        Ok(PollConn {
            stream,
            peer,
            driver,
            read_blocked: false,
            write_blocked: false,
            activity: Activity::new(),
            downstream: config.downstream.map(|d| Box::new(Nonblocking::new(d))),
        })
    }

    /// True when no byte has moved either way for `limit` (`--idle-timeout`) and no
    /// work of its own is in progress; logged, and the loop drops the connection.
    pub fn idle_expired(&self, now: Instant, limit: Option<Duration>) -> bool {
        let expired = !self.driver.awaiting_reply() && self.activity.expired(now, limit);
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
        self.driver.wants_read() && self.driver.pending().len() < OUT_HIGH_WATER
    }

    /// Has replies to write.
    pub fn wants_write(&self) -> bool {
        self.driver.wants_write()
    }

    /// The client has closed its side and got every reply: drop the connection.
    pub fn is_finished(&self) -> bool {
        self.driver.is_finished()
    }

    /// The reply of a handed request.
    pub fn reply(&mut self, reply: Result<u64, Rejection>) {
        self.driver.reply(reply);
    }

    /// The downstream's socket and what its call waits for, while one is in progress:
    /// the loop watches it and drives this connection when it is ready.
    pub fn downstream_interest(&self) -> Option<(BorrowedFd<'_>, Interest)> {
        self.downstream.as_ref()?.interest()
    }

    /// When the downstream call in progress times out: the loop must drive this
    /// connection by then.
    pub fn downstream_deadline(&self) -> Option<Instant> {
        self.downstream.as_ref()?.deadline()
    }

    /// A downstream socket opened since the last ask, for an edge-triggered loop to
    /// register once (closing it removes the registration).
    pub fn take_opened_downstream(&mut self) -> Option<RawFd> {
        self.downstream.as_mut()?.take_opened()
    }

    /// Ends the downstream call in progress with `failure` (a loop that cannot watch
    /// its socket); the next [`drive`](Self::drive) answers the request.
    pub fn fail_downstream(&mut self, failure: Failure) {
        if let Some(downstream) = self.downstream.as_mut() {
            downstream.fail(failure);
        }
    }

    /// Takes a handoff: a wait starts the downstream call (`None`); a computation is
    /// returned for the loop.
    fn take(&mut self, handoff: Handoff) -> Option<u32> {
        match (handoff, self.downstream.as_mut()) {
            (Handoff::Compute(n), _) => Some(n),
            (Handoff::Wait, Some(downstream)) => {
                downstream.start(self.driver.downstream_line(), Instant::now());
                None
            }
            // A session waits only when the server has a downstream.
            (Handoff::Wait, None) => {
                let next = self.driver.downstream_replied(Ok(()), self.stream.as_fd());
                next.and_then(|h| self.take(h))
            }
        }
    }

    /// The downstream call's outcome once it is over (`None` while it waits or when
    /// there is none).
    fn downstream_done(&mut self) -> Option<crate::downstream::Outcome> {
        let downstream = self.downstream.as_mut()?;
        if !downstream.is_calling() {
            return None;
        }
        downstream.progress(Instant::now())
    }

    /// Makes every step possible without blocking. Returns a request to compute
    /// elsewhere, if the session handed one; errors mean the connection is dead.
    ///
    /// # Errors
    /// The socket failed (reset, broken pipe).
    pub fn drive(&mut self, scratch: &mut [u8]) -> io::Result<Option<u32>> {
        loop {
            if let Some(outcome) = self.downstream_done() {
                let handed = self.driver.downstream_replied(outcome, self.stream.as_fd());
                if let Some(n) = handed.and_then(|h| self.take(h)) {
                    self.flush()?;
                    return Ok(Some(n));
                }
                continue;
            }
            if let Some(handoff) = self.driver.resume(self.stream.as_fd()) {
                if let Some(n) = self.take(handoff) {
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
                    Ok(0) => self.driver.on_eof(self.stream.as_fd()),
                    Ok(n) => {
                        self.activity.touch();
                        self.driver.on_read(&scratch[..n], self.stream.as_fd())
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.read_blocked = true;
                        self.driver.on_idle(self.stream.as_fd())
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
                    Err(e) => return Err(e),
                };
                if let Some(n) = handed.and_then(|h| self.take(h)) {
                    self.flush()?;
                    return Ok(Some(n));
                }
                continue;
            }
            return Ok(None);
        }
    }

    /// Writes pending replies until done or the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        while self.driver.wants_write() {
            match self.stream.write(self.driver.pending()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.driver.wrote(n);
                    self.activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
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
