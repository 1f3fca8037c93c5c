//! The blocking call: the thread and process models wait on the downstream the way
//! they wait on their client, asleep in a system call.

use std::io::{self, Read as _, Write as _};
use std::net::TcpStream;
use std::time::Instant;

use std::os::fd::AsFd as _;

use super::{DownstreamConfig, Echo, Failure, Idle, Outcome, REPLY_CHUNK, idle_state};

/// A connection's downstream, called with blocking sockets: `connect`, `write`, `read`
/// with `SO_SNDTIMEO`/`SO_RCVTIMEO` set to what is left of the timeout. While one thread
/// waits here, it holds nothing else: no lock (`--gil` is released, as CPython does around
/// `recv`), no CPU.
#[derive(Debug)]
pub struct Blocking {
    config: DownstreamConfig,
    conn: Option<TcpStream>,
}

impl Blocking {
    pub fn new(config: DownstreamConfig) -> Blocking {
        Blocking { config, conn: None }
    }

    /// Sends `line` (terminator included) and waits for its echo, at most the
    /// timeout; connects first if there is no connection yet, or if the one it has was
    /// closed while idle. Stale bytes on the idle connection are a desync.
    pub fn call(&mut self, line: &[u8]) -> Outcome {
        let deadline = Instant::now() + self.config.timeout;
        let outcome = match self.conn.as_ref().map(|c| idle_state(c.as_fd())) {
            Some(Idle::Stale) => Err(Failure::Desync),
            idle => {
                if idle == Some(Idle::Closed) {
                    self.conn = None;
                }
                self.try_call(line, deadline)
                    .unwrap_or_else(|e| Err(Failure::from_io(&e)))
            }
        };
        if outcome.is_err() {
            self.conn = None;
        }
        outcome
    }

    fn try_call(&mut self, line: &[u8], deadline: Instant) -> io::Result<Outcome> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let conn = TcpStream::connect_timeout(&self.config.addr, self.config.timeout)?;
                conn.set_nodelay(true)?;
                self.conn.insert(conn)
            }
        };
        let left = || {
            deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or(io::Error::from(io::ErrorKind::TimedOut))
        };
        conn.set_write_timeout(Some(left()?))?;
        conn.write_all(line)?;
        let mut reply = Echo::of(line);
        let mut buf = [0u8; REPLY_CHUNK];
        loop {
            // The deadline bounds the whole reply, however it trickles in.
            conn.set_read_timeout(Some(left()?))?;
            match conn.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => match reply.saw(&buf[..n]) {
                    Ok(true) => return Ok(Ok(())),
                    Ok(false) => {}
                    Err(failure) => return Ok(Err(failure)),
                },
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
